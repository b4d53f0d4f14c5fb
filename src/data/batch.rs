//! Training batches for next-item models, with sampled negatives.
//!
//! Two kinds of examples from a training sequence `s` (oldest first), `n` = `max_len`:
//! - `Examples::EveryPosition` (SASRec): one example per sequence; input `s[..len-1]`, its
//!   latest n items left-padded with 0; positives `s[1..]` aligned with it, so position p
//!   predicts the item after input p. Sequences shorter than 2 give no example.
//! - `Examples::PerPrefix` (GRU4Rec, Caser): one example per target `s[t]`, t ≥ 1; input
//!   the last n items before it, left-padded; the positive sits at the last position n-1 and
//!   every other position is padding.
//!
//! Every real target position gets `negatives` sampled items, uniformly or by popularity (an
//! alias table over the training counts), never equal to that position's positive and, with
//! `exclude_user_items`, never any item of the user's training sequence (the peer's BCE
//! recipe), by rejection.
//!
//! Width: by default every batch is n wide. With `trim_padding`, a batch is cut to its longest
//! input (the left padding columns that every row has are dropped; the latest item stays in
//! the last column), which changes nothing for a model whose output does not depend on the
//! padding width. With `bucket_by_length` as well, the shuffled examples are sorted by length
//! within windows of `BUCKET_WINDOW` batches before they are cut into batches, and the batches
//! are shuffled again: batches then hold similar lengths, so a sparse data set (Amazon
//! Beauty: median 6 items, n = 50) trains on narrow batches. Bucketing changes which examples
//! share a batch, hence the training trajectory; it is opt-in.
//!
//! Reproducibility: the epoch's shuffle comes from `(seed, epoch)` and each batch's samples
//! from `(seed, epoch, batch index)`, so batches are identical whatever the number of rayon
//! threads building them.

use rayon::prelude::*;

use crate::data::split::TrainSequence;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

/// Below this many output ids an epoch is built on the calling thread.
const PARALLEL_MIN_IDS: usize = 1 << 15;
/// Batches per sorting window of `bucket_by_length`: wide enough to find similar lengths,
/// narrow enough that an epoch's batches still mix users from the whole data set.
const BUCKET_WINDOW: usize = 64;

/// Which examples a sequence gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Examples {
    /// One example per sequence, a target at every position (SASRec).
    EveryPosition,
    /// One example per target, the target at the last position (GRU4Rec, Caser).
    PerPrefix,
}

/// How negatives are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Sampling {
    /// Uniform over items 1..=num_items.
    Uniform,
    /// Proportional to the item's count in the training sequences (never-seen items never).
    Popularity,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchConfig {
    /// n: the input length.
    pub max_len: usize,
    pub batch_size: usize,
    pub examples: Examples,
    /// k: negatives per real target position (0 for full-softmax training).
    pub negatives: usize,
    pub sampling: Sampling,
    /// Also reject any item of the user's training sequence as a negative.
    pub exclude_user_items: bool,
    pub seed: u64,
}

/// A batch a model takes directly. B = examples in the batch (the last batch of an epoch may
/// be smaller), n = `max_len`, k = `negatives`. Padding is id 0 everywhere.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Item ids `[B, n]`, left-padded.
    pub inputs: Ids,
    /// Behaviour ids `[B, n]` of the input items.
    pub behaviours: Ids,
    /// Target item ids `[B, n]`: what position p should predict; 0 where there is none.
    pub positives: Ids,
    /// Sampled negatives `[B, n, k]`; 0 where there is no target.
    pub negatives: Ids,
    /// User ids `[B]`.
    pub users: Ids,
    /// `[B, n]`: 1 where `positives` is a real target, 0 elsewhere.
    pub weights: Tensor,
}

/// Vose's alias table: draws index i with probability `weights[i] / sum` in O(1).
#[derive(Clone, Debug)]
pub struct AliasTable {
    /// Per column: (keep threshold, alias). A 32-bit coin below the threshold keeps the
    /// column (threshold = probability · 2^32), otherwise the alias is drawn. One array, so
    /// a draw touches one cache line.
    columns: Vec<(u32, u32)>,
}

