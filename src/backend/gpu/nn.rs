//! Row-wise neural-network kernels on the GPU: softmax, layer norm, dropout, losses.

use super::{CPU, GpuBackend, host};
use crate::backend::NnKernels;
use crate::tensor::Tensor;

impl NnKernels for GpuBackend {
    fn softmax(&self, x: &Tensor) -> Tensor {
        self.upload_tensor(CPU.softmax(&host(x)))
    }

    fn softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor {
        self.upload_tensor(CPU.softmax_backward(&host(y), &host(dy)))
    }

    fn log_softmax(&self, x: &Tensor) -> Tensor {
        self.upload_tensor(CPU.log_softmax(&host(x)))
    }

    fn log_softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor {
        self.upload_tensor(CPU.log_softmax_backward(&host(y), &host(dy)))
    }

    fn layer_norm(
        &self,
        x: &Tensor,
        gain: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> (Tensor, Tensor, Tensor) {
        let (y, mean, rstd) = CPU.layer_norm(&host(x), &host(gain), &host(bias), eps);
        (
            self.upload_tensor(y),
            self.upload_tensor(mean),
            self.upload_tensor(rstd),
        )
    }

    fn layer_norm_backward(
        &self,
        x: &Tensor,
        gain: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        dy: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let (dx, dg, db) =
            CPU.layer_norm_backward(&host(x), &host(gain), &host(mean), &host(rstd), &host(dy));
        (
            self.upload_tensor(dx),
            self.upload_tensor(dg),
            self.upload_tensor(db),
        )
    }

    fn dropout(&self, x: &Tensor, p: f32, stream: u32) -> Tensor {
        self.upload_tensor(CPU.dropout(&host(x), p, stream))
    }

    fn cross_entropy(&self, logits: &Tensor, targets: &[u32], weights: &[f32]) -> (Tensor, Tensor) {
        let (loss, grad) = CPU.cross_entropy(&host(logits), targets, weights);
        (self.upload_tensor(loss), self.upload_tensor(grad))
    }

    fn bce_with_logits(&self, logits: &Tensor, labels: &Tensor, weights: &[f32]) -> Tensor {
        self.upload_tensor(CPU.bce_with_logits(&host(logits), &host(labels), weights))
    }

    fn bce_with_logits_backward(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        weights: &[f32],
        dloss: &Tensor,
    ) -> Tensor {
        self.upload_tensor(CPU.bce_with_logits_backward(
            &host(logits),
            &host(labels),
            weights,
            &host(dloss),
        ))
    }
}
