//! Preprocessing: from a loaded `Dataset` (interactions in file order) to per-user
//! chronological sequences with contiguous ids.
//!
//! The steps, in this order:
//! 1. implicit feedback: keep every interaction, or only those rated at least a threshold;
//! 2. per user, a *stable* sort by timestamp: equal timestamps keep their file order (the
//!    order of RecBole and of the PyTorch peer); order-only files keep their file order;
//! 3. optional dedup: the first (chronological) occurrence of a (user, item) pair is kept;
//! 4. optional k-core, iterated until stable, together with `min_sequence_len` per user;
//! 5. re-indexing: surviving items become 1..=n and users 1..=m (0 = padding), in ascending
//!    order of their dataset ids, so that nothing changes when nothing was filtered.
//!
//! Number fields of side information are turned into tokens by quantile buckets
//! (`bucketize`) or standardised (`standardize`).

use std::collections::HashSet;

use crate::data::{Dataset, Field, FieldKind, FieldValues, Vocab};
use crate::error::{Error, Result};

/// Which interactions count as positive implicit feedback.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Implicit {
    /// Every interaction is a positive (the peer's and RecBole's ml-100k protocol).
    All,
    /// Only interactions with a rating ≥ the threshold; an interaction without a rating is
    /// an error, since it cannot be judged.
    RatingAtLeast(f32),
}

/// What `sequences` keeps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreprocessConfig {
    pub implicit: Implicit,
    /// Keep only the first occurrence of each (user, item) pair.
    pub dedup: bool,
    /// `(min per user, min per item)`: drop users and items with fewer interactions, again
    /// and again until no count changes.
    pub k_core: Option<(usize, usize)>,
    /// Drop users with fewer interactions (after the steps above; iterated with the k-core).
    pub min_sequence_len: usize,
}

impl Default for PreprocessConfig {
    /// Everything kept: the peer's protocol.
    fn default() -> Self {
        PreprocessConfig {
            implicit: Implicit::All,
            dedup: false,
            k_core: None,
            min_sequence_len: 0,
        }
    }
}

/// A two-way map between the contiguous ids of the sequences (1..=len, 0 = padding) and the
/// ids of the `Dataset` they came from. Kept in checkpoints so that predictions can be printed
/// with the original names and side information looked up.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    /// `to_dataset[new] = dataset id`; `to_dataset[0] = 0`.
    to_dataset: Vec<u32>,
    /// `from_dataset[dataset id] = new`, 0 when the dataset id was filtered out.
    from_dataset: Vec<u32>,
}

impl IdMap {
    /// The map that keeps, in ascending order, the dataset ids `kept[id] == true` (index 0 is
    /// padding and ignored).
    fn from_kept(kept: &[bool]) -> IdMap {
        let mut to_dataset = vec![0];
        let mut from_dataset = vec![0; kept.len()];
        for (dataset_id, &keep) in kept.iter().enumerate().skip(1) {
            if keep {
                from_dataset[dataset_id] = to_dataset.len() as u32;
                to_dataset.push(dataset_id as u32);
            }
        }
        IdMap {
            to_dataset,
            from_dataset,
        }
    }

    /// Number of real ids (not counting padding).
    pub fn len(&self) -> usize {
        self.to_dataset.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dataset id of a new id; `None` for padding or out of range.
    pub fn to_dataset(&self, id: u32) -> Option<u32> {
        match id {
            0 => None,
            _ => self.to_dataset.get(id as usize).copied(),
        }
    }

    /// The new id of a dataset id; `None` when it was filtered out or is unknown.
    pub fn from_dataset(&self, dataset_id: u32) -> Option<u32> {
        match self.from_dataset.get(dataset_id as usize) {
            Some(&id) if id != 0 => Some(id),
            _ => None,
        }
    }

    /// The external name (as in the file) of a new id, through the dataset's vocabulary.
    pub fn name<'a>(&self, id: u32, vocab: &'a Vocab) -> Option<&'a str> {
        self.to_dataset(id)
            .filter(|&d| (d as usize) <= vocab.len())
            .map(|d| vocab.name(d))
    }

    /// Rows indexed by dataset id re-ordered to be indexed by new id (row 0 = padding row of
    /// the input): used to align side-information tables with the re-indexed items.
    pub fn reindex_rows<T: Clone>(&self, rows: &[T]) -> Result<Vec<T>> {
        self.to_dataset
            .iter()
            .map(|&d| {
                rows.get(d as usize).cloned().ok_or_else(|| {
                    Error::Invalid(format!(
                        "reindex_rows: table has {} rows, dataset id {d} needs more",
                        rows.len()
                    ))
                })
            })
            .collect()
    }
}

