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
//! item i — the item with its own side information folded in, at width d.
//! Training: next item at every position, full-softmax cross-entropy or BCE with sampled
//! negatives.

use super::layers::{BlockStack, ItemRelevance, Linear};
use super::side_info::{SideInfo, add_field_table, pooled_field};
use super::{
    LossKind, Model, SequenceInput, TrainingBatch, last_position_scores, latest_positions,
    next_item_loss,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

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
    /// E = concat(S, M) → width d.
    fuse: Linear,
    encoder: BlockStack,
    /// The item level of the two-level attention (`item_attention`).
    item_relevance: Option<ItemRelevance>,
    dim: usize,
    dropout: f32,
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
        let fuse = Linear::new(&mut store, "fuse", fused_width, d, &mut rng)?;
        let encoder = BlockStack::new(&mut store, config, &mut rng)?;
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
            encoder,
            item_relevance,
            dim: d,
            dropout: config.dropout,
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

    /// N: item embeddings with the items' own side information folded in, `[items + 1, d]`.
    fn output_items(&self, tape: &mut Tape, item_fields: &[Var]) -> Result<Var> {
        let mut items = tape.param(&self.store, self.item_embedding);
        for &field in item_fields {
            items = tape.add(items, field)?;
        }
        Ok(items)
    }

    /// F (eq. 7) at every position `[B, n, d]`, and N (eq. 8).
    fn encode(&self, tape: &mut Tape, input: &SequenceInput) -> Result<(Var, Var)> {
        let (e, item_fields) = self.embed(tape, input)?;
        let hidden = match &self.item_relevance {
            Some(relevance) => {
                let weights = relevance.forward(tape, &self.store, e, &input.items)?;
                self.encoder
                    .forward_weighted(tape, &self.store, e, &input.items, Some(&weights))?
            }
            None => self.encoder.forward(tape, &self.store, e, &input.items)?,
        };
        let items = self.output_items(tape, &item_fields)?;
        Ok((hidden, items))
    }

    /// The item-level weights a_{n,j} of the last position (the one that predicts) for each
    /// sequence, `[B, n]`, 0 at padding; `None` without `item_attention`.
    pub fn item_weights(&self, input: &SequenceInput) -> Result<Option<Tensor>> {
        let Some(relevance) = &self.item_relevance else {
            return Ok(None);
        };
        let mut tape = Tape::inference().on(self.store.device());
        let (e, _) = self.embed(&mut tape, input)?;
        let weights = relevance.forward(&mut tape, &self.store, e, &input.items)?;
        let shape = input.items.shape();
        let (b, n) = (shape[0], shape[1]);
        let last = tape.slice(weights.log_weights, 1, n - 1, 1)?;
        let log_weights = tape.value(last).to_vec();
        let weights = log_weights.iter().map(|&l| l.exp()).collect();
        Ok(Some(Tensor::from_vec(&[b, n], weights)?))
    }

    /// E' (eq. 3 projected to width d, after dropout) `[B, n, d]`, and the pooled item fields.
    fn embed(&self, tape: &mut Tape, input: &SequenceInput) -> Result<(Var, Vec<Var>)> {
        let store = &self.store;
        let shape = input.items.shape();
        let (b, n, d) = (shape[0], shape[1], self.dim);

        // S: the sequence part of eq. 3.
        let table = tape.param(store, self.item_embedding);
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

        // E = concat(S, M), projected back to width d.
        let e = match (&self.feature_query, &self.feature_key) {
            (Some(query), Some(key)) => {
                let m = self.feature_attention(tape, query, key, s, &fields, b * n)?;
                tape.concat(&[s, m], 2)?
            }
            _ => {
                let mut parts = vec![s];
                parts.extend(&fields);
                tape.concat(&parts, 2)?
            }
        };
        let e = self.fuse.forward(tape, store, e)?;
        let e = tape.dropout(e, self.dropout)?;
        Ok((e, item_fields))
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
        next_item_loss(tape, hidden, items, batch, kind)
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let (hidden, items) = self.encode(tape, input)?;
        last_position_scores(tape, hidden, items)
    }
}
