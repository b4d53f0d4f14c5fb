//! Copies that rearrange values on the GPU.

use super::{CPU, GpuBackend, host};
use crate::backend::ShapeKernels;
use crate::tensor::Tensor;

impl ShapeKernels for GpuBackend {
    fn permute(&self, x: &Tensor, axes: &[usize]) -> Tensor {
        self.upload_tensor(CPU.permute(&host(x), axes))
    }

    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
        self.upload_tensor(CPU.slice(&host(x), axis, start, len))
    }

    fn unslice(&self, dy: &Tensor, axis: usize, start: usize, full: usize) -> Tensor {
        self.upload_tensor(CPU.unslice(&host(dy), axis, start, full))
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Tensor {
        let hosts: Vec<Tensor> = xs.iter().map(|x| host(x)).collect();
        let refs: Vec<&Tensor> = hosts.iter().collect();
        self.upload_tensor(CPU.concat(&refs, axis))
    }

    fn index_select(&self, x: &Tensor, axis: usize, index: &[u32]) -> Tensor {
        self.upload_tensor(CPU.index_select(&host(x), axis, index))
    }

    fn index_add(
        &self,
        dy: &Tensor,
        axis: usize,
        index: &[u32],
        size: usize,
        skip_zero: bool,
    ) -> Tensor {
        self.upload_tensor(CPU.index_add(&host(dy), axis, index, size, skip_zero))
    }

    fn masked_fill(&self, x: &Tensor, mask: &Tensor, value: f32) -> Tensor {
        self.upload_tensor(CPU.masked_fill(&host(x), &host(mask), value))
    }
}
