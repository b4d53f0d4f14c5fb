//! Fused scaled-dot-product attention on the GPU.

use super::{CPU, GpuBackend, host};
use crate::backend::{AttentionKernels, AttentionSpec};
use crate::tensor::Tensor;

impl AttentionKernels for GpuBackend {
    fn attention_forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: Option<&Tensor>,
        spec: &AttentionSpec,
    ) -> (Tensor, Tensor) {
        let mask = key_mask.map(host);
        let (out, lse) = CPU.attention_forward(&host(q), &host(k), &host(v), mask.as_ref(), spec);
        (self.upload_tensor(out), self.upload_tensor(lse))
    }

    fn attention_backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        d_out: &Tensor,
        key_mask: Option<&Tensor>,
        spec: &AttentionSpec,
    ) -> (Tensor, Tensor, Tensor) {
        let mask = key_mask.map(host);
        let (dq, dk, dv) = CPU.attention_backward(
            &host(q),
            &host(k),
            &host(v),
            &host(out),
            &host(lse),
            &host(d_out),
            mask.as_ref(),
            spec,
        );
        (
            self.upload_tensor(dq),
            self.upload_tensor(dk),
            self.upload_tensor(dv),
        )
    }
}
