//! The fused GRU layer: gradient checks against a plain f64 GRU (with and without h0, with
//! a padding mask including left padding), hand-computed values, padding semantics, the
//! multi-threaded path against one-row-at-a-time runs, and shape errors.

mod common;

use common::*;
use seqrec::rng::Rng;
use seqrec::{Tape, Tensor, Var};

/// Sizes of a GRU case.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    length: usize,
    input: usize,
    hidden: usize,
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// The GRU written step by step in f64, straight from the PyTorch equations.
#[allow(clippy::too_many_arguments)]
fn reference_gru(
    d: Dims,
    x: &[f64],
    h0: Option<&[f64]>,
    w_ih: &[f64],
    w_hh: &[f64],
    b_ih: &[f64],
    b_hh: &[f64],
    mask: Option<&[f64]>,
) -> Vec<f64> {
    let Dims {
        batch,
        length,
        input,
        hidden,
    } = d;
    let g3 = 3 * hidden;
    let mut out = vec![0.0; batch * length * hidden];
    for b in 0..batch {
        let mut h: Vec<f64> = match h0 {
            Some(h0) => h0[b * hidden..(b + 1) * hidden].to_vec(),
            None => vec![0.0; hidden],
        };
        for t in 0..length {
            let xt = &x[(b * length + t) * input..(b * length + t + 1) * input];
            // Projections of x_t and h onto the three gates (+ biases).
            let gx: Vec<f64> = (0..g3)
                .map(|k| b_ih[k] + (0..input).map(|p| xt[p] * w_ih[p * g3 + k]).sum::<f64>())
                .collect();
            let gh: Vec<f64> = (0..g3)
                .map(|k| b_hh[k] + (0..hidden).map(|p| h[p] * w_hh[p * g3 + k]).sum::<f64>())
                .collect();
            let m = mask.map_or(1.0, |m| m[b * length + t]);
            let mut next = vec![0.0; hidden];
            for j in 0..hidden {
                let r = sigmoid(gx[j] + gh[j]);
                let z = sigmoid(gx[hidden + j] + gh[hidden + j]);
                let n = (gx[2 * hidden + j] + r * gh[2 * hidden + j]).tanh();
                let updated = (1.0 - z) * n + z * h[j];
                next[j] = m * updated + (1.0 - m) * h[j];
            }
            h = next;
            out[(b * length + t) * hidden..(b * length + t + 1) * hidden].copy_from_slice(&h);
        }
    }
    out
}

fn input(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    (shape.to_vec(), random_values(shape.iter().product(), rng))
}

fn tensor(shape: &[usize], values: &[f64]) -> Tensor {
    Tensor::from_vec(shape, values.iter().map(|&v| v as f32).collect()).unwrap()
}

/// Gradient-checks one configuration.
fn check_gru(d: Dims, with_h0: bool, mask: Option<Vec<f64>>, seed: u64) {
    let mut rng = Rng::new(seed);
    let Dims {
        batch,
        length,
        input: i,
        hidden: h,
    } = d;
    let mut inputs = vec![input(&[batch, length, i], &mut rng)];
    if with_h0 {
        inputs.push(input(&[batch, h], &mut rng));
    }
    inputs.push(input(&[i, 3 * h], &mut rng));
    inputs.push(input(&[h, 3 * h], &mut rng));
    inputs.push(input(&[3 * h], &mut rng));
    inputs.push(input(&[3 * h], &mut rng));
    let mask_tensor = mask.as_ref().map(|m| tensor(&[batch, length], m));
    let engine = |t: &mut Tape, v: &[Var]| {
        let (h0, rest) = if with_h0 {
            (Some(v[1]), &v[2..])
        } else {
            (None, &v[1..])
        };
        t.gru(
            v[0],
            h0,
            rest[0],
            rest[1],
            rest[2],
            rest[3],
            mask_tensor.as_ref(),
        )
    };
    let reference = |xs: &[Vec<f64>]| {
        let (h0, rest) = if with_h0 {
            (Some(&xs[1][..]), &xs[2..])
        } else {
            (None, &xs[1..])
        };
        reference_gru(
            d,
            &xs[0],
            h0,
            &rest[0],
            &rest[1],
            &rest[2],
            &rest[3],
            mask.as_deref(),
        )
    };
    let name = format!("gru h0={with_h0} mask={}", mask.is_some());
    let differentiable = vec![true; inputs.len()];
    check_op(
        &name,
        &inputs,
        &differentiable,
        engine,
        &reference,
        &Check {
            seed,
            ..Check::default()
        },
    );
}

