//! GRU4Rec — Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with
//! Recurrent Neural Networks", ICLR 2016; with the losses and extra negatives of Hidasi &
//! Karatzoglou, "Recurrent Neural Networks with Top-k Gains for Session-based
//! Recommendations", CIKM 2018.
//!
//! Network (2016, section 3.1):
//!   x_t = dropout(E_in[i_t])                  item embedding of the current event
//!   h_t = GRU(x_t, h_{t−1})                   `gru_layers` stacked GRUs of width d, dropout
//!                                             after each (the reference code's dropout_p_hidden)
//!   r_{t,j} = h_t · E_out[j] + b_j            the score of item j as the next event
//! The paper feeds one-hot items into the GRU; an embedding of width d in front of W_ih is the
//! same network with W_ih factored (the paper's "embedding layer" variant, which the reference
//! code uses by default). E_out = E_in ("tied", `gru4rec_tied`, the 2018 code's constrained
//! embedding; default) or a separate table. Every item has a bias b_j.
//!
//! Mini-batches. The paper's session-parallel mini-batches run B sessions side by side, one
//! event each per step, and reset a session's hidden state when a new session takes its slot.
//! Here the trainer hands over whole sequences, left-padded, with a target at every position;
//! the fused GRU runs all steps with the padding mask, so h stays 0 through the padding and
//! starts at the first real event. Every event of every sequence is a training example with the
//! hidden state carried within its sequence and never across sequences — the same examples and
//! recurrences as session-parallel batching; only the grouping of events into the mini-batches
//! whose targets serve as negatives differs: column t of the batch (B sequences, each at some
//! event) plays the part of one session-parallel step.
//!
//! Losses (`gru4rec_loss`; unset = follow train.loss). "ce": softmax cross-entropy over the
//! whole catalogue at every position (2016's categorical cross-entropy without sampling);
//! train.loss = "bce" gives the shared sampled BCE instead. The 2018 losses, with
//! s = softmax over the negatives' scores:
//!   "bpr-max", with the score regularisation of the 2018 paper:
//!     L = −log Σ_j s_j σ(r_i − r_j) + λ Σ_j s_j r_j²
//!   "top1-max":
//!     L = Σ_j s_j (σ(r_j − r_i) + σ(r_j²))
//! For the row of sequence b at step t, r_i is the score of its target and j runs over the
//! negatives: the targets of the other sequences at step t (mini-batch negatives) plus the
//! extra samples, which are shared by the step as in the paper — the batch's sampled negatives
//! of all B sequences at t, B·k items with k = train.negatives. So a batch scores
//! [n, B, B(1 + k)] candidates. The loss is the mean over real targets. Choices the paper
//! leaves open: a candidate equal to the row's own target is not a negative (the reference
//! code masks only the diagonal); padding is never a candidate; the extra samples are uniform
//! over items the sequence's user never saw (the trainer's sampler) where the paper samples by
//! popularity^α; gradients flow through s as in the reference code. λ is `gru4rec_bpr_reg`
//! (reference default 1).

use super::{
    LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets,
    next_item_loss_excluding, padding_mask,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

/// The score added to a candidate that is not a negative of a row: its softmax weight s_j
/// becomes exactly 0 (exp underflows), so it drops out of both losses.
const NOT_A_NEGATIVE: f32 = -1e9;
/// Keeps BPR-max's log finite when every σ(r_i − r_j) underflows (the reference code's 1e-24).
const LOG_EPSILON: f32 = 1e-24;

/// The ranking losses of the 2018 paper.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RankingLoss {
    /// −log Σ_j s_j σ(r_i − r_j) + λ Σ_j s_j r_j², with λ.
    BprMax { score_reg: f32 },
    /// Σ_j s_j (σ(r_j − r_i) + σ(r_j²)).
    Top1Max,
}

/// What `loss` trains with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Objective {
    /// The trainer's loss (train.loss).
    Trainer,
    /// Full-softmax cross-entropy whatever train.loss says.
    CrossEntropy,
    Ranking(RankingLoss),
}

struct GruLayer {
    w_ih: ParamId,
    w_hh: ParamId,
    b_ih: ParamId,
    b_hh: ParamId,
}

