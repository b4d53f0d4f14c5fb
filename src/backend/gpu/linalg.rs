//! Matrix products on the GPU.

use super::{CPU, GpuBackend, host};
use crate::backend::LinalgKernels;
use crate::tensor::Tensor;

impl LinalgKernels for GpuBackend {
    fn matmul(&self, a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Tensor {
        self.upload_tensor(CPU.matmul(&host(a), &host(b), transpose_a, transpose_b))
    }
}
