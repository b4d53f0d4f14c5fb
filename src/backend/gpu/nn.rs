//! Row-wise neural-network kernels on the GPU: softmax, layer norm, dropout, losses
//! (`softmax.wgsl`, `layer_norm.wgsl`, `dropout.wgsl`, `cross_entropy.wgsl`, `bce.wgsl`).
//!
//! The row kernels give each row a segment of `threads_per_row(w)` threads, so a workgroup
//! holds `WG / t` rows: narrow rows share a workgroup, a catalogue-wide row gets all of it.
//! Every reduction (row sums, the dg/db column sums, the rank-0 losses) runs in a fixed order:
//! the results are deterministic and nothing is read back.

use super::GpuBackend;
use super::kernel::{Kernel, wgsl_u32};
use super::runtime::grid;
use crate::backend::{LinalgKernels, NnKernels};
use crate::rng::stream_key;
use crate::tensor::Tensor;
use crate::wgsl_kernel;

const SOFTMAX: Kernel = wgsl_kernel!("softmax.wgsl", "softmax", [Read, Read, ReadWrite]);
const LOG_SOFTMAX: Kernel = wgsl_kernel!("softmax.wgsl", "log_softmax", [Read, Read, ReadWrite]);
const SOFTMAX_BACKWARD: Kernel =
    wgsl_kernel!("softmax.wgsl", "softmax_backward", [Read, Read, ReadWrite]);
const LOG_SOFTMAX_BACKWARD: Kernel = wgsl_kernel!(
    "softmax.wgsl",
    "log_softmax_backward",
    [Read, Read, ReadWrite]
);

const LAYER_NORM: Kernel = wgsl_kernel!(
    "layer_norm.wgsl",
    "layer_norm",
    [Read, Read, Read, ReadWrite, ReadWrite, ReadWrite]
);
const LAYER_NORM_DX: Kernel = wgsl_kernel!(
    "layer_norm.wgsl",
    "layer_norm_dx",
    [Read, Read, Read, Read, Read, ReadWrite]
);
const LAYER_NORM_PARAM_PARTIALS: Kernel = wgsl_kernel!(
    "layer_norm.wgsl",
    "layer_norm_param_partials",
    [Read, Read, Read, Read, Read, ReadWrite]
);
const LAYER_NORM_PARAM_SUMS: Kernel = wgsl_kernel!(
    "layer_norm.wgsl",
    "layer_norm_param_sums",
    [Read, ReadWrite, ReadWrite]
);

const DROPOUT: Kernel = wgsl_kernel!("dropout.wgsl", "dropout", [Read, ReadWrite]);

const CROSS_ENTROPY_ROWS: Kernel = wgsl_kernel!(
    "cross_entropy.wgsl",
    "cross_entropy_rows",
    [Read, Read, Read, ReadWrite, ReadWrite]
);
const CROSS_ENTROPY_LOSS: Kernel = wgsl_kernel!(
    "cross_entropy.wgsl",
    "cross_entropy_loss",
    [Read, ReadWrite]
);

const BCE_PARTIALS: Kernel =
    wgsl_kernel!("bce.wgsl", "bce_partials", [Read, Read, Read, ReadWrite]);
const BCE_TOTAL: Kernel = wgsl_kernel!("bce.wgsl", "bce_total", [Read, ReadWrite]);
const BCE_BACKWARD: Kernel = wgsl_kernel!(
    "bce.wgsl",
    "bce_backward",
    [Read, Read, Read, ReadWrite, Read]
);

/// Threads per workgroup of every kernel here.
const WG: u32 = 256;
const _: () = assert!(wgsl_u32(SOFTMAX.source, "WG") == WG);
const _: () = assert!(wgsl_u32(LAYER_NORM.source, "WG") == WG);
const _: () = assert!(wgsl_u32(DROPOUT.source, "WG") == WG);
const _: () = assert!(wgsl_u32(CROSS_ENTROPY_ROWS.source, "WG") == WG);
const _: () = assert!(wgsl_u32(BCE_PARTIALS.source, "WG") == WG);

/// `layer_norm_param_partials`: a workgroup covers LN_COLS columns with LN_LANES threads each.
const LN_COLS: u32 = 64;
const LN_LANES: u32 = 4;
const _: () = assert!(wgsl_u32(LAYER_NORM.source, "COLS") == LN_COLS);
const _: () = assert!(wgsl_u32(LAYER_NORM.source, "LANES") == LN_LANES);
const _: () = assert!(LN_COLS * LN_LANES == WG);
/// Row blocks of the dg/db partial sums: at most this many (the second pass adds them per
/// column), each at least LN_MIN_BLOCK_ROWS rows.
const LN_MAX_BLOCKS: usize = 256;
const LN_MIN_BLOCK_ROWS: usize = 16;