pub struct Gru4Rec {
    store: ParamStore,
    input_embedding: ParamId,
    /// None when tied to `input_embedding`.
    output_embedding: Option<ParamId>,
    /// b_j as a one-column table `[items + 1, 1]`, so candidates' biases are an embedding lookup.
    item_bias: ParamId,
    layers: Vec<GruLayer>,
    dropout: f32,
    objective: Objective,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
    items: usize,
}

impl Gru4Rec {
    pub fn new(items: usize, config: &ModelConfig, seed: u64) -> Result<Gru4Rec> {
        let bad = |what: String| Err(Error::Invalid(format!("model_options.{what}")));
        if config.gru_layers == 0 {
            return bad("gru_layers must be at least 1".into());
        }
        if !(config.gru4rec_bpr_reg.is_finite() && config.gru4rec_bpr_reg >= 0.0) {
            return bad(format!(
                "gru4rec_bpr_reg must be a finite λ ≥ 0, got {}",
                config.gru4rec_bpr_reg
            ));
        }
        let objective = match config.gru4rec_loss.as_deref() {
            None => Objective::Trainer,
            Some("ce") => Objective::CrossEntropy,
            Some("bpr-max") => Objective::Ranking(RankingLoss::BprMax {
                score_reg: config.gru4rec_bpr_reg,
            }),
            Some("top1-max") => Objective::Ranking(RankingLoss::Top1Max),
            Some(other) => {
                return bad(format!(
                    "gru4rec_loss must be \"ce\", \"bpr-max\" or \"top1-max\", got {other:?}"
                ));
            }
        };

        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let input_embedding = store.add_xavier("item_embedding", &[items + 1, d], &mut rng)?;
        let output_embedding = if config.gru4rec_tied {
            None
        } else {
            Some(store.add_xavier("output_embedding", &[items + 1, d], &mut rng)?)
        };
        let item_bias = store.add("item_bias", Tensor::zeros(&[items + 1, 1]))?;
        store.set_no_decay(item_bias);
        // Each gate's d×d block Xavier-uniform, as the reference code initialises them.
        let gate_bound = (6.0 / (2 * d) as f32).sqrt();
        let mut layers = Vec::with_capacity(config.gru_layers);
        for l in 0..config.gru_layers {
            let w_ih =
                store.add_uniform(format!("gru{l}.w_ih"), &[d, 3 * d], gate_bound, &mut rng)?;
            let w_hh =
                store.add_uniform(format!("gru{l}.w_hh"), &[d, 3 * d], gate_bound, &mut rng)?;
            let b_ih = store.add(format!("gru{l}.b_ih"), Tensor::zeros(&[3 * d]))?;
            let b_hh = store.add(format!("gru{l}.b_hh"), Tensor::zeros(&[3 * d]))?;
            store.set_no_decay(b_ih);
            store.set_no_decay(b_hh);
            layers.push(GruLayer {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            });
        }
        Ok(Gru4Rec {
            store,
            input_embedding,
            output_embedding,
            item_bias,
            layers,
            dropout: config.dropout,
            objective,
            cold_offsets: None,
            items,
        })
    }

    /// h_t at every position `[B, n, d]`.
    fn encode(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let store = &self.store;
        let table = tape.param(store, self.input_embedding);
        let embedded = tape.embedding(table, &input.items)?;
        let mut x = tape.dropout(embedded, self.dropout)?;
        // Padding steps carry h unchanged: h = 0 until the sequence's first event.
        let mask = padding_mask(&input.items).to_device(tape.device());
        for layer in &self.layers {
            let w_ih = tape.param(store, layer.w_ih);
            let w_hh = tape.param(store, layer.w_hh);
            let b_ih = tape.param(store, layer.b_ih);
            let b_hh = tape.param(store, layer.b_hh);
            let h = tape.gru(x, None, w_ih, w_hh, b_ih, b_hh, Some(&mask))?;
            x = tape.dropout(h, self.dropout)?;
        }
        Ok(x)
    }

    fn output_table(&self, tape: &mut Tape) -> Var {
        tape.param(
            &self.store,
            self.output_embedding.unwrap_or(self.input_embedding),
        )
    }

