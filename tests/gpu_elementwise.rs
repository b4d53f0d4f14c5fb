//! The GPU's elementwise, reduction and activation kernels against the CPU backend: every
//! binary op over broadcast patterns up to rank 4, sums over broadcast axes through each
//! reduction scheme, in-place accumulation, every activation forward and backward, and a
//! broadcasting tape run end to end on the GPU.

mod common;

use common::{assert_close, gpu_or_skip};
use seqrec::backend::gpu::fallback_count;
use seqrec::backend::{self, ActivationKernels, BinaryOp, ElementwiseKernels, UnaryOp};
use seqrec::rng::Rng;
use seqrec::{Device, Tape, Tensor};

/// Values drawn uniformly from [lo, hi).
fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(
        shape,
        (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect(),
    )
    .unwrap()
}

/// Values with magnitude in [0.5, 1.5) and a random sign (safe divisors).
fn away_from_zero(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    let values = (0..n)
        .map(|_| {
            let m = 0.5 + rng.uniform();
            if rng.uniform() < 0.5 { -m } else { m }
        })
        .collect();
    Tensor::from_vec(shape, values).unwrap()
}

/// The numpy broadcast of two shapes (right-aligned).
fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| (i + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
    (0..rank)
        .map(|i| {
            let (x, y) = (dim(a, i), dim(b, i));
            assert!(
                x == y || x == 1 || y == 1,
                "{a:?} and {b:?} do not broadcast"
            );
            x.max(y)
        })
        .collect()
}

const OPS: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

const UNARY_OPS: [UnaryOp; 7] = [
    UnaryOp::Relu,
    UnaryOp::Gelu,
    UnaryOp::Sigmoid,
    UnaryOp::Tanh,
    UnaryOp::Softplus,
    UnaryOp::Exp,
    UnaryOp::Log,
];

