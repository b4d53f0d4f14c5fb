//! Losses. Each returns a rank-0 tensor: a weighted mean over rows or elements (weights 0
//! mark padding; all-zero weights give a loss of 0).
//!
//! cross_entropy over logits `[N, C]`, targets t: L = Σ_r w_r(logsumexp(x_r) − x_{r,t_r})/Σw;
//!   dx_r = w_r/Σw·(softmax(x_r) − onehot(t_r)). Fused: the softmax is never a separate op.
//!   With the positive gathered at column 0 and sampled negatives after it (targets all 0),
//!   the same op is the sampled-candidate cross-entropy.
//! bce_with_logits: ℓ = max(x,0) − x·y + ln(1 + e^{−|x|}); dx = w/Σw·(σ(x) − y).
//! bpr_loss: −Σ w·ln σ(pos − neg)/Σw = BCE with label 1 on (pos − neg).
//! squared_distance: Σ over the last axis of (a − b)², a and b broadcast over leading axes.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, BinaryOp};
use crate::error::{Error, Result};
use crate::tensor::{Device, Ids, Tensor};

/// The forward already computed the gradient for dloss = 1 (one pass over the logits either
/// way); backward only scales it.
struct CrossEntropyBackward {
    unit_grad: Tensor,
}

impl Backward for CrossEntropyBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let be = backend::of(&self.unit_grad);
        let dx = if ctx.grad.device() == Device::Cpu {
            // Reading a host value costs nothing; skip the pass when dloss = 1 (the usual case).
            match ctx.grad.item() {
                1.0 => self.unit_grad.clone(),
                dloss => be.affine(&self.unit_grad, dloss, 0.0),
            }
        } else {
            // On a GPU the scale stays on the device: no readback in the middle of backward.
            let shape = self.unit_grad.shape();
            let dloss = ctx.grad.reshaped(&vec![1; shape.len()])?;
            be.binary(BinaryOp::Mul, &self.unit_grad, &dloss, shape)
        };
        Ok(vec![Some(dx)])
    }
}

struct BceBackward {
    labels: Tensor,
    weights: Vec<f32>,
}

impl Backward for BceBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            backend::of(ctx.inputs[0]).bce_with_logits_backward(
                ctx.inputs[0],
                &self.labels,
                &self.weights,
                ctx.grad,
            ),
        )])
    }
}

fn weights_or_ones(
    op: &'static str,
    weights: Option<&Tensor>,
    shape: &[usize],
) -> Result<Vec<f32>> {
    match weights {
        None => Ok(vec![1.0; shape.iter().product()]),
        Some(w) if w.shape() == shape => Ok(w.to_vec()),
        Some(w) => Err(Error::shape(
            op,
            format!("weights {:?} must have shape {shape:?}", w.shape()),
        )),
    }
}

impl Tape {
    /// Weighted mean softmax cross-entropy of logits `[N, C]` against targets `[N]`.
    pub fn cross_entropy(
        &mut self,
        logits: Var,
        targets: &Ids,
        weights: Option<&Tensor>,
    ) -> Result<Var> {
        let shape = self.shape(logits).to_vec();
        if shape.len() != 2 || targets.shape() != [shape[0]] {
            return Err(Error::shape(
                "cross_entropy",
                format!(
                    "logits {shape:?} need [N, C] with targets [N], got targets {:?}",
                    targets.shape()
                ),
            ));
        }
        if let Some(&bad) = targets.values().iter().find(|&&t| t as usize >= shape[1]) {
            return Err(Error::shape(
                "cross_entropy",
                format!("target {bad} out of range for {} classes", shape[1]),
            ));
        }
        let weights = weights_or_ones("cross_entropy", weights, &shape[..1])?;
        let x = self.value(logits);
        let (loss, unit_grad) = backend::of(x).cross_entropy(x, targets.values(), &weights);
        Ok(self.record(
            "cross_entropy",
            loss,
            &[logits],
            CrossEntropyBackward { unit_grad },
        ))
    }

    /// Weighted mean binary cross-entropy of logits against labels in [0, 1] (same shape).
    pub fn bce_with_logits(
        &mut self,
        logits: Var,
        labels: &Tensor,
        weights: Option<&Tensor>,
    ) -> Result<Var> {
        let shape = self.shape(logits).to_vec();
        if labels.shape() != shape {
            return Err(Error::shape(
                "bce_with_logits",
                format!(
                    "labels {:?} must have the logits' shape {shape:?}",
                    labels.shape()
                ),
            ));
        }
        let weights = weights_or_ones("bce_with_logits", weights, &shape)?;
        let x = self.value(logits);
        let loss = backend::of(x).bce_with_logits(x, labels, &weights);
        Ok(self.record(
            "bce_with_logits",
            loss,
            &[logits],
            BceBackward {
                labels: labels.clone(),
                weights,
            },
        ))
    }

    /// BPR: −Σ w·ln σ(positive − negative)/Σ w (positive and negative broadcast together).
    pub fn bpr_loss(
        &mut self,
        positive: Var,
        negative: Var,
        weights: Option<&Tensor>,
    ) -> Result<Var> {
        let difference = self.sub(positive, negative)?;
        let ones = Tensor::full(self.shape(difference), 1.0);
        self.bce_with_logits(difference, &ones, weights)
    }

    /// Σ over the last axis of (a − b)²; leading axes broadcast.
    pub fn squared_distance(&mut self, a: Var, b: Var) -> Result<Var> {
        let difference = self.sub(a, b)?;
        let squared = self.mul(difference, difference)?;
        let last = self.shape(squared).len() - 1;
        self.sum(squared, &[last], false)
    }
}
