//! The recommendation models. Each model file reads like its paper; this file holds what
//! they share: the `Model` interface, the batch types a model consumes, and the two training
//! losses over next-item targets.

pub mod amsrm;
pub mod attrec;
pub mod bert4rec;
pub mod bprmf;
pub mod caser;
pub mod featpop;
pub mod fossil;
pub mod fpmc;
pub mod gru4rec;
pub mod hmm;
pub mod itemknn;
pub mod layers;
pub mod mf;
pub mod neighbours;
pub mod nextitnet;
pub mod pop;
pub mod sasrec;
pub mod side_info;
pub mod stamp;
pub mod userknn;
pub mod windows;

use crate::autograd::{Tape, Var};
use crate::data::split::TrainSequence;
use crate::error::{Error, Result};
use crate::optim::ParamStore;
use crate::tensor::{Ids, Tensor};

/// A batch of user sequences as a model sees them.
#[derive(Clone, Debug)]
pub struct SequenceInput {
    /// Internal user ids `[B]` (0 = unknown user, e.g. an anonymous sequence).
    pub users: Ids,
    /// Item ids `[B, n]`: the latest n items, left-padded with 0.
    pub items: Ids,
    /// Behaviour type of each item `[B, n]` (0 = padding or unknown).
    pub behaviours: Ids,
}

/// A training batch: inputs and, at every position, the next item to predict.
#[derive(Clone, Debug)]
pub struct TrainingBatch {
    pub input: SequenceInput,
    /// The next item after each input position `[B, n]` (0 where there is none).
    pub positives: Ids,
    /// Sampled negatives per position `[B, n, k]` (used by the BCE loss).
    pub negatives: Ids,
    /// 1 where `positives` is a real target, 0 elsewhere `[B, n]`.
    pub weights: Tensor,
}

/// Which training loss to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy over the whole catalogue at every position.
    FullSoftmax,
    /// Binary cross-entropy on the positive and the sampled negatives (the papers' recipe).
    SampledBce,
}

impl LossKind {
    pub fn parse(name: &str) -> Result<LossKind> {
        match name {
            "ce" => Ok(LossKind::FullSoftmax),
            "bce" => Ok(LossKind::SampledBce),
            other => Err(Error::Invalid(format!(
                "unknown loss {other:?}: use \"ce\" or \"bce\""
            ))),
        }
    }
}

/// An error when an input sequence holds an item id outside the catalogue 1..=`items`.
pub fn check_input_items(input: &SequenceInput, items: usize) -> Result<()> {
    match input.items.values().iter().find(|&&i| i as usize > items) {
        Some(&bad) => Err(Error::Invalid(format!(
            "input item {bad} is beyond the catalogue of {items} items"
        ))),
        None => Ok(()),
    }
}

/// What every model implements.
pub trait Model: Send + Sync {
    /// The model's name as the CLI spells it.
    fn name(&self) -> &'static str;
    fn params(&self) -> &ParamStore;
    fn params_mut(&mut self) -> &mut ParamStore;
    /// Records the training loss of `batch` on `tape`.
    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var>;
    /// Records the score of every item for each sequence: `[B, items + 1]`, column i = item i
    /// (column 0 is padding and is never recommended).
    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var>;

    /// True when the model's outputs do not depend on how much left padding its input has,
    /// so the trainer may cut a batch to its longest sequence (`Batcher::trim_padding`).
    fn accepts_trimmed_batches(&self) -> bool {
        false
    }

    /// True for models fitted directly from the training sequences — by counting, in closed
    /// form or by EM (Pop, kNN, ALS, HMM) — rather than by gradient steps: `train` then calls
    /// `fit` once instead of running epochs of Adam on `loss`.
    fn fits_directly(&self) -> bool {
        false
    }

    /// Fits the model to the training sequences (items are 1..=`num_items`); returns the
    /// final value of its objective (0 when it has none). The fitted state must live in
    /// `params_mut()` as tensors, so that checkpoints save and restore it.
    fn fit(&mut self, _train: &[TrainSequence], _num_items: usize) -> Result<f64> {
        Err(Error::Invalid(format!(
            "{} learns by gradient steps, not by fit()",
            self.name()
        )))
    }

