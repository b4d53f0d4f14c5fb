//! Evaluation: every user's target items ranked against the catalogue, averaged into metrics
//! at several cutoffs K (definitions and the tie convention in `metrics`).
//!
//! Protocols (every report states which one produced it):
//! - `Protocol::Full` (the default): each target is ranked against every item 1..=n_items
//!   (id 0 is padding, never ranked). With `exclude_history` (the default) the items of the
//!   user's history are removed from the candidates first; a target is never removed, even
//!   when it also appears in the history (temporal splits, repeat consumption).
//! - `Protocol::Sampled { negatives, seed }`: each user's targets are ranked against
//!   `negatives` items drawn uniformly without replacement from the items that are not the
//!   user's targets (nor, with `exclude_history`, in its history), as in the SASRec paper.
//!   It overstates metrics compared with full ranking, so it is only ever an explicit choice.
//!
//! Memory stays bounded: the model scores users chunk by chunk through a callback (at most
//! `max_chunk_bytes` of scores at once), and the ranks are counted directly (a target's rank
//! is a count of higher-scoring candidates, O(n_items) per user), so no users × items matrix
//! and no sort is ever needed. Users of a chunk are ranked in parallel; their metrics are
//! summed in user order, so the result does not depend on the number of threads.

pub mod metrics;
pub mod noise;
pub mod topk;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use rayon::prelude::*;

use crate::backend::cpu::PARALLEL_MIN_ELEMENTS;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{Storage, Tensor};

pub use metrics::{DEFAULT_KS, MetricsAtK, metrics_at_k, reciprocal_rank, target_ranks};
pub use topk::top_k;

/// Which candidates a user's targets are ranked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    /// Every item of the catalogue.
    Full,
    /// `negatives` uniform random items per user, reproducible from `seed`.
    Sampled { negatives: usize, seed: u64 },
}

/// How to evaluate.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// The cutoffs K, each ≥ 1.
    pub ks: Vec<usize>,
    pub protocol: Protocol,
    /// Remove the user's history items from the candidates (targets are always kept).
    pub exclude_history: bool,
    /// Upper bound on the scores requested from the model at once, in bytes.
    pub max_chunk_bytes: usize,
    /// Rank the users of a chunk with rayon; `false` ranks on the calling thread.
    pub parallel: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            ks: DEFAULT_KS.to_vec(),
            protocol: Protocol::Full,
            exclude_history: true,
            max_chunk_bytes: 64 << 20,
            parallel: true,
        }
    }
}

/// One user to evaluate: the items it is known to have interacted with, and the held-out
/// items it should be recommended (one for leave-one-out, several for a temporal split).
#[derive(Clone, Debug, Default)]
pub struct EvalUser {
    /// Item ids; 0 (padding) is ignored, so a padded sequence may be passed as is.
    pub history: Vec<u32>,
    /// Item ids in 1..=n_items; duplicates count once.
    pub targets: Vec<u32>,
}

/// The protocol that produced a result, in words and as fields.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProtocolInfo {
    pub protocol: Protocol,
    pub exclude_history: bool,
    /// Catalogue size (item ids 1..=n_items).
    pub n_items: usize,
    pub description: String,
}

impl ProtocolInfo {
    pub fn new(protocol: Protocol, exclude_history: bool, n_items: usize) -> Self {
        let description = match protocol {
            Protocol::Full if exclude_history => format!(
                "full ranking over all {n_items} items, the user's history excluded \
                 (targets always kept); rank = number of candidates scoring strictly higher"
            ),
            Protocol::Full => format!(
                "full ranking over all {n_items} items, history items NOT excluded; \
                 rank = number of candidates scoring strictly higher"
            ),
            Protocol::Sampled { negatives, seed } => format!(
                "SAMPLED ranking: targets against {negatives} uniform negatives per user \
                 (seed {seed}) out of {n_items} items, never the user's targets{}; \
                 rank = number of candidates scoring strictly higher",
                if exclude_history {
                    " or history items"
                } else {
                    " (history items may be drawn)"
                }
            ),
        };
        ProtocolInfo {
            protocol,
            exclude_history,
            n_items,
            description,
        }
    }
}

