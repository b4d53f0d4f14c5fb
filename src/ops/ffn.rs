//! The position-wise feed-forward block, fused: one op on the tape.
//!
//! For x `[.., d]` (any leading axes, flattened into N rows), W1 `[d, F]`, W2 `[F, d_out]`:
//!   a = x W1 + b1,  h = act(a) ∘ s,  y = h W2 + b2
//! where act is ReLU or GELU (exact: a · Φ(a) = a/2 · (1 + erf(a/√2))) and s is the inverted
//! dropout scale: s = [u ≥ p] / (1 − p) with u = uniform_at(stream, row · F + column) while
//! training with p > 0, s = 1 otherwise.
//! Backward, from dy:
//!   dW2 = hᵀ dy,  db2 = Σ_rows dy,  dh = dy W2ᵀ,
//!   da = dh ∘ s ∘ act'(a)   (ReLU: [a > 0]; GELU: Φ(a) + a φ(a)),
//!   dW1 = xᵀ da,  db1 = Σ_rows da,  dx = da W1ᵀ.
//! Only a is saved; h and the dropout mask are recomputed in the backward's single pass.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The nonlinearity of a feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// The exact (erf) form.
    Gelu,
}

struct FfnBackward {
    activation: Activation,
    dropout: Option<(f32, u32)>,
    /// x W1 + b1, `[N, F]`.
    pre_activation: Tensor,
}

impl Backward for FfnBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        // Inputs were recorded as [x, w1, b1, w2, b2].
        let (x, w1, w2) = (ctx.inputs[0], ctx.inputs[1], ctx.inputs[3]);
        let rows = self.pre_activation.shape()[0];
        let x2 = x.reshaped(&[rows, w1.shape()[0]])?;
        let dy2 = ctx.grad.reshaped(&[rows, w2.shape()[1]])?;
        let grads = backend::of(x).ffn_backward(
            &x2,
            w1,
            w2,
            &self.pre_activation,
            &dy2,
            self.activation,
            self.dropout,
            ctx.needs_grad[0],
        );
        let dx = match grads.dx {
            Some(dx) => Some(dx.reshaped(x.shape())?),
            None => None,
        };
        Ok(vec![
            dx,
            ctx.needs_grad[1].then_some(grads.dw1),
            ctx.needs_grad[2].then_some(grads.db1),
            ctx.needs_grad[3].then_some(grads.dw2),
            ctx.needs_grad[4].then_some(grads.db2),
        ])
    }
}

impl Tape {
    /// `act(x·W1 + b1)` (with inverted dropout `dropout` on it while training) `·W2 + b2`.
    /// `x` `[.., d]`, `w1` `[d, F]`, `b1` `[F]`, `w2` `[F, d_out]`, `b2` `[d_out]`; the
    /// result is `[.., d_out]`. `dropout` must lie in [0, 1).
    #[allow(clippy::too_many_arguments)]
    pub fn ffn(
        &mut self,
        x: Var,
        w1: Var,
        b1: Var,
        w2: Var,
        b2: Var,
        activation: Activation,
        dropout: f32,
    ) -> Result<Var> {
        let (xs, w1s, b1s, w2s, b2s) = (
            self.shape(x),
            self.shape(w1),
            self.shape(b1),
            self.shape(w2),
            self.shape(b2),
        );
        let shapes_fit = !xs.is_empty()
            && w1s.len() == 2
            && w2s.len() == 2
            && w1s[0] == xs[xs.len() - 1]
            && b1s == [w1s[1]]
            && w2s[0] == w1s[1]
            && b2s == [w2s[1]]
            && w1s[1] > 0
            && w2s[1] > 0;
        if !shapes_fit {
            return Err(Error::shape(
                "ffn",
                format!(
                    "expected x [.., d], w1 [d, F], b1 [F], w2 [F, d_out], b2 [d_out] with F, d_out > 0; \
                     got \
                     x {xs:?}, w1 {w1s:?}, b1 {b1s:?}, w2 {w2s:?}, b2 {b2s:?}"
                ),
            ));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::Invalid(format!(
                "ffn: dropout must lie in [0, 1), got {dropout}"
            )));
        }
        let (width, out_width) = (w1s[0], w2s[1]);
        let mut out_shape = xs.to_vec();
        *out_shape.last_mut().expect("rank checked above") = out_width;
        let rows = xs[..xs.len() - 1].iter().product::<usize>();
        let dropout = (self.training() && dropout > 0.0).then(|| (dropout, self.next_stream()));

        let x2 = self.value(x).reshaped(&[rows, width])?;
        let (y, pre_activation) = backend::of(&x2).ffn_forward(
            &x2,
            self.value(w1),
            self.value(b1),
            self.value(w2),
            self.value(b2),
            activation,
            dropout,
        );
        let backward = FfnBackward {
            activation,
            dropout,
            pre_activation,
        };
        Ok(self.record(
            "ffn",
            y.reshaped(&out_shape)?,
            &[x, w1, b1, w2, b2],
            backward,
        ))
    }
}
