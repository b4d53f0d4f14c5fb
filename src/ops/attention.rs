//! Fused multi-head scaled-dot-product attention.
//!
//! q, k, v: `[B, L, D]`, D = H·d_h; head h reads columns h·d_h..(h+1)·d_h (no permute copies).
//! Per item and head, with s = 1/√d_h and M the mask (0 where key j is visible to query i,
//! −∞ for padding keys and, when causal, for j > i):
//!   P = softmax(Q Kᵀ · s + M)   (row-wise; a row with no visible key is all zeros)
//!   O = (P ∘ Z) V               (Z: inverted dropout, 0 with probability p else 1/(1−p);
//!                                Z = 1 when p = 0 or the tape is not training)
//! Backward, with D_i = Σ_c dO_ic O_ic:
//!   dV = (P ∘ Z)ᵀ dO;  dP = (dO Vᵀ) ∘ Z;  dS = P ∘ (dP − D);  dQ = dS K · s;  dK = dSᵀ Q · s
//! The kernels keep only O and the per-row log-sum-exp of S (`[B, H, L]`) and recompute P
//! in backward (FlashAttention-2); the dropout mask is recomputed from its random stream.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, AttentionSpec};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct AttentionBackward {
    spec: AttentionSpec,
    key_mask: Option<Tensor>,
    lse: Tensor,
}

impl Backward for AttentionBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (q, k, v) = (ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]);
        let (dq, dk, dv) = backend::of(q).attention_backward(
            q,
            k,
            v,
            ctx.output,
            &self.lse,
            ctx.grad,
            self.key_mask.as_ref(),
            &self.spec,
        );
        let keep = |needed: bool, grad: Tensor| needed.then_some(grad);
        Ok(vec![
            keep(ctx.needs_grad[0], dq),
            keep(ctx.needs_grad[1], dk),
            keep(ctx.needs_grad[2], dv),
        ])
    }
}

impl Tape {
    /// Multi-head attention softmax(Q Kᵀ/√d_h + mask) V over `heads` heads of `[B, L, D]`
    /// inputs. `key_mask` is `[B, L]`: 1.0 for a real key, 0.0 for a padding key (any value
    /// other than 0.0 counts as real). `causal` hides keys after the query. `dropout` is the
    /// probability of dropping an attention probability (inverted dropout), applied only
    /// when the tape is training. A query that sees no key outputs 0 and gets no gradient.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: Var,
        k: Var,
        v: Var,
        heads: usize,
        causal: bool,
        key_mask: Option<&Tensor>,
        dropout: f32,
    ) -> Result<Var> {
        let shape = self.shape(q).to_vec();
        if shape.len() != 3 {
            return Err(Error::shape(
                "attention",
                format!("q must be [batch, length, width], got {shape:?}"),
            ));
        }
        if self.shape(k) != shape.as_slice() || self.shape(v) != shape.as_slice() {
            return Err(Error::shape(
                "attention",
                format!(
                    "q, k, v must have one shape: {shape:?}, {:?}, {:?}",
                    self.shape(k),
                    self.shape(v)
                ),
            ));
        }
        if heads == 0 || shape[2] % heads != 0 {
            return Err(Error::shape(
                "attention",
                format!("width {} is not divisible into {heads} heads", shape[2]),
            ));
        }
        if let Some(mask) = key_mask
            && mask.shape() != &shape[..2]
        {
            return Err(Error::shape(
                "attention",
                format!(
                    "key mask must be [batch, length] = {:?}, got {:?}",
                    &shape[..2],
                    mask.shape()
                ),
            ));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::Invalid(format!(
                "attention dropout must be in [0, 1), got {dropout}"
            )));
        }
        let active_dropout = if self.training() { dropout } else { 0.0 };
        let stream = if active_dropout > 0.0 {
            self.next_stream()
        } else {
            0
        };
        let spec = AttentionSpec {
            heads,
            causal,
            dropout: active_dropout,
            stream,
        };
        let (x, y, z) = (self.value(q), self.value(k), self.value(v));
        let (value, lse) = backend::of(x).attention_forward(x, y, z, key_mask, &spec);
        Ok(self.record(
            "attention",
            value,
            &[q, k, v],
            AttentionBackward {
                spec,
                key_mask: key_mask.cloned(),
                lse,
            },
        ))
    }
}
