//! BERT4Rec — Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
//! Representations from Transformer", CIKM 2019.
//!
//! Item ids: 0 = padding, 1..=items the catalogue, items + 1 = the [MASK] token. Scores are
//! returned for columns 0..=items only ([MASK] is never recommended).
//!
//! Embedding (section 3.4): h⁰_i = v_i + p_i, the item embedding v (rows of E, shared with the
//! output layer) plus a learned positional embedding p; as in BERT, the sum is layer-normalised
//! and dropped out before the first layer.
//! Transformer layer (3.3), post-norm as in the paper, with **bidirectional** attention (every
//! position sees every real position, padding keys are hidden):
//!   MH(H)   = [head_1; …; head_h] W^O,  head_i = Attention(H W_i^Q, H W_i^K, H W_i^V)
//!   A       = LN(H + Dropout(MH(H)))
//!   PFFN(A) = GELU(A W^(1) + b^(1)) W^(2) + b^(2)
//!   Trm(H)  = LN(A + Dropout(PFFN(A)))
//! stacked `blocks` times: H^l = Trm(H^(l−1)).
//! Output layer (3.5): P(v) = softmax(LN(GELU(h^L_t W^P + b^P)) Eᵀ + b^O), with the item
//! embedding E tied to the input and a bias per item. The paper's equation omits the layer
//! norm; its reference implementation (BERT's `transform` head) has it, and so do we.
//!
//! Training (3.6, the Cloze task): each training sequence is rebuilt in full from the
//! batch — the left-padded inputs followed by the last real positive, the oldest item dropped
//! to keep length n — and a proportion ρ (`bert_mask_prob`) of its real items is replaced by
//! [MASK] (at least one per sequence: if the draw masks none, the item with the smallest draw
//! is masked). The loss is the softmax cross-entropy over all items at the masked positions
//! only, L = 1/|S_u^m| Σ_{v_m ∈ S_u^m} −log P(v_m = v_m* | S_u'), averaged over the batch's
//! masked positions. The draw is `rng::uniform_at(stream, b·n + p)` with the tape's
//! `next_stream()`, so a step is reproducible from the tape's seed.
//! The paper also trains on "samples that only mask the last item in the input sequences",
//! to match the prediction task; it does not say how many. `bert_last_item_prob` is the
//! probability that a sequence is such a sample (0 = pure Cloze).
//! With `train.loss = "bce"` (not in the paper) the masked items are scored against the
//! batch's sampled negatives instead of the whole catalogue: BCE on the masked item and on
//! the negatives drawn for the same position (for the sequence's first item, which has no
//! next-item target in the batch, those of the last position); the batcher excludes all of
//! the user's items from negatives, so they are negatives for any of its masked items.
//!
//! Prediction (3.6): the user's history followed by [MASK] (the oldest item dropped to keep
//! length n); the scores are the output distribution at the [MASK] position.
//!
//! Choices the paper leaves open or that differ: the weights are Xavier-uniform like the other
//! models here (the paper: truncated normal, σ = 0.02); the FFN width is `ffn_dim`, d unless
//! set (the paper uses 4d); the heads are `heads` (the paper uses 2); the same `dropout` is
//! applied to the embedding, the attention probabilities and each residual branch (the paper:
//! 0.1); masked items are always replaced by [MASK] (no 80/10/10 rule of BERT).

use super::layers::{LayerNorm, Linear};
use super::{
    LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets, item_cross_entropy,
    padding_mask,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::ops::Activation;
use crate::optim::{ParamId, ParamStore};
use crate::rng::{Rng, uniform_at};
use crate::tensor::{Ids, Tensor};

/// BERT's layer-norm epsilon.
const NORM_EPS: f32 = 1e-12;

/// One bidirectional Transformer layer, Trm(H) (section 3.3).
struct TransformerLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    /// W^O, mixing the heads.
    attention_output: Linear,
    attention_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
    heads: usize,
    dropout: f32,
}

