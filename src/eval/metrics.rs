//! Ranking metrics of one user, computed from the 0-based ranks of its target items.
//!
//! Ranks. A user's candidates are scored; a target's rank is its position (0 = best) in the
//! candidates ordered by
//!   1. score, higher first;
//!   2. on equal scores, targets before non-targets (so a target tied with other items counts
//!      only the items scoring STRICTLY higher: the convention of RecBole and of the PyTorch
//!      peer, `rank = #{candidates with score > target score}`);
//!   3. among targets with equal scores, the lower item id first.
//!
//! With one target this is exactly `rank = #{candidates scoring strictly higher}`; with
//! several, the targets get distinct positions. NaN never counts as higher than anything;
//! a NaN target score is an error (it would otherwise rank first).
//!
//! Metrics at a cutoff K, for a user with m targets at ranks r_1 < r_2 < ... < r_m,
//! hits = #{i : r_i < K} (binary relevance):
//!   - HR@K        = 1 if hits > 0 else 0
//!   - Precision@K = hits / K          (K, not the catalogue size, even when K exceeds it)
//!   - Recall@K    = hits / m
//!   - NDCG@K      = DCG / IDCG, DCG = Σ_{r_i < K} 1 / log2(r_i + 2),
//!     IDCG = Σ_{j=0}^{min(m, K) - 1} 1 / log2(j + 2)
//!   - MRR@K       = 1 / (r_1 + 1) if r_1 < K else 0   (RecBole's MRR@K)
//!   - MAP@K       = (1 / min(m, K)) Σ_{i : r_i < K} i / (r_i + 1)   (precision at each hit)
//!
//! Without cutoff, MRR = 1 / (r_1 + 1). With one target HR@K = Recall@K and MAP@K = MRR@K.

use crate::error::{Error, Result};

/// The cutoffs reported when none are asked for.
pub const DEFAULT_KS: [usize; 4] = [5, 10, 15, 20];

/// Metrics at one cutoff K: one user's values, or in a report their mean over users.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsAtK {
    pub k: usize,
    pub hit_rate: f64,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    /// MRR truncated at K.
    pub mrr: f64,
    pub map: f64,
}

/// Positions (0 = best, ascending) of the targets among `targets ∪ others` under the
/// ordering in the module header. `targets` are (item id, score) with distinct ids; `others`
/// are the scores of every non-target candidate (an item scored −∞ never counts, which is how
/// callers exclude items without removing them).
pub fn target_ranks(targets: &[(u32, f32)], others: &[f32]) -> Result<Vec<usize>> {
    if targets.is_empty() {
        return Err(Error::Invalid("target_ranks: no targets".into()));
    }
    if let Some(&(id, _)) = targets.iter().find(|(_, score)| score.is_nan()) {
        return Err(Error::Invalid(format!(
            "target_ranks: the score of target item {id} is NaN"
        )));
    }
    let mut ordered = targets.to_vec();
    ordered.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    if let Some(pair) = ordered.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::Invalid(format!(
            "target_ranks: target item {} is given twice",
            pair[0].0
        )));
    }

    if let [(_, target)] = ordered[..] {
        // One target (leave-one-out): a branch-free count the compiler vectorizes.
        let higher: usize = others.iter().map(|&s| (s > target) as usize).sum();
        return Ok(vec![higher]);
    }

    // Several targets, scores v_0 ≥ v_1 ≥ ...: a non-target scoring s beats exactly the
    // targets with v_i < s, a suffix starting at the first such i. Count suffix starts, then
    // a prefix sum gives, per target, the non-targets strictly above it.
    let values: Vec<f32> = ordered.iter().map(|&(_, score)| score).collect();
    let lowest = values[values.len() - 1];
    let mut suffix_starts = vec![0usize; values.len()];
    for &s in others {
        // Also rejects NaN, which compares false.
        if s > lowest {
            suffix_starts[values.partition_point(|&v| v >= s)] += 1;
        }
    }
    let mut higher = 0;
    Ok(suffix_starts
        .iter()
        .enumerate()
        .map(|(position, &starts)| {
            higher += starts;
            position + higher
        })
        .collect())
}

/// One user's metrics at cutoff `k` from the ascending, distinct ranks of all its targets
/// (as `target_ranks` returns them).
pub fn metrics_at_k(ranks: &[usize], k: usize) -> Result<MetricsAtK> {
    if k == 0 {
        return Err(Error::Invalid("metrics_at_k: K must be at least 1".into()));
    }
    if ranks.is_empty() {
        return Err(Error::Invalid("metrics_at_k: no target ranks".into()));
    }
    let n_targets = ranks.len();
    let mut hits = 0usize;
    let mut dcg = 0.0;
    let mut precision_sum = 0.0;
    for &rank in ranks.iter().filter(|&&rank| rank < k) {
        hits += 1;
        dcg += discount(rank);
        precision_sum += hits as f64 / (rank + 1) as f64;
    }
    let ideal_hits = n_targets.min(k);
    let ideal_dcg: f64 = (0..ideal_hits).map(discount).sum();
    Ok(MetricsAtK {
        k,
        hit_rate: if hits > 0 { 1.0 } else { 0.0 },
        precision: hits as f64 / k as f64,
        recall: hits as f64 / n_targets as f64,
        ndcg: dcg / ideal_dcg,
        mrr: if ranks[0] < k {
            reciprocal_rank(ranks)
        } else {
            0.0
        },
        map: precision_sum / ideal_hits as f64,
    })
}

/// Untruncated reciprocal rank of the best-ranked target: 1 / (r_1 + 1); 0 without targets.
pub fn reciprocal_rank(ranks: &[usize]) -> f64 {
    ranks.first().map_or(0.0, |&best| 1.0 / (best + 1) as f64)
}

/// The NDCG discount of 0-based position `rank`: 1 / log2(rank + 2).
fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 2) as f64).log2()
}
