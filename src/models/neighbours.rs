//! What ItemKNN and UserKNN share: sparse incidence lists, the shrunk cosine with its top-k
//! cut, neighbour tables stored as tensors, and the recency weights of an input sequence.
//!
//! Similarity (both models): binary vectors a, b over the other side's ids (an item's users,
//! a user's items), optionally weighted (an input sequence's recency weights), and
//!   sim(a, b) = a·b / (‖a‖‖b‖ + λ)
//! the cosine with shrinkage λ, which pulls similarities that rest on few co-occurrences
//! towards 0. It is computed sparsely: a row's dot products with every other row come from
//! walking its columns' incidence lists into a dense accumulator (one per thread), so the
//! cost is the number of co-occurrences, and nothing of size rows² is ever built.
//! Top-k keeps the k largest positive similarities, ties to the lower id.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Compressed sparse rows: for each row id 0..rows, the ids of its columns.
#[derive(Clone, Debug, Default)]
pub struct Incidence {
    offsets: Vec<usize>,
    columns: Vec<u32>,
}

impl Incidence {
    /// From one list of column ids per row (kept as given: callers pass distinct ids).
    pub fn from_rows(rows: &[Vec<u32>]) -> Incidence {
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        let mut columns = Vec::with_capacity(rows.iter().map(Vec::len).sum());
        offsets.push(0);
        for row in rows {
            columns.extend_from_slice(row);
            offsets.push(columns.len());
        }
        Incidence { offsets, columns }
    }

    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn row(&self, r: usize) -> &[u32] {
        &self.columns[self.offsets[r]..self.offsets[r + 1]]
    }

    /// The column → rows lists, for `columns` column ids 0..columns.
    pub fn transpose(&self, columns: usize) -> Incidence {
        let mut lists = vec![Vec::new(); columns];
        for r in 0..self.rows() {
            for &c in self.row(r) {
                lists[c as usize].push(r as u32);
            }
        }
        Incidence::from_rows(&lists)
    }

    /// ‖row‖ of each binary row: √(number of columns).
    pub fn norms(&self) -> Vec<f32> {
        (0..self.rows())
            .map(|r| (self.row(r).len() as f32).sqrt())
            .collect()
    }
}

/// A dense accumulator of dot products with the rows, and the rows it touched.
pub struct Scratch {
    dots: Vec<f32>,
    touched: Vec<u32>,
}

impl Scratch {
    pub fn new(rows: usize) -> Scratch {
        Scratch {
            dots: vec![0.0; rows],
            touched: Vec::new(),
        }
    }
}

/// The k rows most similar to a query vector: `query` holds (column, weight) pairs with
/// distinct columns, `by_column` the column → rows lists, `row_norms` each row's ‖b‖;
/// `exclude` is the query's own row, if it is one. Sorted by similarity, best first.
pub fn top_k_similar(
    query: &[(u32, f32)],
    by_column: &Incidence,
    row_norms: &[f32],
    k: usize,
    shrinkage: f32,
    exclude: Option<u32>,
    scratch: &mut Scratch,
) -> Vec<(u32, f32)> {
    let query_norm = query.iter().map(|&(_, w)| w * w).sum::<f32>().sqrt();
    for &(column, weight) in query {
        for &row in by_column.row(column as usize) {
            let dot = &mut scratch.dots[row as usize];
            if *dot == 0.0 {
                scratch.touched.push(row);
            }
            *dot += weight;
        }
    }
    let mut similar: Vec<(u32, f32)> = Vec::with_capacity(scratch.touched.len());
    for &row in &scratch.touched {
        let dot = std::mem::take(&mut scratch.dots[row as usize]);
        if Some(row) != exclude && dot > 0.0 {
            similar.push((
                row,
                dot / (query_norm * row_norms[row as usize] + shrinkage),
            ));
        }
    }
    scratch.touched.clear();
    let best_first = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if similar.len() > k {
        similar.select_nth_unstable_by(k, best_first);
        similar.truncate(k);
    }
    similar.sort_unstable_by(best_first);
    similar
}

