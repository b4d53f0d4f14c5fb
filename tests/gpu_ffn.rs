//! The GPU feed-forward block (`gemm.wgsl` epilogues + `ffn_bias_grad.wgsl`) against the CPU
//! backend: forward (y and the saved pre-activation) and every gradient, for ReLU and GELU,
//! with and without dropout (the mask is recomputed from the same hash on both sides), on
//! sizes off the GEMM tiles, with enough rows for chunked bias sums and split-K weight
//! gradients.

mod common;

use common::{assert_close, gpu_or_skip};
use seqrec::backend::{self, FeedForwardKernels};
use seqrec::ops::Activation;
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

/// (rows, width, hidden, out_width).
const SIZES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 1),
    (17, 63, 65, 17),
    (130, 17, 130, 63),
    (65, 64, 128, 64),
    // 2+ chunks in the bias sums and 2 k-splits in the weight gradients.
    (600, 8, 20, 5),
];

fn check(activation: Activation, dropout: Option<(f32, u32)>, seed: u64) {
    let gpu = gpu_or_skip("gpu_ffn").expect("checked by the caller");
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(seed);
    for &(rows, width, hidden, out_width) in SIZES {
        let what =
            format!("{activation:?} dropout {dropout:?} {rows}x{width}x{hidden}x{out_width}");
        let x = random(&[rows, width], &mut rng);
        let w1 = random(&[width, hidden], &mut rng);
        let b1 = random(&[hidden], &mut rng);
        let w2 = random(&[hidden, out_width], &mut rng);
        let b2 = random(&[out_width], &mut rng);
        let d_y = random(&[rows, out_width], &mut rng);
        let on_gpu = |t: &Tensor| t.to_device(Device::Gpu);

        let (y_c, pre_c) = cpu.ffn_forward(&x, &w1, &b1, &w2, &b2, activation, dropout);
        let (y_g, pre_g) = gpu.ffn_forward(
            &on_gpu(&x),
            &on_gpu(&w1),
            &on_gpu(&b1),
            &on_gpu(&w2),
            &on_gpu(&b2),
            activation,
            dropout,
        );
        assert_eq!((y_g.device(), pre_g.device()), (Device::Gpu, Device::Gpu));
        assert_eq!(y_g.shape(), y_c.shape());
        assert_eq!(pre_g.shape(), pre_c.shape());
        assert_close(
            &format!("{what}: pre"),
            &pre_g.to_vec(),
            &pre_c.to_vec(),
            1e-4,
        );
        assert_close(&format!("{what}: y"), &y_g.to_vec(), &y_c.to_vec(), 1e-4);

        // Both backwards see the CPU's pre-activation, so that a ReLU kink cannot fall on
        // different sides of 0 for the two.
        for want_dx in [true, false] {
            let g_c = cpu.ffn_backward(&x, &w1, &w2, &pre_c, &d_y, activation, dropout, want_dx);
            let g_g = gpu.ffn_backward(
                &on_gpu(&x),
                &on_gpu(&w1),
                &on_gpu(&w2),
                &on_gpu(&pre_c),
                &on_gpu(&d_y),
                activation,
                dropout,
                want_dx,
            );
            assert_eq!(g_g.dx.is_some(), want_dx);
            if let (Some(dx_g), Some(dx_c)) = (&g_g.dx, &g_c.dx) {
                assert_eq!(dx_g.shape(), dx_c.shape());
                assert_close(&format!("{what}: dx"), &dx_g.to_vec(), &dx_c.to_vec(), 1e-4);
            }
            for (name, got, want) in [
                ("dw1", &g_g.dw1, &g_c.dw1),
                ("db1", &g_g.db1, &g_c.db1),
                ("dw2", &g_g.dw2, &g_c.dw2),
                ("db2", &g_g.db2, &g_c.db2),
            ] {
                assert_eq!(got.device(), Device::Gpu, "{what}: {name}");
                assert_eq!(got.shape(), want.shape(), "{what}: {name}");
                assert_close(
                    &format!("{what}: {name}"),
                    &got.to_vec(),
                    &want.to_vec(),
                    1e-4,
                );
            }
        }
    }
    // Native kernels only: nothing in this file may take the host fallback.
    assert_eq!(
        backend::gpu::fallback_count(),
        0,
        "ffn fell back to the host"
    );
}

#[test]
fn relu_ffn_matches_the_cpu() {
    if gpu_or_skip("relu_ffn_matches_the_cpu").is_none() {
        return;
    }
    check(Activation::Relu, None, 1);
}

#[test]
fn gelu_ffn_matches_the_cpu() {
    if gpu_or_skip("gelu_ffn_matches_the_cpu").is_none() {
        return;
    }
    check(Activation::Gelu, None, 2);
}

#[test]
fn relu_ffn_with_dropout_matches_the_cpu() {
    if gpu_or_skip("relu_ffn_with_dropout_matches_the_cpu").is_none() {
        return;
    }
    check(Activation::Relu, Some((0.3, 7)), 3);
}

#[test]
fn gelu_ffn_with_dropout_matches_the_cpu() {
    if gpu_or_skip("gelu_ffn_with_dropout_matches_the_cpu").is_none() {
        return;
    }
    check(Activation::Gelu, Some((0.5, 0xdead_beef)), 4);
}
