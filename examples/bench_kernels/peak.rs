//! The machine's f32 peak, measured: every thread of the pool runs independent chains of
//! fused multiply-adds that stay in registers (no memory traffic), so GFLOP/s is what the
//! cores' FMA units deliver at the clock they run at now. The sgemm targets are stated as a
//! share of peak; this case gives the peak of the same run. (CPU only: on the GPU it is
//! skipped, being a CPU instruction loop.)

use crate::Case;

/// Fused multiply-adds per chain per call, and chains in flight (enough independent
/// accumulators to cover the FMA latency on both FMA ports).
const STEPS: usize = 200_000;
const CHAINS: usize = 24;

/// Runs `STEPS` rounds of `CHAINS` independent 16-lane FMAs; returns a value the optimiser
/// cannot drop.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
fn fma_chains() -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: the build enables AVX-512F (the cfg above); the intrinsics touch registers only.
    unsafe {
        let mut acc = [_mm512_set1_ps(0.0); CHAINS];
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        for _ in 0..STEPS {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }
}

/// The portable form: 16-wide arrays the compiler vectorizes to the build's vector width.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
fn fma_chains() -> f32 {
    let mut acc = [[0.0f32; 16]; CHAINS];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..STEPS {
        for x in acc.iter_mut() {
            for v in x.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
    }
    acc.iter().flatten().sum()
}

pub fn cases() -> Vec<Case> {
    if crate::device() != seqrec::Device::Cpu {
        return Vec::new();
    }
    let threads = rayon::current_num_threads();
    let flops = (threads * STEPS * CHAINS * 16 * 2) as f64;
    vec![Case {
        name: "fma_peak".into(),
        flops: Some(flops),
        run: Box::new(|| {
            let sums = rayon::broadcast(|_| fma_chains());
            std::hint::black_box(sums);
        }),
    }]
}
