//! AMSRM — "A sequential recommendation model based on attention mechanism which integrates
//! side information" (seed paper 002), made concrete in `docs/MODELS.md`.
//!
//! Input: the behaviour sequence b_1..b_n, b_i = (c_i, o_i) = (item, behaviour type), the latest
//! n, left-padded with 0.
//! Embedding (eq. 3): E = concat(S, M).
//!   S_i = item_embedding(c_i)·√d + position_i                      (the sequence part)
//!   M_i = side information of position i: the fields
//!         m_behaviour = behaviour_embedding(o_i),
//!         m_f         = pooled embedding of item field f of c_i (category, genres, ...),
//!         m_g         = pooled embedding of user field g (gender, age, ...), same at every i;
//!   "distinguishing the importance of different features through the attention mechanism":
//!         α_{i,f} = softmax_f((S_i W_q) · (m_f W_k) / √d),  M_i = Σ_f α_{i,f} m_f
//!   (with `feature_attention = false`, the ablation: M_i = concat_f m_f).
//!   The concatenation changes the width, so E is projected back to d: E' = E W_E + b_E.
//!   (`side_fusion = "add"`: E' = S + M W_M + b_M instead — S enters the blocks exactly as in
//!   SASRec and the side information is an additive correction.
//!   `side_fusion = "decoupled"`, after DIF-SR (Xie et al., SIGIR 2022): E' = S, and
//!   M W_M + b_M is a side stream with its own query and key in every block, added to the
//!   attention logits only, never to the values: `layers::SideAttention`.)
//! Self-attention (eq. 4), feed-forward (eq. 5), stacking (eq. 6-7): SASRec's blocks
//! (`layers::AttentionBlock`): causal, padding masked, residuals, layer norm, dropout.
//! Item-level attention (`item_attention = true`; the survey's two-level attention, section
//! 5.2, whose feature level is α above): with e_t = E'_t after dropout and m_t = 1 at real
//! items, 0 at padding (`layers::ItemRelevance`),
//!   c_t     = Σ_{k≤t} m_k e_k / Σ_{k≤t} m_k                  (the intent so far, causal)
//!   a_{t,j} = σ((e_j W_e + b_e)·(c_t W_c + b_c)/√d)  for j ≤ t real, else 0
//!   (`item_attention_tied = true`: W_c = W_e, b_c = b_e, a similarity to the intent)
//!   every block's attention: softmax_j(q_t·k_j/√d_h + log a_{t,j})
//! so an item unrelated to the sequence's intent (a noisy click) gets little attention at
//! every layer; a_{n,j} are the weights the prediction at the last position uses.
//! Prediction (eq. 8): r_{i,t} = F_t · N_i, N_i = item_embedding(i) + Σ_f pooled item field f of
//! item i — the item with its own side information folded in, at width d
//! (`side_info_in_output = false`: N_i = item_embedding(i)).
//! Note: a cold item has no id row (zeroed, see below); with `side_info_in_output = false`
//! it scores 0 — the cold-start study needs the default.
//! Training: next item at every position, full-softmax cross-entropy or BCE with sampled
//! negatives; with `attribute_loss` = λ > 0 also DIF-SR's attribute prediction, λ · Σ_f
//! BCE(σ(F_t W_f + b_f), the next item's tokens of item field f).
//!
//! Cold start (`data::cold`, the survey's issue 6):
//! - Cold items have no training interaction, so their row of item_embedding is untrained
//!   noise: it is replaced by zero, N_i = Σ_f pooled item field f of item i, and they are kept
//!   out of the training softmax (logit −∞: a new item is unknown, not a known negative).
//! - Id dropout (DropoutNet, Volkovs et al. 2017; `item_id_dropout` = p): at each training
//!   step every item's id row is zero with probability p (in S and in N alike), so the model
//!   also learns to rank, and read, items from their features alone.
//! - Start position (`first_item_from_user`): h_0 = W_0 · Σ_g m_g + b_0 from the user
//!   fields alone, trained with the extra loss −log softmax(h_0 · N)[first item of the
//!   window]; a sequence with no history is scored h_0 · N_i.