impl TransformerLayer {
    fn new(
        store: &mut ParamStore,
        name: &str,
        config: &ModelConfig,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (d, f) = (config.dim, config.ffn_width());
        Ok(TransformerLayer {
            query: Linear::new(store, &format!("{name}.query"), d, d, rng)?,
            key: Linear::new(store, &format!("{name}.key"), d, d, rng)?,
            value: Linear::new(store, &format!("{name}.value"), d, d, rng)?,
            attention_output: Linear::new(store, &format!("{name}.attention_output"), d, d, rng)?,
            attention_norm: LayerNorm::new(store, &format!("{name}.attention_norm"), d, NORM_EPS)?,
            ffn_in: Linear::new(store, &format!("{name}.ffn_in"), d, f, rng)?,
            ffn_out: Linear::new(store, &format!("{name}.ffn_out"), f, d, rng)?,
            ffn_norm: LayerNorm::new(store, &format!("{name}.ffn_norm"), d, NORM_EPS)?,
            heads: config.heads,
            dropout: config.dropout,
        })
    }

    /// H `[B, n, d]` → Trm(H); `key_mask` `[B, n]` is 0 at padding keys.
    fn forward(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        h: Var,
        key_mask: &Tensor,
    ) -> Result<Var> {
        let q = self.query.forward(tape, store, h)?;
        let k = self.key.forward(tape, store, h)?;
        let v = self.value.forward(tape, store, h)?;
        // causal = false: the bidirectional attention that gives BERT4Rec its name.
        let heads = tape.attention(q, k, v, self.heads, false, Some(key_mask), self.dropout)?;
        let multi_head = self.attention_output.forward(tape, store, heads)?;
        let multi_head = tape.dropout(multi_head, self.dropout)?;
        let a = tape.add(h, multi_head)?;
        let a = self.attention_norm.forward(tape, store, a)?;

        let (w1, b1) = (
            tape.param(store, self.ffn_in.weight),
            tape.param(store, self.ffn_in.bias),
        );
        let (w2, b2) = (
            tape.param(store, self.ffn_out.weight),
            tape.param(store, self.ffn_out.bias),
        );
        let fed = tape.ffn(a, w1, b1, w2, b2, Activation::Gelu, 0.0)?;
        let fed = tape.dropout(fed, self.dropout)?;
        let out = tape.add(a, fed)?;
        self.ffn_norm.forward(tape, store, out)
    }
}

/// A training batch turned into the Cloze task.
#[derive(Clone, Debug)]
pub struct Cloze {
    /// The full sequences `[B, n]` with the chosen items replaced by [MASK].
    pub inputs: Ids,
    /// Flat positions b·n + p of the masked items, in increasing order.
    pub positions: Vec<u32>,
    /// The original item at each masked position.
    pub targets: Vec<u32>,
    /// For each masked position, the flat position of the batch's negatives to use with it
    /// (`train.loss = "bce"` only).
    pub negatives_from: Vec<u32>,
}

