//! The GPU row kernels (softmax, log-softmax, layer norm, dropout, cross-entropy, BCE) against
//! the CPU backend, forward and backward, on row lengths that are not multiples of the
//! workgroup (1, 3, 255, 257, 1000) and several row counts; dropout masks bit for bit.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::{assert_close, gpu_or_skip};
use seqrec::backend::{self, NnKernels};
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

const WIDTHS: [usize; 6] = [1, 3, 64, 255, 257, 1000];

fn values(n: usize, scale: f32, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| scale * (2.0 * rng.uniform() - 1.0))
        .collect()
}

fn random(shape: &[usize], scale: f32, rng: &mut Rng) -> Tensor {
    Tensor::from_vec(shape, values(shape.iter().product(), scale, rng)).unwrap()
}

fn gpu(t: &Tensor) -> Tensor {
    t.to_device(Device::Gpu)
}

/// Row counts for a width: small ones, and enough rows for several workgroups when rows are
/// short (many rows share a workgroup), without making the software rasterizer crawl.
fn row_counts(w: usize) -> Vec<usize> {
    if w <= 64 {
        vec![1, 5, 67, 300]
    } else {
        vec![1, 2, 13]
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

/// The tests run one at a time: the fallback counter is process-wide, and the tape test uses
/// other families' kernels, some of which may still fall back to the host.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Asserts that the kernels under test ran natively (no host fallback since `before`).
fn assert_no_fallback(what: &str, before: usize) {
    assert_eq!(
        seqrec::backend::gpu::fallback_count(),
        before,
        "{what}: a kernel fell back to the host"
    );
}

#[test]
fn softmax_and_log_softmax_match_the_cpu() {
    let Some(gpu_be) = gpu_or_skip("softmax_and_log_softmax_match_the_cpu") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let before = seqrec::backend::gpu::fallback_count();
    let mut rng = Rng::new(11);
    for w in WIDTHS {
        for rows in row_counts(w) {
            // Logits spread over ±8 so that the max subtraction matters; a 3-d shape once.
            let shape = if rows == 5 {
                vec![1, 5, w]
            } else {
                vec![rows, w]
            };
            let x = random(&shape, 8.0, &mut rng);
            let dy = random(&shape, 1.0, &mut rng);
            let what = |op: &str| format!("{op} [{rows}, {w}]");

            let y = cpu.softmax(&x);
            let yg = gpu_be.softmax(&gpu(&x));
            assert_eq!(yg.device(), Device::Gpu);
            assert_eq!(yg.shape(), x.shape());
            assert_close(&what("softmax"), &yg.to_vec(), &y.to_vec(), 1e-5);
            let dx = cpu.softmax_backward(&y, &dy);
            let dxg = gpu_be.softmax_backward(&gpu(&y), &gpu(&dy));
            assert_close(&what("softmax_backward"), &dxg.to_vec(), &dx.to_vec(), 1e-5);

            let ly = cpu.log_softmax(&x);
            let lyg = gpu_be.log_softmax(&gpu(&x));
            assert_close(&what("log_softmax"), &lyg.to_vec(), &ly.to_vec(), 1e-5);
            let ldx = cpu.log_softmax_backward(&ly, &dy);
            let ldxg = gpu_be.log_softmax_backward(&gpu(&ly), &gpu(&dy));
            assert_close(
                &what("log_softmax_backward"),
                &ldxg.to_vec(),
                &ldx.to_vec(),
                1e-4,
            );

            // Host inputs are uploaded by the kernel itself.
            let yh = gpu_be.softmax(&x);
            assert_close(
                &what("softmax (host input)"),
                &yh.to_vec(),
                &y.to_vec(),
                1e-5,
            );
        }
    }
    assert_no_fallback("softmax", before);
}

#[test]
fn softmax_handles_masked_and_large_logits() {
    let Some(gpu_be) = gpu_or_skip("softmax_handles_masked_and_large_logits") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    // −∞ entries (masked positions, some of them first in the row), huge magnitudes, and a
    // row whose max sits at the end.
    let inf = f32::NEG_INFINITY;
    let rows: Vec<Vec<f32>> = vec![
        vec![inf, inf, 1.0, 2.0, inf, 0.5, -3.0],
        vec![80.0, -80.0, 79.0, 0.0, inf, 1.0, 2.0],
        vec![-1e4, -1e4 + 1.0, -1e4 + 2.0, -1e4, -1e4, -1e4, -1e4],
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 60.0],
    ];
    let x = Tensor::from_vec(&[4, 7], rows.concat()).unwrap();
    let y = cpu.softmax(&x).to_vec();
    let yg = gpu_be.softmax(&gpu(&x)).to_vec();
    assert!(yg.iter().all(|v| v.is_finite()), "{yg:?}");
    assert_close("masked softmax", &yg, &y, 1e-5);
    let ly = cpu.log_softmax(&x).to_vec();
    let lyg = gpu_be.log_softmax(&gpu(&x)).to_vec();
    for (i, (&g, &c)) in lyg.iter().zip(&ly).enumerate() {
        if c == inf {
            assert_eq!(g, inf, "masked log_softmax[{i}]");
        } else {
            assert!(
                (g - c).abs() <= 1e-5 * (1.0 + c.abs()),
                "log_softmax[{i}]: {g} vs {c}"
            );
        }
    }
}

#[test]
fn layer_norm_forward_and_all_three_gradients_match_the_cpu() {
    let Some(gpu_be) = gpu_or_skip("layer_norm_forward_and_all_three_gradients_match_the_cpu")
    else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let before = seqrec::backend::gpu::fallback_count();
    let mut rng = Rng::new(12);
    let mut cases: Vec<(usize, usize)> = WIDTHS
        .iter()
        .flat_map(|&w| row_counts(w).into_iter().map(move |r| (r, w)))
        .collect();
    // Many rows: many blocks of dg/db partial sums (and more than one block per workgroup
    // column tile).
    cases.extend([(5000, 3), (3000, 65)]);
    for (rows, w) in cases {
        let what = |part: &str| format!("layer_norm {part} [{rows}, {w}]");
        // An offset mean, so that the two-pass variance matters.
        let x = Tensor::from_vec(
            &[rows, w],
            values(rows * w, 2.0, &mut rng)
                .into_iter()
                .map(|v| v + 3.0)
                .collect(),
        )
        .unwrap();
        let gain = random(&[w], 1.5, &mut rng);
        let bias = random(&[w], 0.5, &mut rng);
        let dy = random(&[rows, w], 1.0, &mut rng);
        let eps = 1e-5;

        let (y, mean, rstd) = cpu.layer_norm(&x, &gain, &bias, eps);
        let (yg, meang, rstdg) = gpu_be.layer_norm(&gpu(&x), &gpu(&gain), &gpu(&bias), eps);
        assert_eq!(meang.shape(), [rows]);
        assert_eq!(rstdg.shape(), [rows]);
        assert_eq!(meang.device(), Device::Gpu);
        assert_close(&what("y"), &yg.to_vec(), &y.to_vec(), 1e-4);
        assert_close(&what("mean"), &meang.to_vec(), &mean.to_vec(), 1e-5);
        // rstd is up to 1/√ε = 316 for constant rows (w = 1): relative tolerance.
        let (rg, rc) = (rstdg.to_vec(), rstd.to_vec());
        for (i, (&g, &c)) in rg.iter().zip(&rc).enumerate() {
            assert!(
                (g - c).abs() <= 1e-4 * c.abs(),
                "{}[{i}]: {g} vs {c}",
                what("rstd")
            );
        }

        // The GPU backward from its own statistics (as in training).
        let (dx, dg, db) = cpu.layer_norm_backward(&x, &gain, &mean, &rstd, &dy);
        let (dxg, dgg, dbg) =
            gpu_be.layer_norm_backward(&gpu(&x), &gpu(&gain), &meang, &rstdg, &gpu(&dy));
        assert_eq!(dgg.shape(), [w]);
        assert_eq!(dbg.shape(), [w]);
        // dx is a difference of terms of size rstd·|ĝ|: tolerance relative to rstd.
        let scale = rc.iter().fold(1.0f32, |m, &r| m.max(r));
        assert_close(&what("dx"), &dxg.to_vec(), &dx.to_vec(), 1e-4 * scale);
        // dg and db are sums over rows (in another order than the CPU's).
        let rows_tol = 1e-5 * (rows as f32).sqrt().max(10.0);
        assert_close(&what("dgain"), &dgg.to_vec(), &dg.to_vec(), rows_tol);
        assert_close(&what("dbias"), &dbg.to_vec(), &db.to_vec(), rows_tol);
        // The column sums run in a fixed order (no atomics): a second run is bit-identical.
        let (_, dgg2, dbg2) =
            gpu_be.layer_norm_backward(&gpu(&x), &gpu(&gain), &meang, &rstdg, &gpu(&dy));
        assert_eq!(
            bits(&dgg2.to_vec()),
            bits(&dgg.to_vec()),
            "{}",
            what("dgain rerun")
        );
        assert_eq!(
            bits(&dbg2.to_vec()),
            bits(&dbg.to_vec()),
            "{}",
            what("dbias rerun")
        );
    }
    assert_no_fallback("layer_norm", before);
}

#[test]
fn dropout_masks_are_identical_to_the_cpu() {
    let Some(gpu_be) = gpu_or_skip("dropout_masks_are_identical_to_the_cpu") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let before = seqrec::backend::gpu::fallback_count();
    let mut rng = Rng::new(13);
    for n in [1usize, 255, 257, 1000, 100_003] {
        // Values in [1, 3): never zero, so a zero output is exactly a dropped element.
        let x = Tensor::from_vec(&[n], (0..n).map(|_| 2.0 + rng.uniform()).collect()).unwrap();
        let xg = gpu(&x);
        for (p, stream) in [
            (0.1f32, 0u32),
            (0.5, 7),
            (0.9, 123_456),
            (1e-7, 3),
            (0.3, u32::MAX),
        ] {
            let y = cpu.dropout(&x, p, stream).to_vec();
            let yg = gpu_be.dropout(&xg, p, stream).to_vec();
            let mask: Vec<bool> = y.iter().map(|&v| v == 0.0).collect();
            let mask_g: Vec<bool> = yg.iter().map(|&v| v == 0.0).collect();
            assert_eq!(mask_g, mask, "dropout mask n={n} p={p} stream={stream}");
            // Same integer test and the same f32 scale: the kept values are bit-identical.
            assert_eq!(bits(&yg), bits(&y), "dropout values n={n} p={p}");
            if n == 100_003 {
                let dropped = mask.iter().filter(|&&m| m).count() as f32 / n as f32;
                assert!((dropped - p).abs() < 0.01, "p={p}: dropped {dropped}");
            }
        }
    }
    assert_no_fallback("dropout", before);
}

#[test]
fn cross_entropy_loss_and_gradient_match_the_cpu() {
    let Some(gpu_be) = gpu_or_skip("cross_entropy_loss_and_gradient_match_the_cpu") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let before = seqrec::backend::gpu::fallback_count();
    let mut rng = Rng::new(14);
    for c in WIDTHS {
        for rows in row_counts(c) {
            let mut x = random(&[rows, c], 6.0, &mut rng);
            let targets: Vec<u32> = (0..rows).map(|_| rng.below(c as u64) as u32).collect();
            // Some zero weights (padding), the others in (0, 2).
            let mut weights: Vec<f32> = (0..rows)
                .map(|_| {
                    if rng.uniform() < 0.25 {
                        0.0
                    } else {
                        2.0 * rng.uniform() + 1e-3
                    }
                })
                .collect();
            if rows > 1 {
                // A padding row with garbage logits must not leak into the loss or gradient.
                weights[rows - 1] = 0.0;
                let v = x.cpu_mut();
                v[(rows - 1) * c] = f32::NAN;
            }
            let what = |part: &str| format!("cross_entropy {part} [{rows}, {c}]");
            let (loss, grad) = cpu.cross_entropy(&x, &targets, &weights);
            let (lossg, gradg) = gpu_be.cross_entropy(&gpu(&x), &targets, &weights);
            assert_eq!(lossg.shape(), [0usize; 0]);
            assert_eq!(lossg.device(), Device::Gpu);
            assert_eq!(gradg.shape(), [rows, c]);
            assert_close(&what("loss"), &lossg.to_vec(), &loss.to_vec(), 1e-5);
            assert_close(&what("grad"), &gradg.to_vec(), &grad.to_vec(), 1e-5);
            let (lossg2, _) = gpu_be.cross_entropy(&gpu(&x), &targets, &weights);
            assert_eq!(
                lossg2.item().to_bits(),
                lossg.item().to_bits(),
                "{}",
                what("rerun")
            );

            // All weights zero: loss 0 and a zero gradient.
            let zeros = vec![0.0f32; rows];
            let (lossg, gradg) = gpu_be.cross_entropy(&gpu(&x), &targets, &zeros);
            assert_eq!(lossg.item(), 0.0, "{}", what("all-zero weights"));
            assert!(gradg.to_vec().iter().all(|&g| g == 0.0));
        }
    }
    assert_no_fallback("cross_entropy", before);
}

#[test]
fn bce_with_logits_and_its_backward_match_the_cpu() {
    let Some(gpu_be) = gpu_or_skip("bce_with_logits_and_its_backward_match_the_cpu") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let before = seqrec::backend::gpu::fallback_count();
    let mut rng = Rng::new(15);
    // Sizes around the per-workgroup chunk (2048) and several chunks.
    for shape in [
        vec![1usize],
        vec![3],
        vec![255],
        vec![257],
        vec![4, 250],
        vec![2048],
        vec![2049],
        vec![7, 1111],
    ] {
        let n: usize = shape.iter().product();
        // Logits up to ±20: e^{−|x|} far below f32's epsilon next to 1.
        let x = random(&shape, 20.0, &mut rng);
        let labels = Tensor::from_vec(
            &shape,
            (0..n)
                .map(|_| {
                    if rng.uniform() < 0.5 {
                        1.0
                    } else {
                        rng.uniform()
                    }
                })
                .collect(),
        )
        .unwrap();
        let weights: Vec<f32> = (0..n)
            .map(|_| {
                if rng.uniform() < 0.2 {
                    0.0
                } else {
                    rng.uniform()
                }
            })
            .collect();
        let what = |part: &str| format!("bce {part} {shape:?}");

        let loss = cpu.bce_with_logits(&x, &labels, &weights);
        let lossg = gpu_be.bce_with_logits(&gpu(&x), &gpu(&labels), &weights);
        assert_eq!(lossg.shape(), [0usize; 0]);
        assert_eq!(lossg.device(), Device::Gpu);
        assert_close(&what("loss"), &lossg.to_vec(), &loss.to_vec(), 1e-5);
        let lossg2 = gpu_be.bce_with_logits(&gpu(&x), &gpu(&labels), &weights);
        assert_eq!(
            lossg2.item().to_bits(),
            lossg.item().to_bits(),
            "{}",
            what("rerun")
        );
        // Host labels are uploaded by the kernel.
        let lossh = gpu_be.bce_with_logits(&gpu(&x), &labels, &weights);
        assert_close(
            &what("loss (host labels)"),
            &lossh.to_vec(),
            &loss.to_vec(),
            1e-5,
        );

        // dloss on the GPU (the loss's gradient in a GPU backward) and on the host.
        let dloss = Tensor::scalar(0.7);
        let dx = cpu.bce_with_logits_backward(&x, &labels, &weights, &dloss);
        let dxg = gpu_be.bce_with_logits_backward(&gpu(&x), &gpu(&labels), &weights, &gpu(&dloss));
        assert_eq!(dxg.shape(), x.shape());
        assert_close(&what("dx"), &dxg.to_vec(), &dx.to_vec(), 1e-5);
        let dxh = gpu_be.bce_with_logits_backward(&gpu(&x), &labels, &weights, &dloss);
        assert_close(&what("dx (host dloss)"), &dxh.to_vec(), &dx.to_vec(), 1e-5);

        // All weights zero: loss 0, gradient 0.
        let zeros = vec![0.0f32; n];
        let lossg = gpu_be.bce_with_logits(&gpu(&x), &gpu(&labels), &zeros);
        assert_eq!(lossg.item(), 0.0, "{}", what("all-zero weights"));
        let dxg = gpu_be.bce_with_logits_backward(&gpu(&x), &gpu(&labels), &zeros, &gpu(&dloss));
        assert!(dxg.to_vec().iter().all(|&g| g == 0.0));
    }
    assert_no_fallback("bce", before);
}

#[test]
fn a_tape_trains_through_the_gpu_row_kernels() {
    // The ops end to end on a tape: layer norm → dropout → log-softmax → cross-entropy, on the
    // GPU and on the CPU, give the same loss and input gradient.
    let Some(_) = gpu_or_skip("a_tape_trains_through_the_gpu_row_kernels") else {
        return;
    };
    let _serial = serial();
    let mut rng = Rng::new(16);
    let (rows, d) = (9, 37);
    let x = random(&[rows, d], 1.0, &mut rng);
    let gain = random(&[d], 1.0, &mut rng);
    let bias = random(&[d], 1.0, &mut rng);
    let targets = seqrec::Ids::from_vec(
        &[rows],
        (0..rows).map(|_| rng.below(d as u64) as u32).collect(),
    )
    .unwrap();
    let run = |device: Device| -> (f32, Vec<f32>, Vec<f32>) {
        let mut tape = seqrec::Tape::new().on(device);
        let xv = tape.leaf(x.to_device(device));
        let gv = tape.leaf(gain.to_device(device));
        let bv = tape.leaf(bias.to_device(device));
        let h = tape.layer_norm(xv, gv, bv, 1e-5).unwrap();
        let h = tape.dropout(h, 0.2).unwrap();
        let h = tape.softmax(h).unwrap();
        let h = tape.log_softmax(h).unwrap();
        let loss = tape.cross_entropy(h, &targets, None).unwrap();
        let value = tape.value(loss).item();
        let grads = tape.backward(loss).unwrap();
        (
            value,
            grads.get(xv).unwrap().to_vec(),
            grads.get(gv).unwrap().to_vec(),
        )
    };
    let (lc, dxc, dgc) = run(Device::Cpu);
    let (lg, dxg, dgg) = run(Device::Gpu);
    assert_close("tape loss", &[lg], &[lc], 1e-5);
    assert_close("tape dx", &dxg, &dxc, 1e-4);
    assert_close("tape dgain", &dgg, &dgc, 1e-4);
}

#[test]
fn linear_cross_entropy_matches_the_cpu() {
    let Some(gpu_be) = gpu_or_skip("linear_cross_entropy_matches_the_cpu") else {
        return;
    };
    let _serial = serial();
    let cpu = backend::for_device(Device::Cpu);
    let before = seqrec::backend::gpu::fallback_count();
    let mut rng = Rng::new(15);
    for (n, v, d) in [(1, 2, 1), (7, 33, 5), (300, 257, 16)] {
        let rows = random(&[n, d], 1.0, &mut rng);
        let items = random(&[v, d], 1.0, &mut rng);
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v as u64) as u32).collect();
        let weights: Vec<f32> = (0..n).map(|r| (r % 4 != 2) as u8 as f32).collect();
        let what = |part: &str| format!("linear_cross_entropy {part} [{n}, {d}] · [{v}, {d}]ᵀ");
        let (loss, grads) = cpu.linear_cross_entropy(&rows, &items, &targets, &weights, true);
        let (lossg, gradsg) =
            gpu_be.linear_cross_entropy(&gpu(&rows), &gpu(&items), &targets, &weights, true);
        let ((drows, ditems), (drowsg, ditemsg)) = (grads.unwrap(), gradsg.unwrap());
        assert_eq!(drowsg.device(), Device::Gpu);
        assert_close(&what("loss"), &lossg.to_vec(), &loss.to_vec(), 1e-5);
        assert_close(&what("∂rows"), &drowsg.to_vec(), &drows.to_vec(), 1e-4);
        assert_close(&what("∂items"), &ditemsg.to_vec(), &ditems.to_vec(), 1e-4);
        let (_, none) =
            gpu_be.linear_cross_entropy(&gpu(&rows), &gpu(&items), &targets, &weights, false);
        assert!(none.is_none(), "{}", what("without gradients"));
    }
    assert_no_fallback("linear_cross_entropy", before);
}