use super::layers::{BlockStack, ItemRelevance, Linear};
use super::side_info::{SideInfo, add_field_table, pooled_field};
use super::{
    LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets, last_position_scores,
    latest_positions, next_item_loss_excluding, target_rows,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

/// What `Amsrm::embed` gives the encoder.
struct Embedded {
    /// E' (eq. 3 projected to width d, after dropout) `[B, n, d]`.
    e: Var,
    /// `side_fusion = "decoupled"`: M W_M + b_M after dropout `[B, n, d]`, the side stream of
    /// every block's attention (`layers::SideAttention`).
    side: Option<Var>,
    /// The pooled item fields, one `[items + 1, d]` per field.
    item_fields: Vec<Var>,
    /// The id table the sequence part used (cold and dropped-out rows zeroed).
    ids: Var,
}

pub struct Amsrm {
    store: ParamStore,
    side: SideInfo,
    item_embedding: ParamId,
    position_embedding: ParamId,
    behaviour_embedding: Option<ParamId>,
    item_field_tables: Vec<ParamId>,
    user_field_tables: Vec<ParamId>,
    /// Feature-level attention: query from S_i, keys from each field.
    feature_query: Option<Linear>,
    feature_key: Option<Linear>,
    /// E = concat(S, M) → width d (`side_fusion = "concat"`), or M → width d, added to S
    /// (`"add"`) or made the blocks' side stream (`"decoupled"`).
    fuse: Linear,
    add_side: bool,
    decoupled_side: bool,
    side_info_in_output: bool,
    encoder: BlockStack,
    /// The item level of the two-level attention (`item_attention`).
    item_relevance: Option<ItemRelevance>,
    /// One linear head d → vocab per item field, predicting the next item's field tokens
    /// (`attribute_loss` > 0), and the loss weight λ.
    attribute_heads: Vec<Linear>,
    attribute_loss: f32,
    /// W_0, b_0 of the start position h_0 (`first_item_from_user`).
    start: Option<Linear>,
    dim: usize,
    dropout: f32,
    items: usize,
    item_id_dropout: f32,
    /// Cold-start items (`set_cold_items`): represented by their features alone.
    cold_items: Vec<u32>,
    /// Logit offsets keeping the cold items out of the training softmax.
    cold_offsets: Option<Tensor>,
}

impl Amsrm {
    pub fn new(
        items: usize,
        max_len: usize,
        side: SideInfo,
        config: &ModelConfig,
        seed: u64,
    ) -> Result<Amsrm> {
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let item_embedding = store.add_xavier("item_embedding", &[items + 1, d], &mut rng)?;
        let position_embedding = store.add_xavier("position_embedding", &[max_len, d], &mut rng)?;
        let behaviour_embedding = if config.behaviour && side.behaviours > 1 {
            Some(add_field_table(
                &mut store,
                "side.behaviour",
                side.behaviours,
                d,
                &mut rng,
            )?)
        } else {
            None
        };
        let side = SideInfo {
            items: if config.item_features {
                side.items
            } else {
                Vec::new()
            },
            users: if config.user_features {
                side.users
            } else {
                Vec::new()
            },
            behaviours: side.behaviours,
        };
        let item_field_tables = side
            .items
            .iter()
            .map(|f| {
                add_field_table(
                    &mut store,
                    &format!("side.item.{}", f.name),
                    f.vocab,
                    d,
                    &mut rng,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let user_field_tables = side
            .users
            .iter()
            .map(|f| {
                add_field_table(
                    &mut store,
                    &format!("side.user.{}", f.name),
                    f.vocab,
                    d,
                    &mut rng,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let fields =
            behaviour_embedding.iter().count() + item_field_tables.len() + user_field_tables.len();
        let (feature_query, feature_key, fused_width) = if config.feature_attention && fields > 0 {
            (
                Some(Linear::new(
                    &mut store,
                    "feature_attention.query",
                    d,
                    d,
                    &mut rng,
                )?),
                Some(Linear::new(
                    &mut store,
                    "feature_attention.key",
                    d,
                    d,
                    &mut rng,
                )?),
                2 * d,
            )
        } else {
            (None, None, d * (1 + fields))
        };
        // "add" projects only M (the fused width without S's d columns).
        let add_side = config.side_fusion == "add" && fields > 0;
        let decoupled_side = config.side_fusion == "decoupled" && fields > 0;
        let fuse_width = if add_side || decoupled_side {
            fused_width - d
        } else {
            fused_width
        };
        let fuse = Linear::new(&mut store, "fuse", fuse_width, d, &mut rng)?;
        let encoder = BlockStack::new(&mut store, config, decoupled_side, &mut rng)?;
        let start = if config.first_item_from_user {
            if user_field_tables.is_empty() {
                return Err(crate::error::Error::Invalid(
                    "model_options.first_item_from_user needs user features (the data set's, \
                     with model_options.user_features = true)"
                        .into(),
                ));
            }
            Some(Linear::new(&mut store, "start", d, d, &mut rng)?)
        } else {
            None
        };
        // Created last, so that every other weight starts as it does without the option.
        let item_relevance = if config.item_attention {
            Some(ItemRelevance::new(
                &mut store,
                "item_attention",
                d,
                config.item_attention_tied,
                &mut rng,
            )?)
        } else {
            None
        };
        let attribute_heads = if config.attribute_loss > 0.0 {
            side.items
                .iter()
                .map(|f| {
                    let name = format!("attribute_predictor.{}", f.name);
                    Linear::new(&mut store, &name, d, f.vocab, &mut rng)
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        Ok(Amsrm {
            store,
            side,
            item_embedding,
            position_embedding,
            behaviour_embedding,
            item_field_tables,
            user_field_tables,
            feature_query,
            feature_key,
            fuse,
            add_side,
            decoupled_side,
            side_info_in_output: config.side_info_in_output,
            encoder,
            item_relevance,
            attribute_heads,
            attribute_loss: config.attribute_loss,
            start,
            dim: d,
            dropout: config.dropout,
            items,
            item_id_dropout: config.item_id_dropout,
            cold_items: Vec::new(),
            cold_offsets: None,
        })
    }

    /// Pooled item-field embeddings for every item, one `[items + 1, d]` per field.
    fn item_fields(&self, tape: &mut Tape) -> Result<Vec<Var>> {
        self.side
            .items
            .iter()
            .zip(&self.item_field_tables)
            .map(|(field, &table)| pooled_field(tape, &self.store, table, field))
            .collect()
    }

    /// The item id table `[items + 1, d]` with the rows of the cold items — and in training,
    /// by id dropout, of a random share of the others — set to zero.
    fn item_ids(&self, tape: &mut Tape) -> Result<Var> {
        let table = tape.param(&self.store, self.item_embedding);
        let dropout = if tape.training() {
            self.item_id_dropout
        } else {
            0.0
        };
        if self.cold_items.is_empty() && dropout == 0.0 {
            return Ok(table);
        }
        let rows = self.items + 1;
        let mut keep = vec![1.0f32; rows];
        if dropout > 0.0 {
            let stream = tape.next_stream();
            for (i, k) in keep.iter_mut().enumerate().skip(1) {
                if crate::rng::uniform_at(stream, i as u32) < dropout {
                    *k = 0.0;
                }
            }
        }
        for &item in &self.cold_items {
            keep[item as usize] = 0.0;
        }
        let keep = tape.constant(Tensor::from_vec(&[rows, 1], keep)?);
        tape.mul(table, keep)
    }

    /// N: item embeddings with the items' own side information folded in, `[items + 1, d]`.
    fn output_items(&self, tape: &mut Tape, ids: Var, item_fields: &[Var]) -> Result<Var> {
        let mut items = ids;
        if !self.side_info_in_output {
            return Ok(items);
        }
        for &field in item_fields {
            items = tape.add(items, field)?;
        }
        Ok(items)
    }

    /// F (eq. 7) at every position `[B, n, d]`, and N (eq. 8).
    fn encode(&self, tape: &mut Tape, input: &SequenceInput) -> Result<(Var, Var)> {
        let Embedded {
            e,
            side,
            item_fields,
            ids,
        } = self.embed(tape, input)?;
        let weights = match &self.item_relevance {
            Some(relevance) => Some(relevance.forward(tape, &self.store, e, &input.items)?),
            None => None,
        };
        let hidden = self.encoder.forward_with(
            tape,
            &self.store,
            e,
            &input.items,
            weights.as_ref(),
            side,
        )?;
        let items = self.output_items(tape, ids, &item_fields)?;
        Ok((hidden, items))
    }

    /// The item-level weights a_{n,j} of the last position (the one that predicts) for each
    /// sequence, `[B, n]`, 0 at padding; `None` without `item_attention`.
    pub fn item_weights(&self, input: &SequenceInput) -> Result<Option<Tensor>> {
        let Some(relevance) = &self.item_relevance else {
            return Ok(None);
        };
        let mut tape = Tape::inference().on(self.store.device());
        let e = self.embed(&mut tape, input)?.e;
        let weights = relevance.forward(&mut tape, &self.store, e, &input.items)?;
        let shape = input.items.shape();
        let (b, n) = (shape[0], shape[1]);
        let last = tape.slice(weights.log_weights, 1, n - 1, 1)?;
        let log_weights = tape.value(last).to_vec();
        let weights = log_weights.iter().map(|&l| l.exp()).collect();
        Ok(Some(Tensor::from_vec(&[b, n], weights)?))
    }

    /// E' and the side stream (see `Embedded`).
    fn embed(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Embedded> {
        let store = &self.store;
        let shape = input.items.shape();
        let (b, n, d) = (shape[0], shape[1], self.dim);

        // S: the sequence part of eq. 3.
        let table = self.item_ids(tape)?;
        let s = tape.embedding(table, &input.items)?;
        let s = tape.scale(s, (d as f32).sqrt())?;
        let positions = tape.param(store, self.position_embedding);
        let positions = latest_positions(tape, positions, input.items.shape()[1])?;
        let s = tape.add(s, positions)?;

        // M: one [B, n, d] embedding per side-information field.
        let item_fields = self.item_fields(tape)?;
        let mut fields = Vec::new();
        if let Some(table) = self.behaviour_embedding {
            let table = tape.param(store, table);
            fields.push(tape.embedding(table, &input.behaviours)?);
        }
        for &pooled in &item_fields {
            fields.push(tape.embedding(pooled, &input.items)?);
        }
        let zeros = tape.constant(Tensor::zeros(&[b, n, d]));
        for (field, &table) in self.side.users.iter().zip(&self.user_field_tables) {
            let pooled = pooled_field(tape, store, table, field)?;
            let users = Ids::from_vec(&[b], input.users.values().to_vec())?;
            let per_user = tape.embedding(pooled, &users)?;
            let per_user = tape.reshape(per_user, &[b, 1, d])?;
            fields.push(tape.add(zeros, per_user)?);
        }

        // M: the fields weighted by feature-level attention, or concatenated (the ablation).
        let m = match (&self.feature_query, &self.feature_key) {
            (Some(query), Some(key)) => {
                Some(self.feature_attention(tape, query, key, s, &fields, b * n)?)
            }
            _ if fields.is_empty() => None,
            _ => Some(tape.concat(&fields, 2)?),
        };
        let (e, side) = match m {
            // E = S, and M W_M + b_M goes to the blocks' attention logits only.
            Some(m) if self.decoupled_side => {
                let side = self.fuse.forward(tape, store, m)?;
                (s, Some(tape.dropout(side, self.dropout)?))
            }
            // E = S + M W_M + b_M.
            Some(m) if self.add_side => {
                let side = self.fuse.forward(tape, store, m)?;
                (tape.add(s, side)?, None)
            }
            // E = concat(S, M), projected back to width d.
            Some(m) => {
                let e = tape.concat(&[s, m], 2)?;
                (self.fuse.forward(tape, store, e)?, None)
            }
            None => (self.fuse.forward(tape, store, s)?, None),
        };
        Ok(Embedded {
            e: tape.dropout(e, self.dropout)?,
            side,
            item_fields,
            ids: table,
        })
    }

    /// DIF-SR's auxiliary attribute predictor (Xie et al. 2022, section 3.4): at every position
    /// with a target, each item field f of the next item is predicted from the hidden state F_t,
    ///   ŷ_f = σ(F_t W_f + b_f) ∈ (0, 1)^{vocab_f},
    /// against the field's tokens of that item as a multi-hot label (token 0, "missing", is
    /// never a label), by binary cross-entropy averaged over rows and tokens; the loss is
    /// λ · Σ_f BCE_f. It makes F_t carry what kind of item comes next. `None` when off.
    fn attribute_prediction_loss(
        &self,
        tape: &mut Tape,
        hidden: Var,
        batch: &TrainingBatch,
    ) -> Result<Option<Var>> {
        if self.attribute_heads.is_empty() {
            return Ok(None);
        }
        let (rows, real) = target_rows(tape, hidden, batch)?;
        let count = real.positions.len();
        if count == 0 {
            return Ok(None);
        }
        let mut total: Option<Var> = None;
        for (field, head) in self.side.items.iter().zip(&self.attribute_heads) {
            let width = field.ids.shape()[1];
            let mut labels = vec![0.0f32; count * field.vocab];
            for (r, &item) in real.targets.values().iter().enumerate() {
                let tokens =
                    &field.ids.values()[item as usize * width..(item as usize + 1) * width];
                for &token in tokens.iter().filter(|&&t| t != 0) {
                    labels[r * field.vocab + token as usize] = 1.0;
                }
            }
            let labels = Tensor::from_vec(&[count, field.vocab], labels)?;
            let logits = head.forward(tape, &self.store, rows)?;
            let field_loss = tape.bce_with_logits(logits, &labels, None)?;
            total = Some(match total {
                Some(total) => tape.add(total, field_loss)?,
                None => field_loss,
            });
        }
        match total {
            Some(total) => Ok(Some(tape.scale(total, self.attribute_loss)?)),
            None => Ok(None),
        }
    }

    /// h_0 = W_0 · Σ_g m_g + b_0, the start position of each user `[B, d]`.
    fn start_position(&self, tape: &mut Tape, start: &Linear, users: &Ids) -> Result<Var> {
        let mut sum = None;
        for (field, &table) in self.side.users.iter().zip(&self.user_field_tables) {
            let pooled = pooled_field(tape, &self.store, table, field)?;
            let per_user = tape.embedding(pooled, users)?;
            sum = Some(match sum {
                Some(sum) => tape.add(sum, per_user)?,
                None => per_user,
            });
        }
        let sum = sum.expect("checked in new: the start position has user fields");
        start.forward(tape, &self.store, sum)
    }

    /// The start loss: each window's first item predicted from h_0 alone.
    fn start_loss(
        &self,
        tape: &mut Tape,
        start: &Linear,
        input: &SequenceInput,
        items: Var,
    ) -> Result<Option<Var>> {
        let n = input.items.shape()[1];
        let mut rows = Vec::new();
        let mut firsts = Vec::new();
        for (row, window) in input.items.values().chunks(n).enumerate() {
            if let Some(&first) = window.iter().find(|&&i| i != 0) {
                rows.push(row as u32);
                firsts.push(first);
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let count = rows.len();
        let h0 = self.start_position(tape, start, &input.users)?;
        let h0 = tape.index_select(h0, 0, &Ids::from_vec(&[count], rows)?)?;
        let mut logits = tape.matmul_t(h0, items, false, true)?;
        if let Some(offsets) = &self.cold_offsets {
            let offsets = tape.constant(offsets.clone());
            logits = tape.add(logits, offsets)?;
        }
        let firsts = Ids::from_vec(&[count], firsts)?;
        Ok(Some(tape.cross_entropy(logits, &firsts, None)?))
    }

    /// α_{i,f} = softmax_f((S_i W_q)·(m_f W_k)/√d); M_i = Σ_f α_{i,f} m_f. Returns `[B, n, d]`.
    fn feature_attention(
        &self,
        tape: &mut Tape,
        query: &Linear,
        key: &Linear,
        s: Var,
        fields: &[Var],
        rows: usize,
    ) -> Result<Var> {
        let d = self.dim;
        let shape = tape.shape(s).to_vec();
        let q = query.forward(tape, &self.store, s)?;
        let q = tape.reshape(q, &[rows, 1, d])?;
        let stacked: Vec<Var> = fields
            .iter()
            .map(|&m| tape.reshape(m, &[rows, 1, d]))
            .collect::<Result<_>>()?;
        let m = tape.concat(&stacked, 1)?; // [rows, F, d]
        let k = key.forward(tape, &self.store, m)?;
        let logits = tape.matmul_t(q, k, false, true)?; // [rows, 1, F]
        let logits = tape.scale(logits, 1.0 / (d as f32).sqrt())?;
        let alpha = tape.softmax(logits)?;
        let mixed = tape.matmul(alpha, m)?; // [rows, 1, d]
        tape.reshape(mixed, &shape)
    }
}

impl Model for Amsrm {
    fn name(&self) -> &'static str {
        "amsrm"
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
        let (hidden, items) = self.encode(tape, &batch.input)?;
        let loss =
            next_item_loss_excluding(tape, hidden, items, batch, kind, self.cold_offsets.as_ref())?;
        let loss = match self.attribute_prediction_loss(tape, hidden, batch)? {
            Some(attribute_loss) => tape.add(loss, attribute_loss)?,
            None => loss,
        };
        match &self.start {
            Some(start) => match self.start_loss(tape, start, &batch.input, items)? {
                Some(start_loss) => tape.add(loss, start_loss),
                None => Ok(loss),
            },
            None => Ok(loss),
        }
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let (hidden, items) = self.encode(tape, input)?;
        let scores = last_position_scores(tape, hidden, items)?;
        let Some(start) = &self.start else {
            return Ok(scores);
        };
        // Rows with no history take h_0 · N instead.
        let n = input.items.shape()[1];
        let empty: Vec<f32> = input
            .items
            .values()
            .chunks(n)
            .map(|window| f32::from(window.iter().all(|&i| i == 0)))
            .collect();
        if !empty.contains(&1.0) {
            return Ok(scores);
        }
        let b = empty.len();
        let h0 = self.start_position(tape, start, &input.users)?;
        let start_scores = tape.matmul_t(h0, items, false, true)?;
        let has_history: Vec<f32> = empty.iter().map(|e| 1.0 - e).collect();
        let empty = tape.constant(Tensor::from_vec(&[b, 1], empty)?);
        let has_history = tape.constant(Tensor::from_vec(&[b, 1], has_history)?);
        let scores = tape.mul(scores, has_history)?;
        let start_scores = tape.mul(start_scores, empty)?;
        tape.add(scores, start_scores)
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        self.cold_offsets = excluded_items_offsets(self.items, items)?;
        self.cold_items = items.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::side_info::FieldIds;
    use crate::models::windows::test_support::padded_batch;

    /// Nine items, one token-set field with vocab 5: item i has tokens {i % 4 + 1} and, for
    /// even i, also token 1 (row 0, the padding item, has none).
    fn side() -> SideInfo {
        let (rows, width) = (10, 2);
        let mut ids = vec![0u32; rows * width];
        for i in 1..rows {
            ids[i * width] = (i % 4 + 1) as u32;
            if i % 2 == 0 && i % 4 != 0 {
                ids[i * width + 1] = 1;
            }
        }
        SideInfo {
            items: vec![FieldIds {
                name: "category".into(),
                vocab: 5,
                ids: Ids::from_vec(&[rows, width], ids).unwrap(),
                counts: Tensor::full(&[rows, 1], 1.0),
            }],
            users: Vec::new(),
            behaviours: 1,
        }
    }

    #[test]
    fn attribute_loss_is_lambda_times_the_bce_of_the_next_items_fields() {
        let config = ModelConfig {
            dim: 8,
            dropout: 0.0,
            attribute_loss: 0.7,
            ..ModelConfig::default()
        };
        let model = Amsrm::new(9, 8, side(), &config, 3).unwrap();
        let batch = padded_batch();
        let mut tape = Tape::new();
        let (hidden, _) = model.encode(&mut tape, &batch.input).unwrap();
        let loss = model
            .attribute_prediction_loss(&mut tape, hidden, &batch)
            .unwrap()
            .expect("the loss is on");
        let got = tape.value(loss).to_vec()[0] as f64;

        // By hand, in f64: every position with a target, every token of the field.
        let h = tape.value(hidden).to_vec();
        let w = model.store.value(model.attribute_heads[0].weight).to_vec();
        let bias = model.store.value(model.attribute_heads[0].bias).to_vec();
        let (d, vocab) = (8, 5);
        let field = &model.side.items[0];
        let (mut sum, mut terms) = (0.0f64, 0usize);
        for (row, &target) in batch.positives.values().iter().enumerate() {
            if batch.weights.to_vec()[row] == 0.0 {
                continue;
            }
            let tokens = &field.ids.values()[target as usize * 2..target as usize * 2 + 2];
            for token in 0..vocab {
                let z: f64 = bias[token] as f64
                    + (0..d)
                        .map(|c| h[row * d + c] as f64 * w[c * vocab + token] as f64)
                        .sum::<f64>();
                let y = if token != 0 && tokens.contains(&(token as u32)) {
                    1.0
                } else {
                    0.0
                };
                sum += z.max(0.0) - z * y + (1.0 + (-z.abs()).exp()).ln();
                terms += 1;
            }
        }
        let want = 0.7 * sum / terms as f64;
        assert!(
            (got - want).abs() < 1e-5 * (1.0 + want.abs()),
            "attribute loss {got} vs {want}"
        );
    }

    #[test]
    fn attribute_loss_off_adds_no_weights() {
        let off = Amsrm::new(9, 8, side(), &ModelConfig::default(), 3).unwrap();
        let on_config = ModelConfig {
            attribute_loss: 1.0,
            ..ModelConfig::default()
        };
        let on = Amsrm::new(9, 8, side(), &on_config, 3).unwrap();
        let names = |m: &Amsrm| -> Vec<String> {
            m.store
                .ids()
                .map(|id| m.store.name(id).to_string())
                .collect()
        };
        let (off_names, on_names) = (names(&off), names(&on));
        assert!(
            off_names
                .iter()
                .all(|n| !n.starts_with("attribute_predictor"))
        );
        let extra: Vec<&String> = on_names.iter().filter(|n| !off_names.contains(n)).collect();
        assert_eq!(
            extra,
            [
                "attribute_predictor.category.weight",
                "attribute_predictor.category.bias"
            ]
        );
        // The heads are created last: every other weight starts the same.
        for id in off.store.ids() {
            let other = on.store.find(off.store.name(id)).unwrap();
            assert_eq!(off.store.value(id).to_vec(), on.store.value(other).to_vec());
        }
    }
}