    /// The cold-start study's cold items (`data.cold_items`): catalogue items with no training
    /// interaction that evaluation still ranks. A model that trains with a full softmax keeps
    /// them out of it (a new item is unknown at training time, not a known negative), and one
    /// with item side information represents them by it alone. Every model trained by
    /// gradient steps does so; the default, which does nothing, is for models fitted directly
    /// from the training sequences (a cold item never occurs in them).
    fn set_cold_items(&mut self, _items: &[u32]) -> Result<()> {
        Ok(())
    }
}

/// Logit offsets `[items + 1]` that keep `excluded` items out of a training softmax: −1e9 at
/// them (a probability of exactly 0, hence no gradient), 0 elsewhere. None when none are.
pub fn excluded_items_offsets(items: usize, excluded: &[u32]) -> Result<Option<Tensor>> {
    if excluded.is_empty() {
        return Ok(None);
    }
    let mut offsets = vec![0.0f32; items + 1];
    for &item in excluded {
        *offsets.get_mut(item as usize).ok_or_else(|| {
            Error::Invalid(format!(
                "excluded item {item} is beyond the catalogue of {items} items"
            ))
        })? = -1e9;
    }
    Ok(Some(Tensor::from_vec(&[items + 1], offsets)?))
}

/// Next-item loss at every position. `hidden` `[B, n, d]` are the sequence representations,
/// `items` `[items + 1, d]` the item representations scores are taken against.
pub fn next_item_loss(
    tape: &mut Tape,
    hidden: Var,
    items: Var,
    batch: &TrainingBatch,
    kind: LossKind,
) -> Result<Var> {
    next_item_loss_excluding(tape, hidden, items, batch, kind, None)
}

/// `next_item_loss` whose full softmax adds `offsets` (`excluded_items_offsets`) to the logits.
pub fn next_item_loss_excluding(
    tape: &mut Tape,
    hidden: Var,
    items: Var,
    batch: &TrainingBatch,
    kind: LossKind,
    offsets: Option<&Tensor>,
) -> Result<Var> {
    let shape = tape.shape(hidden).to_vec();
    let (b, n, d) = (shape[0], shape[1], shape[2]);
    match kind {
        LossKind::FullSoftmax => {
            // Only positions with a target: padding rows would cost a full row of logits each
            // (18% of an ml-100k batch at n = 50, 56% at n = 200) for a zero loss.
            let (rows, real) = target_rows(tape, hidden, batch)?;
            item_cross_entropy(
                tape,
                rows,
                items,
                &real.targets,
                Some(&real.weights),
                offsets,
            )
        }
        LossKind::SampledBce => {
            let k = batch.negatives.shape()[2];
            let positive = tape.embedding(items, &batch.positives)?;
            let product = tape.mul(hidden, positive)?;
            let positive_logits = tape.sum(product, &[2], false)?;
            let negative = tape.embedding(items, &batch.negatives)?;
            let hidden4 = tape.reshape(hidden, &[b, n, 1, d])?;
            let product = tape.mul(hidden4, negative)?;
            let negative_logits = tape.sum(product, &[3], false)?;
            let ones = Tensor::full(&[b, n], 1.0);
            let zeros = Tensor::zeros(&[b, n, k]);
            let negative_weights = expand_last(&batch.weights, k)?;
            let positive_loss =
                tape.bce_with_logits(positive_logits, &ones, Some(&batch.weights))?;
            let negative_loss =
                tape.bce_with_logits(negative_logits, &zeros, Some(&negative_weights))?;
            // −log σ(pos) averaged over real positions plus −log σ(−neg) averaged over their
            // negatives: with one negative this is SASRec's loss, summed per position.
            tape.add(positive_loss, negative_loss)
        }
    }
}

/// The positions of a batch that have a target (weight ≠ 0), as flat indices b·n + t, with
/// their targets and weights `[count]`: the only rows a full-softmax loss needs.
pub struct TargetRows {
    pub positions: Vec<u32>,
    pub targets: Ids,
    pub weights: Tensor,
}

