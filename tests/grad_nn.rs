//! Gradient checks for softmax, log-softmax, layer norm, dropout, the losses, convolutions
//! and pooling.

mod common;

use common::*;
use seqrec::rng::{Rng, uniform_at};
use seqrec::{Ids, Tape, Tensor};

fn input(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    (
        shape.to_vec(),
        random_values(shape.iter().product(), rng)
            .iter()
            .map(|v| 2.0 * v)
            .collect(),
    )
}

fn softmax_rows(x: &[f64], w: usize) -> Vec<f64> {
    x.chunks(w)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
            r.iter().map(move |v| (v - m).exp() / s).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn softmax_and_log_softmax() {
    let mut rng = Rng::new(1);
    let x = input(&[2, 3, 5], &mut rng);
    check_op(
        "softmax",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.softmax(v[0]),
        &|x: &[Vec<f64>]| softmax_rows(&x[0], 5),
        &Check::default(),
    );
    check_op(
        "log_softmax",
        &[x],
        &[true],
        |t, v| t.log_softmax(v[0]),
        &|x: &[Vec<f64>]| softmax_rows(&x[0], 5).iter().map(|p| p.ln()).collect(),
        &Check::default(),
    );
}

#[test]
fn layer_norm_all_three_gradients() {
    let mut rng = Rng::new(2);
    let (x, g, b) = (
        input(&[4, 6], &mut rng),
        input(&[6], &mut rng),
        input(&[6], &mut rng),
    );
    let eps = 1e-5;
    check_op(
        "layer_norm",
        &[x, g, b],
        &[true, true, true],
        |t, v| t.layer_norm(v[0], v[1], v[2], eps as f32),
        &|x: &[Vec<f64>]| {
            x[0].chunks(6)
                .flat_map(|r| {
                    let mean = r.iter().sum::<f64>() / 6.0;
                    let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0;
                    r.iter()
                        .enumerate()
                        .map(move |(i, v)| (v - mean) / (var + eps).sqrt() * x[1][i] + x[2][i])
                        .collect::<Vec<_>>()
                })
                .collect()
        },
        &Check {
            grad_tol: 5e-3,
            ..Check::default()
        },
    );
}

#[test]
fn dropout_is_seeded_scaled_and_consistent() {
    let p = 0.3f32;
    let n = 20_000;
    let run = |seed: u32| {
        let mut tape = Tape::new();
        tape.set_seed(seed);
        let x = tape.leaf(Tensor::full(&[n], 1.0));
        let y = tape.dropout(x, p).unwrap();
        let grads = tape.backward_with(y, Tensor::full(&[n], 2.0)).unwrap();
        (tape.value(y).to_vec(), grads.get(x).unwrap().to_vec())
    };
    let (a, ga) = run(7);
    let (b, _) = run(7);
    let (c, _) = run(8);
    assert_eq!(a, b, "same seed, same mask");
    assert_ne!(a, c, "another seed, another mask");
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f32 / n as f32;
    assert!((dropped - p).abs() < 0.02, "dropped {dropped}");
    assert!(
        a.iter()
            .all(|&v| v == 0.0 || (v - 1.0 / (1.0 - p)).abs() < 1e-6)
    );
    for (y, g) in a.iter().zip(&ga) {
        assert!(
            (g - 2.0 * y).abs() < 1e-5,
            "backward uses the forward's mask"
        );
    }
    // The mask is the counter-based stream the tape hands out.
    let mut tape = Tape::new();
    tape.set_seed(7);
    let stream = tape.next_stream();
    assert!(
        a.iter()
            .enumerate()
            .all(|(i, &v)| (v == 0.0) == (uniform_at(stream, i as u32) < p))
    );
    // Identity for inference.
    let mut inference = Tape::inference();
    let x = inference.leaf(Tensor::full(&[4], 1.0));
    let y = inference.dropout(x, p).unwrap();
    assert_eq!(inference.value(y).to_vec(), vec![1.0; 4]);
}

#[test]
fn cross_entropy_weighted_and_sampled() {
    let mut rng = Rng::new(3);
    let logits = input(&[4, 6], &mut rng);
    let targets = Ids::from_vec(&[4], vec![2, 0, 5, 3]).unwrap();
    let weights = Tensor::from_vec(&[4], vec![1.0, 0.0, 2.0, 0.5]).unwrap();
    let (t2, w2) = (targets.clone(), weights.clone());
    check_op(
        "cross_entropy",
        &[logits],
        &[true],
        move |t, v| t.cross_entropy(v[0], &t2, Some(&w2)),
        &|x: &[Vec<f64>]| {
            let w = [1.0, 0.0, 2.0, 0.5];
            let t = [2, 0, 5, 3];
            let loss: f64 = (0..4)
                .map(|r| w[r] * -softmax_rows(&x[0][r * 6..r * 6 + 6], 6)[t[r]].ln())
                .sum();
            vec![loss / 3.5]
        },
        &Check::default(),
    );
    // All-zero weights: loss 0, gradient 0.
    let mut tape = Tape::new();
    let x = tape.leaf(Tensor::full(&[2, 3], 0.5));
    let loss = tape
        .cross_entropy(
            x,
            &Ids::from_vec(&[2], vec![1, 2]).unwrap(),
            Some(&Tensor::zeros(&[2])),
        )
        .unwrap();
    assert_eq!(tape.value(loss).item(), 0.0);
    assert!(
        tape.backward(loss)
            .unwrap()
            .get(x)
            .unwrap()
            .to_vec()
            .iter()
            .all(|&g| g == 0.0)
    );
    assert!(
        tape.cross_entropy(x, &Ids::from_vec(&[2], vec![1, 3]).unwrap(), None)
            .is_err()
    );
    assert!(
        tape.cross_entropy(x, &Ids::from_vec(&[3], vec![1, 1, 1]).unwrap(), None)
            .is_err()
    );
}

#[test]
fn bce_bpr_and_squared_distance() {
    let mut rng = Rng::new(4);
    let logits = input(&[3, 4], &mut rng);
    let labels: Vec<f32> = (0..12).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let weights: Vec<f32> = (0..12)
        .map(|i| if i == 5 { 0.0 } else { 1.0 + (i % 2) as f32 })
        .collect();
    let (l, w) = (
        Tensor::from_vec(&[3, 4], labels.clone()).unwrap(),
        Tensor::from_vec(&[3, 4], weights.clone()).unwrap(),
    );
    check_op(
        "bce_with_logits",
        &[logits],
        &[true],
        move |t, v| t.bce_with_logits(v[0], &l, Some(&w)),
        &move |x: &[Vec<f64>]| {
            let total: f64 = weights.iter().map(|&w| w as f64).sum();
            let s: f64 = x[0]
                .iter()
                .zip(&labels)
                .zip(&weights)
                .map(|((&x, &y), &w)| {
                    w as f64
                        * -(y as f64 * (1.0 / (1.0 + (-x).exp())).ln()
                            + (1.0 - y as f64) * (1.0 / (1.0 + x.exp())).ln())
                })
                .sum();
            vec![s / total]
        },
        &Check::default(),
    );
    let (p, n) = (input(&[5], &mut rng), input(&[5], &mut rng));
    check_op(
        "bpr_loss",
        &[p, n],
        &[true, true],
        |t, v| t.bpr_loss(v[0], v[1], None),
        &|x: &[Vec<f64>]| {
            vec![
                -(0..5)
                    .map(|i| (1.0 / (1.0 + (x[1][i] - x[0][i]).exp())).ln())
                    .sum::<f64>()
                    / 5.0,
            ]
        },
        &Check::default(),
    );
    let (a, b) = (input(&[3, 1, 4], &mut rng), input(&[2, 4], &mut rng));
    check_op(
        "squared_distance broadcast",
        &[a, b],
        &[true, true],
        |t, v| t.squared_distance(v[0], v[1]),
        &|x: &[Vec<f64>]| {
            (0..3)
                .flat_map(|i| {
                    (0..2).map(move |j| {
                        (0..4)
                            .map(|k| (x[0][i * 4 + k] - x[1][j * 4 + k]).powi(2))
                            .sum()
                    })
                })
                .collect()
        },
        &Check::default(),
    );
}

/// Direct convolution in f64: x [B, C, H, W], w [O, C, KH, KW], with stride, padding, dilation.
#[allow(clippy::too_many_arguments)]
fn direct_conv(
    x: &[f64],
    w: &[f64],
    bias: &[f64],
    xs: [usize; 4],
    ws: [usize; 4],
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
) -> Vec<f64> {
    let [b, c, h, wd] = xs;
    let [o, _, kh, kw] = ws;
    let oh = (h + 2 * pad.0 - dil.0 * (kh - 1) - 1) / stride.0 + 1;
    let ow = (wd + 2 * pad.1 - dil.1 * (kw - 1) - 1) / stride.1 + 1;
    let mut out = vec![0.0; b * o * oh * ow];
    for n in 0..b {
        for oc in 0..o {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut s = bias.get(oc).copied().unwrap_or(0.0);
                    for ic in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let yy = (y * stride.0 + i * dil.0) as isize - pad.0 as isize;
                                let xv = (xx * stride.1 + j * dil.1) as isize - pad.1 as isize;
                                if yy >= 0 && (yy as usize) < h && xv >= 0 && (xv as usize) < wd {
                                    s += x[((n * c + ic) * h + yy as usize) * wd + xv as usize]
                                        * w[((oc * c + ic) * kh + i) * kw + j];
                                }
                            }
                        }
                    }
                    out[((n * o + oc) * oh + y) * ow + xx] = s;
                }
            }
        }
    }
    out
}

