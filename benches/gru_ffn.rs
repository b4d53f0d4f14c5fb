//! Criterion benchmarks of the fused GRU layer and feed-forward block, at the sizes of the
//! PyTorch peer microbenchmarks (`shared/peers/torch_micro.py`): GRU B = 128, L = 50,
//! 64 → 64; FFN over 6,400 rows, 64→64→64 and 64→256→64. "fwd" records on an inference
//! tape (no gates saved, like `torch.no_grad`); "fwd+bwd" records on a training tape and
//! runs the backward from a gradient of ones. Dropout is off, as in the peer.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use seqrec::ops::Activation;
use seqrec::rng::Rng;
use seqrec::{Tape, Tensor, Var};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.uniform() - 0.5).collect()).unwrap()
}

/// Records the GRU and, when training, runs its backward.
fn gru_step(inputs: &[Tensor], train: bool) {
    let mut tape = if train {
        Tape::new()
    } else {
        Tape::inference()
    };
    let v: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = tape.gru(v[0], None, v[1], v[2], v[3], v[4], None).unwrap();
    if train {
        let ones = Tensor::full(tape.shape(y), 1.0);
        black_box(tape.backward_with(y, ones).unwrap());
    } else {
        black_box(tape.value(y));
    }
}

/// Records the FFN and, when training, runs its backward.
fn ffn_step(inputs: &[Tensor], train: bool) {
    let mut tape = if train {
        Tape::new()
    } else {
        Tape::inference()
    };
    let v: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = tape
        .ffn(v[0], v[1], v[2], v[3], v[4], Activation::Relu, 0.0)
        .unwrap();
    if train {
        let ones = Tensor::full(tape.shape(y), 1.0);
        black_box(tape.backward_with(y, ones).unwrap());
    } else {
        black_box(tape.value(y));
    }
}

fn gru(c: &mut Criterion) {
    let (batch, length, input, hidden) = (128, 50, 64, 64);
    let mut rng = Rng::new(1);
    let inputs = [
        random(&[batch, length, input], &mut rng),
        random(&[input, 3 * hidden], &mut rng),
        random(&[hidden, 3 * hidden], &mut rng),
        random(&[3 * hidden], &mut rng),
        random(&[3 * hidden], &mut rng),
    ];
    c.bench_function("gru B=128 L=50 64->64 fwd", |b| {
        b.iter(|| gru_step(&inputs, false))
    });
    c.bench_function("gru B=128 L=50 64->64 fwd+bwd", |b| {
        b.iter(|| gru_step(&inputs, true))
    });
}

fn ffn(c: &mut Criterion) {
    let (rows, width) = (6400, 64);
    for hidden in [64, 256] {
        let mut rng = Rng::new(2);
        let inputs = [
            random(&[rows, width], &mut rng),
            random(&[width, hidden], &mut rng),
            random(&[hidden], &mut rng),
            random(&[hidden, width], &mut rng),
            random(&[width], &mut rng),
        ];
        c.bench_function(&format!("ffn rows=6400 64->{hidden}->64 fwd"), |b| {
            b.iter(|| ffn_step(&inputs, false))
        });
        c.bench_function(&format!("ffn rows=6400 64->{hidden}->64 fwd+bwd"), |b| {
            b.iter(|| ffn_step(&inputs, true))
        });
    }
}

criterion_group!(benches, gru, ffn);
criterion_main!(benches);
