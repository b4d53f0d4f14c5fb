//! The GPU's fused attention against the CPU kernel: output, log-sum-exp and the three
//! gradients; causal or not, with and without a key mask (including rows and items that see
//! no key), with dropout (the same mask, so the values must agree), lengths that are not tile
//! multiples and several head counts.

mod common;

use common::{assert_close, gpu_or_skip};
use seqrec::backend::{self, AttentionKernels, AttentionSpec};
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

/// Like `assert_close`, but an infinite reference (a row that sees no key) must be matched
/// by the same infinity.
fn assert_close_or_inf(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if y.is_infinite() {
            assert_eq!(x, y, "{what}[{i}]");
        } else {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }
}

/// A `[B, L]` key mask: item 0 has its first key and a few random keys padded (so with a
/// causal mask its first query sees nothing), item 1 (if any) pads every key, the others
/// pad about a quarter at random.
fn key_mask(batch: usize, len: usize, rng: &mut Rng) -> Tensor {
    let mut m = vec![1.0f32; batch * len];
    for b in 0..batch {
        for i in 0..len {
            let padded = match b {
                0 => i == 0 || rng.uniform() < 0.2,
                1 => true,
                _ => rng.uniform() < 0.25,
            };
            if padded {
                m[b * len + i] = 0.0;
            }
        }
    }
    Tensor::from_vec(&[batch, len], m).unwrap()
}

/// Runs forward and backward on both backends and compares everything.
fn check(batch: usize, len: usize, width: usize, spec: AttentionSpec, masked: bool, seed: u64) {
    let Some(gpu) = gpu_or_skip("gpu attention") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(seed);
    let shape = [batch, len, width];
    let (q, k, v) = (
        random(&shape, &mut rng),
        random(&shape, &mut rng),
        random(&shape, &mut rng),
    );
    let d_out = random(&shape, &mut rng);
    let mask = masked.then(|| key_mask(batch, len, &mut rng));
    let what = format!("B={batch} L={len} D={width} {spec:?} masked={masked}");

    let (out_c, lse_c) = cpu.attention_forward(&q, &k, &v, mask.as_ref(), &spec);
    let gpu_of = |t: &Tensor| t.to_device(Device::Gpu);
    let (qg, kg, vg) = (gpu_of(&q), gpu_of(&k), gpu_of(&v));
    let (out_g, lse_g) = gpu.attention_forward(&qg, &kg, &vg, mask.as_ref(), &spec);
    assert_eq!(out_g.device(), Device::Gpu);
    assert_eq!(out_g.shape(), out_c.shape());
    assert_eq!(lse_g.shape(), lse_c.shape());
    assert_close(
        &format!("out {what}"),
        &out_g.to_vec(),
        &out_c.to_vec(),
        1e-4,
    );
    assert_close_or_inf(
        &format!("lse {what}"),
        &lse_g.to_vec(),
        &lse_c.to_vec(),
        1e-4,
    );

    let (dq_c, dk_c, dv_c) =
        cpu.attention_backward(&q, &k, &v, &out_c, &lse_c, &d_out, mask.as_ref(), &spec);
    let (dq_g, dk_g, dv_g) = gpu.attention_backward(
        &qg,
        &kg,
        &vg,
        &out_g,
        &lse_g,
        &gpu_of(&d_out),
        mask.as_ref(),
        &spec,
    );
    assert_close(&format!("dq {what}"), &dq_g.to_vec(), &dq_c.to_vec(), 1e-4);
    assert_close(&format!("dk {what}"), &dk_g.to_vec(), &dk_c.to_vec(), 1e-4);
    assert_close(&format!("dv {what}"), &dv_g.to_vec(), &dv_c.to_vec(), 1e-4);
}

fn spec(heads: usize, causal: bool, dropout: f32) -> AttentionSpec {
    AttentionSpec {
        heads,
        causal,
        dropout,
        stream: 0x5eed + heads as u32,
    }
}

/// (batch, width, heads): head dims 8, 16, 32, 64 and 1 to 5 heads.
const SHAPES: [(usize, usize, usize); 5] =
    [(2, 16, 2), (1, 64, 1), (3, 64, 2), (2, 40, 5), (2, 48, 3)];

#[test]
fn attention_matches_the_cpu() {
    let mut seed = 1;
    for len in [1usize, 7, 33, 50] {
        for &(batch, width, heads) in &SHAPES {
            for causal in [false, true] {
                for masked in [false, true] {
                    seed += 1;
                    check(batch, len, width, spec(heads, causal, 0.0), masked, seed);
                }
            }
        }
    }
}

#[test]
fn attention_dropout_matches_the_cpu() {
    let mut seed = 100;
    for len in [7usize, 33, 50] {
        for &(batch, width, heads) in &SHAPES[..3] {
            for causal in [false, true] {
                seed += 1;
                check(batch, len, width, spec(heads, causal, 0.3), causal, seed);
            }
        }
    }
}

#[test]
fn attention_longer_sequences_match_the_cpu() {
    // Several key and query blocks of every pass, and the causal block skipping.
    check(2, 131, 64, spec(2, true, 0.1), true, 7);
    check(1, 200, 32, spec(1, false, 0.0), false, 8);
}

#[test]
fn attention_beyond_the_kernels_head_dim_falls_back_correctly() {
    // d_h = 72 > MAX_DH goes through the host.
    check(2, 9, 72, spec(1, true, 0.2), true, 11);
}

#[test]
fn attention_runs_natively() {
    let Some(gpu) = gpu_or_skip("attention_runs_natively") else {
        return;
    };
    let mut rng = Rng::new(3);
    let x = random(&[2, 9, 32], &mut rng).to_device(Device::Gpu);
    let before = seqrec::backend::gpu::fallback_count();
    let s = spec(2, true, 0.1);
    let (out, lse) = gpu.attention_forward(&x, &x, &x, None, &s);
    let _ = gpu.attention_backward(&x, &x, &x, &out, &lse, &out, None, &s);
    assert_eq!(
        seqrec::backend::gpu::fallback_count(),
        before,
        "a host fallback ran"
    );
}
