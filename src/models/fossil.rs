//! Fossil — He & McAuley, "Fusing Similarity Models with Markov Chains for Sparse Sequential
//! Recommendation", ICDM 2016.
//!
//! A similarity model (FISM) for the user's long-term taste fused with a higher-order Markov
//! chain for the short term. For user u at step t, with history I_u^t = s_1..s_t and target i:
//!   long-term   (FISM):  |I_u^t|^{−α} Σ_{j ∈ I_u^t} P_j
//!   short-term  (order L): Σ_{k=1..L} (η_k + η^u_k) P_{s_{t−k+1}}
//!   x̂(u, t, i) = γ_i + ⟨long-term + short-term, Q_i⟩
//! P are the items as context (history and recent items share them, as in the paper's
//! equation), Q the items as targets, γ_i an item bias, η_k global weights of the k-th most
//! recent item and η^u_k the user's own adjustment of them (personalised chain weights).
//! The bias is folded into the inner product: [h ; 1] · [Q_i ; γ_i], so all items score in one
//! matmul.
//!
//! Training: S-BPR, Σ ln σ(x̂(u,t,i) − x̂(u,t,j)) over every position of every training sequence
//! against the batch's sampled negatives j (`train.loss = "bce"`, the sampled-negative recipe,
//! selects S-BPR for this model); the paper's L2 regularisation is the optimiser's weight decay.
//! `train.loss = "ce"` is the option: full-softmax cross-entropy over x̂(u, t, ·).
//!
//! Choices the paper leaves open (or that differ from it):
//! - No look-ahead: at training position t the long-term history holds only the items up to t
//!   (those before the target s_{t+1}), a causal mean computed as one matmul with a
//!   lower-triangular averaging matrix. The paper's I_u^+ \ {i} (the whole training history
//!   minus the target) would leak later items into earlier positions.
//! - The history is the model input: the latest `data.max_len` items, not the user's whole
//!   past (raise `data.max_len` for longer histories).
//! - A target that repeats an earlier item stays in the history (FISM's "\ {i}"), since only
//!   earlier items are there anyway.
//! - L = `model_options.fossil_order` (default 3), α = `model_options.fossil_alpha` (default 0.5;
//!   the paper tunes α in [0, 1]). Recent slots before the sequence's start contribute nothing.
//! - An unknown user (id 0) has η^u = 0: the global chain weights alone (η^u starts at zero and
//!   row 0 never receives a gradient). η_k starts at 1, P and Q Xavier-uniform, γ at zero.
//! - Mini-batches of whole sequences with Adam, rather than SGD on sampled quadruples.

use super::fpmc::markov_loss;
use super::{LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

pub struct Fossil {
    store: ParamStore,
    /// P `[items + 1, d]`: items as history / recent context.
    item_context: ParamId,
    /// Q `[items + 1, d]`: items as targets.
    item_target: ParamId,
    /// γ `[items + 1, 1]`.
    item_bias: ParamId,
    /// η `[L]`: weight of the k-th most recent item (index k − 1).
    order_weights: ParamId,
    /// η^u `[users + 1, L]`: each user's adjustment of η.
    user_order_weights: ParamId,
    order: usize,
    alpha: f32,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
}

impl Fossil {
    pub fn new(items: usize, users: usize, config: &ModelConfig, seed: u64) -> Result<Fossil> {
        let order = config.fossil_order;
        if order == 0 {
            return Err(Error::Invalid(
                "config: model_options.fossil_order must be at least 1".into(),
            ));
        }
        let alpha = config.fossil_alpha;
        if !(0.0..=1.0).contains(&alpha) {
            return Err(Error::Invalid(format!(
                "config: model_options.fossil_alpha must be in [0, 1], got {alpha}"
            )));
        }
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let item_context = store.add_xavier("item_context", &[items + 1, d], &mut rng)?;
        let item_target = store.add_xavier("item_target", &[items + 1, d], &mut rng)?;
        let item_bias = store.add("item_bias", Tensor::zeros(&[items + 1, 1]))?;
        store.set_no_decay(item_bias);
        let order_weights = store.add("order_weights", Tensor::full(&[order], 1.0))?;
        store.set_no_decay(order_weights);
        let user_order_weights =
            store.add("user_order_weights", Tensor::zeros(&[users + 1, order]))?;
        Ok(Fossil {
            store,
            item_context,
            item_target,
            item_bias,
            order_weights,
            user_order_weights,
            order,
            alpha,
            cold_offsets: None,
        })
    }

    /// [long-term + short-term ; 1] at the last `m` positions of `items` `[B, n]`:
    /// `[B, m, d + 1]`.
    fn user_representation(
        &self,
        tape: &mut Tape,
        users: &Ids,
        items: &Ids,
        m: usize,
    ) -> Result<Var> {
        let b = items.shape()[0];
        let context = tape.param(&self.store, self.item_context);
        let d = tape.shape(context)[1];

        // Long-term: |I_u^t|^{−α} Σ_{j ≤ t} P_{s_j} as [B, m, n] · [B, n, d].
        let averaging = tape.constant(causal_averaging(items, m, self.alpha)?);
        let history = tape.embedding(context, items)?;
        let long_term = tape.matmul(averaging, history)?;

        // Short-term: Σ_k (η_k + η^u_k) P_{s_{t−k+1}}, per position a [1, L] · [L, d] product.
        let recent = recent_items(items, m, self.order)?; // [B·m, L]
        let user_ids: Vec<u32> = users
            .values()
            .iter()
            .flat_map(|&u| std::iter::repeat_n(u, m))
            .collect();
        let user_table = tape.param(&self.store, self.user_order_weights);
        let eta_u = tape.embedding(user_table, &Ids::from_vec(&[b * m], user_ids)?)?;
        let eta = tape.param(&self.store, self.order_weights);
        let eta = tape.add(eta_u, eta)?; // [B·m, L]
        // Slots before the sequence's start (padding) contribute nothing.
        let present: Vec<f32> = recent
            .values()
            .iter()
            .map(|&i| if i == 0 { 0.0 } else { 1.0 })
            .collect();
        let present = tape.constant(Tensor::from_vec(&[b * m, self.order], present)?);
        let eta = tape.mul(eta, present)?;
        let eta = tape.reshape(eta, &[b * m, 1, self.order])?;
        let recent = tape.embedding(context, &recent)?; // [B·m, L, d]
        let short_term = tape.matmul(eta, recent)?; // [B·m, 1, d]
        let short_term = tape.reshape(short_term, &[b, m, d])?;

        let h = tape.add(long_term, short_term)?;
        let ones = tape.constant(Tensor::full(&[b, m, 1], 1.0));
        tape.concat(&[h, ones], 2)
    }

    /// [Q_i ; γ_i] for every item: `[items + 1, d + 1]`.
    fn targets(&self, tape: &mut Tape) -> Result<Var> {
        let target = tape.param(&self.store, self.item_target);
        let bias = tape.param(&self.store, self.item_bias);
        tape.concat(&[target, bias], 1)
    }
}

impl Model for Fossil {
    fn name(&self) -> &'static str {
        "fossil"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let n = batch.input.items.shape()[1];
        let queries = self.user_representation(tape, &batch.input.users, &batch.input.items, n)?;
        let targets = self.targets(tape)?;
        let offsets = self.cold_offsets.as_ref();
        markov_loss(tape, queries, targets, batch, kind, offsets)
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        let catalogue = self.store.value(self.item_target).shape()[0] - 1;
        self.cold_offsets = excluded_items_offsets(catalogue, items)?;
        Ok(())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let b = input.items.shape()[0];
        let queries = self.user_representation(tape, &input.users, &input.items, 1)?;
        let width = tape.shape(queries)[2];
        let queries = tape.reshape(queries, &[b, width])?;
        let targets = self.targets(tape)?;
        tape.matmul_t(queries, targets, false, true)
    }
}

