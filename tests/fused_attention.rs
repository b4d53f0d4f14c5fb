//! Fused attention against a plain f64 reference: values and finite-difference gradients for
//! every combination of heads, causality and key padding (including queries that see no key),
//! sizes that straddle the kernel's block size, dropout reproducibility and its gradients,
//! values and gradients against attention composed from the engine's primitive ops, and
//! shape errors.

mod common;

use common::*;
use seqrec::rng::{Rng, uniform_at};
use seqrec::{Tape, Tensor, Var};

/// Attention dropout as the reference applies it.
#[derive(Clone, Copy)]
struct Dropout {
    stream: u32,
    p: f32,
}

/// softmax(Q Kᵀ/√d_h + mask) (∘ Z) V per item and head, in f64. `mask` is `[B, L]`.
#[allow(clippy::too_many_arguments)]
fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (batch, len, width, heads): (usize, usize, usize, usize),
    causal: bool,
    mask: Option<&[f64]>,
    dropout: Option<Dropout>,
) -> Vec<f64> {
    let dh = width / heads;
    let scale = 1.0 / (dh as f64).sqrt();
    let mut out = vec![0.0; batch * len * width];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..len {
                let visible =
                    |j: usize| !(causal && j > i) && mask.is_none_or(|m| m[b * len + j] != 0.0);
                let at = |x: &[f64], row: usize, c: usize| x[(b * len + row) * width + h * dh + c];
                let scores: Vec<f64> = (0..len)
                    .map(|j| (0..dh).map(|c| at(q, i, c) * at(k, j, c)).sum::<f64>() * scale)
                    .collect();
                let max = (0..len)
                    .filter(|&j| visible(j))
                    .map(|j| scores[j])
                    .fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    continue; // no visible key: output stays 0
                }
                let weights: Vec<f64> = (0..len)
                    .map(|j| {
                        if visible(j) {
                            (scores[j] - max).exp()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let total: f64 = weights.iter().sum();
                for (j, &weight) in weights.iter().enumerate() {
                    let mut p = weight / total;
                    if let Some(d) = dropout {
                        let index = (((b * heads + h) * len + i) * len + j) as u32;
                        let keep_scale = 1.0 / (1.0 - d.p);
                        p *= if uniform_at(d.stream, index) < d.p {
                            0.0
                        } else {
                            keep_scale as f64
                        };
                    }
                    for c in 0..dh {
                        out[(b * len + i) * width + h * dh + c] += p * at(v, j, c);
                    }
                }
            }
        }
    }
    out
}

fn random_input(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    (shape.to_vec(), random_values(shape.iter().product(), rng))
}

/// A `[B, L]` key mask: item 0 all real, item 1 left-padded by `pad` keys (so under causal
/// attention its first `pad` queries see nothing), item 2 (if any) all padding, and one
/// padding key in the middle of item 0 when `len > 4`.
fn padding_mask(batch: usize, len: usize, pad: usize) -> Vec<f64> {
    let mut mask = vec![1.0; batch * len];
    if len > 4 {
        mask[len / 2] = 0.0;
    }
    if batch > 1 {
        mask[len..len + pad].fill(0.0);
    }
    if batch > 2 {
        mask[2 * len..3 * len].fill(0.0);
    }
    mask
}

fn to_tensor(shape: &[usize], values: &[f64]) -> Tensor {
    Tensor::from_vec(shape, values.iter().map(|&x| x as f32).collect()).unwrap()
}

/// Gradient check of every (heads, causal, padding) combination at `[batch, len, width]`.
fn check_all_variants(batch: usize, len: usize, width: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    for heads in [1, 2] {
        for causal in [false, true] {
            for padded in [false, true] {
                let shape = [batch, len, width];
                let inputs = [
                    random_input(&shape, &mut rng),
                    random_input(&shape, &mut rng),
                    random_input(&shape, &mut rng),
                ];
                let mask = padded.then(|| padding_mask(batch, len, 3));
                let mask_tensor = mask.as_ref().map(|m| to_tensor(&[batch, len], m));
                let dims = (batch, len, width, heads);
                let mask_ref = mask.clone();
                check_op(
                    &format!("attention L={len} heads={heads} causal={causal} padded={padded}"),
                    &inputs,
                    &[true, true, true],
                    |t, x| t.attention(x[0], x[1], x[2], heads, causal, mask_tensor.as_ref(), 0.0),
                    &|x| reference(&x[0], &x[1], &x[2], dims, causal, mask_ref.as_deref(), None),
                    &Check::default(),
                );
            }
        }
    }
}

