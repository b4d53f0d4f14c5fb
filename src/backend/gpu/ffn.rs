//! The fused feed-forward block on the GPU.

use super::{CPU, GpuBackend, host};
use crate::backend::{FeedForwardKernels, FfnGradients};
use crate::ops::Activation;
use crate::tensor::Tensor;

impl FeedForwardKernels for GpuBackend {
    fn ffn_forward(
        &self,
        x: &Tensor,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
        activation: Activation,
        dropout: Option<(f32, u32)>,
    ) -> (Tensor, Tensor) {
        let (y, pre) = CPU.ffn_forward(
            &host(x),
            &host(w1),
            &host(b1),
            &host(w2),
            &host(b2),
            activation,
            dropout,
        );
        (self.upload_tensor(y), self.upload_tensor(pre))
    }

    fn ffn_backward(
        &self,
        x: &Tensor,
        w1: &Tensor,
        w2: &Tensor,
        pre_activation: &Tensor,
        d_y: &Tensor,
        activation: Activation,
        dropout: Option<(f32, u32)>,
        want_dx: bool,
    ) -> FfnGradients {
        let g = CPU.ffn_backward(
            &host(x),
            &host(w1),
            &host(w2),
            &host(pre_activation),
            &host(d_y),
            activation,
            dropout,
            want_dx,
        );
        FfnGradients {
            dx: g.dx.map(|t| self.upload_tensor(t)),
            dw1: self.upload_tensor(g.dw1),
            db1: self.upload_tensor(g.db1),
            dw2: self.upload_tensor(g.dw2),
            db2: self.upload_tensor(g.db2),
        }
    }
}
