//! Elementwise activations and the affine map on the GPU.

use super::{CPU, GpuBackend, host};
use crate::backend::{ActivationKernels, UnaryOp};
use crate::tensor::Tensor;

impl ActivationKernels for GpuBackend {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Tensor {
        self.upload_tensor(CPU.unary(op, &host(x)))
    }

    fn unary_backward(&self, op: UnaryOp, x: &Tensor, y: &Tensor, dy: &Tensor) -> Tensor {
        self.upload_tensor(CPU.unary_backward(op, &host(x), &host(y), &host(dy)))
    }

    fn affine(&self, x: &Tensor, alpha: f32, beta: f32) -> Tensor {
        self.upload_tensor(CPU.affine(&host(x), alpha, beta))
    }
}
