//! AttRec — Zhang et al., "Next Item Recommendation with Self-Attention", AAAI 2018.
//!
//! Short-term intent (section "Self-attention for short-term intent"): the latest L items
//! X ∈ R^{L×d}, with a sinusoidal timing signal added for the query and key,
//!   Q' = ReLU(X_t W_Q), K' = ReLU(X_t W_K),  s = softmax(Q'K'ᵀ/√d) with the diagonal masked,
//!   a = s X,  m_u = mean of the rows of a.
//! Long-term preference (metric learning): ‖U_u − V_i‖².
//! Prediction: y_ui = ω‖U_u − V_i‖² + (1 − ω)‖m_u − X_i‖²; the smaller, the better, so the
//! score of item i is −y_ui.
//! Training: the margin (hinge) loss max(0, y_ui + γ − y_uj) over the next item i and sampled
//! negatives j, for every window of a sequence (see `windows`); λ‖Θ‖² is the optimiser's
//! weight decay. Full-softmax cross-entropy over −y is the option. One next item per window
//! (the paper's T = 1 setting).

use super::layers::Linear;
use super::windows::{all_windows, last_windows, repeat_users, select_rows};
use super::{
    LossKind, Model, SequenceInput, TargetRows, TrainingBatch, excluded_items_offsets,
    item_cross_entropy,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

pub struct AttRec {
    store: ParamStore,
    /// X: item embeddings of the short-term space.
    short_item: ParamId,
    /// V: item embeddings of the long-term metric space.
    long_item: ParamId,
    /// U: user embeddings of the long-term metric space.
    user: ParamId,
    query: Linear,
    key: Linear,
    window: usize,
    dim: usize,
    weight: f32,
    margin: f32,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
}

impl AttRec {
    pub fn new(items: usize, users: usize, config: &ModelConfig, seed: u64) -> Result<AttRec> {
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let short_item = store.add_xavier("short_item_embedding", &[items + 1, d], &mut rng)?;
        let long_item = store.add_xavier("long_item_embedding", &[items + 1, d], &mut rng)?;
        let user = store.add_xavier("user_embedding", &[users + 1, d], &mut rng)?;
        let query = Linear::new(&mut store, "query", d, d, &mut rng)?;
        let key = Linear::new(&mut store, "key", d, d, &mut rng)?;
        Ok(AttRec {
            store,
            short_item,
            long_item,
            user,
            query,
            key,
            window: config.window,
            dim: d,
            weight: config.attrec_weight,
            margin: config.attrec_margin,
            cold_offsets: None,
        })
    }

    /// m_u for each window `[rows, L]`: `[rows, 1, d]`.
    fn short_term(&self, tape: &mut Tape, windows: &Ids) -> Result<Var> {
        let (rows, l, d) = (windows.shape()[0], self.window, self.dim);
        let keep: Vec<f32> = windows
            .values()
            .iter()
            .map(|&i| if i == 0 { 0.0 } else { 1.0 })
            .collect();
        let keep = Tensor::from_vec(&[rows, l, 1], keep)?;
        let table = tape.param(&self.store, self.short_item);
        let x = tape.embedding(table, windows)?;
        let keep_var = tape.constant(keep.clone());
        let x = tape.mul(x, keep_var)?; // padding rows are zero
        let timing = tape.constant(timing_signal(l, d));
        let timed = tape.add(x, timing)?;
        let q = self.query.forward(tape, &self.store, timed)?;
        let q = tape.relu(q)?;
        let k = self.key.forward(tape, &self.store, timed)?;
        let k = tape.relu(k)?;
        let logits = tape.matmul_t(q, k, false, true)?; // [rows, L, L]
        let logits = tape.scale(logits, 1.0 / (d as f32).sqrt())?;
        let logits = tape.masked_fill(logits, &attention_mask(windows), -1e9)?;
        let s = tape.softmax(logits)?;
        let a = tape.matmul(s, x)?; // [rows, L, d]
        let a = tape.mul(a, keep_var)?;
        let summed = tape.sum(a, &[1], true)?; // [rows, 1, d]
        let counts: Vec<f32> = keep
            .to_vec()
            .chunks(l)
            .map(|r| r.iter().sum::<f32>().max(1.0))
            .collect();
        let counts = tape.constant(Tensor::from_vec(&[rows, 1, 1], counts)?);
        tape.div(summed, counts)
    }

    /// y for candidates: users `[rows]`, m_u `[rows, 1, d]`, candidate ids `[rows, c]` → `[rows, c]`.
    fn distances(&self, tape: &mut Tape, users: &Ids, m: Var, candidates: &Ids) -> Result<Var> {
        let (rows, d) = (users.shape()[0], self.dim);
        let user_table = tape.param(&self.store, self.user);
        let u = tape.embedding(user_table, users)?;
        let u = tape.reshape(u, &[rows, 1, d])?;
        let long_table = tape.param(&self.store, self.long_item);
        let v = tape.embedding(long_table, candidates)?; // [rows, c, d]
        let short_table = tape.param(&self.store, self.short_item);
        let x = tape.embedding(short_table, candidates)?;
        let long = tape.squared_distance(u, v)?;
        let short = tape.squared_distance(m, x)?;
        self.mix(tape, long, short)
    }

    fn mix(&self, tape: &mut Tape, long: Var, short: Var) -> Result<Var> {
        let long = tape.scale(long, self.weight)?;
        let short = tape.scale(short, 1.0 - self.weight)?;
        tape.add(long, short)
    }

    /// −y for every item: `[rows, items + 1]`.
    fn all_scores(&self, tape: &mut Tape, users: &Ids, m: Var) -> Result<Var> {
        let (rows, d) = (users.shape()[0], self.dim);
        let user_table = tape.param(&self.store, self.user);
        let u = tape.embedding(user_table, users)?;
        let v = tape.param(&self.store, self.long_item);
        let x = tape.param(&self.store, self.short_item);
        let m = tape.reshape(m, &[rows, d])?;
        let long = all_squared_distances(tape, u, v)?; // [rows, items + 1]
        let short = all_squared_distances(tape, m, x)?;
        let y = self.mix(tape, long, short)?;
        tape.scale(y, -1.0)
    }
}

impl AttRec {
    /// −y_ui up to a per-row constant, as one product of a row side `[rows, 2d + 1]` and an
    /// item side `[items + 1, 2d + 1]`:
    ///   −y_ui = 2ω U_u·V_i + 2(1 − ω) m_u·X_i − (ω‖V_i‖² + (1 − ω)‖X_i‖²) − (ω‖U_u‖² + (1 − ω)‖m_u‖²)
    ///         = [2ω U_u, 2(1 − ω) m_u, 1] · [V_i, X_i, −(ω‖V_i‖² + (1 − ω)‖X_i‖²)] − c_u.
    /// The softmax over items does not see c_u (its gradient through the loss is
    /// Σ_i (p_i − onehot_i) = 0), so the full-softmax loss can use the product alone and go
    /// through the fused output layer, which never builds the `[rows, items + 1]` logits: the
    /// composed distances cost ten passes over that matrix each way, two thirds of an epoch.
    fn score_factors(&self, tape: &mut Tape, users: &Ids, m: Var) -> Result<(Var, Var)> {
        let (rows, d) = (users.shape()[0], self.dim);
        let user_table = tape.param(&self.store, self.user);
        let u = tape.embedding(user_table, users)?;
        let u = tape.scale(u, 2.0 * self.weight)?;
        let m = tape.reshape(m, &[rows, d])?;
        let m = tape.scale(m, 2.0 * (1.0 - self.weight))?;
        let ones = tape.constant(Tensor::from_vec(&[rows, 1], vec![1.0; rows])?);
        let row_side = tape.concat(&[u, m, ones], 1)?;

        let v = tape.param(&self.store, self.long_item);
        let x = tape.param(&self.store, self.short_item);
        let vv = tape.mul(v, v)?;
        let v2 = tape.sum(vv, &[1], true)?; // [items + 1, 1]
        let xx = tape.mul(x, x)?;
        let x2 = tape.sum(xx, &[1], true)?;
        let v2 = tape.scale(v2, -self.weight)?;
        let x2 = tape.scale(x2, -(1.0 - self.weight))?;
        let item_bias = tape.add(v2, x2)?;
        let item_side = tape.concat(&[v, x, item_bias], 1)?;
        Ok((row_side, item_side))
    }
}

/// ‖a_r − b_i‖² for every row r of a `[rows, d]` and i of b `[items, d]`, as
/// ‖a_r‖² − 2 a_r·b_i + ‖b_i‖²: one GEMM instead of a `[rows, items, d]` difference tensor.
fn all_squared_distances(tape: &mut Tape, a: Var, b: Var) -> Result<Var> {
    let items = tape.shape(b)[0];
    let aa = tape.mul(a, a)?;
    let a2 = tape.sum(aa, &[1], true)?; // [rows, 1]
    let bb = tape.mul(b, b)?;
    let b2 = tape.sum(bb, &[1], false)?;
    let b2 = tape.reshape(b2, &[1, items])?;
    let ab = tape.matmul_t(a, b, false, true)?;
    let ab = tape.scale(ab, -2.0)?;
    let sum = tape.add(ab, a2)?;
    tape.add(sum, b2)
}

impl Model for AttRec {
    fn name(&self) -> &'static str {
        "attrec"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let (b, n) = (batch.positives.shape()[0], batch.positives.shape()[1]);
        // Only positions with a target: a padding position would cost a row of distances to
        // every item for nothing (82% of the rows on Amazon Beauty at n = 50).
        let TargetRows {
            positions: needed,
            targets: positives,
            weights,
        } = TargetRows::of(batch)?;
        let rows = needed.len();
        let windows = select_rows(&all_windows(&batch.input.items, self.window)?, &needed)?;
        let users = select_rows(&repeat_users(&batch.input.users, n)?, &needed)?;
        let m = self.short_term(tape, &windows)?;
        match kind {
            LossKind::FullSoftmax => {
                let (rows_side, items_side) = self.score_factors(tape, &users, m)?;
                item_cross_entropy(
                    tape,
                    rows_side,
                    items_side,
                    &positives,
                    Some(&weights),
                    self.cold_offsets.as_ref(),
                )
            }
            LossKind::SampledBce => {
                let k = batch.negatives.shape()[2];
                let positives = Ids::from_vec(&[rows, 1], positives.values().to_vec())?;
                let negatives = Ids::from_vec(&[b * n, k], batch.negatives.values().to_vec())?;
                let negatives = select_rows(&negatives, &needed)?;
                let y_pos = self.distances(tape, &users, m, &positives)?; // [rows, 1]
                let y_neg = self.distances(tape, &users, m, &negatives)?; // [rows, k]
                let gap = tape.sub(y_pos, y_neg)?;
                let gap = tape.add_scalar(gap, self.margin)?;
                let hinge = tape.relu(gap)?;
                let w: Vec<f32> = weights
                    .to_vec()
                    .iter()
                    .flat_map(|&w| std::iter::repeat_n(w, k))
                    .collect();
                let total: f32 = w.iter().sum::<f32>().max(1.0);
                let w = tape.constant(Tensor::from_vec(&[rows, k], w)?);
                let weighted = tape.mul(hinge, w)?;
                let sum = tape.sum_all(weighted)?;
                tape.scale(sum, 1.0 / total)
            }
        }
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        let catalogue = self.store.value(self.long_item).shape()[0] - 1;
        self.cold_offsets = excluded_items_offsets(catalogue, items)?;
        Ok(())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let windows = last_windows(&input.items, self.window)?;
        let m = self.short_term(tape, &windows)?;
        self.all_scores(tape, &input.users, m)
    }
}

