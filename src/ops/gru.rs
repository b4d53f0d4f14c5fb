//! A GRU layer over a whole sequence, fused: one op on the tape for all L steps.
//!
//! Gate order (r, z, n) as in PyTorch. With x_t `[I]`, h `[H]`, W_ih `[I, 3H]`, W_hh `[H, 3H]`:
//!   r  = σ(x_t W_ir + b_ir + h W_hr + b_hr)
//!   z  = σ(x_t W_iz + b_iz + h W_hz + b_hz)
//!   hn = h W_hn + b_hn
//!   n  = tanh(x_t W_in + b_in + r ∘ hn)
//!   h' = (1 − z) ∘ n + z ∘ h
//!   h_t = m_t h' + (1 − m_t) h          (mask m_t: 1 = real step, 0 = padding carries h)
//! The output is every h_t, `[B, L, H]`.
//!
//! Backward through time, for t = L−1 … 0, with g = dy_t + (gradient reaching h_t from t+1):
//!   dh' = m_t g,  dh_{t−1} = (1 − m_t) g + z ∘ dh' + dgh · W_hhᵀ
//!   dn = (1 − z) ∘ dh',  dz = (h − n) ∘ dh'
//!   da_n = (1 − n²) ∘ dn,  dr = hn ∘ da_n,  dhn = r ∘ da_n
//!   da_r = r(1 − r) ∘ dr,  da_z = z(1 − z) ∘ dz
//!   dgx = [da_r, da_z, da_n] (gradient of x_t W_ih + b_ih), dgh = [da_r, da_z, dhn]
//! then over all steps at once: dW_ih = Xᵀ dGX, dx = dGX W_ihᵀ, dW_hh = H_prevᵀ dGH,
//! db_ih = Σ dGX, db_hh = Σ dGH, and dh0 is the gradient left at h_{−1}.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct GruBackward {
    mask: Option<Tensor>,
    /// `[r, z, n, hn]` per step, `[B, L, 4H]`, saved by the forward.
    gates: Tensor,
    has_h0: bool,
}

impl Backward for GruBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        // Inputs were recorded as [x, w_ih, w_hh, b_ih, b_hh, (h0)].
        let (x, w_ih, w_hh) = (ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]);
        let h0 = self.has_h0.then(|| ctx.inputs[5]);
        let grads = backend::of(x).gru_backward(
            x,
            h0,
            w_ih,
            w_hh,
            self.mask.as_ref(),
            ctx.output,
            &self.gates,
            ctx.grad,
            ctx.needs_grad[0],
        );
        let mut out = vec![
            grads.dx,
            ctx.needs_grad[1].then_some(grads.dw_ih),
            ctx.needs_grad[2].then_some(grads.dw_hh),
            ctx.needs_grad[3].then_some(grads.db_ih),
            ctx.needs_grad[4].then_some(grads.db_hh),
        ];
        if self.has_h0 {
            out.push(ctx.needs_grad[5].then_some(grads.dh0));
        }
        Ok(out)
    }
}

fn check(what: &str, shape: &[usize], expected: &[usize]) -> Result<()> {
    if shape != expected {
        return Err(Error::shape(
            "gru",
            format!("{what} must have shape {expected:?}, got {shape:?}"),
        ));
    }
    Ok(())
}

impl Tape {
    /// A GRU over the whole sequence `x` `[B, L, I]`, returning every hidden state
    /// `[B, L, H]`. `h0` `[B, H]` (zeros when `None`), `w_ih` `[I, 3H]`, `w_hh` `[H, 3H]`,
    /// `b_ih`, `b_hh` `[3H]`, gates in the order (r, z, n). `mask` `[B, L]`: 1 for a real
    /// step, 0 for padding, which carries the previous hidden state unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn gru(
        &mut self,
        x: Var,
        h0: Option<Var>,
        w_ih: Var,
        w_hh: Var,
        b_ih: Var,
        b_hh: Var,
        mask: Option<&Tensor>,
    ) -> Result<Var> {
        let xs = self.shape(x);
        if xs.len() != 3 {
            return Err(Error::shape(
                "gru",
                format!("x must be [batch, length, input], got {xs:?}"),
            ));
        }
        let (batch, length, input) = (xs[0], xs[1], xs[2]);
        let ws = self.shape(w_hh);
        if ws.len() != 2 || ws[1] != 3 * ws[0] {
            return Err(Error::shape(
                "gru",
                format!("w_hh must be [hidden, 3·hidden], got {ws:?}"),
            ));
        }
        let hidden = ws[0];
        check("w_ih", self.shape(w_ih), &[input, 3 * hidden])?;
        check("b_ih", self.shape(b_ih), &[3 * hidden])?;
        check("b_hh", self.shape(b_hh), &[3 * hidden])?;
        if let Some(h0) = h0 {
            check("h0", self.shape(h0), &[batch, hidden])?;
        }
        if let Some(mask) = mask {
            check("mask", mask.shape(), &[batch, length])?;
            if mask.device() != self.value(x).device() {
                return Err(Error::shape("gru", "mask lives on another device than x"));
            }
        }

        let mut inputs = vec![x, w_ih, w_hh, b_ih, b_hh];
        inputs.extend(h0);
        let save_gates = self.grad_enabled() && inputs.iter().any(|&v| self.requires_grad(v));
        let xv = self.value(x);
        let (hidden_states, gates) = backend::of(xv).gru_forward(
            xv,
            h0.map(|h| self.value(h)),
            self.value(w_ih),
            self.value(w_hh),
            self.value(b_ih),
            self.value(b_hh),
            mask,
            save_gates,
        );
        let Some(gates) = gates else {
            // Nothing needs a gradient: record a constant.
            return Ok(self.constant(hidden_states));
        };
        let backward = GruBackward {
            mask: mask.cloned(),
            gates,
            has_h0: h0.is_some(),
        };
        Ok(self.record("gru", hidden_states, &inputs, backward))
    }
}
