//! Criterion benchmarks of the CPU matmul kernel on the shapes the models run (the same shapes
//! as `examples/bench_kernels/sgemm.rs`): `cargo bench --bench sgemm`.
//! Throughput is reported in elements = flops, so criterion's "elem/s" reads as FLOP/s.
//! `sgemm_gpu` times the GPU kernel (`shaders/gemm.wgsl`) on the same shapes when there is an
//! adapter, operands resident on the GPU; each sample waits for the queue to drain.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seqrec::backend::{CpuBackend, LinalgKernels};
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

fn random_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    let values = (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    Tensor::from_vec(shape, values).expect("benchmark shapes are valid")
}

/// (name, stored shape of a, stored shape of b, transpose a, transpose b, flops).
type Shape = (
    &'static str,
    &'static [usize],
    &'static [usize],
    bool,
    bool,
    u64,
);

const SHAPES: &[Shape] = &[
    (
        "1024x1024x1024 nn",
        &[1024, 1024],
        &[1024, 1024],
        false,
        false,
        2 * 1024 * 1024 * 1024,
    ),
    (
        "6400x64x64 nn",
        &[6400, 64],
        &[64, 64],
        false,
        false,
        2 * 6400 * 64 * 64,
    ),
    (
        "64x6400x64 tn",
        &[6400, 64],
        &[6400, 64],
        true,
        false,
        2 * 6400 * 64 * 64,
    ),
    (
        "6400x64x1683 nt",
        &[6400, 64],
        &[1683, 64],
        false,
        true,
        2 * 6400 * 64 * 1683,
    ),
    (
        "6400x1683x64 nn",
        &[6400, 1683],
        &[1683, 64],
        false,
        false,
        2 * 6400 * 64 * 1683,
    ),
    (
        "1683x6400x64 tn",
        &[6400, 1683],
        &[6400, 64],
        true,
        false,
        2 * 6400 * 64 * 1683,
    ),
    (
        "128x[50x64x50] nt",
        &[128, 50, 64],
        &[128, 50, 64],
        false,
        true,
        2 * 128 * 50 * 64 * 50,
    ),
    (
        "128x[50x50x64] nn",
        &[128, 50, 50],
        &[128, 50, 64],
        false,
        false,
        2 * 128 * 50 * 64 * 50,
    ),
];

fn sgemm(c: &mut Criterion) {
    let mut rng = Rng::new(7);
    let mut group = c.benchmark_group("sgemm");
    group.sample_size(20);
    for &(name, a_shape, b_shape, ta, tb, flops) in SHAPES {
        let a = random_tensor(a_shape, &mut rng);
        let b = random_tensor(b_shape, &mut rng);
        group.throughput(Throughput::Elements(flops));
        group.bench_function(name, |bench| {
            bench.iter(|| CpuBackend.matmul(&a, &b, ta, tb))
        });
    }
    group.finish();
}

fn sgemm_gpu(c: &mut Criterion) {
    let gpu = match seqrec::backend::gpu::backend() {
        Ok(gpu) => gpu,
        Err(why) => {
            eprintln!("skipping sgemm_gpu: {why}");
            return;
        }
    };
    eprintln!("sgemm_gpu on {}", seqrec::backend::Backend::name(gpu));
    let mut rng = Rng::new(7);
    // Reading back a 1×1 product waits for every dispatch recorded before it.
    let one = Tensor::full(&[1, 1], 1.0).to_device(Device::Gpu);
    let drain = || gpu.matmul(&one, &one, false, false).to_vec();
    let mut group = c.benchmark_group("sgemm_gpu");
    group.sample_size(20);
    for &(name, a_shape, b_shape, ta, tb, flops) in SHAPES {
        let a = random_tensor(a_shape, &mut rng).to_device(Device::Gpu);
        let b = random_tensor(b_shape, &mut rng).to_device(Device::Gpu);
        drain();
        group.throughput(Throughput::Elements(flops));
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(gpu.matmul(&a, &b, ta, tb));
                }
                drain();
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sgemm, sgemm_gpu);
criterion_main!(benches);