/// Rebuilds each full sequence of `batch` (its inputs followed by the last real positive, the
/// oldest item dropped to keep length n) and masks it for the Cloze task: each real item is
/// masked when its draw `uniform_at(stream, b·n + p)` is below `mask_prob`, at least one per
/// sequence (the smallest draw). With probability `last_item_prob` (draw
/// `uniform_at(stream, B·n + b)`) a sequence masks only its last item instead. Padding is
/// never masked; a row without a real target is left as it is and masks nothing.
pub fn cloze(
    batch: &TrainingBatch,
    mask_token: u32,
    mask_prob: f32,
    last_item_prob: f32,
    stream: u32,
) -> Result<Cloze> {
    let shape = batch.input.items.shape();
    if shape.len() != 2 || batch.positives.shape() != shape || batch.weights.shape() != shape {
        return Err(Error::shape(
            "bert4rec",
            format!(
                "inputs, positives and weights must share one [B, n] shape, got {:?}, {:?}, {:?}",
                shape,
                batch.positives.shape(),
                batch.weights.shape()
            ),
        ));
    }
    let (b, n) = (shape[0], shape[1]);
    let (items, positives) = (batch.input.items.values(), batch.positives.values());
    let weights = batch.weights.to_vec();
    let mut inputs = Vec::with_capacity(b * n);
    let (mut positions, mut targets, mut negatives_from) = (Vec::new(), Vec::new(), Vec::new());
    for row in 0..b {
        let base = row * n;
        let last = base + n - 1;
        if weights[last] == 0.0 {
            inputs.extend_from_slice(&items[base..base + n]);
            continue;
        }
        let start = inputs.len();
        inputs.extend_from_slice(&items[base + 1..base + n]);
        inputs.push(positives[last]);
        let full = &mut inputs[start..];
        let draw = |p: usize| uniform_at(stream, (base + p) as u32);
        let last_only = uniform_at(stream, (b * n + row) as u32) < last_item_prob;
        let mut masked: Vec<usize> = if last_only {
            vec![n - 1]
        } else {
            (0..n)
                .filter(|&p| full[p] != 0 && draw(p) < mask_prob)
                .collect()
        };
        if masked.is_empty() {
            let smallest = (0..n)
                .filter(|&p| full[p] != 0)
                .min_by(|&x, &y| draw(x).total_cmp(&draw(y)))
                .expect("the last position is real");
            masked.push(smallest);
        }
        for p in masked {
            positions.push((base + p) as u32);
            targets.push(full[p]);
            // Where the batch has a next-item target, it is this item (see `cloze`'s doc).
            let with_negatives = if weights[base + p] != 0.0 { p } else { n - 1 };
            negatives_from.push((base + with_negatives) as u32);
            full[p] = mask_token;
        }
    }
    if positions.is_empty() {
        return Err(Error::Invalid(
            "bert4rec: the batch has no sequence with a target to mask".into(),
        ));
    }
    Ok(Cloze {
        inputs: Ids::from_vec(&[b, n], inputs)?,
        positions,
        targets,
        negatives_from,
    })
}

/// The prediction input: each left-padded history row with its oldest slot dropped and
/// [MASK] appended, `[B, n]`.
pub fn evaluation_input(items: &Ids, mask_token: u32) -> Result<Ids> {
    let shape = items.shape();
    if shape.len() != 2 || shape[1] == 0 {
        return Err(Error::shape(
            "bert4rec",
            format!("items must be [B, n] with n ≥ 1, got {shape:?}"),
        ));
    }
    let n = shape[1];
    let values = items
        .values()
        .chunks_exact(n)
        .flat_map(|row| row[1..].iter().copied().chain([mask_token]))
        .collect();
    Ids::from_vec(shape, values)
}

pub struct Bert4Rec {
    store: ParamStore,
    /// E `[items + 2, d]`: padding, the items, [MASK].
    item_embedding: ParamId,
    /// P `[n, d]`.
    position_embedding: ParamId,
    embedding_norm: LayerNorm,
    layers: Vec<TransformerLayer>,
    /// W^P, b^P of the output layer.
    output_transform: Linear,
    output_norm: LayerNorm,
    /// b^O `[items + 1]`.
    output_bias: ParamId,
    items: usize,
    max_len: usize,
    dropout: f32,
    mask_prob: f32,
    last_item_prob: f32,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
}