#[test]
fn conv2d_and_conv1d_match_direct_convolution() {
    let mut rng = Rng::new(5);
    let (x, w, b) = (
        input(&[2, 2, 5, 4], &mut rng),
        input(&[3, 2, 2, 3], &mut rng),
        input(&[3], &mut rng),
    );
    check_op(
        "conv2d stride 2 padding 1",
        &[x, w, b],
        &[true, true, true],
        |t, v| t.conv2d(v[0], v[1], Some(v[2]), (2, 1), (1, 1)),
        &|x: &[Vec<f64>]| {
            direct_conv(
                &x[0],
                &x[1],
                &x[2],
                [2, 2, 5, 4],
                [3, 2, 2, 3],
                (2, 1),
                (1, 1),
                (1, 1),
            )
        },
        &Check::default(),
    );
    let (x, w) = (input(&[2, 3, 9], &mut rng), input(&[2, 3, 3], &mut rng));
    check_op(
        "conv1d dilation 2",
        &[x.clone(), w.clone()],
        &[true, true],
        |t, v| t.conv1d(v[0], v[1], None, 1, 1, 2),
        &|x: &[Vec<f64>]| {
            direct_conv(
                &x[0],
                &x[1],
                &[],
                [2, 3, 1, 9],
                [2, 3, 1, 3],
                (1, 1),
                (0, 1),
                (1, 2),
            )
        },
        &Check::default(),
    );
    // Causal: output t only depends on inputs ≤ t; equal to left padding of (K−1)·d.
    check_op(
        "conv1d_causal",
        &[x, w],
        &[true, true],
        |t, v| t.conv1d_causal(v[0], v[1], None, 2),
        &|x: &[Vec<f64>]| {
            let full = direct_conv(
                &x[0],
                &x[1],
                &[],
                [2, 3, 1, 9],
                [2, 3, 1, 3],
                (1, 1),
                (0, 4),
                (1, 2),
            );
            // Full output length 9 + 8 − 4 = 13; the causal outputs are the first 9 of each row.
            full.chunks(13).flat_map(|r| r[..9].to_vec()).collect()
        },
        &Check::default(),
    );
    let mut tape = Tape::new();
    let x = tape.leaf(Tensor::zeros(&[1, 2, 3, 3]));
    let w = tape.leaf(Tensor::zeros(&[1, 3, 2, 2]));
    assert!(tape.conv2d(x, w, None, (1, 1), (0, 0)).is_err());
    let w = tape.leaf(Tensor::zeros(&[1, 2, 5, 1]));
    assert!(tape.conv2d(x, w, None, (1, 1), (0, 0)).is_err());
}

#[test]
fn pooling() {
    let mut rng = Rng::new(6);
    let x = input(&[2, 3, 7], &mut rng);
    check_op(
        "max_pool1d",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.max_pool1d(v[0], 3, 2),
        &|x: &[Vec<f64>]| {
            x[0].chunks(7)
                .flat_map(|r| {
                    (0..3)
                        .map(|t| {
                            r[2 * t..2 * t + 3]
                                .iter()
                                .cloned()
                                .fold(f64::NEG_INFINITY, f64::max)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        },
        &Check::default(),
    );
    check_op(
        "avg_pool1d",
        &[x],
        &[true],
        |t, v| t.avg_pool1d(v[0], 7, 1),
        &|x: &[Vec<f64>]| {
            x[0].chunks(7)
                .map(|r| r.iter().sum::<f64>() / 7.0)
                .collect()
        },
        &Check::default(),
    );
    let mut tape = Tape::new();
    let v = tape.leaf(Tensor::zeros(&[2, 3]));
    assert!(tape.max_pool1d(v, 4, 1).is_err());
}
