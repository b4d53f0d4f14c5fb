//! The fused feed-forward block on the GPU (math in `ops/ffn.rs`), as GEMMs of
//! `shaders/gemm.wgsl` with fused epilogues plus the column sums of
//! `shaders/ffn_bias_grad.wgsl`:
//!
//! - forward: `gemm_bias_act` writes a = x·W1 + b1 and h = act(a)·s in one pass over the tile,
//!   then `gemm_bias` writes y = h·W2 + b2;
//! - backward: `gemm_act_grad` computes dh = dy·W2ᵀ and writes da = dh·s·act'(a) and the
//!   recomputed h from its tile; dW2 = hᵀ·dy, dW1 = xᵀ·da and dx = da·W1ᵀ are plain GEMMs
//!   (transposes through strides; the weight gradients split k over the rows); db1 and db2 are
//!   column sums of da and dy.

use super::GpuBackend;
use super::kernel::{Kernel, wgsl_u32};
use super::linalg::{Epilogue, GEMM_ACT_GRAD, GEMM_BIAS, GEMM_BIAS_ACT, Gemm};
use super::runtime::GpuBuffer;
use crate::backend::{FeedForwardKernels, FfnGradients};
use crate::ops::Activation;
use crate::tensor::Tensor;
use crate::wgsl_kernel;

const COLUMN_SUMS: Kernel = wgsl_kernel!("ffn_bias_grad.wgsl", "column_sums", [Read, ReadWrite]);
const SUM_CHUNKS: Kernel = wgsl_kernel!("ffn_bias_grad.wgsl", "sum_chunks", [Read, ReadWrite]);

/// Columns per `column_sums` workgroup, and threads per workgroup of both passes.
const COLS: u32 = 64;
const WG: u32 = 256;
const _: () = assert!(wgsl_u32(COLUMN_SUMS.source, "COLS") == COLS);
const _: () = assert!(wgsl_u32(COLUMN_SUMS.source, "WG") == WG);
const _: () = assert!(wgsl_u32(COLUMN_SUMS.source, "LANES") * COLS == WG);

/// Rows per chunk of the first column-sum pass at least (64 per lane)...
const CHUNK_MIN_ROWS: usize = 256;
/// ...and at most this many chunks, so the second pass stays short.
const MAX_CHUNKS: usize = 128;

fn activation_code(activation: Activation) -> u32 {
    match activation {
        Activation::Relu => 0,
        Activation::Gelu => 1,
    }
}

/// A product without batch or transposes of `a`: `[m, k]·op([k, n])`.
fn product(m: usize, k: usize, n: usize, transpose_b: bool) -> Gemm {
    Gemm {
        m,
        n,
        k,
        batch: 1,
        transpose_a: false,
        transpose_b,
        b_shared: true,
    }
}

/// `op(a)ᵀ·b` for row-major `a` `[rows, m]`, `b` `[rows, n]`: a weight gradient.
fn gradient_product(rows: usize, m: usize, n: usize) -> Gemm {
    Gemm {
        m,
        n,
        k: rows,
        batch: 1,
        transpose_a: true,
        transpose_b: false,
        b_shared: true,
    }
}

impl GpuBackend {
    /// Σ over rows of a row-major `[rows, cols]` buffer.
    fn column_sums(&self, x: &GpuBuffer, rows: usize, cols: usize) -> GpuBuffer {
        let chunks = rows.div_ceil(CHUNK_MIN_ROWS).clamp(1, MAX_CHUNKS);
        let chunk_rows = rows.div_ceil(chunks).max(1);
        let chunks = rows.div_ceil(chunk_rows).max(1);
        let params = [rows as u32, cols as u32, chunk_rows as u32, chunks as u32];
        let out = self.rt.alloc(cols);
        let groups = [cols.div_ceil(COLS as usize) as u32, chunks as u32, 1];
        if chunks == 1 {
            self.rt.dispatch(&COLUMN_SUMS, &params, &[x, &out], groups);
        } else {
            let partial = self.rt.alloc(chunks * cols);
            self.rt
                .dispatch(&COLUMN_SUMS, &params, &[x, &partial], groups);
            let groups = [cols.div_ceil(WG as usize) as u32, 1, 1];
            self.rt
                .dispatch(&SUM_CHUNKS, &params, &[&partial, &out], groups);
        }
        out
    }
}

impl FeedForwardKernels for GpuBackend {
    fn ffn_forward(
        &self,
        x: &Tensor,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
        activation: Activation,
        dropout: Option<(f32, u32)>,
    ) -> (Tensor, Tensor) {
        let (rows, width) = (x.shape()[0], x.shape()[1]);
        let (hidden, out_width) = (w1.shape()[1], w2.shape()[1]);
        let (xb, w1b, b1b, w2b, b2b) = (
            self.buffer(x),
            self.buffer(w1),
            self.buffer(b1),
            self.buffer(w2),
            self.buffer(b2),
        );
        let epilogue = Epilogue {
            activation: activation_code(activation),
            dropout,
        };
        let pre = self.rt.alloc(rows * hidden);
        let h = self.rt.alloc(rows * hidden);
        self.gemm_epilogue(
            &GEMM_BIAS_ACT,
            product(rows, width, hidden, false),
            epilogue,
            &[&xb, &w1b, &pre, &b1b, &h],
        );
        let y = self.rt.alloc(rows * out_width);
        self.gemm_epilogue(
            &GEMM_BIAS,
            product(rows, hidden, out_width, false),
            epilogue,
            &[&h, &w2b, &y, &b2b],
        );
        (
            self.tensor(&[rows, out_width], y),
            self.tensor(&[rows, hidden], pre),
        )
    }

    fn ffn_backward(
        &self,
        x: &Tensor,
        w1: &Tensor,
        w2: &Tensor,
        pre_activation: &Tensor,
        d_y: &Tensor,
        activation: Activation,
        dropout: Option<(f32, u32)>,
        want_dx: bool,
    ) -> FfnGradients {
        let (rows, width) = (x.shape()[0], x.shape()[1]);
        let (hidden, out_width) = (w1.shape()[1], w2.shape()[1]);
        let (xb, w1b, w2b, preb, dyb) = (
            self.buffer(x),
            self.buffer(w1),
            self.buffer(w2),
            self.buffer(pre_activation),
            self.buffer(d_y),
        );
        let epilogue = Epilogue {
            activation: activation_code(activation),
            dropout,
        };
        // da = (dy·W2ᵀ)·s·act'(a), and h = act(a)·s beside it.
        let da = self.rt.alloc(rows * hidden);
        let h = self.rt.alloc(rows * hidden);
        self.gemm_epilogue(
            &GEMM_ACT_GRAD,
            product(rows, out_width, hidden, true),
            epilogue,
            &[&dyb, &w2b, &da, &preb, &h],
        );
        let dw2 = self.gemm(gradient_product(rows, hidden, out_width), &h, &dyb);
        let dw1 = self.gemm(gradient_product(rows, width, hidden), &xb, &da);
        let db2 = self.column_sums(&dyb, rows, out_width);
        let db1 = self.column_sums(&da, rows, hidden);
        let dx = want_dx.then(|| {
            let dx = self.gemm(product(rows, hidden, width, true), &da, &w1b);
            self.tensor(&[rows, width], dx)
        });
        FfnGradients {
            dx,
            dw1: self.tensor(&[width, hidden], dw1),
            db1: self.tensor(&[hidden], db1),
            dw2: self.tensor(&[hidden, out_width], dw2),
            db2: self.tensor(&[out_width], db2),
        }
    }
}
