//! Losses. Each returns a rank-0 tensor: a weighted mean over rows or elements (weights 0
//! mark padding; all-zero weights give a loss of 0).
//!
//! cross_entropy over logits `[N, C]`, targets t: L = Σ_r w_r(logsumexp(x_r) − x_{r,t_r})/Σw;
//!   dx_r = w_r/Σw·(softmax(x_r) − onehot(t_r)). Fused: the softmax is never a separate op.
//!   With the positive gathered at column 0 and sampled negatives after it (targets all 0),
//!   the same op is the sampled-candidate cross-entropy.
//! linear_cross_entropy: cross_entropy(H·Eᵀ) fused with its output layer; the gradients
//!   g·E and gᵀ·H (g = ∂L/∂logits) come out of the forward, backward only scales them.
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
        Ok(vec![Some(scale_by_dloss(&self.unit_grad, ctx.grad)?)])
    }
}

/// The fused output layer computed ∂L/∂rows and ∂L/∂items for dloss = 1 with the loss;
/// backward scales them by dloss.
struct LinearCrossEntropyBackward {
    unit_grads: (Tensor, Tensor),
}

impl Backward for LinearCrossEntropyBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let scaled = |unit: &Tensor| scale_by_dloss(unit, ctx.grad);
        Ok(vec![
            Some(scaled(&self.unit_grads.0)?),
            Some(scaled(&self.unit_grads.1)?),
        ])
    }
}

/// `unit_grad · dloss` for a gradient computed with dloss = 1.
fn scale_by_dloss(unit_grad: &Tensor, dloss: &Tensor) -> Result<Tensor> {
    let be = backend::of(unit_grad);
    if dloss.device() == Device::Cpu {
        // Reading a host value costs nothing; skip the pass when dloss = 1 (the usual case).
        Ok(match dloss.item() {
            1.0 => unit_grad.clone(),
            dloss => be.affine(unit_grad, dloss, 0.0),
        })
    } else {
        // On a GPU the scale stays on the device: no readback in the middle of backward.
        let shape = unit_grad.shape();
        let dloss = dloss.reshaped(&vec![1; shape.len()])?;
        Ok(be.binary(BinaryOp::Mul, unit_grad, &dloss, shape))
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

    /// `cross_entropy(rows · itemsᵀ, targets, weights)` for rows `[N, d]` and items `[V, d]`:
    /// the output layer of a next-item model with its full-softmax loss, as one op whose
    /// `[N, V]` logits never exist on the CPU (see `backend/cpu/linear_ce.rs`).
    pub fn linear_cross_entropy(
        &mut self,
        rows: Var,
        items: Var,
        targets: &Ids,
        weights: Option<&Tensor>,
    ) -> Result<Var> {
        let (rs, is) = (self.shape(rows).to_vec(), self.shape(items).to_vec());
        if rs.len() != 2 || is.len() != 2 || rs[1] != is[1] || targets.shape() != [rs[0]] {
            return Err(Error::shape(
                "linear_cross_entropy",
                format!(
                    "rows {rs:?} and items {is:?} need [N, d] and [V, d] with targets [N], got targets {:?}",
                    targets.shape()
                ),
            ));
        }
        if let Some(&bad) = targets.values().iter().find(|&&t| t as usize >= is[0]) {
            return Err(Error::shape(
                "linear_cross_entropy",
                format!("target {bad} out of range for {} items", is[0]),
            ));
        }
        let weights = weights_or_ones("linear_cross_entropy", weights, &rs[..1])?;
        let with_grads =
            self.grad_enabled() && (self.requires_grad(rows) || self.requires_grad(items));
        let (h, e) = (self.value(rows), self.value(items));
        let (loss, unit_grads) =
            backend::of(h).linear_cross_entropy(h, e, targets.values(), &weights, with_grads);
        Ok(match unit_grads {
            Some(unit_grads) => self.record(
                "linear_cross_entropy",
                loss,
                &[rows, items],
                LinearCrossEntropyBackward { unit_grads },
            ),
            None => self.constant(loss),
        })
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
