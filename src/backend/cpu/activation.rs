//! Elementwise activations on the CPU, forward and backward.

use rayon::prelude::*;

use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, tensor};
use crate::backend::{ActivationKernels, UnaryOp};
use crate::tensor::Tensor;

/// Applies `f` to pairs of slices in parallel chunks when large.
fn map_into(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    const CHUNK: usize = 8192;
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, o)| f(i * CHUNK, o));
    } else {
        f(0, out);
    }
}

impl ActivationKernels for CpuBackend {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Tensor {
        let xs = x.cpu();
        let mut out = vec![0.0f32; xs.len()];
        map_into(&mut out, |start, o| {
            for (o, &v) in o.iter_mut().zip(&xs[start..]) {
                *o = op.forward(v);
            }
        });
        tensor(x.shape(), out)
    }

    fn unary_backward(&self, op: UnaryOp, x: &Tensor, y: &Tensor, dy: &Tensor) -> Tensor {
        let (xs, ys, dys) = (x.cpu(), y.cpu(), dy.cpu());
        let mut out = vec![0.0f32; xs.len()];
        map_into(&mut out, |start, o| {
            for (j, o) in o.iter_mut().enumerate() {
                let i = start + j;
                *o = dys[i] * op.derivative(xs[i], ys[i]);
            }
        });
        tensor(x.shape(), out)
    }

    fn affine(&self, x: &Tensor, alpha: f32, beta: f32) -> Tensor {
        let xs = x.cpu();
        let mut out = vec![0.0f32; xs.len()];
        map_into(&mut out, |start, o| {
            for (o, &v) in o.iter_mut().zip(&xs[start..]) {
                *o = alpha * v + beta;
            }
        });
        tensor(x.shape(), out)
    }
}
