//! Criterion benchmarks of the fused GRU layer and feed-forward block, at the sizes of the
//! PyTorch peer microbenchmarks (`shared/peers/torch_micro.py`): GRU B = 128, L = 50,
//! 64 → 64; FFN over 6,400 rows, 64→64→64 and 64→256→64. "fwd" records on an inference
//! tape (no gates saved, like `torch.no_grad`); "fwd+bwd" records on a training tape and
//! runs the backward from a gradient of ones. Dropout is off, as in the peer. The same cases
//! with a " gpu" suffix run through the WGSL kernels when there is a GPU adapter (each
//! iteration waits for the GPU); otherwise they say why they skip.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use seqrec::ops::Activation;
use seqrec::rng::Rng;
use seqrec::{Device, Tape, Tensor, Var};

fn random(shape: &[usize], rng: &mut Rng, device: Device) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.uniform() - 0.5).collect())
        .unwrap()
        .to_device(device)
}

/// The devices to bench: the CPU, and the GPU when there is one (with its suffix).
fn devices() -> Vec<(Device, &'static str)> {
    let mut out = vec![(Device::Cpu, "")];
    match seqrec::backend::gpu::backend() {
        Ok(_) => out.push((Device::Gpu, " gpu")),
        Err(why) => eprintln!("skipping the gpu cases: {why}"),
    }
    out
}

/// A fresh tape on the inputs' device.
fn tape_for(inputs: &[Tensor], train: bool) -> Tape {
    let tape = if train {
        Tape::new()
    } else {
        Tape::inference()
    };
    tape.on(inputs[0].device())
}

/// Records the GRU and, when training, runs its backward.
fn gru_step(inputs: &[Tensor], train: bool) {
    let mut tape = tape_for(inputs, train);
    let v: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = tape.gru(v[0], None, v[1], v[2], v[3], v[4], None).unwrap();
    if train {
        let ones = Tensor::full(tape.shape(y), 1.0);
        black_box(tape.backward_with(y, ones).unwrap());
    } else {
        black_box(tape.value(y));
    }
    seqrec::backend::synchronize(inputs[0].device());
}

/// Records the FFN and, when training, runs its backward.
fn ffn_step(inputs: &[Tensor], train: bool) {
    let mut tape = tape_for(inputs, train);
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
    seqrec::backend::synchronize(inputs[0].device());
}

fn gru(c: &mut Criterion) {
    let (batch, length, input, hidden) = (128, 50, 64, 64);
    for (device, suffix) in devices() {
        let mut rng = Rng::new(1);
        let inputs = [
            random(&[batch, length, input], &mut rng, device),
            random(&[input, 3 * hidden], &mut rng, device),
            random(&[hidden, 3 * hidden], &mut rng, device),
            random(&[3 * hidden], &mut rng, device),
            random(&[3 * hidden], &mut rng, device),
        ];
        c.bench_function(&format!("gru B=128 L=50 64->64 fwd{suffix}"), |b| {
            b.iter(|| gru_step(&inputs, false))
        });
        c.bench_function(&format!("gru B=128 L=50 64->64 fwd+bwd{suffix}"), |b| {
            b.iter(|| gru_step(&inputs, true))
        });
    }
}

fn ffn(c: &mut Criterion) {
    let (rows, width) = (6400, 64);
    for (device, suffix) in devices() {
        for hidden in [64, 256] {
            let mut rng = Rng::new(2);
            let inputs = [
                random(&[rows, width], &mut rng, device),
                random(&[width, hidden], &mut rng, device),
                random(&[hidden], &mut rng, device),
                random(&[hidden, width], &mut rng, device),
                random(&[width], &mut rng, device),
            ];
            c.bench_function(
                &format!("ffn rows=6400 64->{hidden}->64 fwd{suffix}"),
                |b| b.iter(|| ffn_step(&inputs, false)),
            );
            c.bench_function(
                &format!("ffn rows=6400 64->{hidden}->64 fwd+bwd{suffix}"),
                |b| b.iter(|| ffn_step(&inputs, true)),
            );
        }
    }
}

criterion_group!(benches, gru, ffn);
criterion_main!(benches);
