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

/// max_{j < visible} (x_j + bias_j), −∞ when there is none: one row of attention scores'
/// masked maximum in one pass (a bias of −∞ masks a padding key; the keys from `visible` on
/// are the causal mask). `bias` is at least as long as `x`.
pub fn max_plus(x: &[f32], bias: &[f32], visible: usize) -> f32 {
    assert!(bias.len() >= x.len(), "max_plus: bias too short");
    let visible = visible.min(x.len());
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    // SAFETY: reads stay below `visible` ≤ x.len() ≤ bias.len().
    unsafe {
        avx512::max_plus(x.as_ptr(), bias.as_ptr(), visible)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    x[..visible]
        .iter()
        .zip(bias)
        .fold(f32::NEG_INFINITY, |m, (&v, &b)| m.max(v + b))
}

/// x_j ← e^(x_j·scale + bias_j − shift) for j < visible and 0 from `visible` on, in place;
/// returns the sum of the new row. One row of attention probabilities in one pass: masks,
/// scale, the running maximum (or the log-sum-exp) subtracted, exponent and sum together.
/// `bias` is at least as long as `x`.
pub fn exp_affine_sum(x: &mut [f32], bias: &[f32], visible: usize, scale: f32, shift: f32) -> f32 {
    assert!(bias.len() >= x.len(), "exp_affine_sum: bias too short");
    let visible = visible.min(x.len());
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    // SAFETY: reads stay below `visible` and writes below x.len(), both ≤ bias.len().
    unsafe {
        avx512::exp_affine_sum(
            x.as_mut_ptr(),
            x.len(),
            bias.as_ptr(),
            visible,
            scale,
            shift,
        )
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    {
        let (seen, unseen) = x.split_at_mut(visible);
        unseen.fill(0.0);
        for (v, &b) in seen.iter_mut().zip(bias) {
            *v = fast_exp(v.mul_add(scale, b) - shift);
        }
        sum_of(seen)
    }
}

/// The row loops above with explicit AVX-512: whole 16-lane vectors with masked loads and
/// stores for the ragged end and the causal cut, and one in-register reduction per row (the
/// compiler's version reduces lane by lane, which at 64-key rows costs as much as the row).
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
mod avx512 {
    use std::arch::x86_64::*;

    use super::EXP_MIN;

    /// The lanes of the vector starting at `base` that lie below `end`.
    #[inline(always)]
    fn lanes_below(end: usize, base: usize) -> __mmask16 {
        let n = end.saturating_sub(base);
        if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
    }

    /// `fast_exp` on 16 lanes: the same range reduction and polynomial, 2ⁿ applied by
    /// `scalef`; lanes below `EXP_MIN` give 0.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        // SAFETY: register-only arithmetic.
        unsafe {
            let xc = _mm512_min_ps(
                _mm512_max_ps(x, _mm512_set1_ps(EXP_MIN)),
                _mm512_set1_ps(88.0),
            );
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(xc, _mm512_set1_ps(std::f32::consts::LOG2_E)),
            );
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), xc);
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
            let mut poly = _mm512_set1_ps(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                0.5,
            ] {
                poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(c));
            }
            let poly = _mm512_fmadd_ps(poly, _mm512_mul_ps(r, r), r);
            let e = _mm512_scalef_ps(_mm512_add_ps(poly, _mm512_set1_ps(1.0)), n);
            let live = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(EXP_MIN));
            _mm512_maskz_mov_ps(live, e)
        }
    }

    /// SAFETY: `x` and `bias` hold at least `visible` floats.
    pub unsafe fn max_plus(x: *const f32, bias: *const f32, visible: usize) -> f32 {
        // SAFETY: every load is masked to lanes below `visible`.
        unsafe {
            let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
            for base in (0..visible).step_by(16) {
                let k = lanes_below(visible, base);
                let s = _mm512_add_ps(
                    _mm512_maskz_loadu_ps(k, x.add(base)),
                    _mm512_maskz_loadu_ps(k, bias.add(base)),
                );
                m = _mm512_mask_max_ps(m, k, m, s);
            }
            _mm512_reduce_max_ps(m)
        }
    }

    /// SAFETY: `x` holds `len` floats and `bias` at least `visible` ≤ `len`.
    pub unsafe fn exp_affine_sum(
        x: *mut f32,
        len: usize,
        bias: *const f32,
        visible: usize,
        scale: f32,
        shift: f32,
    ) -> f32 {
        // SAFETY: loads are masked to lanes below `visible`, stores to lanes below `len`.
        unsafe {
            let (scale, shift) = (_mm512_set1_ps(scale), _mm512_set1_ps(shift));
            let mut sum = _mm512_setzero_ps();
            for base in (0..len).step_by(16) {
                let seen = lanes_below(visible, base);
                let s = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(seen, x.add(base)),
                    scale,
                    _mm512_maskz_loadu_ps(seen, bias.add(base)),
                );
                let p = _mm512_maskz_mov_ps(seen, exp(_mm512_sub_ps(s, shift)));
                sum = _mm512_add_ps(sum, p);
                _mm512_mask_storeu_ps(x.add(base), lanes_below(len, base), p);
            }
            _mm512_reduce_add_ps(sum)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{exp_affine_sum, fast_exp, max_plus};

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

    #[test]
    fn the_attention_row_loops_match_their_definitions() {
        let mut rng = crate::rng::Rng::new(5);
        // Lengths around the 16-lane vector, causal cuts inside them, some keys masked by −∞,
        // scores from far below EXP_MIN to large.
        for n in [0usize, 1, 15, 16, 17, 50, 64, 70] {
            let x: Vec<f32> = (0..n).map(|_| 400.0 * rng.uniform() - 300.0).collect();
            let bias: Vec<f32> = (0..n + 3)
                .map(|j| if j % 5 == 3 { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            for visible in [0, 1, n / 2, n.saturating_sub(1), n, n + 2] {
                let seen = visible.min(n);
                let want_max = (0..seen).fold(f32::NEG_INFINITY, |m, j| m.max(x[j] + bias[j]));
                assert_eq!(
                    max_plus(&x, &bias, visible),
                    want_max,
                    "n = {n}, visible = {visible}"
                );
                let (scale, shift) = (0.125, -2.0);
                let mut y = x.clone();
                let sum = exp_affine_sum(&mut y, &bias, visible, scale, shift);
                let mut want_sum = 0.0f64;
                for j in 0..n {
                    let want = if j < seen {
                        ((x[j] * scale + bias[j] - shift) as f64).exp()
                    } else {
                        0.0
                    };
                    want_sum += want;
                    let tolerance = 2e-6 * want + if want < 1e-36 { 1e-37 } else { 0.0 };
                    assert!(
                        (y[j] as f64 - want).abs() <= tolerance,
                        "n = {n}, visible = {visible}, j = {j}: {} vs {want}",
                        y[j]
                    );
                }
                assert!(
                    (sum as f64 - want_sum).abs() <= 1e-5 * want_sum.max(1e-30),
                    "n = {n}, visible = {visible}: sum {sum} vs {want_sum}"
                );
            }
        }
    }
}