/// Mean metrics over all evaluated users.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    pub protocol: ProtocolInfo,
    pub n_users: usize,
    /// Distinct targets over all users.
    pub n_targets: usize,
    /// Untruncated mean reciprocal rank.
    pub mrr: f64,
    /// One entry per cutoff, in the order of `EvalConfig::ks`.
    pub at_k: Vec<MetricsAtK>,
}

impl EvalReport {
    /// The metrics at cutoff `k`, if it was evaluated.
    pub fn at(&self, k: usize) -> Option<&MetricsAtK> {
        self.at_k.iter().find(|m| m.k == k)
    }

    /// A markdown table (one row per K) preceded by the protocol and followed by the MRR.
    pub fn to_markdown_table(&self) -> String {
        let mut out = format!(
            "Protocol: {}. Users: {}, targets: {}.\n\n",
            self.protocol.description, self.n_users, self.n_targets
        );
        out.push_str("| K | HR@K | Precision@K | Recall@K | NDCG@K | MRR@K | MAP@K |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
        for m in &self.at_k {
            writeln!(
                out,
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
                m.k, m.hit_rate, m.precision, m.recall, m.ndcg, m.mrr, m.map
            )
            .expect("writing to a String");
        }
        writeln!(out, "\nMRR (untruncated): {:.4}", self.mrr).expect("writing to a String");
        out
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::Invalid(format!("EvalReport to JSON: {e}")))
    }
}

/// A chunk of scores returned by the model's scorer: `[users of the chunk, n_items + 1]`,
/// row-major, column = item id (column 0, padding, is ignored).
pub trait ScoreRows {
    /// The values, after checking that they hold `rows × cols` scores.
    fn score_values(&self, rows: usize, cols: usize) -> Result<Cow<'_, [f32]>>;
}

impl ScoreRows for Tensor {
    fn score_values(&self, rows: usize, cols: usize) -> Result<Cow<'_, [f32]>> {
        if self.shape() != [rows, cols] {
            return Err(Error::shape(
                "evaluate",
                format!(
                    "scorer returned shape {:?}, expected [{rows}, {cols}]",
                    self.shape()
                ),
            ));
        }
        // An exhaustive match: a new device must decide here how its scores reach the host.
        match self.storage() {
            Storage::Cpu(values) => Ok(Cow::Borrowed(values.as_slice())),
            // One readback per batch of scored users; ranking runs on the host.
            Storage::Gpu(_) => Ok(Cow::Owned(self.to_vec())),
        }
    }
}

impl ScoreRows for Vec<f32> {
    fn score_values(&self, rows: usize, cols: usize) -> Result<Cow<'_, [f32]>> {
        borrowed_scores(self, rows, cols)
    }
}

impl ScoreRows for &[f32] {
    fn score_values(&self, rows: usize, cols: usize) -> Result<Cow<'_, [f32]>> {
        borrowed_scores(self, rows, cols)
    }
}

fn borrowed_scores(values: &[f32], rows: usize, cols: usize) -> Result<Cow<'_, [f32]>> {
    if values.len() != rows * cols {
        return Err(Error::shape(
            "evaluate",
            format!(
                "scorer returned {} values, expected {rows} × {cols}",
                values.len()
            ),
        ));
    }
    Ok(Cow::Borrowed(values))
}

/// Users per chunk so that a chunk of scores (`users × (n_items + 1)` f32) stays within
/// `max_chunk_bytes`; at least one user.
pub fn users_per_chunk(n_items: usize, max_chunk_bytes: usize) -> usize {
    let row_bytes = (n_items + 1) * std::mem::size_of::<f32>();
    (max_chunk_bytes / row_bytes).max(1)
}