impl Bert4Rec {
    pub fn new(items: usize, max_len: usize, config: &ModelConfig, seed: u64) -> Result<Bert4Rec> {
        if !(config.bert_mask_prob > 0.0 && config.bert_mask_prob <= 1.0) {
            return Err(Error::Invalid(format!(
                "config: model_options.bert_mask_prob must be in (0, 1], got {}",
                config.bert_mask_prob
            )));
        }
        if !(0.0..=1.0).contains(&config.bert_last_item_prob) {
            return Err(Error::Invalid(format!(
                "config: model_options.bert_last_item_prob must be in [0, 1], got {}",
                config.bert_last_item_prob
            )));
        }
        if config.blocks == 0 || config.ffn_width() == 0 || max_len == 0 || items == 0 {
            return Err(Error::Invalid(format!(
                "bert4rec needs at least one block, ffn_dim, max_len and item; got blocks {}, \
                 ffn_dim {}, max_len {max_len}, items {items}",
                config.blocks,
                config.ffn_width()
            )));
        }
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let item_embedding = store.add_xavier("item_embedding", &[items + 2, d], &mut rng)?;
        let position_embedding = store.add_xavier("position_embedding", &[max_len, d], &mut rng)?;
        let embedding_norm = LayerNorm::new(&mut store, "embedding_norm", d, NORM_EPS)?;
        let layers = (0..config.blocks)
            .map(|l| TransformerLayer::new(&mut store, &format!("layer{l}"), config, &mut rng))
            .collect::<Result<_>>()?;
        let output_transform = Linear::new(&mut store, "output_transform", d, d, &mut rng)?;
        let output_norm = LayerNorm::new(&mut store, "output_norm", d, NORM_EPS)?;
        let output_bias = store.add("output_bias", Tensor::zeros(&[items + 1]))?;
        store.set_no_decay(output_bias);
        Ok(Bert4Rec {
            store,
            item_embedding,
            position_embedding,
            embedding_norm,
            layers,
            output_transform,
            output_norm,
            output_bias,
            items,
            max_len,
            dropout: config.dropout,
            mask_prob: config.bert_mask_prob,
            last_item_prob: config.bert_last_item_prob,
            cold_offsets: None,
        })
    }

    /// The id of the [MASK] token.
    pub fn mask_token(&self) -> u32 {
        self.items as u32 + 1
    }

    /// H^L: the last layer's output at every position of `items` `[B, n]` (ids may include
    /// [MASK]), `[B, n, d]`.
    pub fn encode(&self, tape: &mut Tape, items: &Ids) -> Result<Var> {
        let shape = items.shape();
        if shape.len() != 2 || shape[1] != self.max_len {
            return Err(Error::shape(
                "bert4rec",
                format!("items must be [B, {}], got {shape:?}", self.max_len),
            ));
        }
        if let Some(&bad) = items.values().iter().find(|&&i| i > self.mask_token()) {
            return Err(Error::Invalid(format!(
                "bert4rec: item id {bad} is beyond the catalogue of {} items",
                self.items
            )));
        }
        let store = &self.store;
        let table = tape.param(store, self.item_embedding);
        let embedded = tape.embedding(table, items)?;
        let positions = tape.param(store, self.position_embedding);
        let h = tape.add(embedded, positions)?;
        let h = self.embedding_norm.forward(tape, store, h)?;
        let mut h = tape.dropout(h, self.dropout)?;
        // [MASK] is a real key: only padding (id 0) is hidden.
        let key_mask = padding_mask(items);
        for layer in &self.layers {
            h = layer.forward(tape, store, h, &key_mask)?;
        }
        Ok(h)
    }

    /// LN(GELU(h W^P + b^P)) for rows h `[.., d]`: the output layer before the item scores.
    fn transform(&self, tape: &mut Tape, rows: Var) -> Result<Var> {
        let projected = self.output_transform.forward(tape, &self.store, rows)?;
        let activated = tape.gelu(projected)?;
        self.output_norm.forward(tape, &self.store, activated)
    }

    /// E restricted to padding and the catalogue, `[items + 1, d]` ([MASK] is never scored).
    fn scored_items(&self, tape: &mut Tape) -> Result<Var> {
        let table = tape.param(&self.store, self.item_embedding);
        tape.slice(table, 0, 0, self.items + 1)
    }

    /// b^O as a one-column table `[items + 1, 1]`, to gather the biases of some items.
    fn bias_table(&self, tape: &mut Tape) -> Result<Var> {
        let bias = tape.param(&self.store, self.output_bias);
        tape.reshape(bias, &[self.items + 1, 1])
    }
}

