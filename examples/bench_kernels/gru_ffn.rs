//! Kernel-benchmark cases of the fused GRU layer and feed-forward block, at the sizes of the
//! PyTorch peer (`shared/peers/torch_micro.py`), with its FLOP conventions: GRU forward
//! 2·3·(I·H + H·H)·B·L, FFN forward 2·rows·(d·F + F·d), forward+backward 3× forward.
//! "fwd" runs on an inference tape, "fwdbwd" on a training tape with a backward from ones.

use seqrec::ops::Activation;
use seqrec::rng::Rng;
use seqrec::{Tape, Tensor, Var};

use crate::Case;

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.uniform() - 0.5).collect())
        .unwrap()
        .to_device(crate::device())
}

/// Records `op` on a fresh tape over leaves holding `inputs`; when training, runs the
/// backward from a gradient of ones.
fn step(inputs: &[Tensor], train: bool, op: fn(&mut Tape, &[Var]) -> Var) {
    let mut tape = if train {
        Tape::new()
    } else {
        Tape::inference()
    }
    .on(crate::device());
    let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = op(&mut tape, &vars);
    if train {
        let ones = Tensor::full(tape.shape(y), 1.0);
        std::hint::black_box(tape.backward_with(y, ones).expect("backward"));
    } else {
        std::hint::black_box(tape.value(y));
    }
}

fn gru(tape: &mut Tape, v: &[Var]) -> Var {
    tape.gru(v[0], None, v[1], v[2], v[3], v[4], None)
        .expect("gru")
}

fn ffn(tape: &mut Tape, v: &[Var]) -> Var {
    tape.ffn(v[0], v[1], v[2], v[3], v[4], Activation::Relu, 0.0)
        .expect("ffn")
}

/// A forward case and a forward+backward case of `op` on `inputs`.
fn pair(
    name: &str,
    fwd_flops: f64,
    inputs: Vec<Tensor>,
    op: fn(&mut Tape, &[Var]) -> Var,
) -> [Case; 2] {
    let train_inputs = inputs.clone();
    [
        Case {
            name: format!("{name}_fwd"),
            flops: Some(fwd_flops),
            run: Box::new(move || step(&inputs, false, op)),
        },
        Case {
            name: format!("{name}_fwdbwd"),
            flops: Some(3.0 * fwd_flops),
            run: Box::new(move || step(&train_inputs, true, op)),
        },
    ]
}

pub fn cases() -> Vec<Case> {
    let mut rng = Rng::new(1);
    let (batch, length, input, hidden) = (128, 50, 64, 64);
    let gru_inputs = vec![
        random(&[batch, length, input], &mut rng),
        random(&[input, 3 * hidden], &mut rng),
        random(&[hidden, 3 * hidden], &mut rng),
        random(&[3 * hidden], &mut rng),
        random(&[3 * hidden], &mut rng),
    ];
    let gru_flops = (2 * 3 * (input * hidden + hidden * hidden) * batch * length) as f64;
    let mut cases = Vec::new();
    cases.extend(pair("gru", gru_flops, gru_inputs, gru));
    let (rows, width) = (6400, 64);
    for inner in [64, 256] {
        let inputs = vec![
            random(&[rows, width], &mut rng),
            random(&[width, inner], &mut rng),
            random(&[inner], &mut rng),
            random(&[inner, width], &mut rng),
            random(&[width], &mut rng),
        ];
        let flops = (2 * rows * (width * inner + inner * width)) as f64;
        cases.extend(pair(&format!("ffn{inner}"), flops, inputs, ffn));
    }
    cases
}