/// The causal averaging matrix `[B, m, n]` for the last m positions t of `items` `[B, n]`:
/// row t holds c_t^{−α} at the real items at or before t (c_t of them) and 0 elsewhere, so that
/// row t times the item embeddings is FISM's normalised history sum without look-ahead.
pub fn causal_averaging(items: &Ids, m: usize, alpha: f32) -> Result<Tensor> {
    let (b, n) = (items.shape()[0], items.shape()[1]);
    let mut out = vec![0.0f32; b * m * n];
    for (row, seq) in items.values().chunks(n).enumerate() {
        for (r, t) in (n - m..n).enumerate() {
            let count = seq[..=t].iter().filter(|&&i| i != 0).count();
            if count == 0 {
                continue;
            }
            let weight = (count as f32).powf(-alpha);
            let dst = &mut out[(row * m + r) * n..(row * m + r + 1) * n];
            for (slot, &item) in dst[..=t].iter_mut().zip(&seq[..=t]) {
                if item != 0 {
                    *slot = weight;
                }
            }
        }
    }
    Tensor::from_vec(&[b, m, n], out)
}

/// The `order` most recent items at each of the last m positions t of `items` `[B, n]`:
/// `[B·m, order]`, slot k − 1 holding s_{t−k+1} (0 before the sequence's start).
pub fn recent_items(items: &Ids, m: usize, order: usize) -> Result<Ids> {
    let (b, n) = (items.shape()[0], items.shape()[1]);
    let mut out = vec![0u32; b * m * order];
    for (row, seq) in items.values().chunks(n).enumerate() {
        for (r, t) in (n - m..n).enumerate() {
            let dst = &mut out[(row * m + r) * order..(row * m + r + 1) * order];
            for (k, slot) in dst.iter_mut().enumerate() {
                if let Some(p) = t.checked_sub(k) {
                    *slot = seq[p];
                }
            }
        }
    }
    Ids::from_vec(&[b * m, order], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averaging_is_causal_and_normalised() {
        let items = Ids::from_vec(&[1, 4], vec![0, 7, 8, 9]).unwrap();
        let a = causal_averaging(&items, 4, 1.0).unwrap().to_vec();
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 0.0, 0.0,
            0.0, 1.0, 0.0, 0.0,
            0.0, 0.5, 0.5, 0.0,
            0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0,
        ];
        assert_eq!(a, expected);
        let last = causal_averaging(&items, 1, 0.0).unwrap().to_vec();
        assert_eq!(last, [0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn recent_items_newest_first() {
        let items = Ids::from_vec(&[1, 4], vec![0, 7, 8, 9]).unwrap();
        let r = recent_items(&items, 4, 2).unwrap();
        assert_eq!(r.values(), &[0, 0, 7, 0, 8, 7, 9, 8]);
        let r = recent_items(&items, 1, 3).unwrap();
        assert_eq!(r.values(), &[9, 8, 7]);
    }
}
