//! Elementwise activations on the CPU, forward and backward.

use super::fresh::fill_chunks;
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, tensor};
use crate::backend::{ActivationKernels, UnaryOp};
use crate::tensor::Tensor;

/// A fresh buffer of `len` floats filled by `f(start, chunk)` over chunks of it, in parallel
/// when large.
fn map_into(len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    const CHUNK: usize = 8192;
    fill_chunks(len, CHUNK, len >= PARALLEL_MIN_ELEMENTS, |i, o| {
        f(i * CHUNK, o)
    })
}

impl ActivationKernels for CpuBackend {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Tensor {
        let xs = x.cpu();
        let out = map_into(xs.len(), |start, o| {
            for (o, &v) in o.iter_mut().zip(&xs[start..]) {
                *o = op.forward(v);
            }
        });
        tensor(x.shape(), out)
    }

    fn unary_backward(&self, op: UnaryOp, x: &Tensor, y: &Tensor, dy: &Tensor) -> Tensor {
        let (xs, ys, dys) = (x.cpu(), y.cpu(), dy.cpu());
        let out = map_into(xs.len(), |start, o| {
            for (j, o) in o.iter_mut().enumerate() {
                let i = start + j;
                *o = dys[i] * op.derivative(xs[i], ys[i]);
            }
        });
        tensor(x.shape(), out)
    }

    fn affine(&self, x: &Tensor, alpha: f32, beta: f32) -> Tensor {
        let xs = x.cpu();
        let out = map_into(xs.len(), |start, o| {
            for (o, &v) in o.iter_mut().zip(&xs[start..]) {
                *o = alpha * v + beta;
            }
        });
        tensor(x.shape(), out)
    }
}
