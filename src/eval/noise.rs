//! Evaluation-time input noise: random catalogue items inserted into what the model sees.
//!
//! For a history of length `len` and a fraction `f`, ⌈f·len⌉ items drawn uniformly from
//! 1..=n_items are inserted at uniformly random positions (every arrangement of the noise
//! slots among the `len + k` positions is equally likely); the real items keep their order.
//! Only the model's input changes: targets and the excluded-history set stay as they were.
//! Each case draws from its own generator, seeded by the run seed and the case's index, so
//! the noise is reproducible and does not depend on how cases are batched or threaded.

use crate::rng::Rng;

/// The number of items inserted into a history of `len` items: ⌈fraction·len⌉.
pub fn noise_count(len: usize, fraction: f64) -> usize {
    if fraction <= 0.0 || len == 0 {
        return 0;
    }
    // The small tolerance keeps e.g. 0.1·30 = 3.0000000000000004 from rounding up to 4.
    (fraction * len as f64 - 1e-9).ceil().max(0.0) as usize
}

/// `history` (with its aligned `behaviours`, which may be empty) with ⌈fraction·len⌉
/// uniform random items of 1..=`n_items` inserted at random positions. An inserted item
/// takes the behaviour of the real item after it (or before it, at the end), so behaviour
/// ids stay valid. `case` selects the case's own random stream.
pub fn insert_noise(
    history: &[u32],
    behaviours: &[u32],
    fraction: f64,
    n_items: usize,
    seed: u64,
    case: usize,
) -> (Vec<u32>, Vec<u32>) {
    let k = noise_count(history.len(), fraction);
    if k == 0 || n_items == 0 {
        return (history.to_vec(), behaviours.to_vec());
    }
    // SplitMix64 scrambles its state, so distinct odd multipliers keep (seed, case) streams apart.
    let mut rng = Rng::new(
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (case as u64)
                .wrapping_add(1)
                .wrapping_mul(0xd1b5_4a32_d192_ed03)
            ^ 0x6e01_5e00,
    );
    let total = history.len() + k;
    // Choose the k noise slots by a partial Fisher-Yates over the positions.
    let mut positions: Vec<usize> = (0..total).collect();
    for i in 0..k {
        let j = i + rng.below((total - i) as u64) as usize;
        positions.swap(i, j);
    }
    let mut is_noise = vec![false; total];
    for &p in &positions[..k] {
        is_noise[p] = true;
    }
    let with_behaviours = behaviours.len() == history.len() && !behaviours.is_empty();
    let mut items = Vec::with_capacity(total);
    let mut kinds = Vec::with_capacity(if with_behaviours { total } else { 0 });
    let mut next_real = 0;
    for slot in is_noise {
        if slot {
            items.push(1 + rng.below(n_items as u64) as u32);
            if with_behaviours {
                kinds.push(behaviours[next_real.min(history.len() - 1)]);
            }
        } else {
            items.push(history[next_real]);
            if with_behaviours {
                kinds.push(behaviours[next_real]);
            }
            next_real += 1;
        }
    }
    if !with_behaviours {
        kinds = behaviours.to_vec();
    }
    (items, kinds)
}

/// Training-time noise (`train.input_noise`, a denoising augmentation, not part of the
/// evaluation protocol): each real item of `items` `[B, n]` is replaced, with probability
/// `fraction`, by a uniform random item of 1..=`n_items`. Padding stays padding; the caller
/// keeps the targets, so the model learns to predict the true next item from a corrupted
/// history. Replacing (rather than inserting) keeps every target at its position.
pub fn replace_with_random_items(
    items: &crate::tensor::Ids,
    fraction: f32,
    n_items: usize,
    seed: u64,
) -> crate::error::Result<crate::tensor::Ids> {
    let mut rng = Rng::new(seed ^ 0x7a1e_d0e5);
    let values = items
        .values()
        .iter()
        .map(|&item| {
            if item != 0 && n_items > 0 && rng.uniform() < fraction {
                1 + rng.below(n_items as u64) as u32
            } else {
                item
            }
        })
        .collect();
    crate::tensor::Ids::from_vec(items.shape(), values)
}