#[test]
fn gradients_without_h0_or_mask() {
    let d = Dims {
        batch: 2,
        length: 4,
        input: 3,
        hidden: 5,
    };
    check_gru(d, false, None, 1);
}

#[test]
fn gradients_with_h0() {
    let d = Dims {
        batch: 3,
        length: 3,
        input: 4,
        hidden: 2,
    };
    check_gru(d, true, None, 2);
}

#[test]
fn gradients_with_h0_and_padding_mask() {
    let d = Dims {
        batch: 3,
        length: 5,
        input: 2,
        hidden: 3,
    };
    // Row 0: left padding; row 1: right padding; row 2: a hole in the middle.
    let mask = vec![
        0.0, 0.0, 1.0, 1.0, 1.0, //
        1.0, 1.0, 1.0, 0.0, 0.0, //
        1.0, 0.0, 1.0, 1.0, 1.0,
    ];
    check_gru(d, true, Some(mask.clone()), 3);
    check_gru(d, false, Some(mask), 4);
}

#[test]
fn hand_computed_values() {
    // Zero weights and biases: r = z = 1/2, n = tanh(0) = 0, so h' = h / 2.
    // With w_ih of the n gate = 1 and x = 1: n = tanh(1), h' = tanh(1)/2 + h/2.
    let mut tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[1, 3, 1], vec![0.0, 1.0, 0.0]).unwrap());
    let h0 = tape.leaf(Tensor::from_vec(&[1, 1], vec![2.0]).unwrap());
    let w_ih = tape.leaf(Tensor::from_vec(&[1, 3], vec![0.0, 0.0, 1.0]).unwrap());
    let w_hh = tape.leaf(Tensor::zeros(&[1, 3]));
    let b_ih = tape.leaf(Tensor::zeros(&[3]));
    let b_hh = tape.leaf(Tensor::zeros(&[3]));
    let y = tape.gru(x, Some(h0), w_ih, w_hh, b_ih, b_hh, None).unwrap();
    let h1 = 1.0f32;
    let h2 = 1f32.tanh() / 2.0 + h1 / 2.0;
    let h3 = h2 / 2.0;
    assert_close("gru by hand", &tape.value(y).to_vec(), &[h1, h2, h3], 1e-6);
}

#[test]
fn padding_carries_the_state_and_gets_no_input_gradient() {
    let (batch, length, input, hidden) = (2, 6, 3, 4);
    let mut rng = Rng::new(9);
    let values = |n: usize, rng: &mut Rng| random_values(n, rng);
    let x_values = values(batch * length * input, &mut rng);
    let weights = [
        (
            vec![input, 3 * hidden],
            values(input * 3 * hidden, &mut rng),
        ),
        (
            vec![hidden, 3 * hidden],
            values(hidden * 3 * hidden, &mut rng),
        ),
        (vec![3 * hidden], values(3 * hidden, &mut rng)),
        (vec![3 * hidden], values(3 * hidden, &mut rng)),
    ];
    // Row 0: two padding steps on the left; row 1: one on the right.
    let mask = tensor(
        &[batch, length],
        &[0., 0., 1., 1., 1., 1., 1., 1., 1., 1., 1., 0.],
    );
    let mut tape = Tape::new();
    let x = tape.leaf(tensor(&[batch, length, input], &x_values));
    let w: Vec<Var> = weights
        .iter()
        .map(|(s, v)| tape.leaf(tensor(s, v)))
        .collect();
    let y = tape
        .gru(x, None, w[0], w[1], w[2], w[3], Some(&mask))
        .unwrap();
    let out = tape.value(y).to_vec();
    let at = |b: usize, t: usize| &out[(b * length + t) * hidden..(b * length + t + 1) * hidden];
    // Left padding with no h0: the state stays exactly zero.
    assert!(at(0, 0).iter().chain(at(0, 1)).all(|&v| v == 0.0));
    assert!(at(0, 2).iter().any(|&v| v != 0.0));
    // Right padding: the last step repeats the one before, bit for bit.
    assert_eq!(at(1, 5), at(1, 4));

    // The real steps of row 0 equal a run on the unpadded sequence.
    let mut short = Tape::new();
    let x_short = short.leaf(tensor(
        &[1, length - 2, input],
        &x_values[2 * input..length * input],
    ));
    let w_short: Vec<Var> = weights
        .iter()
        .map(|(s, v)| short.leaf(tensor(s, v)))
        .collect();
    let y_short = short
        .gru(
            x_short, None, w_short[0], w_short[1], w_short[2], w_short[3], None,
        )
        .unwrap();
    assert_close(
        "left-padded vs unpadded",
        &out[2 * hidden..length * hidden],
        &short.value(y_short).to_vec(),
        1e-6,
    );

    // Padding steps read no input: their x gets a zero gradient.
    let seed = Tensor::full(&[batch, length, hidden], 1.0);
    let grads = tape.backward_with(y, seed).unwrap();
    let dx = grads.get(x).unwrap().to_vec();
    let dx_at = |b: usize, t: usize| &dx[(b * length + t) * input..(b * length + t + 1) * input];
    for (b, t) in [(0, 0), (0, 1), (1, 5)] {
        assert!(dx_at(b, t).iter().all(|&v| v == 0.0), "dx[{b}, {t}]");
    }
    assert!(dx_at(0, 2).iter().any(|&v| v != 0.0));
}

