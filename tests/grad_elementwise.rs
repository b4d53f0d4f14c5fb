//! Gradient checks for activations, affine maps and reductions.

mod common;

use common::*;
use seqrec::rng::Rng;
use seqrec::{Tape, Tensor};

fn input(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    (
        shape.to_vec(),
        random_values(shape.iter().product(), rng)
            .iter()
            .map(|v| 2.0 * v)
            .collect(),
    )
}

fn erf64(x: f64) -> f64 {
    // Series for small |x|, continued by the asymptotic complement: accurate to ~1e-12 here.
    if x.abs() < 3.0 {
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        x.signum()
    }
}

#[test]
fn activations_match_references_and_finite_differences() {
    let mut rng = Rng::new(1);
    type F = fn(f64) -> f64;
    let cases: [(&str, F); 7] = [
        ("relu", |x| x.max(0.0)),
        ("gelu", |x| 0.5 * x * (1.0 + erf64(x / 2f64.sqrt()))),
        ("sigmoid", |x| 1.0 / (1.0 + (-x).exp())),
        ("tanh", |x| x.tanh()),
        ("softplus", |x| (1.0 + x.exp()).ln()),
        ("exp", |x| x.exp()),
        ("log", |x| x.ln()),
    ];
    for (name, f) in cases {
        let mut x = input(&[3, 7], &mut rng);
        if name == "log" {
            x.1.iter_mut().for_each(|v| *v = v.abs() + 0.5);
        }
        if name == "relu" {
            x.1.iter_mut().for_each(|v| {
                if v.abs() < 0.05 {
                    *v += 0.2
                }
            });
        }
        check_op(
            name,
            &[x],
            &[true],
            |t, v| match name {
                "relu" => t.relu(v[0]),
                "gelu" => t.gelu(v[0]),
                "sigmoid" => t.sigmoid(v[0]),
                "tanh" => t.tanh(v[0]),
                "softplus" => t.softplus(v[0]),
                "exp" => t.exp(v[0]),
                _ => t.log(v[0]),
            },
            &|x: &[Vec<f64>]| x[0].iter().map(|&v| f(v)).collect(),
            &Check::default(),
        );
    }
}

#[test]
fn large_activation_takes_the_parallel_path() {
    let n = 1 << 16;
    let mut tape = Tape::new();
    let x = tape.leaf(
        Tensor::from_vec(
            &[n],
            (0..n).map(|i| (i as f32 / n as f32) * 8.0 - 4.0).collect(),
        )
        .unwrap(),
    );
    let y = tape.sigmoid(x).unwrap();
    let values = tape.value(y).to_vec();
    for (i, &v) in values.iter().enumerate().step_by(997) {
        let xv = (i as f64 / n as f64) * 8.0 - 4.0;
        assert!((v as f64 - 1.0 / (1.0 + (-xv).exp())).abs() < 1e-6);
    }
}

#[test]
fn scale_add_scalar_sum_mean() {
    let mut rng = Rng::new(2);
    let x = input(&[2, 3, 4], &mut rng);
    check_op(
        "scale",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.scale(v[0], -1.5),
        &|x: &[Vec<f64>]| x[0].iter().map(|v| -1.5 * v).collect(),
        &Check::default(),
    );
    check_op(
        "add_scalar",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.add_scalar(v[0], 0.25),
        &|x: &[Vec<f64>]| x[0].iter().map(|v| v + 0.25).collect(),
        &Check::default(),
    );
    // sum over axis 1 of [2,3,4] → [2,4]; mean over axes 0 and 2 → [3] (kept: [1,3,1]).
    check_op(
        "sum axis 1",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.sum(v[0], &[1], false),
        &|x: &[Vec<f64>]| {
            (0..8)
                .map(|o| (0..3).map(|j| x[0][(o / 4) * 12 + j * 4 + o % 4]).sum())
                .collect()
        },
        &Check::default(),
    );
    check_op(
        "mean axes 0,2 keep",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.mean(v[0], &[0, 2], true),
        &|x: &[Vec<f64>]| {
            (0..3)
                .map(|j| {
                    (0..2)
                        .flat_map(|a| (0..4).map(move |c| (a, c)))
                        .map(|(a, c)| x[0][a * 12 + j * 4 + c])
                        .sum::<f64>()
                        / 8.0
                })
                .collect()
        },
        &Check::default(),
    );
    check_op(
        "sum_all",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.sum_all(v[0]),
        &|x: &[Vec<f64>]| vec![x[0].iter().sum()],
        &Check::default(),
    );
    check_op(
        "mean_all",
        &[x],
        &[true],
        |t, v| t.mean_all(v[0]),
        &|x: &[Vec<f64>]| vec![x[0].iter().sum::<f64>() / 24.0],
        &Check::default(),
    );

    let mut tape = Tape::new();
    let v = tape.leaf(Tensor::zeros(&[2, 3]));
    assert!(tape.sum(v, &[2], false).is_err());
}
