//! Convolution (im2col/col2im) and pooling on the GPU.

use super::{CPU, GpuBackend, host};
use crate::backend::{ConvGeometry, ConvKernels};
use crate::tensor::Tensor;

impl ConvKernels for GpuBackend {
    fn unfold2d(&self, x: &Tensor, geometry: &ConvGeometry) -> Tensor {
        self.upload_tensor(CPU.unfold2d(&host(x), geometry))
    }

    fn fold2d(&self, cols: &Tensor, image_shape: &[usize], geometry: &ConvGeometry) -> Tensor {
        self.upload_tensor(CPU.fold2d(&host(cols), image_shape, geometry))
    }

    fn pool1d(&self, x: &Tensor, kernel: usize, stride: usize, max: bool) -> (Tensor, Vec<u32>) {
        let (y, argmax) = CPU.pool1d(&host(x), kernel, stride, max);
        (self.upload_tensor(y), argmax)
    }

    fn pool1d_backward(
        &self,
        dy: &Tensor,
        input_len: usize,
        kernel: usize,
        stride: usize,
        argmax: Option<&[u32]>,
    ) -> Tensor {
        self.upload_tensor(CPU.pool1d_backward(&host(dy), input_len, kernel, stride, argmax))
    }
}
