//! Caser — Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
//! Sequence Embedding", WSDM 2018.
//!
//! Embedding look-up (section 3.1): the latest L items form an "image" E ∈ R^{L×d}.
//! Horizontal convolutions (3.2): for each height h = 1..L, n_h filters F ∈ R^{h×d};
//!   c_i = φ_c(E_{i:i+h−1} ⊙ F), φ_c = ReLU, then max pooling over i → o ∈ R^{L·n_h}.
//! Vertical convolutions: n_v filters F̃ ∈ R^{L×1}: õ = Σ_l F̃_l E_l ∈ R^{n_v·d} (no activation).
//! Fully connected (3.3): z = φ_a(W [o; õ] + b), φ_a = ReLU, dropout on [o; õ].
//! Output: y = W' [z; P_u] + b', P_u the user's embedding (general preference).
//! Training (3.4): each window of L items predicts the next T items, binary cross-entropy with
//! sampled negatives (or full-softmax cross-entropy as an option). Every window of a
//! sequence is trained at once (see `windows`).

use super::layers::Linear;
use super::windows::{all_windows, last_windows, repeat_users, select_rows};
use super::{LossKind, Model, SequenceInput, TrainingBatch, add_offsets, excluded_items_offsets};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

pub struct Caser {
    store: ParamStore,
    item_embedding: ParamId,
    user_embedding: ParamId,
    /// One conv weight `[n_h, 1, h, d]` and bias `[n_h]` per height h = 1..L.
    horizontal: Vec<(ParamId, ParamId)>,
    vertical: ParamId,
    hidden: Linear,
    output_weight: ParamId,
    output_bias: ParamId,
    window: usize,
    dim: usize,
    targets: usize,
    dropout: f32,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
}

impl Caser {
    pub fn new(items: usize, users: usize, config: &ModelConfig, seed: u64) -> Result<Caser> {
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let (d, l) = (config.dim, config.window);
        let item_embedding = store.add_xavier("item_embedding", &[items + 1, d], &mut rng)?;
        let user_embedding = store.add_xavier("user_embedding", &[users + 1, d], &mut rng)?;
        let n_h = config.caser_horizontal;
        let horizontal = (1..=l)
            .map(|h| {
                let w =
                    store.add_xavier(format!("horizontal{h}.weight"), &[n_h, 1, h, d], &mut rng)?;
                let b = store.add(format!("horizontal{h}.bias"), Tensor::zeros(&[n_h]))?;
                Ok((w, b))
            })
            .collect::<Result<Vec<_>>>()?;
        let vertical = store.add_xavier(
            "vertical.weight",
            &[config.caser_vertical, 1, l, 1],
            &mut rng,
        )?;
        let hidden = Linear::new(
            &mut store,
            "hidden",
            l * n_h + config.caser_vertical * d,
            d,
            &mut rng,
        )?;
        let output_weight = store.add_xavier("output.weight", &[items + 1, 2 * d], &mut rng)?;
        let output_bias = store.add("output.bias", Tensor::zeros(&[items + 1]))?;
        Ok(Caser {
            store,
            item_embedding,
            user_embedding,
            horizontal,
            vertical,
            hidden,
            output_weight,
            output_bias,
            window: l,
            dim: d,
            targets: config.caser_targets.max(1),
            dropout: config.dropout,
            cold_offsets: None,
        })
    }

    /// [z; P_u] for each window `[rows, L]` and user `[rows]`: `[rows, 2d]`.
    fn encode(&self, tape: &mut Tape, windows: &Ids, users: &Ids) -> Result<Var> {
        let store = &self.store;
        let rows = windows.shape()[0];
        let (l, d) = (self.window, self.dim);
        let table = tape.param(store, self.item_embedding);
        let e = tape.embedding(table, windows)?;
        let image = tape.reshape(e, &[rows, 1, l, d])?;

        let mut pooled = Vec::new();
        for (h, &(weight, bias)) in (1..=l).zip(&self.horizontal) {
            let (w, b) = (tape.param(store, weight), tape.param(store, bias));
            let c = tape.conv2d(image, w, Some(b), (1, 1), (0, 0))?; // [rows, n_h, L−h+1, 1]
            let c = tape.relu(c)?;
            let n_h = tape.shape(c)[1];
            let c = tape.reshape(c, &[rows, n_h, l - h + 1])?;
            let o = tape.max_pool1d(c, l - h + 1, 1)?; // [rows, n_h, 1]
            pooled.push(tape.reshape(o, &[rows, n_h])?);
        }
        let w = tape.param(store, self.vertical);
        let v = tape.conv2d(image, w, None, (1, 1), (0, 0))?; // [rows, n_v, 1, d]
        let n_v = tape.shape(v)[1];
        pooled.push(tape.reshape(v, &[rows, n_v * d])?);

        let features = tape.concat(&pooled, 1)?;
        let features = tape.dropout(features, self.dropout)?;
        let z = self.hidden.forward(tape, store, features)?;
        let z = tape.relu(z)?;
        let user_table = tape.param(store, self.user_embedding);
        let p = tape.embedding(user_table, users)?;
        tape.concat(&[z, p], 1)
    }

