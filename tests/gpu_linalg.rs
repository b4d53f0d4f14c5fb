//! The GPU GEMM (`shaders/gemm.wgsl`) against the CPU backend: all four transpose
//! combinations, batched and shared `b`, sizes off the 64×64 tile and the 16-deep k slice,
//! k = 0, and products small enough in output and long enough in k to take the split-K path.

mod common;

use common::{assert_close, gpu_or_skip};
use seqrec::backend::{self, LinalgKernels};
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

/// Stored shape of an operand whose `op` is `[rows, cols]`, with batch axes in front.
fn stored(batch: &[usize], rows: usize, cols: usize, transpose: bool) -> Vec<usize> {
    let mut s = batch.to_vec();
    if transpose {
        s.extend([cols, rows]);
    } else {
        s.extend([rows, cols]);
    }
    s
}

/// Checks `op(a)·op(b)` for every transpose combination; the GPU gets `a` already on the GPU
/// and `b` on the host (uploaded by the kernel), so both paths are exercised.
fn check(batch: &[usize], m: usize, k: usize, n: usize, b_shared: bool, rng: &mut Rng) {
    let gpu = gpu_or_skip("gpu_matmul").expect("checked by the caller");
    let cpu = backend::for_device(Device::Cpu);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let b_batch: &[usize] = if b_shared { &[] } else { batch };
        let a = random(&stored(batch, m, k, ta), rng);
        let b = random(&stored(b_batch, k, n, tb), rng);
        let want = cpu.matmul(&a, &b, ta, tb);
        let got = gpu.matmul(&a.to_device(Device::Gpu), &b, ta, tb);
        assert_eq!(got.device(), Device::Gpu);
        assert_eq!(got.shape(), want.shape(), "shape of {batch:?} {m}x{k}x{n}");
        let what = format!("{batch:?} m {m} k {k} n {n} shared {b_shared} ta {ta} tb {tb}");
        assert_close(&what, &got.to_vec(), &want.to_vec(), 1e-4);
    }
    // Native kernels only: nothing in this file may take the host fallback.
    assert_eq!(
        backend::gpu::fallback_count(),
        0,
        "matmul fell back to the host"
    );
}

#[test]
fn single_products_match_the_cpu() {
    if gpu_or_skip("single_products_match_the_cpu").is_none() {
        return;
    }
    let mut rng = Rng::new(1);
    for (m, k, n) in [
        (1, 1, 1),
        (1, 17, 1),
        (17, 1, 63),
        (63, 65, 17),
        (65, 63, 130),
        (130, 17, 65),
        (64, 64, 64),
        (128, 32, 192),
        (3, 200, 5),
    ] {
        check(&[], m, k, n, true, &mut rng);
    }
}

#[test]
fn batched_products_match_the_cpu() {
    if gpu_or_skip("batched_products_match_the_cpu").is_none() {
        return;
    }
    let mut rng = Rng::new(2);
    for (batch, m, k, n) in [
        (vec![3], 17, 63, 65),
        (vec![2, 3], 1, 17, 130),
        (vec![5], 65, 1, 17),
        (vec![1], 63, 65, 1),
    ] {
        check(&batch, m, k, n, false, &mut rng);
        check(&batch, m, k, n, true, &mut rng);
    }
}

#[test]
fn zero_depth_gives_zeros_and_empty_outputs_work() {
    let Some(gpu) = gpu_or_skip("zero_depth_gives_zeros_and_empty_outputs_work") else {
        return;
    };
    let mut rng = Rng::new(3);
    // k = 0: the output must be written (the buffer comes from a pool), with zeros.
    let filler = random(&[2 * 17 * 65], &mut rng).to_device(Device::Gpu);
    drop(filler.to_vec());
    drop(filler);
    for (ta, tb) in [(false, false), (true, true)] {
        let a = Tensor::zeros(&stored(&[2], 17, 0, ta));
        let b = Tensor::zeros(&stored(&[2], 0, 65, tb));
        let c = gpu.matmul(&a, &b, ta, tb);
        assert_eq!(c.shape(), &[2, 17, 65]);
        assert!(c.to_vec().iter().all(|&v| v == 0.0));
    }
    let a = random(&[0, 5], &mut rng);
    let b = random(&[5, 3], &mut rng);
    let c = gpu.matmul(&a, &b, false, false);
    assert_eq!(c.shape(), &[0, 3]);
    assert!(c.to_vec().is_empty());
}

#[test]
fn long_products_with_small_outputs_split_k_and_match_the_cpu() {
    if gpu_or_skip("long_products_with_small_outputs_split_k_and_match_the_cpu").is_none() {
        return;
    }
    let mut rng = Rng::new(4);
    // Weight-gradient shapes (xᵀ·dY): a few output tiles, k long enough for several splits,
    // and k not a multiple of the split depth.
    check(&[], 17, 1030, 65, true, &mut rng);
    check(&[2], 5, 777, 3, false, &mut rng);
}

#[test]
fn batches_past_the_grid_limit_are_cut_into_several_dispatches() {
    let Some(gpu) = gpu_or_skip("batches_past_the_grid_limit_are_cut_into_several_dispatches")
    else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(5);
    // 65 537 items: one more than a grid's z holds, so the last item is a second dispatch.
    let a = random(&[65_537, 1, 2], &mut rng);
    let b = random(&[65_537, 2, 1], &mut rng);
    let want = cpu.matmul(&a, &b, false, false);
    let got = gpu.matmul(&a, &b, false, false);
    assert_close("65 537 items", &got.to_vec(), &want.to_vec(), 1e-5);
}
