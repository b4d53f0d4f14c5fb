//! Elementwise arithmetic with broadcasting, and the reductions broadcasting needs.

use super::{CPU, GpuBackend, host};
use crate::backend::{BinaryOp, ElementwiseKernels};
use crate::tensor::Tensor;

impl ElementwiseKernels for GpuBackend {
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Tensor {
        self.upload_tensor(CPU.binary(op, &host(a), &host(b), out_shape))
    }

    fn add_assign(&self, sum: Tensor, x: &Tensor) -> Tensor {
        self.upload_tensor(CPU.add_assign(host(&sum), &host(x)))
    }

    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Tensor {
        self.upload_tensor(CPU.sum_to_shape(&host(x), shape))
    }

    fn scale(&self, x: &Tensor, alpha: f32) -> Tensor {
        self.upload_tensor(CPU.scale(&host(x), alpha))
    }
}