#[test]
fn binary_ops_broadcast_like_the_cpu() {
    let Some(gpu) = gpu_or_skip("binary_ops_broadcast_like_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let fallbacks = fallback_count();
    let mut rng = Rng::new(11);
    let patterns: [(&[usize], &[usize]); 12] = [
        (&[7, 13], &[7, 13]),
        (&[300], &[300]),
        (&[5, 6], &[]),
        (&[], &[5, 6]),
        (&[], &[]),
        (&[17, 33], &[33]),
        (&[17, 1], &[17, 33]),
        (&[4, 1, 3], &[5, 1]),
        (&[3, 1], &[1, 4]),
        (&[2, 3, 4, 5], &[3, 1, 5]),
        (&[2, 1, 4, 1], &[1, 3, 1, 5]),
        (&[1, 3, 1, 70], &[6, 1, 9, 1]),
    ];
    for (sa, sb) in patterns {
        let out_shape = broadcast(sa, sb);
        let a = uniform(sa, -2.0, 2.0, &mut rng);
        let b = away_from_zero(sb, &mut rng);
        let (ga, gb) = (a.to_device(Device::Gpu), b.to_device(Device::Gpu));
        for op in OPS {
            let want = cpu.binary(op, &a, &b, &out_shape);
            let got = gpu.binary(op, &ga, &gb, &out_shape);
            assert_eq!(got.device(), Device::Gpu);
            assert_eq!(got.shape(), want.shape());
            let what = format!("{op:?} {sa:?} with {sb:?}");
            assert_close(&what, &got.to_vec(), &want.to_vec(), 1e-6);
            // A host operand is uploaded on the way.
            let mixed = gpu.binary(op, &a, &gb, &out_shape);
            assert_close(&what, &mixed.to_vec(), &want.to_vec(), 1e-6);
        }
    }
    assert_eq!(fallback_count(), fallbacks, "a host fallback ran");
}

#[test]
fn sums_over_broadcast_axes_match_the_cpu() {
    let Some(gpu) = gpu_or_skip("sums_over_broadcast_axes_match_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let fallbacks = fallback_count();
    let mut rng = Rng::new(12);
    // Columns (split and not), rows (split and not), full sums, mixed runs, rank 4.
    let patterns: [(&[usize], &[usize]); 15] = [
        (&[256, 200], &[200]),
        (&[256, 200], &[1, 200]),
        (&[200, 256], &[200, 1]),
        (&[256, 256], &[]),
        (&[37], &[1]),
        (&[1000, 3], &[1, 3]),
        (&[3, 5000], &[3, 1]),
        (&[3, 70], &[3, 1]),
        (&[4, 8, 16], &[4, 1, 16]),
        (&[4, 8, 16], &[8, 1]),
        (&[4, 8, 40], &[8, 1]),
        (&[2, 3, 4, 5], &[3, 1, 5]),
        (&[2, 3, 4, 5], &[1, 3, 1, 1]),
        (&[2, 1, 4, 5], &[4, 1]),
        (&[5, 7], &[5, 7]),
    ];
    for (sx, shape) in patterns {
        let x = uniform(sx, -1.0, 1.0, &mut rng);
        let want = cpu.sum_to_shape(&x, shape);
        let got = gpu.sum_to_shape(&x.to_device(Device::Gpu), shape);
        assert_eq!(got.device(), Device::Gpu);
        assert_eq!(got.shape(), shape);
        let what = format!("sum {sx:?} to {shape:?}");
        assert_close(&what, &got.to_vec(), &want.to_vec(), 1e-4);
    }
    assert_eq!(fallback_count(), fallbacks, "a host fallback ran");
}

#[test]
fn add_assign_reuses_only_an_unshared_buffer() {
    let Some(gpu) = gpu_or_skip("add_assign_reuses_only_an_unshared_buffer") else {
        return;
    };
    let mut rng = Rng::new(13);
    for n in [1usize, 255, 257, 3000] {
        let (s, x) = (
            uniform(&[n], -1.0, 1.0, &mut rng),
            uniform(&[n], -1.0, 1.0, &mut rng),
        );
        let want: Vec<f32> = s
            .to_vec()
            .iter()
            .zip(x.to_vec())
            .map(|(a, b)| a + b)
            .collect();

        // Unshared: updated in place.
        let sum = s.to_device(Device::Gpu);
        let before = buffer_address(&sum);
        let got = gpu.add_assign(sum, &x.to_device(Device::Gpu));
        assert_eq!(buffer_address(&got), before, "an unshared sum was copied");
        assert_close("add_assign unshared", &got.to_vec(), &want, 1e-6);

        // Shared: the other holder keeps its values.
        let sum = s.to_device(Device::Gpu);
        let snapshot = sum.clone();
        let got = gpu.add_assign(sum, &x.to_device(Device::Gpu));
        assert_close("add_assign shared", &got.to_vec(), &want, 1e-6);
        assert_eq!(
            snapshot.to_vec(),
            s.to_vec(),
            "a shared sum was overwritten"
        );

        // A host sum and a host x.
        let got = gpu.add_assign(s.clone(), &x);
        assert_eq!(got.device(), Device::Gpu);
        assert_close("add_assign host", &got.to_vec(), &want, 1e-6);
    }
}

/// Where a GPU tensor's buffer lives (identity of the allocation).
fn buffer_address(t: &Tensor) -> usize {
    match t.storage() {
        seqrec::tensor::Storage::Gpu(b) => std::sync::Arc::as_ptr(b) as usize,
        seqrec::tensor::Storage::Cpu(_) => panic!("expected a GPU tensor"),
    }
}

#[test]
fn activations_match_the_cpu_forward_and_backward() {
    let Some(gpu) = gpu_or_skip("activations_match_the_cpu_forward_and_backward") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let fallbacks = fallback_count();
    let mut rng = Rng::new(14);
    // Saturating and tiny inputs next to the random ones.
    let edges = [-50.0f32, -20.0, -8.0, -1e-3, 0.0, 1e-3, 8.0, 20.0, 50.0];
    for shape in [&[1usize][..], &[255], &[257], &[3, 1000]] {
        for op in UNARY_OPS {
            let mut values = uniform(shape, -4.0, 4.0, &mut rng).to_vec();
            if op == UnaryOp::Log {
                values.iter_mut().for_each(|v| *v = v.abs() + 1e-3);
            } else if values.len() > edges.len() {
                let edges = edges
                    .iter()
                    .filter(|e| op != UnaryOp::Exp || e.abs() < 30.0);
                values.iter_mut().zip(edges).for_each(|(v, &e)| *v = e);
            }
            let x = Tensor::from_vec(shape, values).unwrap();
            let what = format!("{op:?} {shape:?}");
            let want = cpu.unary(op, &x);
            let got = gpu.unary(op, &x.to_device(Device::Gpu));
            assert_eq!(got.device(), Device::Gpu);
            assert_close(&what, &got.to_vec(), &want.to_vec(), 1e-5);

            let dy = uniform(shape, -1.0, 1.0, &mut rng);
            let want_dx = cpu.unary_backward(op, &x, &want, &dy);
            let got_dx = gpu.unary_backward(
                op,
                &x.to_device(Device::Gpu),
                &got,
                &dy.to_device(Device::Gpu),
            );
            assert_close(
                &format!("{what} backward"),
                &got_dx.to_vec(),
                &want_dx.to_vec(),
                1e-5,
            );
        }
        let x = uniform(shape, -3.0, 3.0, &mut rng);
        let gx = x.to_device(Device::Gpu);
        let want = cpu.affine(&x, -1.5, 0.25);
        assert_close(
            "affine",
            &gpu.affine(&gx, -1.5, 0.25).to_vec(),
            &want.to_vec(),
            1e-6,
        );
        let want = cpu.scale(&x, 3.0);
        assert_close("scale", &gpu.scale(&gx, 3.0).to_vec(), &want.to_vec(), 1e-6);
    }
    assert_eq!(fallback_count(), fallbacks, "a host fallback ran");
}

/// y = sum(gelu(a · b − c / d), axis 0) with broadcasting operands, forward and backward
/// on each device: the tape's binary backward runs `binary`, `scale` and `sum_to_shape`.
#[test]
fn a_broadcasting_tape_runs_on_the_gpu_like_on_the_cpu() {
    let Some(_) = gpu_or_skip("a_broadcasting_tape_runs_on_the_gpu_like_on_the_cpu") else {
        return;
    };
    let mut rng = Rng::new(15);
    let inputs = [
        uniform(&[6, 5, 7], -1.0, 1.0, &mut rng),
        uniform(&[7], -1.0, 1.0, &mut rng),
        uniform(&[5, 1], -1.0, 1.0, &mut rng),
        away_from_zero(&[6, 1, 1], &mut rng),
    ];
    let seed = uniform(&[5, 7], -1.0, 1.0, &mut rng);
    let run = |device: Device| {
        let mut tape = Tape::new().on(device);
        let v: Vec<_> = inputs
            .iter()
            .map(|t| tape.leaf(t.to_device(device)))
            .collect();
        let ab = tape.mul(v[0], v[1]).unwrap();
        let cd = tape.div(v[2], v[3]).unwrap();
        let z = tape.sub(ab, cd).unwrap();
        let g = tape.gelu(z).unwrap();
        let y = tape.sum(g, &[0], false).unwrap();
        assert_eq!(tape.value(y).device(), device);
        let out = tape.value(y).to_vec();
        let grads = tape.backward_with(y, seed.to_device(device)).unwrap();
        let dx: Vec<Vec<f32>> = v
            .iter()
            .map(|&x| {
                let g = grads.get(x).unwrap();
                assert_eq!(g.device(), device);
                g.to_vec()
            })
            .collect();
        (out, dx)
    };
    let (want_y, want_dx) = run(Device::Cpu);
    let fallbacks = fallback_count();
    let (got_y, got_dx) = run(Device::Gpu);
    assert_eq!(fallback_count(), fallbacks, "a host fallback ran");
    assert_close("tape forward", &got_y, &want_y, 1e-5);
    for (i, (g, w)) in got_dx.iter().zip(&want_dx).enumerate() {
        assert_close(&format!("tape d input {i}"), g, w, 1e-4);
    }
}
