//! Top-K items of one score row, for recommending: partial selection (`select_nth_unstable_by`,
//! O(n) on average) of the K best candidates, then a sort of those K only.
//!
//! The order is the ranking order of the evaluator restricted to a plain list: score higher
//! first, equal scores by lower item id. NaN scores count as −∞ (a broken score never
//! displaces a real one).

use std::cmp::Ordering;

/// The `k` best items of `scores` (indexed by item id; id 0 is padding and never returned),
/// skipping the ids in `exclude` (ids outside the row are ignored). Returned best first as
/// (item id, score); fewer than `k` when fewer candidates remain.
pub fn top_k(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
    if k == 0 || scores.len() <= 1 {
        return Vec::new();
    }
    let mut excluded = vec![false; scores.len()];
    excluded[0] = true;
    for &id in exclude {
        if let Some(flag) = excluded.get_mut(id as usize) {
            *flag = true;
        }
    }
    let mut candidates: Vec<(u32, f32)> = scores
        .iter()
        .zip(&excluded)
        .enumerate()
        .filter(|(_, (_, excluded))| !**excluded)
        .map(|(id, (&score, _))| (id as u32, score))
        .collect();
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, ranks_before);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(ranks_before);
    candidates
}

/// `Less` when `a` ranks before `b`: higher score, then lower id; NaN as −∞.
fn ranks_before(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    let score = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    score(b.1)
        .partial_cmp(&score(a.1))
        .expect("NaN mapped to -inf")
        .then(a.0.cmp(&b.0))
}