/// Values and all gradients of one GRU call, for comparing two ways of running it.
struct Run {
    y: Vec<f32>,
    grads: Vec<Vec<f32>>,
}

fn run_gru(
    d: Dims,
    x: &[f64],
    h0: &[f64],
    weights: &[(Vec<usize>, Vec<f64>)],
    mask: &[f64],
    dy: &[f64],
) -> Run {
    let mut tape = Tape::new();
    let xv = tape.leaf(tensor(&[d.batch, d.length, d.input], x));
    let h0v = tape.leaf(tensor(&[d.batch, d.hidden], h0));
    let w: Vec<Var> = weights
        .iter()
        .map(|(s, v)| tape.leaf(tensor(s, v)))
        .collect();
    let mask = tensor(&[d.batch, d.length], mask);
    let y = tape
        .gru(xv, Some(h0v), w[0], w[1], w[2], w[3], Some(&mask))
        .unwrap();
    let seed = tensor(&[d.batch, d.length, d.hidden], dy);
    let grads = tape.backward_with(y, seed).unwrap();
    let mut all = vec![xv, h0v];
    all.extend(&w);
    Run {
        y: tape.value(y).to_vec(),
        grads: all
            .iter()
            .map(|&v| grads.get(v).unwrap().to_vec())
            .collect(),
    }
}

#[test]
fn threaded_batch_equals_one_row_at_a_time() {
    // Large enough (B·L·3H ≥ 2^15) that forward and backward split the batch over threads.
    let d = Dims {
        batch: 32,
        length: 20,
        input: 16,
        hidden: 24,
    };
    let (b, l, i, h) = (d.batch, d.length, d.input, d.hidden);
    let mut rng = Rng::new(21);
    let x = random_values(b * l * i, &mut rng);
    let h0 = random_values(b * h, &mut rng);
    let dy = random_values(b * l * h, &mut rng);
    let weights = vec![
        input(&[i, 3 * h], &mut rng),
        input(&[h, 3 * h], &mut rng),
        input(&[3 * h], &mut rng),
        input(&[3 * h], &mut rng),
    ];
    // Random left padding per row.
    let mask: Vec<f64> = (0..b)
        .flat_map(|row| (0..l).map(move |t| if t < row % 7 { 0.0 } else { 1.0 }))
        .collect();
    let full = run_gru(d, &x, &h0, &weights, &mask, &dy);

    let one = Dims { batch: 1, ..d };
    let mut weight_sums: Vec<Vec<f32>> = weights.iter().map(|(_, v)| vec![0.0; v.len()]).collect();
    for row in 0..b {
        let part = run_gru(
            one,
            &x[row * l * i..(row + 1) * l * i],
            &h0[row * h..(row + 1) * h],
            &weights,
            &mask[row * l..(row + 1) * l],
            &dy[row * l * h..(row + 1) * l * h],
        );
        let rows = |v: &[f32], width: usize| v[row * width..(row + 1) * width].to_vec();
        assert_close("y", &rows(&full.y, l * h), &part.y, 1e-5);
        assert_close("dx", &rows(&full.grads[0], l * i), &part.grads[0], 1e-4);
        assert_close("dh0", &rows(&full.grads[1], h), &part.grads[1], 1e-4);
        for (sum, g) in weight_sums.iter_mut().zip(&part.grads[2..]) {
            for (s, &v) in sum.iter_mut().zip(g) {
                *s += v;
            }
        }
    }
    for (k, (sum, g)) in weight_sums.iter().zip(&full.grads[2..]).enumerate() {
        assert_close(&format!("weight grad {k}"), g, sum, 1e-3);
    }
}