#[test]
fn gradients_small_all_variants() {
    // Three items: plain, left-padded, fully padded (its queries see no key at all).
    check_all_variants(3, 7, 4, 1);
}

#[test]
fn gradients_across_several_blocks() {
    // 67 = one full 64-row block and a ragged one, in both the query and the key direction.
    check_all_variants(1, 67, 4, 2);
}

/// The loss sum(w ∘ attention) along a random direction: finite difference of the f64
/// reference vs the engine's gradients, for big inputs where a full check is too slow.
#[test]
fn large_inputs_match_reference_values_and_directional_gradient() {
    check_large_inputs((3, 130, 64, 2), 9);
}

/// Heads wider than the micro-kernel's 16-float tiles and up to its 256-wide limit, as in a
/// d = 256 model with one head (DIF-SR's size), and a ragged 132-wide head.
#[test]
fn wide_heads_match_reference_values_and_directional_gradient() {
    check_large_inputs((2, 70, 256, 1), 10);
    check_large_inputs((2, 70, 264, 2), 11);
}

fn check_large_inputs(dims: (usize, usize, usize, usize), seed: u64) {
    let (batch, len, width, heads) = dims;
    let shape = [batch, len, width];
    let mut rng = Rng::new(seed);
    let scale_up = |(s, v): (Vec<usize>, Vec<f64>)| (s, v.iter().map(|x| 2.0 * x).collect());
    let inputs: Vec<(Vec<usize>, Vec<f64>)> = (0..3)
        .map(|_| scale_up(random_input(&shape, &mut rng)))
        .collect();
    let mask = padding_mask(batch, len, 40);
    let mask_tensor = to_tensor(&[batch, len], &mask);
    for causal in [false, true] {
        let mut tape = Tape::new();
        let vars: Vec<_> = inputs
            .iter()
            .map(|(s, x)| tape.leaf(to_tensor(s, x)))
            .collect();
        let y = tape
            .attention(
                vars[0],
                vars[1],
                vars[2],
                heads,
                causal,
                Some(&mask_tensor),
                0.0,
            )
            .unwrap();
        let x32: Vec<Vec<f64>> = inputs
            .iter()
            .map(|(_, x)| x.iter().map(|&v| v as f32 as f64).collect())
            .collect();
        let run = |x: &[Vec<f64>]| reference(&x[0], &x[1], &x[2], dims, causal, Some(&mask), None);
        let expected: Vec<f32> = run(&x32).iter().map(|&v| v as f32).collect();
        assert_close("large forward", &tape.value(y).to_vec(), &expected, 1e-4);

        let w = random_values(expected.len(), &mut rng);
        let grads = tape
            .backward_with(y, to_tensor(&shape, &w))
            .expect("backward");
        let direction: Vec<Vec<f64>> = (0..3)
            .map(|_| random_values(batch * len * width, &mut rng))
            .collect();
        let analytic: f64 = (0..3)
            .map(|n| {
                let g = grads.get(vars[n]).unwrap().to_vec();
                g.iter()
                    .zip(&direction[n])
                    .map(|(&g, d)| g as f64 * d)
                    .sum::<f64>()
            })
            .sum();
        let h = 1e-4;
        let shifted = |sign: f64| -> f64 {
            let x: Vec<Vec<f64>> = x32
                .iter()
                .zip(&direction)
                .map(|(x, d)| x.iter().zip(d).map(|(x, d)| x + sign * h * d).collect())
                .collect();
            run(&x).iter().zip(&w).map(|(y, w)| y * w).sum()
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
        let err = (analytic - numeric).abs() / (1.0 + numeric.abs());
        assert!(
            err < 1e-3,
            "{dims:?} causal={causal}: directional derivative {analytic} vs {numeric}"
        );
    }
}

#[test]
fn queries_without_visible_keys_output_zero_and_get_zero_gradient() {
    let (batch, len, width) = (2, 6, 4);
    let mut rng = Rng::new(4);
    let values = |rng: &mut Rng| {
        to_tensor(
            &[batch, len, width],
            &random_values(batch * len * width, rng),
        )
    };
    // Item 1: the first 4 keys are padding, so causal queries 0..4 see nothing.
    let mut mask = vec![1.0; batch * len];
    mask[len..len + 4].fill(0.0);
    let mask = to_tensor(&[batch, len], &mask);
    let mut tape = Tape::new();
    let q = tape.leaf(values(&mut rng));
    let k = tape.leaf(values(&mut rng));
    let v = tape.leaf(values(&mut rng));
    let y = tape.attention(q, k, v, 2, true, Some(&mask), 0.0).unwrap();
    let out = tape.value(y).to_vec();
    let item1_blind_rows = (len * width)..(len * width + 4 * width);
    assert!(out[item1_blind_rows.clone()].iter().all(|&x| x == 0.0));
    assert!(out[..len * width].iter().all(|&x| x != 0.0));
    let grads = tape
        .backward_with(y, Tensor::full(&[batch, len, width], 1.0))
        .unwrap();
    for var in [q, k, v] {
        let g = grads.get(var).unwrap().to_vec();
        assert!(g.iter().all(|x| x.is_finite()), "gradient has NaN or inf");
    }
    let dq = grads.get(q).unwrap().to_vec();
    assert!(dq[item1_blind_rows].iter().all(|&x| x == 0.0));
    // Padding keys get no gradient in k and v.
    for var in [k, v] {
        let g = grads.get(var).unwrap().to_vec();
        assert!(
            g[len * width..len * width + 4 * width]
                .iter()
                .all(|&x| x == 0.0)
        );
    }
}

/// The stream that `Tape::attention` draws for its first dropout on a tape seeded `seed`.
fn first_stream(seed: u32) -> u32 {
    let mut tape = Tape::new();
    tape.set_seed(seed);
    tape.next_stream()
}

#[test]
fn dropout_gradients_match_reference_with_same_mask() {
    let mut rng = Rng::new(21);
    // The last case spans two blocks, so the mask index of a block's rows and keys matters.
    for (batch, len, heads, causal) in [(3, 9, 1, true), (3, 9, 2, false), (1, 67, 2, true)] {
        let width = 4;
        let shape = [batch, len, width];
        let inputs = [
            random_input(&shape, &mut rng),
            random_input(&shape, &mut rng),
            random_input(&shape, &mut rng),
        ];
        let mask = padding_mask(batch, len, 2);
        let mask_tensor = to_tensor(&[batch, len], &mask);
        let p = 0.3;
        let dropout = Dropout {
            stream: first_stream(77),
            p,
        };
        check_op(
            &format!("attention dropout heads={heads} causal={causal}"),
            &inputs,
            &[true, true, true],
            |t, x| {
                t.set_seed(77);
                t.attention(x[0], x[1], x[2], heads, causal, Some(&mask_tensor), p)
            },
            &|x| {
                let dims = (batch, len, width, heads);
                reference(
                    &x[0],
                    &x[1],
                    &x[2],
                    dims,
                    causal,
                    Some(&mask),
                    Some(dropout),
                )
            },
            &Check::default(),
        );
    }
}

#[test]
fn dropout_is_reproducible_and_off_in_inference() {
    let (batch, len, width) = (2, 20, 8);
    let mut rng = Rng::new(5);
    let data: Vec<Tensor> = (0..3)
        .map(|_| {
            to_tensor(
                &[batch, len, width],
                &random_values(batch * len * width, &mut rng),
            )
        })
        .collect();
    // The tape is made inside the closure: with a `Tape` moved into the closure as an
    // argument, rustc 1.95 at opt-level ≥ 2 produced a double drop of that tape here (release
    // only; no unsafe code of ours involved: it reproduced with a plain-loop sgemm and the
    // allocator untouched).
    let run = |training: bool, seed: u32, p: f32| {
        let mut tape = if training {
            Tape::new()
        } else {
            Tape::inference()
        };
        tape.set_seed(seed);
        let v: Vec<_> = data.iter().map(|t| tape.leaf(t.clone())).collect();
        let y = tape.attention(v[0], v[1], v[2], 2, true, None, p).unwrap();
        tape.value(y).to_vec()
    };
    let first = run(true, 3, 0.5);
    assert_eq!(first, run(true, 3, 0.5), "same seed, same output");
    assert_ne!(first, run(true, 4, 0.5), "another seed, another mask");
    assert_ne!(first, run(true, 3, 0.0), "dropout changes the output");
    assert_eq!(
        run(false, 3, 0.5),
        run(true, 3, 0.0),
        "no dropout when not training"
    );
}

/// Attention composed from the engine's primitive ops on one tape: split heads (reshape +
/// permute), Q Kᵀ (matmul), scale, key and causal masks (masked_fill), softmax, P V, merge
/// heads. Fused values and the gradients of q, k, v must match it. Every query sees at least
/// one key here, because the composed softmax of a fully masked row is uniform, not zero.
fn composed_attention(
    tape: &mut Tape,
    [q, k, v]: [Var; 3],
    heads: usize,
    causal: bool,
    key_mask: &Tensor,
) -> seqrec::Result<Var> {
    let shape = tape.shape(q).to_vec();
    let (batch, len, width) = (shape[0], shape[1], shape[2]);
    let dh = width / heads;
    let split = |t: &mut Tape, x: Var| -> seqrec::Result<Var> {
        let x = t.reshape(x, &[batch, len, heads, dh])?;
        t.permute(x, &[0, 2, 1, 3])
    };
    let (qh, kh, vh) = (split(tape, q)?, split(tape, k)?, split(tape, v)?);
    let scores = tape.matmul_t(qh, kh, false, true)?;
    let scores = tape.scale(scores, 1.0 / (dh as f32).sqrt())?;
    // masked_fill's mask: 1 = fill. Padding keys: [B, 1, 1, L]; causal: [L, L] upper triangle.
    let padding: Vec<f32> = key_mask.to_vec().iter().map(|&m| 1.0 - m).collect();
    let padding = Tensor::from_vec(&[batch, 1, 1, len], padding)?;
    let mut scores = tape.masked_fill(scores, &padding, -1e9)?;
    if causal {
        let upper: Vec<f32> = (0..len * len)
            .map(|n| if n % len > n / len { 1.0 } else { 0.0 })
            .collect();
        scores = tape.masked_fill(scores, &Tensor::from_vec(&[len, len], upper)?, -1e9)?;
    }
    let probs = tape.softmax(scores)?;
    let out = tape.matmul(probs, vh)?;
    let out = tape.permute(out, &[0, 2, 1, 3])?;
    tape.reshape(out, &[batch, len, width])
}

#[test]
fn fused_matches_composed_graph_values_and_gradients() {
    let (batch, len, width) = (2, 70, 16);
    let shape = [batch, len, width];
    let mut rng = Rng::new(8);
    let data: Vec<Tensor> = (0..3)
        .map(|_| to_tensor(&shape, &random_values(batch * len * width, &mut rng)))
        .collect();
    // Item 1: the last 5 keys and one in the middle are padding (key 0 stays real).
    let mut mask = vec![1.0; batch * len];
    mask[2 * len - 5..].fill(0.0);
    mask[len + 30] = 0.0;
    let mask = to_tensor(&[batch, len], &mask);
    let seed = to_tensor(&shape, &random_values(batch * len * width, &mut rng));
    for heads in [1, 2] {
        for causal in [false, true] {
            let what = format!("heads={heads} causal={causal}");
            let run = |composed: bool| {
                let mut tape = Tape::new();
                let vars = [0, 1, 2].map(|n| tape.leaf(data[n].clone()));
                let y = if composed {
                    composed_attention(&mut tape, vars, heads, causal, &mask)
                } else {
                    tape.attention(vars[0], vars[1], vars[2], heads, causal, Some(&mask), 0.0)
                }
                .unwrap();
                let grads = tape.backward_with(y, seed.clone()).unwrap();
                let mut results = vec![tape.value(y).to_vec()];
                results.extend(vars.map(|x| grads.get(x).unwrap().to_vec()));
                results
            };
            let (fused, composed) = (run(false), run(true));
            for (name, (f, c)) in ["out", "dq", "dk", "dv"]
                .iter()
                .zip(fused.iter().zip(&composed))
            {
                assert_close(&format!("{what} {name}"), f, c, 1e-4);
            }
        }
    }
}

#[test]
fn malformed_inputs_are_errors() {
    let mut tape = Tape::new();
    let x = tape.leaf(Tensor::zeros(&[2, 5, 8]));
    let other = tape.leaf(Tensor::zeros(&[2, 6, 8]));
    let flat = tape.leaf(Tensor::zeros(&[10, 8]));
    let good_mask = Tensor::full(&[2, 5], 1.0);
    let bad_mask = Tensor::full(&[2, 6], 1.0);
    assert!(
        tape.attention(x, x, x, 2, true, Some(&good_mask), 0.1)
            .is_ok()
    );
    assert!(
        tape.attention(flat, flat, flat, 1, false, None, 0.0)
            .is_err()
    );
    assert!(tape.attention(x, other, x, 1, false, None, 0.0).is_err());
    assert!(tape.attention(x, x, other, 1, false, None, 0.0).is_err());
    assert!(tape.attention(x, x, x, 3, false, None, 0.0).is_err());
    assert!(tape.attention(x, x, x, 0, false, None, 0.0).is_err());
    assert!(
        tape.attention(x, x, x, 1, false, Some(&bad_mask), 0.0)
            .is_err()
    );
    for p in [-0.1, 1.0, f32::NAN] {
        assert!(
            tape.attention(x, x, x, 1, false, None, p).is_err(),
            "dropout {p}"
        );
    }
}