/// The top-k neighbours of every row of `rows` among the rows themselves, in parallel over
/// the rows. `columns` is the number of column ids.
pub fn all_top_k_similar(
    rows: &Incidence,
    columns: usize,
    k: usize,
    shrinkage: f32,
) -> Vec<Vec<(u32, f32)>> {
    let by_column = rows.transpose(columns);
    let norms = rows.norms();
    (0..rows.rows())
        .into_par_iter()
        .map_init(
            || Scratch::new(rows.rows()),
            |scratch, r| {
                let query: Vec<(u32, f32)> = rows.row(r).iter().map(|&c| (c, 1.0)).collect();
                top_k_similar(
                    &query,
                    &by_column,
                    &norms,
                    k,
                    shrinkage,
                    Some(r as u32),
                    scratch,
                )
            },
        )
        .collect()
}

/// Neighbour lists as two `[rows, k]` tensors (ids as f32, exact below 2²⁴; similarities),
/// padded with id 0 and weight 0 where a row has fewer than k neighbours.
pub fn neighbour_tensors(lists: &[Vec<(u32, f32)>], k: usize) -> Result<(Tensor, Tensor)> {
    let mut ids = vec![0.0; lists.len() * k];
    let mut weights = vec![0.0; lists.len() * k];
    for (r, list) in lists.iter().enumerate() {
        for (slot, &(id, weight)) in list.iter().take(k).enumerate() {
            ids[r * k + slot] = id as f32;
            weights[r * k + slot] = weight;
        }
    }
    Ok((
        Tensor::from_vec(&[lists.len(), k], ids)?,
        Tensor::from_vec(&[lists.len(), k], weights)?,
    ))
}

/// The ids of an id tensor written by `neighbour_tensors` (or any f32 tensor of ids), checked
/// to be whole numbers in 0..=max: a checkpoint edited by hand is an error, not a panic.
pub fn ids_from_tensor(tensor: &Tensor, max: usize, what: &str) -> Result<Vec<u32>> {
    tensor
        .to_vec()
        .into_iter()
        .map(|v| {
            if v >= 0.0 && v <= max as f32 && v.fract() == 0.0 {
                Ok(v as u32)
            } else {
                Err(Error::Invalid(format!(
                    "`{what}` holds {v}, not an id in 0..={max}: the checkpoint is corrupt"
                )))
            }
        })
        .collect()
}

/// The items of one left-padded input row that score, most recent first, each with its
/// recency weight: the latest `history` real items (0 = all), the item t steps before the
/// last weighing decay^t. An item seen several times counts once, at its latest position.
pub fn recency_weights(row: &[u32], history: usize, decay: f32) -> Vec<(u32, f32)> {
    let limit = if history == 0 { usize::MAX } else { history };
    let mut weighted: Vec<(u32, f32)> = Vec::new();
    let mut weight = 1.0f32;
    for &item in row.iter().rev().filter(|&&i| i != 0).take(limit) {
        if !weighted.iter().any(|&(seen, _)| seen == item) {
            weighted.push((item, weight));
        }
        weight *= decay;
    }
    weighted
}

/// Checks the options both neighbourhood models share.
pub fn check_options(model: &str, k: usize, shrinkage: f32, decay: f32) -> Result<()> {
    if k == 0 {
        return Err(Error::Invalid(format!(
            "config: model_options.knn_neighbours must be at least 1 for {model}"
        )));
    }
    if !(shrinkage.is_finite() && shrinkage >= 0.0) {
        return Err(Error::Invalid(format!(
            "config: model_options.knn_shrinkage must be a finite number ≥ 0, got {shrinkage}"
        )));
    }
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(Error::Invalid(format!(
            "config: model_options.knn_decay must be in (0, 1], got {decay}"
        )));
    }
    Ok(())
}

/// Ids are stored as f32, exact only below 2²⁴.
pub fn check_id_range(what: &str, count: usize) -> Result<()> {
    if count >= 1 << 24 {
        return Err(Error::Invalid(format!(
            "{count} {what}: neighbour ids are stored as f32, exact only below 2^24"
        )));
    }
    Ok(())
}
