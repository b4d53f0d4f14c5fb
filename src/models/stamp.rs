//! STAMP — Liu, Zeng, Mokhosi, Zhang, "STAMP: Short-Term Attention/Memory Priority Model for
//! Session-based Recommendation", KDD 2018 (the survey's equations 1-5).
//!
//! For a prefix x_1..x_t of the sequence (x_i the item embeddings):
//!   m_s = (1/t) Σ_{i≤t} x_i                                   general interest      (eq. 1)
//!   m_t = x_t                                                 current interest      (eq. 2)
//!   α_i = W_0 · σ(W_1 x_i + W_2 x_t + W_3 m_s + b_a),  i ≤ t  attention             (eq. 3)
//!   m_a = Σ_{i≤t} α_i x_i                                     attentive memory      (eq. 4)
//!   h_s = tanh(W_s m_a + b_s),  h_t = tanh(W_t m_t + b_t)     the two MLP cells
//!   z_i = ⟨h_s, h_t, x_i⟩ = Σ_k h_s,k · h_t,k · x_i,k          trilinear score       (eq. 5)
//!   ŷ = softmax(z)
//! σ is the sigmoid; W_0 ∈ R^d is a vector, W_1..W_3 ∈ R^{d×d}; the α_i are not normalised
//! (the paper has no softmax over them). Items are scored against the same embeddings x_i
//! that form the sequence, as in the paper.
//!
//! Choices the paper leaves open, and the options that set them:
//! - The survey writes eq. 5 as σ(⟨h_s, h_t, x_i⟩) before the softmax; that σ would squash
//!   every logit into (0, 1) and leave the softmax nearly uniform over a large catalogue, so
//!   the trilinear product is the logit itself (as in the authors' code and RecBole).
//! - `stamp_add_mean`: RecBole's STAMP uses m_a = Σ α_i x_i + m_s; the paper (and default)
//!   uses Σ α_i x_i alone.
//! - Training: the paper trains on every prefix of each session (its data augmentation);
//!   the trainer's batches carry the next item at every position, so by default STAMP is
//!   computed for every prefix at once — m_s through a lower-triangular averaging matrix over
//!   the real (non-padding) items, the attention through the same causal mask — and trained
//!   with CE (the paper) or sampled BCE. That costs a `[B, n, n, d]` attention tensor;
//!   `stamp_every_position = false` trains only the last position instead (`[B, 1, n, d]`),
//!   for long sequences where that tensor does not fit.
//! - Padding items are excluded from m_s and from the attention; `dropout` is not used.

