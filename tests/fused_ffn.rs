//! The fused feed-forward block: gradient checks against a plain f64 reference (ReLU and
//! GELU, rank 2 and 3, with and without dropout), dropout reproducibility and statistics,
//! the fused op against the same computation composed from `matmul`/`add`, shape errors.

mod common;

use common::*;
use seqrec::ops::Activation;
use seqrec::rng::{Rng, uniform_at};
use seqrec::{Tape, Tensor, Var};

/// erf in f64: its Maclaurin series below 3, the continued fraction of erfc above.
fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let value = if ax < 3.0 {
        let mut term = ax;
        let mut sum = ax;
        for n in 1..200 {
            term *= -ax * ax / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = e^{-x²} / √π · 1 / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))).
        let mut fraction = ax;
        for k in (1..=80).rev() {
            fraction = ax + (k as f64 / 2.0) / fraction;
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * fraction)
    };
    value.copysign(x)
}

fn act(activation: Activation, a: f64) -> f64 {
    match activation {
        Activation::Relu => a.max(0.0),
        Activation::Gelu => 0.5 * a * (1.0 + erf(a / std::f64::consts::SQRT_2)),
    }
}

fn act_slope(activation: Activation, a: f64) -> f64 {
    match activation {
        Activation::Relu => {
            if a > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + erf(a / std::f64::consts::SQRT_2));
            cdf + a * (-a * a / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt()
        }
    }
}

/// The dropout scale of hidden element `index` for stream `stream` (1 without dropout).
fn scale(dropout: Option<(f32, u32)>, index: usize) -> f64 {
    match dropout {
        None => 1.0,
        Some((p, stream)) if uniform_at(stream, index as u32) >= p => 1.0 / (1.0 - p as f64),
        Some(_) => 0.0,
    }
}

/// Sizes: rows N (all leading axes), width d, hidden F, output width.
#[derive(Clone, Copy)]
struct Dims {
    rows: usize,
    width: usize,
    hidden: usize,
    out_width: usize,
}

/// y = (act(x W1 + b1) ∘ s) W2 + b2 in f64.
fn reference_ffn(
    d: Dims,
    xs: &[Vec<f64>],
    activation: Activation,
    dropout: Option<(f32, u32)>,
) -> Vec<f64> {
    let (x, w1, b1, w2, b2) = (&xs[0], &xs[1], &xs[2], &xs[3], &xs[4]);
    let a = ref_matmul(x, w1, 1, d.rows, d.width, d.hidden, true);
    let h: Vec<f64> = a
        .iter()
        .enumerate()
        .map(|(k, &a)| act(activation, a + b1[k % d.hidden]) * scale(dropout, k))
        .collect();
    let y = ref_matmul(&h, w2, 1, d.rows, d.hidden, d.out_width, true);
    y.iter()
        .enumerate()
        .map(|(k, &y)| y + b2[k % d.out_width])
        .collect()
}

fn input(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    (shape.to_vec(), random_values(shape.iter().product(), rng))
}

/// The stream the first stochastic op of a fresh tape with this seed draws from.
fn first_stream(seed: u32) -> u32 {
    let mut tape = Tape::new();
    tape.set_seed(seed);
    tape.next_stream()
}

fn check_ffn(x_shape: &[usize], hidden: usize, out_width: usize, activation: Activation, p: f32) {
    let width = *x_shape.last().unwrap();
    let rows = x_shape[..x_shape.len() - 1].iter().product();
    let d = Dims {
        rows,
        width,
        hidden,
        out_width,
    };
    let mut rng = Rng::new(rows as u64 * 31 + hidden as u64);
    let inputs = [
        input(x_shape, &mut rng),
        input(&[width, hidden], &mut rng),
        input(&[hidden], &mut rng),
        input(&[hidden, out_width], &mut rng),
        input(&[out_width], &mut rng),
    ];
    // check_op records on a fresh `Tape::new()` (seed 0): the op's stream is its first.
    let dropout = (p > 0.0).then(|| (p, first_stream(0)));
    let reference = move |xs: &[Vec<f64>]| reference_ffn(d, xs, activation, dropout);
    check_op(
        &format!("ffn {activation:?} x{x_shape:?} F={hidden} p={p}"),
        &inputs,
        &[true; 5],
        |t, v| t.ffn(v[0], v[1], v[2], v[3], v[4], activation, p),
        &reference,
        &Check::default(),
    );
}