/// `bce_partials`: a workgroup adds BCE_CHUNK elements, BCE_ITEMS per thread.
const BCE_ITEMS: u32 = 8;
const BCE_CHUNK: u32 = WG * BCE_ITEMS;
const _: () = assert!(wgsl_u32(BCE_PARTIALS.source, "ITEMS") == BCE_ITEMS);
const _: () = assert!(wgsl_u32(BCE_PARTIALS.source, "CHUNK") == BCE_CHUNK);

fn last(x: &Tensor) -> usize {
    x.shape().last().copied().unwrap_or(1)
}

/// Threads per row of the row kernels: the power of two ≥ w, at most a workgroup.
fn threads_per_row(w: usize) -> u32 {
    (w.max(1).next_power_of_two() as u32).min(WG)
}

impl GpuBackend {
    /// One of the four `softmax.wgsl` entry points over the rows of `a` (and `b`; the
    /// forwards bind `a` in its place).
    fn softmax_family(&self, kernel: &Kernel, a: &Tensor, b: Option<&Tensor>) -> Tensor {
        let w = last(a);
        let out = self.rt.alloc(a.len());
        if a.is_empty() || w == 0 {
            return self.tensor(a.shape(), out);
        }
        let rows = a.len() / w;
        let t = threads_per_row(w);
        let ab = self.buffer(a);
        let bb = b.map_or_else(|| ab.clone(), |b| self.buffer(b));
        self.rt.dispatch(
            kernel,
            &[rows as u32, w as u32, t],
            &[&ab, &bb, &out],
            grid(rows, WG / t),
        );
        self.tensor(a.shape(), out)
    }
}

impl NnKernels for GpuBackend {
    fn softmax(&self, x: &Tensor) -> Tensor {
        self.softmax_family(&SOFTMAX, x, None)
    }

    fn softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor {
        self.softmax_family(&SOFTMAX_BACKWARD, y, Some(dy))
    }

    fn log_softmax(&self, x: &Tensor) -> Tensor {
        self.softmax_family(&LOG_SOFTMAX, x, None)
    }

    fn log_softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor {
        self.softmax_family(&LOG_SOFTMAX_BACKWARD, y, Some(dy))
    }