/// One event of a user's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// New item id (1..=n).
    pub item: u32,
    /// Behaviour id, as in `Dataset::behaviours` (not re-indexed).
    pub behaviour: u32,
    pub timestamp: Option<i64>,
    /// Index of the interaction in `Dataset::interactions`: says which file part (published
    /// train or test) it came from.
    pub position: usize,
}

/// Per-user chronological sequences after preprocessing.
#[derive(Clone, Debug)]
pub struct Sequences {
    /// `by_user[u]` is user `u`'s sequence, oldest first; `by_user[0]` is empty (padding).
    pub by_user: Vec<Vec<Step>>,
    pub users: IdMap,
    pub items: IdMap,
    /// True when users are anonymous sessions.
    pub sessions: bool,
    /// `Dataset::published_test_start`: interactions at `position` ≥ this come from the
    /// publisher's test file.
    pub published_test_start: Option<usize>,
}

impl Sequences {
    /// Number of users (not counting padding).
    pub fn num_users(&self) -> usize {
        self.users.len()
    }

    /// Number of items (not counting padding); item ids are 1..=num_items.
    pub fn num_items(&self) -> usize {
        self.items.len()
    }

    /// `(user id, sequence)` for every real user, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[Step])> {
        self.by_user
            .iter()
            .enumerate()
            .skip(1)
            .map(|(u, s)| (u as u32, s.as_slice()))
    }

    /// The item ids of user `user`'s sequence.
    pub fn items_of(&self, user: u32) -> Vec<u32> {
        self.by_user
            .get(user as usize)
            .map(|s| s.iter().map(|step| step.item).collect())
            .unwrap_or_default()
    }

    /// Total number of interactions kept.
    pub fn num_interactions(&self) -> usize {
        self.by_user.iter().map(Vec::len).sum()
    }
}

/// Per-user chronological sequences of `dataset`, filtered and re-indexed as `config` says.
pub fn sequences(dataset: &Dataset, config: &PreprocessConfig) -> Result<Sequences> {
    let num_dataset_users = dataset.users.len();
    let num_dataset_items = dataset.items.len();

    // 1. Group by user in file order, keeping the implicit positives. The time-or-not check
    // is global: a mix would make "chronological" meaningless.
    let timed = dataset.interactions.first().map(|i| i.timestamp.is_some());
    let mut by_user: Vec<Vec<Step>> = vec![Vec::new(); num_dataset_users + 1];
    for (position, interaction) in dataset.interactions.iter().enumerate() {
        if interaction.timestamp.is_some() != timed.unwrap_or(false) {
            return Err(Error::Invalid(format!(
                "interaction {position}: some interactions have a timestamp and some do not"
            )));
        }
        let (user, item) = (interaction.user as usize, interaction.item as usize);
        if user == 0 || user > num_dataset_users || item == 0 || item > num_dataset_items {
            return Err(Error::Invalid(format!(
                "interaction {position}: user {user} / item {item} outside the vocabularies \
                 ({num_dataset_users} users, {num_dataset_items} items)"
            )));
        }
        if let Implicit::RatingAtLeast(threshold) = config.implicit {
            let Some(rating) = interaction.rating else {
                return Err(Error::Invalid(format!(
                    "interaction {position} has no rating, but the config asks for ratings ≥ {threshold}"
                )));
            };
            if rating < threshold {
                continue;
            }
        }
        by_user[user].push(Step {
            item: interaction.item,
            behaviour: interaction.behaviour,
            timestamp: interaction.timestamp,
            position,
        });
    }

    // 2. Chronological order; `sort_by_key` is stable, so ties keep the file order.
    for steps in &mut by_user {
        steps.sort_by_key(|s| s.timestamp);
    }

    // 3. Dedup: the first occurrence in chronological order wins.
    if config.dedup {
        for steps in &mut by_user {
            let mut seen = HashSet::with_capacity(steps.len());
            steps.retain(|s| seen.insert(s.item));
        }
    }

    // 4. k-core and minimum length, iterated until nothing is removed.
    let (min_user, min_item) = config.k_core.unwrap_or((0, 0));
    let min_user = min_user.max(config.min_sequence_len);
    loop {
        let mut removed = false;
        for steps in &mut by_user {
            if !steps.is_empty() && steps.len() < min_user {
                steps.clear();
                removed = true;
            }
        }
        if min_item > 1 {
            let mut item_counts = vec![0usize; num_dataset_items + 1];
            for s in by_user.iter().flatten() {
                item_counts[s.item as usize] += 1;
            }
            for steps in &mut by_user {
                let before = steps.len();
                steps.retain(|s| item_counts[s.item as usize] >= min_item);
                removed |= steps.len() != before;
            }
        }
        if !removed || config.k_core.is_none() {
            break;
        }
    }

    // 5. Contiguous ids in ascending dataset-id order.
    let kept_users: Vec<bool> = by_user.iter().map(|s| !s.is_empty()).collect();
    let mut kept_items = vec![false; num_dataset_items + 1];
    for s in by_user.iter().flatten() {
        kept_items[s.item as usize] = true;
    }
    let users = IdMap::from_kept(&kept_users);
    let items = IdMap::from_kept(&kept_items);
    let mut sequences = vec![Vec::new()];
    for mut steps in by_user.into_iter().filter(|s| !s.is_empty()) {
        for s in &mut steps {
            s.item = items.from_dataset[s.item as usize];
        }
        sequences.push(steps);
    }
    Ok(Sequences {
        by_user: sequences,
        users,
        items,
        sessions: dataset.sessions,
        published_test_start: dataset.published_test_start,
    })
}