    /// [h, 1] `[B, n, d + 1]` and [E_out, b] `[items + 1, d + 1]`: their products are
    /// h·E_out[j] + b_j, so the shared next-item losses see the item bias.
    fn with_bias(&self, tape: &mut Tape, hidden: Var) -> Result<(Var, Var)> {
        let shape = tape.shape(hidden).to_vec();
        let ones = tape.constant(Tensor::full(&[shape[0], shape[1], 1], 1.0));
        let hidden = tape.concat(&[hidden, ones], 2)?;
        let table = self.output_table(tape);
        let bias = tape.param(&self.store, self.item_bias);
        let items = tape.concat(&[table, bias], 1)?;
        Ok((hidden, items))
    }

    /// The 2018 losses over each step's candidates (see the header).
    fn ranking_loss(
        &self,
        tape: &mut Tape,
        hidden: Var,
        batch: &TrainingBatch,
        loss: RankingLoss,
    ) -> Result<Var> {
        let (candidates, negative_mask) = step_candidates(batch)?;
        let (n, b) = (batch.positives.shape()[1], batch.positives.shape()[0]);
        // [h, 1]·[E_out[j], b_j] = r_j: one product per score, bias included.
        let (hidden, items) = self.with_bias(tape, hidden)?;
        let hidden = tape.permute(hidden, &[1, 0, 2])?; // [n, B, d + 1]

        // r_j for every candidate of the step: [n, B, C].
        let embedded = tape.embedding(items, &candidates)?; // [n, C, d + 1]
        let scores = tape.matmul_t(hidden, embedded, false, true)?;

        // r_i, the row's own target, gathered directly (column b of row b): [n, B].
        let targets = Ids::from_vec(&[n, b], transpose(batch.positives.values(), b, n))?;
        let target_embedded = tape.embedding(items, &targets)?; // [n, B, d + 1]
        let product = tape.mul(hidden, target_embedded)?;
        let positive = tape.sum(product, &[2], false)?;

        let weights = Tensor::from_vec(&[n, b], transpose(&batch.weights.to_vec(), b, n))?;
        top_k_gain_loss(tape, positive, scores, &negative_mask, &weights, loss)
    }
}

/// A row-major `[rows, cols]` matrix as `[cols, rows]`.
fn transpose<T: Copy>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

/// Each step's candidates and which of them are negatives of which row.
///
/// Returns the candidate items `[n, C]`, C = B + B·k: at step t, first the targets
/// `positives[·, t]` of the B sequences (so row b's own target is column b), then their sampled
/// negatives `negatives[·, t, ·]`; and `[n, B, C]` with 1 where candidate c is a negative of
/// row b at step t (not padding, not row b's target).
pub fn step_candidates(batch: &TrainingBatch) -> Result<(Ids, Tensor)> {
    let (b, n) = (batch.positives.shape()[0], batch.positives.shape()[1]);
    let k = batch.negatives.shape()[2];
    let c = b + b * k;
    let positives = batch.positives.values();
    let negatives = batch.negatives.values();
    let mut candidates = Vec::with_capacity(n * c);
    for t in 0..n {
        candidates.extend((0..b).map(|row| positives[row * n + t]));
        for row in 0..b {
            let start = (row * n + t) * k;
            candidates.extend_from_slice(&negatives[start..start + k]);
        }
    }
    let mut mask = Vec::with_capacity(n * b * c);
    for t in 0..n {
        let step = &candidates[t * c..(t + 1) * c];
        for row in 0..b {
            let target = positives[row * n + t];
            mask.extend(
                step.iter()
                    .map(|&item| f32::from(item != 0 && item != target)),
            );
        }
    }
    Ok((
        Ids::from_vec(&[n, c], candidates)?,
        Tensor::from_vec(&[n, b, c], mask)?,
    ))
}