/// The sinusoidal timing signal of "Attention is all you need", `[L, d]`.
fn timing_signal(l: usize, d: usize) -> Tensor {
    let mut values = vec![0.0f32; l * d];
    for pos in 0..l {
        for i in 0..d {
            let rate = 1.0 / 10_000f32.powf((2 * (i / 2)) as f32 / d as f32);
            let angle = pos as f32 * rate;
            values[pos * d + i] = if i % 2 == 0 { angle.sin() } else { angle.cos() };
        }
    }
    Tensor::from_vec(&[l, d], values).expect("sizes match")
}

/// `[rows, L, L]`: 1 where query i may not look at key j (j = i, or key j is padding).
fn attention_mask(windows: &Ids) -> Tensor {
    let (rows, l) = (windows.shape()[0], windows.shape()[1]);
    let ids = windows.values();
    let mut mask = vec![0.0f32; rows * l * l];
    for r in 0..rows {
        for i in 0..l {
            for j in 0..l {
                if i == j || ids[r * l + j] == 0 {
                    mask[(r * l + i) * l + j] = 1.0;
                }
            }
        }
    }
    Tensor::from_vec(&[rows, l, l], mask).expect("sizes match")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::windows::test_support::{assert_loss_matches, padded_batch};

    /// The loss over every position, padding ones included (weight 0): what `loss` computes
    /// while skipping the positions that have nothing to predict.
    fn every_position_loss(model: &AttRec, tape: &mut Tape, batch: &TrainingBatch) -> Var {
        let (b, n) = (batch.positives.shape()[0], batch.positives.shape()[1]);
        let windows = all_windows(&batch.input.items, model.window).unwrap();
        let users = repeat_users(&batch.input.users, n).unwrap();
        let m = model.short_term(tape, &windows).unwrap();
        let logits = model.all_scores(tape, &users, m).unwrap();
        let targets = Ids::from_vec(&[b * n], batch.positives.values().to_vec()).unwrap();
        let weights = batch.weights.reshaped(&[b * n]).unwrap();
        tape.cross_entropy(logits, &targets, Some(&weights))
            .unwrap()
    }

    #[test]
    fn skipping_padding_positions_changes_neither_loss_nor_gradients() {
        let config = ModelConfig {
            dim: 8,
            window: 3,
            dropout: 0.0,
            ..ModelConfig::default()
        };
        let mut model = AttRec::new(9, 3, &config, 5).unwrap();
        assert_loss_matches(&mut model, &padded_batch(), |model, tape| {
            every_position_loss(model, tape, &padded_batch())
        });
    }
}
