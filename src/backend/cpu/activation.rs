//! Elementwise activations on the CPU, forward and backward.

use std::ops::Range;

use super::fresh::collect_chunks;
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, tensor};
use crate::backend::{ActivationKernels, UnaryOp};
use crate::tensor::Tensor;

/// A fresh buffer of `len` floats, chunk by chunk the values `values(range of the chunk)`
/// yields, in parallel when large.
fn map_chunks<I: ExactSizeIterator<Item = f32>>(
    len: usize,
    values: impl Fn(Range<usize>) -> I + Sync + Send,
) -> Vec<f32> {
    collect_chunks(len, 8192, len >= PARALLEL_MIN_ELEMENTS, |_, range| {
        values(range)
    })
}

impl ActivationKernels for CpuBackend {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Tensor {
        let xs = x.cpu();
        let out = map_chunks(xs.len(), |range| xs[range].iter().map(|&v| op.forward(v)));
        tensor(x.shape(), out)
    }

    fn unary_backward(&self, op: UnaryOp, x: &Tensor, y: &Tensor, dy: &Tensor) -> Tensor {
        let (xs, ys, dys) = (x.cpu(), y.cpu(), dy.cpu());
        let out = map_chunks(xs.len(), |range| {
            let (xs, ys, dys) = (&xs[range.clone()], &ys[range.clone()], &dys[range]);
            xs.iter()
                .zip(ys)
                .zip(dys)
                .map(|((&x, &y), &dy)| dy * op.derivative(x, y))
        });
        tensor(x.shape(), out)
    }

    fn affine(&self, x: &Tensor, alpha: f32, beta: f32) -> Tensor {
        let xs = x.cpu();
        let out = map_chunks(xs.len(), |range| {
            xs[range].iter().map(|&v| alpha * v + beta)
        });
        tensor(x.shape(), out)
    }
}
