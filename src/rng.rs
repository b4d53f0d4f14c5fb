//! Counter-based random numbers: the value at position `i` of stream `seed` is a pure hash of
//! `(seed, i)`. Dropout masks and samples are therefore reproducible, independent of thread
//! scheduling, and the same on the CPU and in a WGSL shader (which has only 32-bit integers,
//! hence the 32-bit hash).

/// Wellons' "lowbias32" integer hash: a bijection on u32 with good avalanche.
#[inline]
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The key of stream `seed`: `bits_at(seed, i) = hash32(i ^ stream_key(seed))`, so a loop
/// over one stream hashes the seed once.
#[inline]
pub fn stream_key(seed: u32) -> u32 {
    hash32(seed.wrapping_add(0x9e37_79b9))
}

/// The `index`-th 32 random bits of stream `seed`.
#[inline]
pub fn bits_at(seed: u32, index: u32) -> u32 {
    hash32(index ^ stream_key(seed))
}

/// A uniform float in [0, 1) at `index` of stream `seed` (24 bits of mantissa).
#[inline]
pub fn uniform_at(seed: u32, index: u32) -> f32 {
    (bits_at(seed, index) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A small sequential generator (SplitMix64) for host-side choices: shuffles, sampled
/// negatives, initialisation. Seeded, so a run is reproducible.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng {
            state: seed ^ 0x5851_f42d_4c95_7f2d,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform integer in [0, n), without modulo bias (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        let u2 = (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        ((-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_uniform() {
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| uniform_at(7, i) as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((0..n).all(|i| (0.0..1.0).contains(&uniform_at(7, i))));
        assert_ne!(uniform_at(7, 0), uniform_at(8, 0));
    }

    #[test]
    fn below_covers_range_without_escaping() {
        let mut rng = Rng::new(3);
        let mut seen = [0usize; 5];
        for _ in 0..10_000 {
            seen[rng.below(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 1_800), "{seen:?}");
    }
}
