//! Vectorizable scalar math shared by the CPU kernels: a polynomial `exp` (libm's is a call
//! per element and blocks vectorization) and reductions written with independent partial
//! sums (the compiler may not reorder a float sum by itself).

/// Below this, `exp` underflows to 0 (f32 denormals are not worth computing).
const EXP_MIN: f32 = -87.0;

/// e^x for f32, accurate to ~2 ulp, written with plain arithmetic so loops over it vectorize
/// (`f32::exp` is a libm call per element). e^x = 2ⁿ · e^r with n = round(x / ln 2) and
/// r = x − n·ln 2 ∈ [−ln2/2, ln2/2], e^r by the Cephes `expf` polynomial.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to integer
    let xc = x.clamp(EXP_MIN, 88.0);
    let shifted = xc * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // ln 2 split in a part exact in f32 and a correction, so r keeps its low bits.
    let r = xc - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let poly = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let poly = poly.mul_add(r * r, r) + 1.0;
    // n as an integer, read from the low mantissa bits of `shifted`: a float → int `as` cast
    // saturates and handles NaN, which keeps LLVM from vectorizing the loop.
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let two_n = f32::from_bits(((n_int + 127) as u32) << 23);
    if x < EXP_MIN { 0.0 } else { poly * two_n }
}

/// Accumulator lanes of the reductions below: float sums only vectorize when written with
/// independent partial sums (the compiler may not reorder `a + b + c`).
const LANES: usize = 8;

/// The largest value of `x` (−∞ when empty).
pub fn max_of(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// Σ a·b.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in lanes.iter_mut().zip(xa).zip(xb) {
            *s = x.mul_add(y, *s);
        }
    }
    tail + lanes.iter().sum::<f32>()
}

/// Σ x.
pub fn sum_of(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    tail + lanes.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::fast_exp;

    #[test]
    fn fast_exp_matches_std() {
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.0044; // −88 .. 88
            let (fast, exact) = (fast_exp(x), (x as f64).exp());
            let err = (fast as f64 - exact).abs() / exact.max(1e-30);
            assert!(x < -87.0 || err < 1e-6, "exp({x}) = {fast}, exact {exact}");
        }
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(-100.0), 0.0);
        assert_eq!(fast_exp(0.0), 1.0);
    }
}