impl Model for Bert4Rec {
    fn name(&self) -> &'static str {
        "bert4rec"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let stream = tape.next_stream();
        let task = cloze(
            batch,
            self.mask_token(),
            self.mask_prob,
            self.last_item_prob,
            stream,
        )?;
        let hidden = self.encode(tape, &task.inputs)?;
        let d = tape.shape(hidden)[2];
        let b = task.inputs.shape()[0];
        let count = task.positions.len();
        let rows = tape.reshape(hidden, &[b * self.max_len, d])?;
        let rows = tape.index_select(rows, 0, &Ids::from_vec(&[count], task.positions)?)?;
        let rows = self.transform(tape, rows)?;
        let targets = Ids::from_vec(&[count], task.targets)?;
        let items = self.scored_items(tape)?;
        let biases = self.bias_table(tape)?;
        match kind {
            LossKind::FullSoftmax => {
                // rows·Eᵀ + b = [rows, 1]·[E, b]ᵀ: the bias rides in one more column, so the
                // fused output layer never builds the [count, items] logits (unless cold items
                // must be kept out).
                let ones = tape.constant(Tensor::full(&[count, 1], 1.0));
                let rows = tape.concat(&[rows, ones], 1)?;
                let items = tape.concat(&[items, biases], 1)?;
                let offsets = self.cold_offsets.as_ref();
                item_cross_entropy(tape, rows, items, &targets, None, offsets)
            }
            LossKind::SampledBce => {
                let k = batch.negatives.shape().get(2).copied().unwrap_or(0);
                if batch.negatives.shape() != [b, self.max_len, k] || k == 0 {
                    return Err(Error::shape(
                        "bert4rec",
                        format!(
                            "the bce loss needs negatives [B, n, k ≥ 1], got {:?}",
                            batch.negatives.shape()
                        ),
                    ));
                }
                let all_negatives = batch.negatives.values();
                let negatives: Vec<u32> = task
                    .negatives_from
                    .iter()
                    .flat_map(|&r| all_negatives[r as usize * k..(r as usize + 1) * k].to_vec())
                    .collect();
                let negatives = Ids::from_vec(&[count, k], negatives)?;

                let positive = tape.embedding(items, &targets)?;
                let product = tape.mul(rows, positive)?;
                let positive_logits = tape.sum(product, &[1], false)?;
                let positive_bias = tape.embedding(biases, &targets)?;
                let positive_bias = tape.reshape(positive_bias, &[count])?;
                let positive_logits = tape.add(positive_logits, positive_bias)?;

                let negative = tape.embedding(items, &negatives)?;
                let rows3 = tape.reshape(rows, &[count, 1, d])?;
                let product = tape.mul(rows3, negative)?;
                let negative_logits = tape.sum(product, &[2], false)?;
                let negative_bias = tape.embedding(biases, &negatives)?;
                let negative_bias = tape.reshape(negative_bias, &[count, k])?;
                let negative_logits = tape.add(negative_logits, negative_bias)?;

                let positive_loss =
                    tape.bce_with_logits(positive_logits, &Tensor::full(&[count], 1.0), None)?;
                let negative_loss =
                    tape.bce_with_logits(negative_logits, &Tensor::zeros(&[count, k]), None)?;
                tape.add(positive_loss, negative_loss)
            }
        }
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        self.cold_offsets = excluded_items_offsets(self.items, items)?;
        Ok(())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let masked = evaluation_input(&input.items, self.mask_token())?;
        let hidden = self.encode(tape, &masked)?;
        let shape = tape.shape(hidden).to_vec();
        let (b, n, d) = (shape[0], shape[1], shape[2]);
        let last = tape.slice(hidden, 1, n - 1, 1)?;
        let last = tape.reshape(last, &[b, d])?;
        let last = self.transform(tape, last)?;
        let items = self.scored_items(tape)?;
        let logits = tape.matmul_t(last, items, false, true)?;
        let bias = tape.param(&self.store, self.output_bias);
        tape.add(logits, bias)
    }
}
