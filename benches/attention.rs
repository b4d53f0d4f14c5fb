//! Criterion benchmarks of the fused attention op at SASRec sizes: batch 128, width 64,
//! causal, heads 1 and 2, L = 50 and 200; forward alone (inference tape) and forward plus
//! backward (training tape, gradient of ones), as PyTorch's side in `torch_micro.py`.
//! `attention_gpu` runs the same cases through the WGSL kernels when there is a GPU adapter
//! (each iteration waits for the GPU), and says why it skips otherwise.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use seqrec::rng::Rng;
use seqrec::{Device, Tape, Tensor};

const BATCH: usize = 128;
const WIDTH: usize = 64;

fn random_inputs(len: usize, seed: u64, device: Device) -> [Tensor; 3] {
    let mut rng = Rng::new(seed);
    let n = BATCH * len * WIDTH;
    [0, 1, 2].map(|_| {
        let values = (0..n).map(|_| rng.normal()).collect();
        Tensor::from_vec(&[BATCH, len, WIDTH], values)
            .unwrap()
            .to_device(device)
    })
}

fn forward(inputs: &[Tensor; 3], heads: usize) -> Tensor {
    let mut tape = Tape::inference().on(inputs[0].device());
    let [q, k, v] = [0, 1, 2].map(|n| tape.constant(inputs[n].clone()));
    let y = tape.attention(q, k, v, heads, true, None, 0.0).unwrap();
    tape.value(y).clone()
}

fn forward_backward(inputs: &[Tensor; 3], heads: usize, ones: &Tensor) -> Tensor {
    let mut tape = Tape::new().on(inputs[0].device());
    let [q, k, v] = [0, 1, 2].map(|n| tape.leaf(inputs[n].clone()));
    let y = tape.attention(q, k, v, heads, true, None, 0.0).unwrap();
    let grads = tape.backward_with(y, ones.clone()).unwrap();
    grads.get(q).unwrap().clone()
}

fn cases(c: &mut Criterion, group_name: &str, device: Device) {
    let mut group = c.benchmark_group(group_name);
    for heads in [1, 2] {
        for len in [50, 200] {
            let inputs = random_inputs(len, 1, device);
            let ones = Tensor::full(&[BATCH, len, WIDTH], 1.0).to_device(device);
            group.bench_function(format!("fwd_h{heads}_L{len}"), |b| {
                b.iter(|| {
                    black_box(forward(&inputs, heads));
                    seqrec::backend::synchronize(device);
                })
            });
            group.bench_function(format!("fwdbwd_h{heads}_L{len}"), |b| {
                b.iter(|| {
                    black_box(forward_backward(&inputs, heads, &ones));
                    seqrec::backend::synchronize(device);
                })
            });
        }
    }
    group.finish();
}

fn attention(c: &mut Criterion) {
    cases(c, "attention", Device::Cpu);
}

fn attention_gpu(c: &mut Criterion) {
    match seqrec::backend::gpu::backend() {
        Ok(gpu) => {
            eprintln!("attention_gpu on {}", seqrec::backend::Backend::name(gpu));
            cases(c, "attention_gpu", Device::Gpu);
        }
        Err(why) => eprintln!("skipping attention_gpu: {why}"),
    }
}

criterion_group!(benches, attention, attention_gpu);
criterion_main!(benches);