/// The rows of `hidden` `[B, n, d]` at the positions with a target, `[count, d]`, with those
/// positions' targets and weights.
pub fn target_rows(
    tape: &mut Tape,
    hidden: Var,
    batch: &TrainingBatch,
) -> Result<(Var, TargetRows)> {
    let shape = tape.shape(hidden).to_vec();
    let (b, n, d) = (shape[0], shape[1], shape[2]);
    let real = TargetRows::of(batch)?;
    let rows = tape.reshape(hidden, &[b * n, d])?;
    let positions = Ids::from_vec(&[real.positions.len()], real.positions.clone())?;
    let rows = tape.index_select(rows, 0, &positions)?;
    Ok((rows, real))
}

impl TargetRows {
    pub fn of(batch: &TrainingBatch) -> Result<TargetRows> {
        let weights = batch.weights.to_vec();
        let positions: Vec<u32> = (0..weights.len() as u32)
            .filter(|&r| weights[r as usize] != 0.0)
            .collect();
        let count = positions.len();
        let pick = |r: &u32| *r as usize;
        let targets = positions
            .iter()
            .map(|r| batch.positives.values()[pick(r)])
            .collect();
        let row_weights = positions.iter().map(|r| weights[pick(r)]).collect();
        Ok(TargetRows {
            targets: Ids::from_vec(&[count], targets)?,
            weights: Tensor::from_vec(&[count], row_weights)?,
            positions,
        })
    }
}

/// Full-softmax cross-entropy of `rows` `[r, d]` scored against every row of `items`
/// `[items + 1, d]`. Without `offsets` the fused output layer never builds the `[r, items + 1]`
/// logits; with them (excluded items, the cold-start study) it must, to add them.
pub fn item_cross_entropy(
    tape: &mut Tape,
    rows: Var,
    items: Var,
    targets: &Ids,
    weights: Option<&Tensor>,
    offsets: Option<&Tensor>,
) -> Result<Var> {
    match offsets {
        None => tape.linear_cross_entropy(rows, items, targets, weights),
        Some(_) => {
            let logits = tape.matmul_t(rows, items, false, true)?;
            let logits = add_offsets(tape, logits, offsets)?;
            tape.cross_entropy(logits, targets, weights)
        }
    }
}

/// `logits` `[r, items + 1]` plus `offsets` (`excluded_items_offsets`) when there are any.
pub fn add_offsets(tape: &mut Tape, logits: Var, offsets: Option<&Tensor>) -> Result<Var> {
    match offsets {
        None => Ok(logits),
        Some(offsets) => {
            let offsets = tape.constant(offsets.clone());
            tape.add(logits, offsets)
        }
    }
}

/// The rows of a learned position table `[max_len, d]` for an input `n` wide: with left
/// padding the newest item is always in the last column, so a batch cut to width n (n ≤
/// max_len) uses the table's last n rows and every item keeps the position it would have had
/// in a full-width batch.
pub fn latest_positions(tape: &mut Tape, table: Var, n: usize) -> Result<Var> {
    let max_len = tape.shape(table)[0];
    if n == max_len {
        return Ok(table);
    }
    if n > max_len {
        return Err(Error::shape(
            "positions",
            format!("an input {n} wide is longer than the {max_len} positions the model has"),
        ));
    }
    tape.slice(table, 0, max_len - n, n)
}

/// Scores of every item from the representation at the last position: `[B, items + 1]`.
pub fn last_position_scores(tape: &mut Tape, hidden: Var, items: Var) -> Result<Var> {
    let shape = tape.shape(hidden).to_vec();
    let (b, n, d) = (shape[0], shape[1], shape[2]);
    let last = tape.slice(hidden, 1, n - 1, 1)?;
    let last = tape.reshape(last, &[b, d])?;
    tape.matmul_t(last, items, false, true)
}

/// `[B, n]` → `[B, n, k]` by repeating each value k times.
fn expand_last(weights: &Tensor, k: usize) -> Result<Tensor> {
    let mut shape = weights.shape().to_vec();
    shape.push(k);
    Tensor::from_vec(
        &shape,
        weights
            .to_vec()
            .iter()
            .flat_map(|&w| std::iter::repeat_n(w, k))
            .collect(),
    )
}

/// `[B, n]` mask with 1 at real (non-padding) items.
pub fn padding_mask(items: &Ids) -> Tensor {
    let values = items
        .values()
        .iter()
        .map(|&i| if i == 0 { 0.0 } else { 1.0 })
        .collect();
    Tensor::from_vec(items.shape(), values).expect("same element count")
}