    /// y = W' [z; P_u] + b' for every item: `[rows, items + 1]`.
    fn item_scores(&self, tape: &mut Tape, encoded: Var) -> Result<Var> {
        let (w, b) = (
            tape.param(&self.store, self.output_weight),
            tape.param(&self.store, self.output_bias),
        );
        let y = tape.matmul_t(encoded, w, false, true)?;
        tape.add(y, b)
    }
}

impl Model for Caser {
    fn name(&self) -> &'static str {
        "caser"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let (b, n) = (batch.positives.shape()[0], batch.positives.shape()[1]);
        // The window ending at position t predicts the targets of positions t..t+T−1.
        let shifts = (0..self.targets.min(n))
            .map(|shift| shifted_targets(&batch.positives, &batch.weights, shift))
            .collect::<Result<Vec<_>>>()?;
        // Only windows with a target at some shift: a padding window would cost a row of
        // logits over every item for nothing (82% of the rows on Amazon Beauty at n = 50).
        let weight_rows: Vec<Vec<f32>> = shifts.iter().map(|(_, w)| w.to_vec()).collect();
        let needed: Vec<u32> = (0..b * n)
            .filter(|&r| weight_rows.iter().any(|w| w[r] != 0.0))
            .map(|r| r as u32)
            .collect();
        let rows = needed.len();
        let windows = select_rows(&all_windows(&batch.input.items, self.window)?, &needed)?;
        let users = select_rows(&repeat_users(&batch.input.users, n)?, &needed)?;
        let encoded = self.encode(tape, &windows, &users)?; // [rows, 2d]
        let logits = match kind {
            LossKind::FullSoftmax => {
                let logits = self.item_scores(tape, encoded)?;
                Some(add_offsets(tape, logits, self.cold_offsets.as_ref())?)
            }
            LossKind::SampledBce => None,
        };
        let mut total: Option<Var> = None;
        for (shift, ((targets, _), weights)) in shifts.iter().zip(&weight_rows).enumerate() {
            let targets = select_rows(targets, &needed)?;
            let weights: Vec<f32> = needed.iter().map(|&r| weights[r as usize]).collect();
            let loss = match logits {
                Some(logits) => {
                    let weights = Tensor::from_vec(&[rows], weights)?;
                    tape.cross_entropy(logits, &targets, Some(&weights))?
                }
                None => {
                    let k = batch.negatives.shape()[2];
                    let negatives = shifted_negatives(&batch.negatives, shift)?;
                    let negatives = select_rows(&negatives, &needed)?;
                    let mut candidates = Vec::with_capacity(rows * (k + 1));
                    for (row, &t) in targets.values().iter().enumerate() {
                        candidates.push(t);
                        candidates.extend_from_slice(&negatives.values()[row * k..(row + 1) * k]);
                    }
                    let candidates = Ids::from_vec(&[rows, k + 1], candidates)?;
                    let logits = self.candidate_scores(tape, encoded, &candidates)?; // [rows, k+1]
                    let labels: Vec<f32> = (0..rows)
                        .flat_map(|_| std::iter::once(1.0).chain(std::iter::repeat_n(0.0, k)))
                        .collect();
                    let labels = Tensor::from_vec(&[rows, k + 1], labels)?;
                    let w: Vec<f32> = weights
                        .iter()
                        .flat_map(|&w| std::iter::repeat_n(w, k + 1))
                        .collect();
                    let w = Tensor::from_vec(&[rows, k + 1], w)?;
                    tape.bce_with_logits(logits, &labels, Some(&w))?
                }
            };
            total = Some(match total {
                None => loss,
                Some(sum) => tape.add(sum, loss)?,
            });
        }
        Ok(total.expect("at least one target"))
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        let catalogue = self.store.value(self.output_weight).shape()[0] - 1;
        self.cold_offsets = excluded_items_offsets(catalogue, items)?;
        Ok(())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let windows = last_windows(&input.items, self.window)?;
        let encoded = self.encode(tape, &windows, &input.users)?;
        self.item_scores(tape, encoded)
    }
}