#[test]
fn shape_errors_are_errors() {
    let (b, l, i, h) = (2, 3, 4, 5);
    let mut tape = Tape::new();
    let x = tape.leaf(Tensor::zeros(&[b, l, i]));
    let h0 = tape.leaf(Tensor::zeros(&[b, h]));
    let w_ih = tape.leaf(Tensor::zeros(&[i, 3 * h]));
    let w_hh = tape.leaf(Tensor::zeros(&[h, 3 * h]));
    let bias = tape.leaf(Tensor::zeros(&[3 * h]));
    assert!(tape.gru(x, Some(h0), w_ih, w_hh, bias, bias, None).is_ok());

    let x2 = tape.leaf(Tensor::zeros(&[b * l, i]));
    assert!(tape.gru(x2, None, w_ih, w_hh, bias, bias, None).is_err());
    let bad_h0 = tape.leaf(Tensor::zeros(&[b + 1, h]));
    assert!(
        tape.gru(x, Some(bad_h0), w_ih, w_hh, bias, bias, None)
            .is_err()
    );
    let bad_w_ih = tape.leaf(Tensor::zeros(&[i + 1, 3 * h]));
    assert!(tape.gru(x, None, bad_w_ih, w_hh, bias, bias, None).is_err());
    let bad_w_hh = tape.leaf(Tensor::zeros(&[h, 2 * h]));
    assert!(tape.gru(x, None, w_ih, bad_w_hh, bias, bias, None).is_err());
    let bad_bias = tape.leaf(Tensor::zeros(&[3 * h + 1]));
    assert!(tape.gru(x, None, w_ih, w_hh, bad_bias, bias, None).is_err());
    assert!(tape.gru(x, None, w_ih, w_hh, bias, bad_bias, None).is_err());
    let bad_mask = Tensor::zeros(&[b, l + 1]);
    assert!(
        tape.gru(x, None, w_ih, w_hh, bias, bias, Some(&bad_mask))
            .is_err()
    );
}

#[test]
fn inference_tape_gives_the_same_values() {
    let d = Dims {
        batch: 4,
        length: 6,
        input: 3,
        hidden: 5,
    };
    let mut rng = Rng::new(33);
    let x = random_values(d.batch * d.length * d.input, &mut rng);
    let ws = [
        input(&[d.input, 3 * d.hidden], &mut rng),
        input(&[d.hidden, 3 * d.hidden], &mut rng),
        input(&[3 * d.hidden], &mut rng),
        input(&[3 * d.hidden], &mut rng),
    ];
    let mut values = Vec::new();
    for mut tape in [Tape::new(), Tape::inference()] {
        let xv = tape.leaf(tensor(&[d.batch, d.length, d.input], &x));
        let w: Vec<Var> = ws.iter().map(|(s, v)| tape.leaf(tensor(s, v))).collect();
        let y = tape.gru(xv, None, w[0], w[1], w[2], w[3], None).unwrap();
        values.push(tape.value(y).to_vec());
    }
    assert_eq!(values[0], values[1]);
    let x32: Vec<f64> = x.iter().map(|&v| v as f32 as f64).collect();
    let w32: Vec<Vec<f64>> = ws
        .iter()
        .map(|(_, v)| v.iter().map(|&x| x as f32 as f64).collect())
        .collect();
    let expected: Vec<f32> = reference_gru(d, &x32, None, &w32[0], &w32[1], &w32[2], &w32[3], None)
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_close("inference gru", &values[1], &expected, 1e-5);
}
