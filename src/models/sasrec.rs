//! SASRec — Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
//!
//! Embedding (section III-A): E = M_s·√d + P, item embeddings M (shared with the output
//! layer) plus learned positions P, dropout, padding rows zeroed.
//! Self-attention blocks (III-B, III-C): b blocks of causal attention + point-wise FFN with
//! residuals, layer normalisation and dropout (`layers::AttentionBlock`), then a final layer
//! norm.
//! Prediction (III-D): r_{i,t} = F_t · M_i, the inner product with the shared item embedding.
//! Training (III-E): next item at every position; BCE with one sampled negative (the paper) or
//! full-softmax cross-entropy (the option that usually works better).

use super::layers::BlockStack;
use super::{
    LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets, last_position_scores,
    latest_positions, next_item_loss_excluding,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::Tensor;

pub struct SasRec {
    store: ParamStore,
    item_embedding: ParamId,
    position_embedding: ParamId,
    encoder: BlockStack,
    dim: usize,
    dropout: f32,
    items: usize,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
}

impl SasRec {
    pub fn new(items: usize, max_len: usize, config: &ModelConfig, seed: u64) -> Result<SasRec> {
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let item_embedding = store.add_xavier("item_embedding", &[items + 1, d], &mut rng)?;
        let position_embedding = store.add_xavier("position_embedding", &[max_len, d], &mut rng)?;
        let encoder = BlockStack::new(&mut store, config, false, &mut rng)?;
        Ok(SasRec {
            store,
            item_embedding,
            position_embedding,
            encoder,
            dim: d,
            dropout: config.dropout,
            items,
            cold_offsets: None,
        })
    }

    /// F: the last block's output at every position, `[B, n, d]`.
    fn encode(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let store = &self.store;
        let table = tape.param(store, self.item_embedding);
        let embedded = tape.embedding(table, &input.items)?;
        let embedded = tape.scale(embedded, (self.dim as f32).sqrt())?;
        let positions = tape.param(store, self.position_embedding);
        let positions = latest_positions(tape, positions, input.items.shape()[1])?;
        let x = tape.add(embedded, positions)?;
        let x = tape.dropout(x, self.dropout)?;
        self.encoder.forward(tape, store, x, &input.items)
    }
}

impl Model for SasRec {
    fn name(&self) -> &'static str {
        "sasrec"
    }

    fn accepts_trimmed_batches(&self) -> bool {
        true
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let hidden = self.encode(tape, &batch.input)?;
        let items = tape.param(&self.store, self.item_embedding);
        next_item_loss_excluding(tape, hidden, items, batch, kind, self.cold_offsets.as_ref())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let hidden = self.encode(tape, input)?;
        let items = tape.param(&self.store, self.item_embedding);
        last_position_scores(tape, hidden, items)
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        self.cold_offsets = excluded_items_offsets(self.items, items)?;
        Ok(())
    }
}