/// Evaluates every user of `users` against a catalogue of items 1..=n_items.
///
/// `score` is called once per chunk with the positions in `users` of that chunk's users (in
/// order) and returns their scores, `[positions.len(), n_items + 1]` (a `Tensor`, a
/// `Vec<f32>` or a `&[f32]`). Errors: invalid config, users without targets, item ids out of
/// range, a scorer error or a wrong score shape, a NaN score, too few items left to sample.
pub fn evaluate<F, S>(
    n_items: usize,
    users: &[EvalUser],
    config: &EvalConfig,
    mut score: F,
) -> Result<EvalReport>
where
    F: FnMut(&[usize]) -> Result<S>,
    S: ScoreRows,
{
    validate(n_items, users, config)?;
    let columns = n_items + 1;
    let chunk_users = users_per_chunk(n_items, config.max_chunk_bytes);

    let mut sums = vec![MetricsAtK::default(); config.ks.len()];
    let mut mrr_sum = 0.0;
    let mut n_targets = 0;
    for chunk_start in (0..users.len()).step_by(chunk_users) {
        let chunk_end = (chunk_start + chunk_users).min(users.len());
        let positions: Vec<usize> = (chunk_start..chunk_end).collect();
        let scored = score(&positions)?;
        let scores = scored.score_values(positions.len(), columns)?;

        let rank_user = |scratch: &mut Vec<f32>, position: usize, row: &[f32]| {
            user_ranks(row, &users[position], position, config, scratch)
        };
        let ranks: Vec<Result<Vec<usize>>> =
            if config.parallel && scores.len() >= PARALLEL_MIN_ELEMENTS {
                scores
                    .par_chunks_exact(columns)
                    .zip(chunk_start..chunk_end)
                    .map_init(Vec::new, |scratch, (row, position)| {
                        rank_user(scratch, position, row)
                    })
                    .collect()
            } else {
                let mut scratch = Vec::new();
                scores
                    .chunks_exact(columns)
                    .zip(chunk_start..chunk_end)
                    .map(|(row, position)| rank_user(&mut scratch, position, row))
                    .collect()
            };

        for user_ranks in ranks {
            let user_ranks = user_ranks?;
            n_targets += user_ranks.len();
            mrr_sum += reciprocal_rank(&user_ranks);
            for (sum, &k) in sums.iter_mut().zip(&config.ks) {
                let m = metrics_at_k(&user_ranks, k)?;
                sum.hit_rate += m.hit_rate;
                sum.precision += m.precision;
                sum.recall += m.recall;
                sum.ndcg += m.ndcg;
                sum.mrr += m.mrr;
                sum.map += m.map;
            }
        }
    }

    let n_users = users.len() as f64;
    let at_k = sums
        .iter()
        .zip(&config.ks)
        .map(|(sum, &k)| MetricsAtK {
            k,
            hit_rate: sum.hit_rate / n_users,
            precision: sum.precision / n_users,
            recall: sum.recall / n_users,
            ndcg: sum.ndcg / n_users,
            mrr: sum.mrr / n_users,
            map: sum.map / n_users,
        })
        .collect();
    Ok(EvalReport {
        protocol: ProtocolInfo::new(config.protocol, config.exclude_history, n_items),
        n_users: users.len(),
        n_targets,
        mrr: mrr_sum / n_users,
        at_k,
    })
}