/// BPR-max or TOP1-max over per-step scores, averaged over the rows with weight.
///
/// `positive` `[S, B]` holds each row's r_i, `scores` `[S, B, C]` the r_j of the step's
/// candidates, `negatives` `[S, B, C]` is 1 where candidate c is a negative of the row and
/// `weights` `[S, B]` weighs each row's loss (0 = no target). Returns Σ w·L / Σ w (0 when no
/// row has weight).
pub fn top_k_gain_loss(
    tape: &mut Tape,
    positive: Var,
    scores: Var,
    negatives: &Tensor,
    weights: &Tensor,
    loss: RankingLoss,
) -> Result<Var> {
    let shape = tape.shape(scores).to_vec();
    let [s, b, _] = shape[..] else {
        return Err(Error::shape(
            "top_k_gain_loss",
            format!("scores must be [steps, rows, candidates], got {shape:?}"),
        ));
    };
    if tape.shape(positive) != [s, b] || negatives.shape() != shape || weights.shape() != [s, b] {
        return Err(Error::shape(
            "top_k_gain_loss",
            format!(
                "scores {shape:?} need positive scores [{s}, {b}] (got {:?}), a negatives mask \
                 of the same shape (got {:?}) and weights [{s}, {b}] (got {:?})",
                tape.shape(positive),
                negatives.shape(),
                weights.shape()
            ),
        ));
    }
    let positive = tape.reshape(positive, &[s, b, 1])?;

    // s_j = softmax over the negatives only.
    let exclusion: Vec<f32> = negatives
        .to_vec()
        .iter()
        .map(|&m| if m != 0.0 { 0.0 } else { NOT_A_NEGATIVE })
        .collect();
    let exclusion = tape.constant(Tensor::from_vec(&shape, exclusion)?);
    let masked = tape.add(scores, exclusion)?;
    let s = tape.softmax(masked)?;

    let squared = tape.mul(scores, scores)?;
    let per_row = match loss {
        RankingLoss::BprMax { score_reg } => {
            let margin = tape.sub(positive, scores)?;
            let beaten = tape.sigmoid(margin)?;
            let weighted = tape.mul(s, beaten)?;
            let expected = tape.sum(weighted, &[2], false)?;
            let expected = tape.add_scalar(expected, LOG_EPSILON)?;
            let log = tape.log(expected)?;
            let ranking = tape.scale(log, -1.0)?;
            let weighted = tape.mul(s, squared)?;
            let reg = tape.sum(weighted, &[2], false)?;
            let reg = tape.scale(reg, score_reg)?;
            tape.add(ranking, reg)?
        }
        RankingLoss::Top1Max => {
            let margin = tape.sub(scores, positive)?;
            let ranked_above = tape.sigmoid(margin)?;
            let pushed_down = tape.sigmoid(squared)?;
            let terms = tape.add(ranked_above, pushed_down)?;
            let weighted = tape.mul(s, terms)?;
            tape.sum(weighted, &[2], false)?
        }
    }; // [S, B]
    let total_weight: f32 = weights.to_vec().iter().sum();
    let w = tape.constant(weights.clone());
    let weighted = tape.mul(per_row, w)?;
    let total = tape.sum_all(weighted)?;
    tape.scale(total, 1.0 / total_weight.max(f32::MIN_POSITIVE))
}

impl Model for Gru4Rec {
    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        self.cold_offsets = excluded_items_offsets(self.items, items)?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "gru4rec"
    }

    /// Left padding is masked (h stays 0 until the first event) and the step losses group
    /// rows by column counted from the right, so all-padding columns change nothing.
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
        let kind = match self.objective {
            Objective::Ranking(loss) => return self.ranking_loss(tape, hidden, batch, loss),
            Objective::CrossEntropy => LossKind::FullSoftmax,
            Objective::Trainer => kind,
        };
        let (hidden, items) = self.with_bias(tape, hidden)?;
        next_item_loss_excluding(tape, hidden, items, batch, kind, self.cold_offsets.as_ref())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let hidden = self.encode(tape, input)?;
        let shape = tape.shape(hidden).to_vec();
        let (b, n, d) = (shape[0], shape[1], shape[2]);
        let last = tape.slice(hidden, 1, n - 1, 1)?;
        let last = tape.reshape(last, &[b, d])?;
        let table = self.output_table(tape);
        let rows = tape.shape(table)[0];
        let scores = tape.matmul_t(last, table, false, true)?;
        let bias = tape.param(&self.store, self.item_bias);
        let bias = tape.reshape(bias, &[1, rows])?;
        tape.add(scores, bias)
    }
}