#[test]
fn gradients_relu_rank_2_and_3() {
    check_ffn(&[5, 4], 6, 3, Activation::Relu, 0.0);
    check_ffn(&[2, 3, 4], 5, 4, Activation::Relu, 0.0);
}

#[test]
fn gradients_gelu_rank_2_and_3() {
    check_ffn(&[5, 4], 6, 3, Activation::Gelu, 0.0);
    check_ffn(&[2, 3, 4], 5, 4, Activation::Gelu, 0.0);
}

#[test]
fn gradients_with_dropout_use_the_forward_mask() {
    check_ffn(&[4, 3, 4], 8, 3, Activation::Relu, 0.4);
    check_ffn(&[6, 4], 7, 5, Activation::Gelu, 0.3);
}

#[test]
fn reference_erf_is_accurate() {
    // Known values (Abramowitz & Stegun table 7.1) on both sides of the switch at 3.
    for (x, expected) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.9, 0.999_958_902_121_900_5),
        (3.1, 0.999_988_351_342_632_8),
    ] {
        assert!((erf(x) - expected).abs() < 1e-12, "erf({x}) = {}", erf(x));
    }
}

/// An FFN whose hidden layer is all ones before dropout and whose W2 is the identity, so
/// the output is the dropout scale of every hidden element.
fn dropout_pattern(tape: &mut Tape, rows: usize, hidden: usize, p: f32) -> Vec<f32> {
    let x = tape.leaf(Tensor::zeros(&[rows, 3]));
    let w1 = tape.leaf(Tensor::zeros(&[3, hidden]));
    let b1 = tape.leaf(Tensor::full(&[hidden], 1.0));
    let identity: Vec<f32> = (0..hidden * hidden)
        .map(|k| if k / hidden == k % hidden { 1.0 } else { 0.0 })
        .collect();
    let w2 = tape.leaf(Tensor::from_vec(&[hidden, hidden], identity).unwrap());
    let b2 = tape.leaf(Tensor::zeros(&[hidden]));
    let y = tape.ffn(x, w1, b1, w2, b2, Activation::Relu, p).unwrap();
    tape.value(y).to_vec()
}

#[test]
fn dropout_is_reproducible_inverted_and_off_in_inference() {
    let (rows, hidden, p) = (300, 128, 0.25f32);
    let run = |seed: u32| {
        let mut tape = Tape::new();
        tape.set_seed(seed);
        dropout_pattern(&mut tape, rows, hidden, p)
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a, b, "same seed, same mask");
    assert_ne!(a, c, "another seed, another mask");
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
    assert!(
        (dropped - p as f64).abs() < 0.01,
        "dropped fraction {dropped}"
    );
    let kept = 1.0 / (1.0 - p);
    assert!(a.iter().all(|&v| v == 0.0 || (v - kept).abs() < 1e-6));

    let mut inference = Tape::inference();
    let off = dropout_pattern(&mut inference, rows, hidden, p);
    assert!(off.iter().all(|&v| v == 1.0));
}

