//! Criterion benchmarks of the fused attention op at SASRec sizes: batch 128, width 64,
//! causal, heads 1 and 2, L = 50 and 200; forward alone (inference tape) and forward plus
//! backward (training tape, gradient of ones), as PyTorch's side in `torch_micro.py`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use seqrec::rng::Rng;
use seqrec::{Tape, Tensor};

const BATCH: usize = 128;
const WIDTH: usize = 64;

fn random_inputs(len: usize, seed: u64) -> [Tensor; 3] {
    let mut rng = Rng::new(seed);
    let n = BATCH * len * WIDTH;
    [0, 1, 2].map(|_| {
        let values = (0..n).map(|_| rng.normal()).collect();
        Tensor::from_vec(&[BATCH, len, WIDTH], values).unwrap()
    })
}

fn forward(inputs: &[Tensor; 3], heads: usize) -> Tensor {
    let mut tape = Tape::inference();
    let [q, k, v] = [0, 1, 2].map(|n| tape.constant(inputs[n].clone()));
    let y = tape.attention(q, k, v, heads, true, None, 0.0).unwrap();
    tape.value(y).clone()
}

fn forward_backward(inputs: &[Tensor; 3], heads: usize, ones: &Tensor) -> Tensor {
    let mut tape = Tape::new();
    let [q, k, v] = [0, 1, 2].map(|n| tape.leaf(inputs[n].clone()));
    let y = tape.attention(q, k, v, heads, true, None, 0.0).unwrap();
    let grads = tape.backward_with(y, ones.clone()).unwrap();
    grads.get(q).unwrap().clone()
}

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    for heads in [1, 2] {
        for len in [50, 200] {
            let inputs = random_inputs(len, 1);
            let ones = Tensor::full(&[BATCH, len, WIDTH], 1.0);
            group.bench_function(format!("fwd_h{heads}_L{len}"), |b| {
                b.iter(|| black_box(forward(&inputs, heads)))
            });
            group.bench_function(format!("fwdbwd_h{heads}_L{len}"), |b| {
                b.iter(|| black_box(forward_backward(&inputs, heads, &ones)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