impl Caser {
    /// Scores of a few candidate items per row: `[rows, c]` from `[rows, 2d]` and ids `[rows, c]`.
    fn candidate_scores(&self, tape: &mut Tape, encoded: Var, candidates: &Ids) -> Result<Var> {
        let rows = candidates.shape()[0];
        let (w, b) = (
            tape.param(&self.store, self.output_weight),
            tape.param(&self.store, self.output_bias),
        );
        let w = tape.embedding(w, candidates)?; // [rows, c, 2d]
        let bias_table = tape.reshape(b, &[self.output_bias_len(), 1])?;
        let bias = tape.embedding(bias_table, candidates)?; // [rows, c, 1]
        let encoded = tape.reshape(encoded, &[rows, 1, 2 * self.dim])?;
        let product = tape.mul(w, encoded)?;
        let dot = tape.sum(product, &[2], true)?; // [rows, c, 1]
        let y = tape.add(dot, bias)?;
        let c = candidates.shape()[1];
        tape.reshape(y, &[rows, c])
    }

    fn output_bias_len(&self) -> usize {
        self.store.value(self.output_bias).len()
    }
}

/// Targets (and their weights) `shift` positions later, flattened to `[B·n]`.
fn shifted_targets(positives: &Ids, weights: &Tensor, shift: usize) -> Result<(Ids, Tensor)> {
    let (b, n) = (positives.shape()[0], positives.shape()[1]);
    let (p, w) = (positives.values(), weights.to_vec());
    let mut targets = vec![0u32; b * n];
    let mut target_weights = vec![0f32; b * n];
    for row in 0..b {
        for t in 0..n - shift {
            targets[row * n + t] = p[row * n + t + shift];
            target_weights[row * n + t] = w[row * n + t + shift];
        }
    }
    Ok((
        Ids::from_vec(&[b * n], targets)?,
        Tensor::from_vec(&[b * n], target_weights)?,
    ))
}

/// Negatives `[B, n, k]` shifted like the targets, flattened to `[B·n, k]`.
fn shifted_negatives(negatives: &Ids, shift: usize) -> Result<Ids> {
    let (b, n, k) = (
        negatives.shape()[0],
        negatives.shape()[1],
        negatives.shape()[2],
    );
    let v = negatives.values();
    let mut out = vec![0u32; b * n * k];
    for row in 0..b {
        for t in 0..n - shift {
            let src = (row * n + t + shift) * k;
            out[(row * n + t) * k..(row * n + t + 1) * k].copy_from_slice(&v[src..src + k]);
        }
    }
    Ids::from_vec(&[b * n, k], out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::windows::test_support::{assert_loss_matches, padded_batch};

    /// The loss over every window, padding ones included (weight 0): what `loss` computes
    /// while skipping the windows that have nothing to predict.
    fn every_window_loss(model: &Caser, tape: &mut Tape, batch: &TrainingBatch) -> Var {
        let n = batch.positives.shape()[1];
        let windows = all_windows(&batch.input.items, model.window).unwrap();
        let users = repeat_users(&batch.input.users, n).unwrap();
        let encoded = model.encode(tape, &windows, &users).unwrap();
        let logits = model.item_scores(tape, encoded).unwrap();
        let mut total = None;
        for shift in 0..model.targets {
            let (targets, weights) =
                shifted_targets(&batch.positives, &batch.weights, shift).unwrap();
            let loss = tape
                .cross_entropy(logits, &targets, Some(&weights))
                .unwrap();
            total = Some(match total {
                None => loss,
                Some(sum) => tape.add(sum, loss).unwrap(),
            });
        }
        total.unwrap()
    }

    #[test]
    fn skipping_padding_windows_changes_neither_loss_nor_gradients() {
        let config = ModelConfig {
            dim: 8,
            window: 3,
            dropout: 0.0,
            caser_horizontal: 4,
            caser_vertical: 2,
            caser_targets: 3,
            ..ModelConfig::default()
        };
        let mut model = Caser::new(9, 3, &config, 5).unwrap();
        assert_loss_matches(&mut model, &padded_batch(), |model, tape| {
            every_window_loss(model, tape, &padded_batch())
        });
    }
}