/// Quantile buckets of a number field: tokens 1..=buckets (0 = NaN, i.e. missing) and the
/// `buckets - 1` inner edges, so that other values can be bucketized alike (`bucket_of`).
/// Edge `j` is the `j / buckets` quantile of the non-NaN values; a value goes to the bucket
/// `1 + number of edges ≤ value`. Heavy ties can leave some buckets empty.
pub fn bucketize(values: &[f32], buckets: usize) -> (Vec<u32>, Vec<f32>) {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f32::total_cmp);
    let edges: Vec<f32> = if sorted.is_empty() || buckets < 2 {
        Vec::new()
    } else {
        (1..buckets)
            .map(|j| sorted[j * sorted.len() / buckets])
            .collect()
    };
    let tokens = values.iter().map(|&v| bucket_of(v, &edges)).collect();
    (tokens, edges)
}

/// The bucket token (1..=edges.len()+1) of `value` under `edges`; 0 for NaN.
pub fn bucket_of(value: f32, edges: &[f32]) -> u32 {
    if value.is_nan() {
        return 0;
    }
    1 + edges.partition_point(|&edge| edge <= value) as u32
}

/// Standardised values `(v - mean) / std` over the non-NaN values, NaN → 0 (the mean); also
/// returns `(mean, std)`. A constant field has std 0 and becomes all zeros.
pub fn standardize(values: &[f32]) -> (Vec<f32>, f32, f32) {
    let present: Vec<f64> = values
        .iter()
        .filter(|v| !v.is_nan())
        .map(|&v| v as f64)
        .collect();
    if present.is_empty() {
        return (vec![0.0; values.len()], 0.0, 0.0);
    }
    let mean = present.iter().sum::<f64>() / present.len() as f64;
    let var = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / present.len() as f64;
    let std = var.sqrt();
    let scaled = values
        .iter()
        .map(|&v| {
            if v.is_nan() || std == 0.0 {
                0.0
            } else {
                ((v as f64 - mean) / std) as f32
            }
        })
        .collect();
    (scaled, mean as f32, std as f32)
}

/// A `Number` field turned into a `Token` field of quantile buckets (row 0, the padding row,
/// stays token 0). Token names are the bucket number and range, e.g. "2:[18,25)".
pub fn bucketize_field(field: &Field, buckets: usize) -> Result<Field> {
    let FieldValues::Number(values) = &field.values else {
        return Err(Error::Invalid(format!(
            "bucketize_field: field `{}` is not a number field",
            field.name
        )));
    };
    if values.is_empty() {
        return Err(Error::Invalid(format!(
            "bucketize_field: field `{}` has no rows",
            field.name
        )));
    }
    // Row 0 is padding and must not move the quantiles.
    let (mut tokens, edges) = bucketize(&values[1..], buckets);
    tokens.insert(0, 0);
    let mut vocab = Vocab::new();
    for bucket in 0..=edges.len() {
        let low = if bucket == 0 {
            "-inf".to_string()
        } else {
            edges[bucket - 1].to_string()
        };
        let high = edges
            .get(bucket)
            .map_or("inf".to_string(), |e| e.to_string());
        // The number keeps names distinct when tied edges give equal ranges.
        vocab.intern(&format!("{}:[{low},{high})", bucket + 1));
    }
    Ok(Field {
        name: field.name.clone(),
        kind: FieldKind::Token,
        vocab,
        values: FieldValues::Token(tokens),
    })
}

/// The latest `n` items of `seq`, left-padded with 0 to length `n`.
pub fn left_pad(seq: &[u32], n: usize) -> Vec<u32> {
    let kept = &seq[seq.len().saturating_sub(n)..];
    let mut padded = vec![0; n - kept.len()];
    padded.extend_from_slice(kept);
    padded
}
