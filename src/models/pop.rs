//! Pop — the most popular items: every user gets the same ranking, by the number of training
//! interactions of each item (repeats count; items only in validation or test count 0).
//!
//! The baseline every learned model must beat, and the cold-start fallback of the
//! neighbourhood models (`tie_break`): what they cannot score, they rank by popularity.
//! `Pop::with_item_features` is FeaturePop (`featpop.rs`).

use super::featpop::feature_popularity;
use super::side_info::FieldIds;
use super::{LossKind, Model, SequenceInput, TrainingBatch};
use crate::autograd::{Tape, Var};
use crate::data::split::TrainSequence;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::tensor::Tensor;

pub struct Pop {
    store: ParamStore,
    /// Training interactions per item `[items + 1]` (0 for padding); with item features, an
    /// unseen item's feature popularity (`featpop`).
    popularity: ParamId,
    items: usize,
    /// Item features that score unseen items; empty for plain Pop.
    fields: Vec<FieldIds>,
    name: &'static str,
}

impl Pop {
    pub fn new(items: usize) -> Result<Pop> {
        Pop::build("pop", items, Vec::new())
    }

    /// FeaturePop (`featpop.rs`): Pop whose unseen items are scored from `fields`.
    pub fn with_item_features(items: usize, fields: Vec<FieldIds>) -> Result<Pop> {
        for field in &fields {
            if field.ids.shape().first() != Some(&(items + 1)) {
                return Err(Error::Invalid(format!(
                    "featpop: item field {:?} has {:?} rows, the catalogue {} items (+ padding)",
                    field.name,
                    field.ids.shape(),
                    items
                )));
            }
        }
        Pop::build("featpop", items, fields)
    }

    fn build(name: &'static str, items: usize, fields: Vec<FieldIds>) -> Result<Pop> {
        let mut store = ParamStore::new();
        let popularity = store.add("popularity", Tensor::zeros(&[items + 1]))?;
        Ok(Pop {
            store,
            popularity,
            items,
            fields,
            name,
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

/// The error of `loss` for a model fitted by counting.
pub fn no_gradient_training(model: &str) -> Error {
    Error::Invalid(format!(
        "{model} is fitted directly from the training sequences (fit), it has no training loss"
    ))
}

impl Model for Pop {
    fn name(&self) -> &'static str {
        self.name
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
        let b = input.users.shape()[0];
        let counts = self.store.value(self.popularity).to_vec();
        let mut rows = Vec::with_capacity(b * counts.len());
        for _ in 0..b {
            rows.extend_from_slice(&counts);
        }
        Ok(tape.constant(Tensor::from_vec(&[b, self.items + 1], rows)?))
    }

    fn fits_directly(&self) -> bool {
        true
    }

    fn fit(&mut self, train: &[TrainSequence], num_items: usize) -> Result<f64> {
        if num_items != self.items {
            return Err(Error::Invalid(format!(
                "{} was built for {} items, fit was given {num_items}",
                self.name, self.items
            )));
        }
        let mut counts = interaction_counts(train, self.items)?;
        if !self.fields.is_empty() {
            counts = feature_popularity(&counts, &self.fields);
        }
        self.store.set_value(
            self.popularity,
            Tensor::from_vec(&[self.items + 1], counts)?,
        )?;
        Ok(0.0)
    }
}