use super::layers::Linear;
use super::{
    LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets,
    next_item_loss_excluding, padding_mask,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

pub struct Stamp {
    store: ParamStore,
    item_embedding: ParamId,
    /// W_0 `[d, 1]`.
    w0: ParamId,
    /// W_1, W_2, W_3 `[d, d]` (x W, the transpose of the paper's W x).
    w1: ParamId,
    w2: ParamId,
    w3: ParamId,
    /// b_a `[d]`.
    attention_bias: ParamId,
    /// W_s, b_s.
    memory_cell: Linear,
    /// W_t, b_t.
    last_cell: Linear,
    every_position: bool,
    add_mean: bool,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
    items: usize,
}

impl Stamp {
    pub fn new(items: usize, config: &ModelConfig, seed: u64) -> Result<Stamp> {
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let item_embedding = store.add_xavier("item_embedding", &[items + 1, d], &mut rng)?;
        let w0 = store.add_xavier("attention.w0", &[d, 1], &mut rng)?;
        let w1 = store.add_xavier("attention.w1", &[d, d], &mut rng)?;
        let w2 = store.add_xavier("attention.w2", &[d, d], &mut rng)?;
        let w3 = store.add_xavier("attention.w3", &[d, d], &mut rng)?;
        let attention_bias = store.add("attention.bias", Tensor::zeros(&[d]))?;
        store.set_no_decay(attention_bias);
        let memory_cell = Linear::new(&mut store, "memory_cell", d, d, &mut rng)?;
        let last_cell = Linear::new(&mut store, "last_cell", d, d, &mut rng)?;
        Ok(Stamp {
            store,
            item_embedding,
            w0,
            w1,
            w2,
            w3,
            attention_bias,
            memory_cell,
            last_cell,
            every_position: config.stamp_every_position,
            add_mean: config.stamp_add_mean,
            cold_offsets: None,
            items,
        })
    }

    /// h_s ⊙ h_t for the prefixes ending at each of `queries` (positions of `items` `[B, n]`):
    /// `[B, T, d]`, T = queries.len(). Its inner product with x_i is z_i (eq. 5).
    fn represent(&self, tape: &mut Tape, items: &Ids, queries: &[usize]) -> Result<Var> {
        let store = &self.store;
        let (b, n) = (items.shape()[0], items.shape()[1]);
        let t = queries.len();
        let real = padding_mask(items).to_vec();
        // prefix[b, q, i] = 1 when item i is real and inside the prefix ending at queries[q];
        // average[b, q, i] = prefix[b, q, i] / (real items in that prefix).
        let mut prefix = vec![0f32; b * t * n];
        let mut average = vec![0f32; b * t * n];
        for row in 0..b {
            for (q, &end) in queries.iter().enumerate() {
                let cells = (row * t + q) * n..(row * t + q) * n + end + 1;
                let mask = &real[row * n..row * n + end + 1];
                prefix[cells.clone()].copy_from_slice(mask);
                let count: f32 = mask.iter().sum();
                if count > 0.0 {
                    for (a, &m) in average[cells].iter_mut().zip(mask) {
                        *a = m / count;
                    }
                }
            }
        }
        let prefix = tape.constant(Tensor::from_vec(&[b, t, n], prefix)?);
        let average = tape.constant(Tensor::from_vec(&[b, t, n], average)?);
        let keep = tape.constant(Tensor::from_vec(&[b, n, 1], real)?);

        let table = tape.param(store, self.item_embedding);
        let x = tape.embedding(table, items)?;
        let x = tape.mul(x, keep)?; // [B, n, d]
        let d = tape.shape(x)[2];
        let m_s = tape.matmul(average, x)?; // eq. 1, [B, T, d]
        let query_ids = Ids::from_vec(&[t], queries.iter().map(|&q| q as u32).collect())?;
        let m_t = tape.index_select(x, 1, &query_ids)?; // eq. 2, [B, T, d]

        // eq. 3: α_{q,i} = W_0 · σ(W_1 x_i + W_2 x_t + W_3 m_s + b_a) for every prefix q.
        let (w0, w1, w2, w3, b_a) = (
            tape.param(store, self.w0),
            tape.param(store, self.w1),
            tape.param(store, self.w2),
            tape.param(store, self.w3),
            tape.param(store, self.attention_bias),
        );
        let items_part = tape.matmul(x, w1)?; // [B, n, d]
        let last_part = tape.matmul(m_t, w2)?;
        let mean_part = tape.matmul(m_s, w3)?;
        let prefix_part = tape.add(last_part, mean_part)?;
        let prefix_part = tape.add(prefix_part, b_a)?; // [B, T, d]
        let items_part = tape.reshape(items_part, &[b, 1, n, d])?;
        let prefix_part = tape.reshape(prefix_part, &[b, t, 1, d])?;
        let gate = tape.add(items_part, prefix_part)?; // [B, T, n, d]
        let gate = tape.sigmoid(gate)?;
        let alpha = tape.matmul(gate, w0)?; // [B, T, n, 1]
        let alpha = tape.reshape(alpha, &[b, t, n])?;
        let alpha = tape.mul(alpha, prefix)?;

        // eq. 4: m_a = Σ_{i≤t} α_i x_i (+ m_s as an option).
        let mut m_a = tape.matmul(alpha, x)?; // [B, T, d]
        if self.add_mean {
            m_a = tape.add(m_a, m_s)?;
        }
        let h_s = self.memory_cell.forward(tape, store, m_a)?;
        let h_s = tape.tanh(h_s)?;
        let h_t = self.last_cell.forward(tape, store, m_t)?;
        let h_t = tape.tanh(h_t)?;
        tape.mul(h_s, h_t)
    }
}

impl Model for Stamp {
    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        self.cold_offsets = excluded_items_offsets(self.items, items)?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "stamp"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let items = tape.param(&self.store, self.item_embedding);
        let n = batch.input.items.shape()[1];
        if self.every_position {
            let queries: Vec<usize> = (0..n).collect();
            let hidden = self.represent(tape, &batch.input.items, &queries)?;
            next_item_loss_excluding(tape, hidden, items, batch, kind, self.cold_offsets.as_ref())
        } else {
            let hidden = self.represent(tape, &batch.input.items, &[n - 1])?;
            next_item_loss_excluding(
                tape,
                hidden,
                items,
                &last_position(batch)?,
                kind,
                self.cold_offsets.as_ref(),
            )
        }
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let (b, n) = (input.items.shape()[0], input.items.shape()[1]);
        let hidden = self.represent(tape, &input.items, &[n - 1])?;
        let d = tape.shape(hidden)[2];
        let hidden = tape.reshape(hidden, &[b, d])?;
        let items = tape.param(&self.store, self.item_embedding);
        tape.matmul_t(hidden, items, false, true) // eq. 5 for every item
    }
}

/// The batch's targets at the last position only: positives and weights `[B, 1]`, negatives
/// `[B, 1, k]`.
fn last_position(batch: &TrainingBatch) -> Result<TrainingBatch> {
    let shape = batch.positives.shape();
    let (b, n, k) = (shape[0], shape[1], batch.negatives.shape()[2]);
    let last = |row: usize| row * n + n - 1;
    let positives = (0..b).map(|r| batch.positives.values()[last(r)]).collect();
    let weights = batch.weights.to_vec();
    let weights = (0..b).map(|r| weights[last(r)]).collect();
    let negatives = (0..b)
        .flat_map(|r| batch.negatives.values()[last(r) * k..(last(r) + 1) * k].to_vec())
        .collect();
    Ok(TrainingBatch {
        input: batch.input.clone(),
        positives: Ids::from_vec(&[b, 1], positives)?,
        negatives: Ids::from_vec(&[b, 1, k], negatives)?,
        weights: Tensor::from_vec(&[b, 1], weights)?,
    })
}