/// Values and gradients of the fused op, and of the same block composed from matmul/add
/// with the activation (and dropout) applied by hand between two tapes.
#[test]
fn fused_equals_composed_ops() {
    // Large enough (rows·F ≥ 2^15) for the multi-threaded path, over several row blocks.
    let (batch, length, width, hidden, out_width) = (6, 70, 24, 96, 20);
    for (activation, p) in [(Activation::Relu, 0.0), (Activation::Gelu, 0.2)] {
        let mut rng = Rng::new(77);
        let values = [
            input(&[batch, length, width], &mut rng),
            input(&[width, hidden], &mut rng),
            input(&[hidden], &mut rng),
            input(&[hidden, out_width], &mut rng),
            input(&[out_width], &mut rng),
        ];
        let dy = random_values(batch * length * out_width, &mut rng);
        let to_tensor = |(shape, v): &(Vec<usize>, Vec<f64>)| {
            Tensor::from_vec(shape, v.iter().map(|&x| x as f32).collect()).unwrap()
        };
        let dy_tensor = to_tensor(&(vec![batch, length, out_width], dy));

        // Fused.
        let mut fused = Tape::new();
        fused.set_seed(3);
        let v: Vec<Var> = values.iter().map(|x| fused.leaf(to_tensor(x))).collect();
        let y = fused
            .ffn(v[0], v[1], v[2], v[3], v[4], activation, p)
            .unwrap();
        let fused_y = fused.value(y).to_vec();
        let g = fused.backward_with(y, dy_tensor.clone()).unwrap();
        let fused_grads: Vec<Vec<f32>> = v.iter().map(|&v| g.get(v).unwrap().to_vec()).collect();
        let dropout = (p > 0.0).then(|| (p, first_stream(3)));

        // Composed, first half: a = x W1 + b1.
        let mut first = Tape::new();
        let (x, w1, b1) = (
            first.leaf(to_tensor(&values[0])),
            first.leaf(to_tensor(&values[1])),
            first.leaf(to_tensor(&values[2])),
        );
        let xw = first.matmul(x, w1).unwrap();
        let a_var = first.add(xw, b1).unwrap();
        let a = first.value(a_var).to_vec();
        let h: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(k, &a)| (act(activation, a as f64) * scale(dropout, k)) as f32)
            .collect();
        // Second half: y = h W2 + b2.
        let mut second = Tape::new();
        let h_var = second.leaf(Tensor::from_vec(&[batch, length, hidden], h).unwrap());
        let (w2, b2) = (
            second.leaf(to_tensor(&values[3])),
            second.leaf(to_tensor(&values[4])),
        );
        let hw = second.matmul(h_var, w2).unwrap();
        let y2 = second.add(hw, b2).unwrap();
        assert_close("y", &fused_y, &second.value(y2).to_vec(), 1e-4);
        let g2 = second.backward_with(y2, dy_tensor).unwrap();
        let dh = g2.get(h_var).unwrap().to_vec();
        let da: Vec<f32> = dh
            .iter()
            .zip(&a)
            .enumerate()
            .map(|(k, (&dh, &a))| {
                (dh as f64 * scale(dropout, k) * act_slope(activation, a as f64)) as f32
            })
            .collect();
        let g1 = first
            .backward_with(
                a_var,
                Tensor::from_vec(&[batch, length, hidden], da).unwrap(),
            )
            .unwrap();
        let composed = [
            g1.get(x).unwrap().to_vec(),
            g1.get(w1).unwrap().to_vec(),
            g1.get(b1).unwrap().to_vec(),
            g2.get(w2).unwrap().to_vec(),
            g2.get(b2).unwrap().to_vec(),
        ];
        for (k, (f, c)) in fused_grads.iter().zip(&composed).enumerate() {
            assert_close(&format!("{activation:?} grad {k}"), f, c, 1e-3);
        }
    }
}

#[test]
fn shape_and_argument_errors_are_errors() {
    let mut tape = Tape::new();
    let x = tape.leaf(Tensor::zeros(&[2, 3, 4]));
    let w1 = tape.leaf(Tensor::zeros(&[4, 8]));
    let b1 = tape.leaf(Tensor::zeros(&[8]));
    let w2 = tape.leaf(Tensor::zeros(&[8, 5]));
    let b2 = tape.leaf(Tensor::zeros(&[5]));
    let relu = Activation::Relu;
    let y = tape.ffn(x, w1, b1, w2, b2, relu, 0.1).unwrap();
    assert_eq!(tape.shape(y), &[2, 3, 5]);

    let bad_x = tape.leaf(Tensor::zeros(&[2, 3, 5]));
    assert!(tape.ffn(bad_x, w1, b1, w2, b2, relu, 0.0).is_err());
    let scalar = tape.leaf(Tensor::scalar(1.0));
    assert!(tape.ffn(scalar, w1, b1, w2, b2, relu, 0.0).is_err());
    assert!(tape.ffn(x, w1, b2, w2, b2, relu, 0.0).is_err());
    assert!(tape.ffn(x, w1, b1, w2, b1, relu, 0.0).is_err());
    let bad_w2 = tape.leaf(Tensor::zeros(&[7, 5]));
    assert!(tape.ffn(x, w1, b1, bad_w2, b2, relu, 0.0).is_err());
    let w1_empty = tape.leaf(Tensor::zeros(&[4, 0]));
    let b1_empty = tape.leaf(Tensor::zeros(&[0]));
    let w2_empty = tape.leaf(Tensor::zeros(&[0, 5]));
    assert!(
        tape.ffn(x, w1_empty, b1_empty, w2_empty, b2, relu, 0.0)
            .is_err()
    );
    for p in [1.0, -0.1, f32::NAN] {
        assert!(tape.ffn(x, w1, b1, w2, b2, relu, p).is_err(), "p = {p}");
    }
}