/// The checks that make every later step infallible except for the scores themselves.
fn validate(n_items: usize, users: &[EvalUser], config: &EvalConfig) -> Result<()> {
    if n_items == 0 {
        return Err(Error::Invalid("evaluate: empty catalogue".into()));
    }
    if users.is_empty() {
        return Err(Error::Invalid("evaluate: no users".into()));
    }
    if config.ks.is_empty() || config.ks.contains(&0) {
        return Err(Error::Invalid(format!(
            "evaluate: cutoffs must be ≥ 1 and at least one, got {:?}",
            config.ks
        )));
    }
    if let Protocol::Sampled { negatives: 0, .. } = config.protocol {
        return Err(Error::Invalid(
            "evaluate: a sampled protocol needs at least one negative".into(),
        ));
    }
    for (position, user) in users.iter().enumerate() {
        if user.targets.is_empty() {
            return Err(Error::Invalid(format!(
                "evaluate: user at position {position} has no target item"
            )));
        }
        if let Some(&bad) = user
            .targets
            .iter()
            .find(|&&t| t == 0 || t as usize > n_items)
        {
            return Err(Error::Invalid(format!(
                "evaluate: user at position {position} has target {bad} outside 1..={n_items}"
            )));
        }
        if let Some(&bad) = user.history.iter().find(|&&h| h as usize > n_items) {
            return Err(Error::Invalid(format!(
                "evaluate: user at position {position} has history item {bad} outside 0..={n_items}"
            )));
        }
    }
    Ok(())
}

/// The ascending ranks of one user's distinct targets under `config.protocol`. `scratch` is a
/// reusable buffer for the masked copy of the row.
fn user_ranks(
    row: &[f32],
    user: &EvalUser,
    position: usize,
    config: &EvalConfig,
    scratch: &mut Vec<f32>,
) -> Result<Vec<usize>> {
    let mut targets = user.targets.clone();
    targets.sort_unstable();
    targets.dedup();
    let scored_targets: Vec<(u32, f32)> = targets.iter().map(|&t| (t, row[t as usize])).collect();
    let has_nan = row[1..].iter().fold(false, |any, s| any | s.is_nan());
    if has_nan {
        return Err(Error::Invalid(format!(
            "evaluate: the scores of the user at position {position} contain NaN"
        )));
    }
    match config.protocol {
        Protocol::Full => {
            // Excluded items, padding and the targets themselves become −∞ in a copy of the
            // row: −∞ is never strictly higher than a target, so they never count.
            scratch.clear();
            scratch.extend_from_slice(row);
            scratch[0] = f32::NEG_INFINITY;
            if config.exclude_history {
                for &item in &user.history {
                    scratch[item as usize] = f32::NEG_INFINITY;
                }
            }
            for &target in &targets {
                scratch[target as usize] = f32::NEG_INFINITY;
            }
            target_ranks(&scored_targets, scratch)
        }
        Protocol::Sampled { negatives, seed } => {
            let n_items = row.len() - 1;
            let sampled = sample_negatives(
                n_items,
                user,
                position,
                negatives,
                seed,
                config.exclude_history,
            )?;
            scratch.clear();
            scratch.extend(sampled.iter().map(|&item| row[item as usize]));
            target_ranks(&scored_targets, scratch)
        }
    }
}

/// The negatives of the sampled protocol for the user at `position`: `negatives` distinct
/// items drawn uniformly from 1..=n_items, never one of the user's targets nor (with
/// `exclude_history`) of its history. The draw depends only on (seed, position), so it is
/// the same whatever the chunking or the threads. Errors when too few items are left.
pub fn sample_negatives(
    n_items: usize,
    user: &EvalUser,
    position: usize,
    negatives: usize,
    seed: u64,
    exclude_history: bool,
) -> Result<Vec<u32>> {
    let mut forbidden: Vec<u32> = user.targets.clone();
    if exclude_history {
        forbidden.extend(&user.history);
    }
    forbidden.retain(|&item| item != 0 && item as usize <= n_items);
    forbidden.sort_unstable();
    forbidden.dedup();
    let available = n_items - forbidden.len();
    if available < negatives {
        return Err(Error::Invalid(format!(
            "evaluate: the user at position {position} leaves {available} items to sample, \
             {negatives} negatives asked"
        )));
    }
    let mut rng = Rng::new(seed ^ (position as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut chosen = HashSet::with_capacity(negatives);
    let mut sampled = Vec::with_capacity(negatives);
    while sampled.len() < negatives {
        let item = 1 + rng.below(n_items as u64) as u32;
        if forbidden.binary_search(&item).is_err() && chosen.insert(item) {
            sampled.push(item);
        }
    }
    Ok(sampled)
}