impl AliasTable {
    pub fn new(weights: &[f64]) -> Result<AliasTable> {
        let total: f64 = weights.iter().sum();
        if weights.is_empty()
            || !total.is_finite()
            || total <= 0.0
            || weights.iter().any(|&w| w < 0.0 || !w.is_finite())
        {
            return Err(Error::Invalid(
                "AliasTable: weights must be finite, non-negative and not all zero".to_string(),
            ));
        }
        let n = weights.len();
        // Scaled so that the mean column holds exactly 1.
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut keep = vec![0.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            keep[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers hold ≈1 up to rounding; a zero-weight leftover must still never be drawn.
        let heaviest = (0..n)
            .max_by(|&a, &b| weights[a].total_cmp(&weights[b]))
            .unwrap_or(0);
        for i in small.into_iter().chain(large) {
            if weights[i] > 0.0 {
                keep[i] = 1.0;
            } else {
                keep[i] = 0.0;
                alias[i] = heaviest as u32;
            }
        }
        let threshold = |p: f64| (p * 4_294_967_296.0).clamp(0.0, u32::MAX as f64) as u32;
        let columns = keep
            .iter()
            .zip(alias)
            .map(|(&p, a)| (threshold(p), a))
            .collect();
        Ok(AliasTable { columns })
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        self.sample_bits(rng.next_u64())
    }

    /// A draw from 64 random bits: the high half picks the column (multiply-shift), the low
    /// half is the coin.
    #[inline]
    pub fn sample_bits(&self, bits: u64) -> usize {
        let column = (((bits >> 32) * self.columns.len() as u64) >> 32) as usize;
        let (threshold, alias) = self.columns[column];
        if (bits as u32) < threshold {
            column
        } else {
            alias as usize
        }
    }
}

/// One example: the target index `end` in training sequence `sequence`.
#[derive(Clone, Copy, Debug)]
struct Example {
    sequence: u32,
    end: u32,
}

/// Builds the training batches of every epoch from the training sequences of a split.
#[derive(Clone, Debug)]
pub struct Batcher {
    sequences: Vec<TrainSequence>,
    /// Sorted distinct items of each training sequence (for `exclude_user_items`).
    user_items: Vec<Vec<u32>>,
    examples: Vec<Example>,
    num_items: usize,
    popularity: Option<AliasTable>,
    /// Which items the sampler can draw (item 0 never; with popularity sampling, only items
    /// with training interactions; never those of `exclude_from_negatives`).
    sampled: Vec<bool>,
    /// Bitmap of the items `exclude_from_negatives` keeps out of every negative.
    never_negative: Vec<u64>,
    config: BatchConfig,
    trim_padding: bool,
    bucket_by_length: bool,
}

impl Batcher {
    /// Checks the sequences and the config, counts popularity and lists the examples.
    pub fn new(train: &[TrainSequence], num_items: usize, config: BatchConfig) -> Result<Batcher> {
        if config.max_len == 0 || config.batch_size == 0 {
            return Err(Error::Invalid(format!(
                "Batcher: max_len ({}) and batch_size ({}) must be at least 1",
                config.max_len, config.batch_size
            )));
        }
        let mut counts = vec![0.0f64; num_items + 1];
        for s in train {
            if s.behaviours.len() != s.items.len() {
                return Err(Error::Invalid(format!(
                    "Batcher: user {} has {} items but {} behaviours",
                    s.user,
                    s.items.len(),
                    s.behaviours.len()
                )));
            }
            for &item in &s.items {
                if item == 0 || item as usize > num_items {
                    return Err(Error::Invalid(format!(
                        "Batcher: user {} has item {item} outside 1..={num_items}",
                        s.user
                    )));
                }
                counts[item as usize] += 1.0;
            }
        }
        let user_items: Vec<Vec<u32>> = train
            .iter()
            .map(|s| {
                let mut items = s.items.clone();
                items.sort_unstable();
                items.dedup();
                items
            })
            .collect();

        let popularity = match config.sampling {
            Sampling::Popularity if config.negatives > 0 => Some(AliasTable::new(&counts)?),
            _ => None,
        };
        let sampled: Vec<bool> = match config.sampling {
            Sampling::Uniform => (0..=num_items).map(|i| i > 0).collect(),
            Sampling::Popularity => counts.iter().map(|&c| c > 0.0).collect(),
        };

        let mut examples = Vec::new();
        for (index, s) in train.iter().enumerate() {
            let len = s.items.len() as u32;
            if len < 2 {
                continue;
            }
            match config.examples {
                Examples::EveryPosition => examples.push(Example {
                    sequence: index as u32,
                    end: len - 1,
                }),
                Examples::PerPrefix => examples.extend((1..len).map(|end| Example {
                    sequence: index as u32,
                    end,
                })),
            }
        }
        let batcher = Batcher {
            sequences: train.to_vec(),
            user_items,
            examples,
            num_items,
            popularity,
            sampled,
            never_negative: vec![0u64; (num_items + 1).div_ceil(64)],
            config,
            trim_padding: false,
            bucket_by_length: false,
        };
        batcher.check_negatives_exist()?;
        Ok(batcher)
    }

    /// Keeps `items` out of the sampled negatives: the cold-start study's held-out items are
    /// unknown at training time, not items the user passed over.
    pub fn exclude_from_negatives(mut self, items: &[u32]) -> Result<Batcher> {
        for &item in items {
            if item == 0 || item as usize > self.num_items {
                return Err(Error::Invalid(format!(
                    "Batcher: item {item} to exclude is outside 1..={}",
                    self.num_items
                )));
            }
            self.never_negative[item as usize / 64] |= 1 << (item % 64);
            self.sampled[item as usize] = false;
        }
        self.check_negatives_exist()?;
        Ok(self)
    }

    /// Rejection sampling must be able to succeed for every user and positive.
    fn check_negatives_exist(&self) -> Result<()> {
        if self.config.negatives == 0 {
            return Ok(());
        }
        let support_size = self.sampled.iter().filter(|&&s| s).count();
        for (s, items) in self.sequences.iter().zip(&self.user_items) {
            let allowed = if self.config.exclude_user_items {
                support_size - items.iter().filter(|&&i| self.sampled[i as usize]).count()
            } else {
                support_size.saturating_sub(1)
            };
            if allowed == 0 && s.items.len() >= 2 {
                return Err(Error::Invalid(format!(
                    "Batcher: no item can be a negative for user {} ({support_size} samplable items)",
                    s.user
                )));
            }
        }
        Ok(())
    }

    /// Cuts each batch to its longest input instead of `max_len` (see the header).
    pub fn trim_padding(mut self, trim: bool) -> Batcher {
        self.trim_padding = trim;
        self
    }

    /// Batches of similar lengths (see the header); implies `trim_padding`.
    pub fn bucket_by_length(mut self, bucket: bool) -> Batcher {
        self.bucket_by_length = bucket;
        self.trim_padding |= bucket;
        self
    }

    /// The input length of an example: its items before the target, at most `max_len`.
    fn input_len(&self, example_id: u32) -> usize {
        (self.examples[example_id as usize].end as usize).min(self.config.max_len)
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    pub fn num_examples(&self) -> usize {
        self.examples.len()
    }

    pub fn num_batches(&self) -> usize {
        self.examples.len().div_ceil(self.config.batch_size)
    }

    /// All batches of epoch `epoch`: the examples shuffled, cut into batches, each filled
    /// with its negatives. Built in parallel; the result does not depend on the thread count.
    pub fn epoch(&self, epoch: u64) -> Result<Vec<Batch>> {
        let mut order: Vec<u32> = (0..self.examples.len() as u32).collect();
        let mut shuffler = Rng::new(stream_seed(self.config.seed, epoch, u64::MAX));
        shuffler.shuffle(&mut order);
        if self.bucket_by_length {
            for window in order.chunks_mut(BUCKET_WINDOW * self.config.batch_size) {
                window.sort_by_key(|&example| self.input_len(example));
            }
        }
        let mut chunks: Vec<&[u32]> = order.chunks(self.config.batch_size).collect();
        if self.bucket_by_length {
            shuffler.shuffle(&mut chunks);
        }
        let ids_per_epoch = self.examples.len() * self.config.max_len * (2 + self.config.negatives);
        let build = |(index, chunk): (usize, &&[u32])| {
            self.batch(
                chunk,
                Rng::new(stream_seed(self.config.seed, epoch, index as u64)),
            )
        };
        if ids_per_epoch < PARALLEL_MIN_IDS {
            chunks.iter().enumerate().map(build).collect()
        } else {
            chunks.par_iter().enumerate().map(build).collect()
        }
    }

    /// The batch of the given examples, negatives drawn from `rng`.
    fn batch(&self, example_ids: &[u32], rng: Rng) -> Result<Batch> {
        let mut rng = HalfWords { rng, spare: None };
        let n = if self.trim_padding {
            let longest = example_ids.iter().map(|&e| self.input_len(e)).max();
            longest.unwrap_or(1).max(1)
        } else {
            self.config.max_len
        };
        let (b, k) = (example_ids.len(), self.config.negatives);
        let mut inputs = vec![0u32; b * n];
        let mut behaviours = vec![0u32; b * n];
        let mut positives = vec![0u32; b * n];
        let mut negatives = vec![0u32; b * n * k];
        let mut users = vec![0u32; b];
        let mut weights = vec![0f32; b * n];
        // The user's items (and the never-negative items) as a bitmap: O(1) rejection tests.
        let mut excluded = self.never_negative.clone();

        for (row, &example_id) in example_ids.iter().enumerate() {
            let Example { sequence, end } = self.examples[example_id as usize];
            let seq = &self.sequences[sequence as usize];
            let end = end as usize;
            let start = end.saturating_sub(n);
            let offset = n - (end - start); // left padding
            let cells = row * n + offset..(row + 1) * n;
            users[row] = seq.user;
            inputs[cells.clone()].copy_from_slice(&seq.items[start..end]);
            behaviours[cells.clone()].copy_from_slice(&seq.behaviours[start..end]);
            match self.config.examples {
                Examples::EveryPosition => {
                    positives[cells.clone()].copy_from_slice(&seq.items[start + 1..=end])
                }
                Examples::PerPrefix => positives[(row + 1) * n - 1] = seq.items[end],
            }
            if k == 0 {
                for cell in cells {
                    weights[cell] = (positives[cell] != 0) as u8 as f32;
                }
                continue;
            }
            let user_items = &self.user_items[sequence as usize];
            if self.config.exclude_user_items {
                for &item in user_items {
                    excluded[item as usize / 64] |= 1 << (item % 64);
                }
            }
            for cell in cells {
                let positive = positives[cell];
                if positive == 0 {
                    continue;
                }
                weights[cell] = 1.0;
                for slot in &mut negatives[cell * k..(cell + 1) * k] {
                    *slot = loop {
                        let candidate = match &self.popularity {
                            Some(table) => table.sample_bits(rng.next_u64()) as u32,
                            None => {
                                1 + ((rng.next_u32() as u64 * self.num_items as u64) >> 32) as u32
                            }
                        };
                        let is_excluded =
                            excluded[candidate as usize / 64] & (1 << (candidate % 64)) != 0;
                        if candidate != positive && !is_excluded {
                            break candidate;
                        }
                    };
                }
            }
            if self.config.exclude_user_items {
                for &item in user_items {
                    excluded[item as usize / 64] = self.never_negative[item as usize / 64];
                }
            }
        }
        Ok(Batch {
            inputs: Ids::from_vec(&[b, n], inputs)?,
            behaviours: Ids::from_vec(&[b, n], behaviours)?,
            positives: Ids::from_vec(&[b, n], positives)?,
            negatives: Ids::from_vec(&[b, n, k], negatives)?,
            users: Ids::from_vec(&[b], users)?,
            weights: Tensor::from_vec(&[b, n], weights)?,
        })
    }
}

/// A seed for stream `stream` of epoch `epoch`: the SplitMix output of the mixed inputs.
fn stream_seed(seed: u64, epoch: u64, stream: u64) -> u64 {
    let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.next_u64() ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed69)
}

/// 32 random bits at a time from the 64-bit generator: half the generator calls for uniform
/// negatives (the multiply-shift bias, at most num_items / 2^32, is negligible).
struct HalfWords {
    rng: Rng,
    spare: Option<u32>,
}

impl HalfWords {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        match self.spare.take() {
            Some(bits) => bits,
            None => {
                let bits = self.rng.next_u64();
                self.spare = Some(bits as u32);
                (bits >> 32) as u32
            }
        }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}
