//! Pop — the most popular items: every user gets the same ranking, by the number of training
//! interactions of each item (repeats count; items only in validation or test count 0).
//!
//! The baseline every learned model must beat, and the cold-start fallback of the
//! neighbourhood models (`tie_break`): what they cannot score, they rank by popularity.

use super::{LossKind, Model, SequenceInput, TrainingBatch};
use crate::autograd::{Tape, Var};
use crate::data::split::TrainSequence;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::tensor::Tensor;

pub struct Pop {
    store: ParamStore,
    /// Training interactions per item `[items + 1]` (0 for padding).
    popularity: ParamId,
    items: usize,
}

impl Pop {
    pub fn new(items: usize) -> Result<Pop> {
        let mut store = ParamStore::new();
        let popularity = store.add("popularity", Tensor::zeros(&[items + 1]))?;
        Ok(Pop {
            store,
            popularity,
            items,
        })
    }
}

/// Training interactions per item, `[items + 1]`; an item id beyond the catalogue is an error.
pub fn interaction_counts(train: &[TrainSequence], items: usize) -> Result<Vec<f32>> {
    let mut counts = vec![0.0f32; items + 1];
    for sequence in train {
        for &item in &sequence.items {
            check_item(item, items)?;
            counts[item as usize] += 1.0;
        }
    }
    counts[0] = 0.0;
    Ok(counts)
}

pub fn check_item(item: u32, items: usize) -> Result<()> {
    if item as usize > items {
        return Err(Error::Invalid(format!(
            "training item {item} is beyond the catalogue of {items} items"
        )));
    }
    Ok(())
}

/// Popularity scaled into [0, TIE_BREAK]: added to a neighbourhood model's scores, it orders
/// the items the neighbours do not reach (score 0: all of them for a cold-start sequence)
/// by popularity, and breaks exact ties, without reordering distinct neighbour scores.
pub fn tie_break(counts: &[f32]) -> Vec<f32> {
    const TIE_BREAK: f32 = 1e-6;
    let max = counts.iter().copied().fold(0.0f32, f32::max);
    if max <= 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|&c| TIE_BREAK * c / max).collect()
}

/// `[batch, items + 1]` scores: the same `scores` row for every sequence of the batch.
pub fn same_scores_for_all(tape: &mut Tape, input: &SequenceInput, scores: &Tensor) -> Result<Var> {
    let b = input.users.shape()[0];
    let row = scores.to_vec();
    let mut rows = Vec::with_capacity(b * row.len());
    for _ in 0..b {
        rows.extend_from_slice(&row);
    }
    Ok(tape.constant(Tensor::from_vec(&[b, row.len()], rows)?))
}

/// The error of `loss` for a model fitted by counting.
pub fn no_gradient_training(model: &str) -> Error {
    Error::Invalid(format!(
        "{model} is fitted directly from the training sequences (fit), it has no training loss"
    ))
}

impl Model for Pop {
    fn name(&self) -> &'static str {
        "pop"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, _tape: &mut Tape, _batch: &TrainingBatch, _kind: LossKind) -> Result<Var> {
        Err(no_gradient_training(self.name()))
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        same_scores_for_all(tape, input, self.store.value(self.popularity))
    }

    fn fits_directly(&self) -> bool {
        true
    }

    fn fit(&mut self, train: &[TrainSequence], num_items: usize) -> Result<f64> {
        if num_items != self.items {
            return Err(Error::Invalid(format!(
                "pop was built for {} items, fit was given {num_items}",
                self.items
            )));
        }
        let counts = interaction_counts(train, self.items)?;
        self.store.set_value(
            self.popularity,
            Tensor::from_vec(&[self.items + 1], counts)?,
        )?;
        Ok(0.0)
    }
}