    fn layer_norm(
        &self,
        x: &Tensor,
        gain: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> (Tensor, Tensor, Tensor) {
        let w = last(x);
        let rows = x.len() / w.max(1);
        let (y, mean, rstd) = (
            self.rt.alloc(x.len()),
            self.rt.alloc(rows),
            self.rt.alloc(rows),
        );
        if rows > 0 && w > 0 {
            let t = threads_per_row(w);
            let (xb, gb, bb) = (self.buffer(x), self.buffer(gain), self.buffer(bias));
            self.rt.dispatch(
                &LAYER_NORM,
                &[rows as u32, w as u32, t, 0, eps.to_bits()],
                &[&xb, &gb, &bb, &y, &mean, &rstd],
                grid(rows, WG / t),
            );
        }
        (
            self.tensor(x.shape(), y),
            self.tensor(&[rows], mean),
            self.tensor(&[rows], rstd),
        )
    }

    fn layer_norm_backward(
        &self,
        x: &Tensor,
        gain: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        dy: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let w = last(x);
        let rows = x.len() / w.max(1);
        if rows == 0 || w == 0 {
            return (
                self.tensor(x.shape(), self.rt.alloc(x.len())),
                self.tensor(&[w], self.rt.zeros(w)),
                self.tensor(&[w], self.rt.zeros(w)),
            );
        }
        let (xb, gb, mb, rb, db) = (
            self.buffer(x),
            self.buffer(gain),
            self.buffer(mean),
            self.buffer(rstd),
            self.buffer(dy),
        );
        let dx = self.rt.alloc(x.len());
        let t = threads_per_row(w);
        self.rt.dispatch(
            &LAYER_NORM_DX,
            &[rows as u32, w as u32, t, 0, 0],
            &[&xb, &gb, &mb, &rb, &db, &dx],
            grid(rows, WG / t),
        );

        let block_rows = rows.div_ceil(LN_MAX_BLOCKS).max(LN_MIN_BLOCK_ROWS);
        let blocks = rows.div_ceil(block_rows);
        let partials = self.rt.alloc(2 * blocks * w);
        self.rt.dispatch(
            &LAYER_NORM_PARAM_PARTIALS,
            &[rows as u32, w as u32, block_rows as u32, blocks as u32, 0],
            &[&xb, &gb, &mb, &rb, &db, &partials],
            [w.div_ceil(LN_COLS as usize) as u32, blocks as u32, 1],
        );
        let (dgain, dbias) = (self.rt.alloc(w), self.rt.alloc(w));
        self.rt.dispatch(
            &LAYER_NORM_PARAM_SUMS,
            &[rows as u32, w as u32, 0, blocks as u32, 0],
            &[&partials, &dgain, &dbias],
            grid(w, WG),
        );
        (
            self.tensor(x.shape(), dx),
            self.tensor(&[w], dgain),
            self.tensor(&[w], dbias),
        )
    }

    fn dropout(&self, x: &Tensor, p: f32, stream: u32) -> Tensor {
        let n = x.len();
        let out = self.rt.alloc(n);
        if n > 0 {
            // The same integer test as the CPU kernel: dropped when bits < ⌈p·2²⁴⌉.
            let threshold = (p as f64 * 16_777_216.0).ceil() as u32;
            let scale = 1.0 / (1.0 - p);
            let xb = self.buffer(x);
            self.rt.dispatch(
                &DROPOUT,
                &[n as u32, stream_key(stream), threshold, scale.to_bits()],
                &[&xb, &out],
                grid(n, WG),
            );
        }
        self.tensor(x.shape(), out)
    }

    fn cross_entropy(&self, logits: &Tensor, targets: &[u32], weights: &[f32]) -> (Tensor, Tensor) {
        let c = last(logits);
        let grad = self.rt.alloc(logits.len());
        if logits.is_empty() || c == 0 {
            let loss = self.rt.upload(&[0.0f32]);
            return (self.tensor(&[], loss), self.tensor(logits.shape(), grad));
        }
        let rows = logits.len() / c;
        assert!(
            targets.len() == rows && weights.len() == rows,
            "cross_entropy: {rows} rows, {} targets, {} weights",
            targets.len(),
            weights.len()
        );
        let total_weight: f64 = weights.iter().map(|&w| w as f64).sum();
        let scale = if total_weight == 0.0 {
            0.0
        } else {
            (1.0 / total_weight) as f32
        };
        let (xb, tb, wb) = (
            self.buffer(logits),
            self.rt.upload(targets),
            self.rt.upload(weights),
        );
        let row_loss = self.rt.alloc(rows);
        let t = threads_per_row(c);
        let params = [rows as u32, c as u32, t, scale.to_bits()];
        self.rt.dispatch(
            &CROSS_ENTROPY_ROWS,
            &params,
            &[&xb, &tb, &wb, &grad, &row_loss],
            grid(rows, WG / t),
        );
        let loss = self.rt.alloc(1);
        self.rt
            .dispatch(&CROSS_ENTROPY_LOSS, &params, &[&row_loss, &loss], [1, 1, 1]);
        (self.tensor(&[], loss), self.tensor(logits.shape(), grad))
    }

    /// Composed from the GEMM and the fused cross-entropy kernel: on a GPU the `[N, V]`
    /// logits are device memory that is written and read at full bandwidth, and the GEMMs
    /// are the bulk of the work either way.
    fn linear_cross_entropy(
        &self,
        rows: &Tensor,
        items: &Tensor,
        targets: &[u32],
        weights: &[f32],
        with_grads: bool,
    ) -> (Tensor, Option<(Tensor, Tensor)>) {
        let logits = self.matmul(rows, items, false, true);
        let (loss, dlogits) = self.cross_entropy(&logits, targets, weights);
        let grads = with_grads.then(|| {
            (
                self.matmul(&dlogits, items, false, false),
                self.matmul(&dlogits, rows, true, false),
            )
        });
        (loss, grads)
    }

    fn bce_with_logits(&self, logits: &Tensor, labels: &Tensor, weights: &[f32]) -> Tensor {
        let n = logits.len();
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        if total == 0.0 || n == 0 {
            return self.tensor(&[], self.rt.upload(&[0.0f32]));
        }
        let (xb, yb, wb) = (
            self.buffer(logits),
            self.buffer(labels),
            self.rt.upload(weights),
        );
        let groups = grid(n, BCE_CHUNK);
        let count = (groups[0] * groups[1]) as usize;
        let partials = self.rt.alloc(count);
        self.rt.dispatch(
            &BCE_PARTIALS,
            &[n as u32, 0],
            &[&xb, &yb, &wb, &partials],
            groups,
        );
        let loss = self.rt.alloc(1);
        let inv_total = (1.0 / total) as f32;
        self.rt.dispatch(
            &BCE_TOTAL,
            &[count as u32, inv_total.to_bits()],
            &[&partials, &loss],
            [1, 1, 1],
        );
        self.tensor(&[], loss)
    }

    fn bce_with_logits_backward(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        weights: &[f32],
        dloss: &Tensor,
    ) -> Tensor {
        let n = logits.len();
        let out = self.rt.alloc(n);
        if n > 0 {
            // Σω in f32, as the CPU backward; the shader divides dloss by it on the GPU.
            let total: f32 = weights.iter().sum();
            let (xb, yb, wb, db) = (
                self.buffer(logits),
                self.buffer(labels),
                self.rt.upload(weights),
                self.buffer(dloss),
            );
            self.rt.dispatch(
                &BCE_BACKWARD,
                &[n as u32, total.to_bits()],
                &[&xb, &yb, &wb, &out, &db],
                grid(n, WG),
            );
        }
        self.tensor(logits.shape(), out)
    }
}
