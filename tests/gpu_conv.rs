//! The GPU's im2col/col2im and 1-d pooling kernels against the CPU backend, with strides,
//! padding, dilation, Caser's horizontal and vertical filters, gaps between pooling windows
//! and ties in max pooling.

mod common;

use common::{assert_close, gpu_or_skip};
use seqrec::backend::gpu::fallback_count;
use seqrec::backend::{self, ConvGeometry, ConvKernels};
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

/// Held by every test here: the fallback counter is global to the process, and the tape
/// test runs other families' host fallbacks (matmul, permute) that the kernel tests must not
/// see.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

fn geometry(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
) -> ConvGeometry {
    ConvGeometry {
        kernel,
        stride,
        padding,
        dilation,
    }
}

#[test]
fn unfold_and_fold_match_the_cpu() {
    let Some(gpu) = gpu_or_skip("unfold_and_fold_match_the_cpu") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let fallbacks = fallback_count();
    let mut rng = Rng::new(21);
    let cases: [(&[usize], ConvGeometry); 7] = [
        (&[2, 3, 7, 9], geometry((3, 2), (1, 1), (0, 0), (1, 1))),
        (&[2, 2, 8, 11], geometry((3, 3), (2, 3), (1, 2), (1, 1))),
        (&[1, 3, 10, 10], geometry((2, 3), (2, 1), (2, 1), (2, 3))),
        (&[3, 2, 6, 5], geometry((1, 1), (3, 2), (0, 0), (1, 1))),
        // Caser: horizontal filters (h × d) and vertical filters (L × 1) over [B, 1, L, d].
        (&[4, 1, 5, 16], geometry((3, 16), (1, 1), (0, 0), (1, 1))),
        (&[4, 1, 5, 16], geometry((5, 1), (1, 1), (0, 0), (1, 1))),
        // A 1-d convolution, longer than a workgroup.
        (&[3, 1, 1, 300], geometry((1, 5), (1, 2), (0, 3), (1, 2))),
    ];
    for (shape, g) in cases {
        let x = random(shape, &mut rng);
        let what = format!("{shape:?} {g:?}");
        let want = cpu.unfold2d(&x, &g);
        let got = gpu.unfold2d(&x.to_device(Device::Gpu), &g);
        assert_eq!(got.device(), Device::Gpu);
        assert_eq!(got.shape(), want.shape(), "unfold {what}");
        assert_eq!(got.to_vec(), want.to_vec(), "unfold {what}");

        let cols = random(want.shape(), &mut rng);
        let want = cpu.fold2d(&cols, shape, &g);
        let got = gpu.fold2d(&cols.to_device(Device::Gpu), shape, &g);
        assert_eq!(got.shape(), shape, "fold {what}");
        assert_close(&format!("fold {what}"), &got.to_vec(), &want.to_vec(), 1e-6);
    }
    assert_eq!(fallback_count(), fallbacks, "a host fallback ran");
}

#[test]
fn pooling_matches_the_cpu_forward_and_backward() {
    let Some(gpu) = gpu_or_skip("pooling_matches_the_cpu_forward_and_backward") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let fallbacks = fallback_count();
    let mut rng = Rng::new(22);
    // (shape, kernel, stride): overlapping windows, gaps between windows (stride > kernel),
    // a single window, rows longer than a workgroup.
    let cases: [(&[usize], usize, usize); 6] = [
        (&[3, 4, 17], 3, 2),
        (&[5, 300], 7, 3),
        (&[2, 10], 10, 1),
        (&[4, 9], 2, 4),
        (&[6], 1, 1),
        (&[2, 3, 1, 40], 4, 4),
    ];
    for (shape, kernel, stride) in cases {
        for ties in [false, true] {
            let mut x = random(shape, &mut rng);
            if ties {
                // Few distinct values: windows hold ties, the first must win.
                x = Tensor::from_vec(
                    shape,
                    x.to_vec().iter().map(|v| (v * 2.0).round()).collect(),
                )
                .unwrap();
            }
            let gx = x.to_device(Device::Gpu);
            for max in [true, false] {
                let what = format!("{shape:?} k {kernel} s {stride} max {max} ties {ties}");
                let (want, want_arg) = cpu.pool1d(&x, kernel, stride, max);
                let (got, got_arg) = gpu.pool1d(&gx, kernel, stride, max);
                assert_eq!(got.device(), Device::Gpu);
                assert_eq!(got.shape(), want.shape(), "{what}");
                assert_close(&what, &got.to_vec(), &want.to_vec(), 1e-6);
                assert_eq!(got_arg, want_arg, "arg-max {what}");

                let dy = random(want.shape(), &mut rng);
                let arg = max.then_some(&want_arg[..]);
                let len = *shape.last().unwrap();
                let want_dx = cpu.pool1d_backward(&dy, len, kernel, stride, arg);
                let got_dx =
                    gpu.pool1d_backward(&dy.to_device(Device::Gpu), len, kernel, stride, arg);
                assert_eq!(got_dx.shape(), shape, "backward {what}");
                assert_close(
                    &format!("backward {what}"),
                    &got_dx.to_vec(),
                    &want_dx.to_vec(),
                    1e-6,
                );
            }
        }
    }
    assert_eq!(fallback_count(), fallbacks, "a host fallback ran");
}

/// A Caser-style horizontal convolution with bias, then max pooling over positions, recorded
/// on a GPU tape and on a CPU tape: values and every gradient agree.
#[test]
fn a_convolution_tape_runs_on_the_gpu_like_on_the_cpu() {
    let Some(_) = gpu_or_skip("a_convolution_tape_runs_on_the_gpu_like_on_the_cpu") else {
        return;
    };
    let _serial = serial();
    let mut rng = Rng::new(23);
    let inputs = [
        random(&[2, 1, 6, 8], &mut rng),
        random(&[3, 1, 2, 8], &mut rng),
        random(&[3], &mut rng),
    ];
    let seed = random(&[2, 3, 3], &mut rng);
    let run = |device: Device| {
        let mut tape = seqrec::Tape::new().on(device);
        let v: Vec<_> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
        let y = tape.conv2d(v[0], v[1], Some(v[2]), (1, 1), (0, 0)).unwrap(); // [2, 3, 5, 1]
        let y = tape.reshape(y, &[2, 3, 5]).unwrap();
        let y = tape.max_pool1d(y, 2, 2).unwrap(); // [2, 3, 2]
        let y = tape.avg_pool1d(y, 1, 1).unwrap();
        let y = tape.reshape(y, &[2, 3, 2]).unwrap();
        let y = tape.sum(y, &[2], true).unwrap(); // [2, 3, 1]
        let y = tape.add(y, y).unwrap();
        let y = tape.reshape(y, &[2, 3, 1]).unwrap();
        let y = tape.mul(y, v[2]).unwrap(); // [2, 3, 3]
        assert_eq!(tape.value(y).device(), device);
        let out = tape.value(y).to_vec();
        let grads = tape.backward_with(y, seed.to_device(device)).unwrap();
        let dx: Vec<Vec<f32>> = v.iter().map(|&x| grads.get(x).unwrap().to_vec()).collect();
        (out, dx)
    };
    let (want_y, want_dx) = run(Device::Cpu);
    let (got_y, got_dx) = run(Device::Gpu);
    assert_close("conv tape forward", &got_y, &want_y, 1e-5);
    for (i, (g, w)) in got_dx.iter().zip(&want_dx).enumerate() {
        assert_close(&format!("conv tape d input {i}"), g, w, 1e-4);
    }
}
