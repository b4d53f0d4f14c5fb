//! Softmax, log-softmax, layer normalisation and dropout.
//!
//! softmax over the last axis: y_i = e^{x_i − m} / Σ_j e^{x_j − m} (m = max, for stability);
//!   dx = y ∘ (dy − Σ dy∘y).
//! log_softmax: y = x − logsumexp(x); dx = dy − softmax(x)·Σ dy.
//! layer_norm over the last axis: x̂ = (x − μ)/√(σ² + ε), y = x̂∘g + b (μ, σ² by Welford);
//!   dx = (1/σ)(ĝ − mean(ĝ) − x̂·mean(ĝ∘x̂)) with ĝ = dy∘g; dg = Σ dy∘x̂; db = Σ dy.
//! dropout (inverted): y = x·m/(1 − p), m_i = [uniform(stream, i) ≥ p]; dx = dy·m/(1 − p), with
//!   the mask recomputed from the stream rather than stored.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct SoftmaxBackward;

impl Backward for SoftmaxBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            backend::of(ctx.grad).softmax_backward(ctx.output, ctx.grad),
        )])
    }
}

struct LogSoftmaxBackward;

impl Backward for LogSoftmaxBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            backend::of(ctx.grad).log_softmax_backward(ctx.output, ctx.grad),
        )])
    }
}

struct LayerNormBackward {
    mean: Tensor,
    rstd: Tensor,
}

impl Backward for LayerNormBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (dx, dg, db) = backend::of(ctx.grad).layer_norm_backward(
            ctx.inputs[0],
            ctx.inputs[1],
            &self.mean,
            &self.rstd,
            ctx.grad,
        );
        Ok(vec![Some(dx), Some(dg), Some(db)])
    }
}

struct DropoutBackward {
    p: f32,
    stream: u32,
}

impl Backward for DropoutBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(ctx.grad).dropout(
            ctx.grad,
            self.p,
            self.stream,
        ))])
    }
}

impl Tape {
    fn check_rows(&self, op: &'static str, x: Var) -> Result<()> {
        if self.shape(x).is_empty() {
            return Err(Error::shape(op, "needs at least one axis"));
        }
        Ok(())
    }

    /// Softmax over the last axis.
    pub fn softmax(&mut self, x: Var) -> Result<Var> {
        self.check_rows("softmax", x)?;
        let v = self.value(x);
        let value = backend::of(v).softmax(v);
        Ok(self.record("softmax", value, &[x], SoftmaxBackward))
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&mut self, x: Var) -> Result<Var> {
        self.check_rows("log_softmax", x)?;
        let v = self.value(x);
        let value = backend::of(v).log_softmax(v);
        Ok(self.record("log_softmax", value, &[x], LogSoftmaxBackward))
    }

    /// Layer normalisation over the last axis with gain and bias `[d]`.
    pub fn layer_norm(&mut self, x: Var, gain: Var, bias: Var, eps: f32) -> Result<Var> {
        self.check_rows("layer_norm", x)?;
        let d = *self.shape(x).last().expect("checked");
        if self.shape(gain) != [d] || self.shape(bias) != [d] {
            return Err(Error::shape(
                "layer_norm",
                format!(
                    "gain {:?} and bias {:?} must be [{d}]",
                    self.shape(gain),
                    self.shape(bias)
                ),
            ));
        }
        let (xv, g, b) = (self.value(x), self.value(gain), self.value(bias));
        let (value, mean, rstd) = backend::of(xv).layer_norm(xv, g, b, eps);
        Ok(self.record(
            "layer_norm",
            value,
            &[x, gain, bias],
            LayerNormBackward { mean, rstd },
        ))
    }

    /// Inverted dropout with rate p; the identity on an inference tape or when p = 0.
    pub fn dropout(&mut self, x: Var, p: f32) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::shape(
                "dropout",
                format!("rate must be in [0, 1), got {p}"),
            ));
        }
        if p == 0.0 || !self.training() {
            return Ok(x);
        }
        let stream = self.next_stream();
        let v = self.value(x);
        let value = backend::of(v).dropout(v, p, stream);
        Ok(self.record("dropout", value, &[x], DropoutBackward { p, stream }))
    }
}
