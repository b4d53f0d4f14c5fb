//! Side information as id tensors a model can embed: for every item (and user) and every
//! field, the field's token ids. Numbers (age, year) are bucketized into tokens by quantiles;
//! token sets (genres, attributes) are padded to the widest set and mean-pooled when embedded.

use crate::autograd::{Tape, Var};
use crate::data::{Dataset, FeatureTable, FieldValues};
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

/// One field's token ids for every entity (row 0 = padding entity).
#[derive(Clone, Debug)]
pub struct FieldIds {
    pub name: String,
    /// Token ids run over 0..vocab (0 = missing).
    pub vocab: usize,
    /// `[rows, width]`: each entity's tokens, right-padded with 0.
    pub ids: Ids,
    /// `[rows, 1]`: how many real tokens each entity has (at least 1, to divide by).
    pub counts: Tensor,
}

/// The side information of a data set, re-indexed to the ids a model uses.
#[derive(Clone, Debug, Default)]
pub struct SideInfo {
    pub items: Vec<FieldIds>,
    pub users: Vec<FieldIds>,
    /// Number of behaviour ids (including 0).
    pub behaviours: usize,
}

impl SideInfo {
    /// `item_ids[i]` / `user_ids[u]` give the dataset id of model id i / u (index 0 = padding).
    pub fn new(
        dataset: &Dataset,
        item_ids: &[u32],
        user_ids: &[u32],
        numeric_buckets: usize,
    ) -> SideInfo {
        SideInfo {
            items: fields(&dataset.item_features, item_ids, numeric_buckets),
            users: fields(&dataset.user_features, user_ids, numeric_buckets),
            behaviours: dataset.behaviours.len() + 1,
        }
    }
}

fn fields(table: &FeatureTable, rows: &[u32], numeric_buckets: usize) -> Vec<FieldIds> {
    table
        .fields
        .iter()
        .map(|field| {
            let per_row: Vec<Vec<u32>> = match &field.values {
                FieldValues::Token(values) => rows
                    .iter()
                    .map(|&r| vec![values.get(r as usize).copied().unwrap_or(0)])
                    .collect(),
                FieldValues::TokenSet(values) => rows
                    .iter()
                    .map(|&r| values.get(r as usize).cloned().unwrap_or_default())
                    .collect(),
                FieldValues::Number(values) => {
                    let picked: Vec<f32> = rows
                        .iter()
                        .map(|&r| values.get(r as usize).copied().unwrap_or(f32::NAN))
                        .collect();
                    let (tokens, _) = crate::data::preprocess::bucketize(&picked, numeric_buckets);
                    tokens.into_iter().map(|t| vec![t]).collect()
                }
            };
            let vocab = match &field.values {
                FieldValues::Number(_) => numeric_buckets + 1,
                _ => field.vocab.len() + 1,
            };
            let width = per_row.iter().map(Vec::len).max().unwrap_or(1).max(1);
            let mut ids = vec![0u32; rows.len() * width];
            let mut counts = Vec::with_capacity(rows.len());
            for (r, tokens) in per_row.iter().enumerate() {
                // Row 0 is the padding entity: it has no features.
                let tokens: &[u32] = if r == 0 { &[] } else { tokens };
                ids[r * width..r * width + tokens.len()].copy_from_slice(tokens);
                counts.push(tokens.iter().filter(|&&t| t != 0).count().max(1) as f32);
            }
            FieldIds {
                name: field.name.clone(),
                vocab,
                ids: Ids::from_vec(&[rows.len(), width], ids).expect("sizes match"),
                counts: Tensor::from_vec(&[rows.len(), 1], counts).expect("sizes match"),
            }
        })
        .collect()
}

/// An embedding table for a field: `[vocab, d]`, row 0 (missing token) fixed at zero (it never
/// receives a gradient), so padding tokens add nothing when pooled.
pub fn add_field_table(
    store: &mut ParamStore,
    name: &str,
    vocab: usize,
    dim: usize,
    rng: &mut Rng,
) -> Result<ParamId> {
    let bound = (6.0 / (vocab + dim) as f32).sqrt();
    let mut values: Vec<f32> = (0..vocab * dim)
        .map(|_| (2.0 * rng.uniform() - 1.0) * bound)
        .collect();
    values[..dim].fill(0.0);
    store.add(name, Tensor::from_vec(&[vocab, dim], values)?)
}

/// Every entity's embedding of one field, mean-pooled over its tokens: `[rows, d]`.
pub fn pooled_field(
    tape: &mut Tape,
    store: &ParamStore,
    table: ParamId,
    field: &FieldIds,
) -> Result<Var> {
    let table = tape.param(store, table);
    let embedded = tape.embedding(table, &field.ids)?;
    let summed = tape.sum(embedded, &[1], false)?;
    let counts = tape.constant(field.counts.clone());
    tape.div(summed, counts)
}
