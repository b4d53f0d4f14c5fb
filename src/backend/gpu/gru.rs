//! The fused GRU layer on the GPU (`shaders/gru.wgsl`; math in `ops/gru.rs`).
//!
//! Forward: the input projections of every step in one GEMM (`self.matmul`), then one
//! dispatch per step that multiplies h_{t-1} by W_hh and applies the gate math (the biases
//! are added there). Backward: W_hhᵀ once, then one dispatch per step in reverse for the gate
//! gradients and the carried dh, one more for dh0; the weight gradients and dx are GEMMs over
//! all steps at once and the bias gradients column sums. The runtime records the L dispatches
//! into one command encoder.

use super::kernel::{Kernel, wgsl_u32};
use super::runtime::GpuBuffer;
use super::{CPU, GpuBackend, host};
use crate::backend::{GruGradients, LinalgKernels, RecurrentKernels};
use crate::tensor::Tensor;
use crate::wgsl_kernel;

const FORWARD_STEP: Kernel = wgsl_kernel!(
    "gru.wgsl",
    "forward_step",
    [Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite]
);
const BACKWARD_STEP: Kernel = wgsl_kernel!(
    "gru.wgsl",
    "backward_step",
    [
        Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite
    ]
);
const TRANSPOSE: Kernel = wgsl_kernel!("gru.wgsl", "transpose", [Read, ReadWrite]);
const COLUMN_SUMS: Kernel = wgsl_kernel!("gru.wgsl", "column_sums", [Read, ReadWrite]);

/// Hidden units per step workgroup.
const TJ: u32 = 32;
/// Batch rows per step workgroup (TBY rows of threads, RPT rows each).
const TB: u32 = 16;
const _: () = assert!(wgsl_u32(FORWARD_STEP.source, "TJ") == TJ);
const _: () = assert!(wgsl_u32(FORWARD_STEP.source, "TB") == TB);
const _: () =
    assert!(wgsl_u32(FORWARD_STEP.source, "TBY") * wgsl_u32(FORWARD_STEP.source, "RPT") == TB);
/// Side of the transpose tile.
const TT: u32 = 16;
const _: () = assert!(wgsl_u32(TRANSPOSE.source, "TT") == TT);
/// Columns per column-sum workgroup, and rows summed by each.
const CS_COLS: u32 = 64;
const CS_ROWS: u32 = 256;
const _: () = assert!(wgsl_u32(COLUMN_SUMS.source, "CS_COLS") == CS_COLS);
const _: () = assert!(wgsl_u32(COLUMN_SUMS.source, "CS_ROWS") == CS_ROWS);

fn groups(n: usize, per_group: u32) -> u32 {
    n.div_ceil(per_group as usize) as u32
}

impl GpuBackend {
    /// `[rows, cols]` → `[cols, rows]`.
    fn gru_transpose(&self, src: &GpuBuffer, rows: usize, cols: usize) -> GpuBuffer {
        let dst = self.rt.alloc(rows * cols);
        self.rt.dispatch(
            &TRANSPOSE,
            &[rows as u32, cols as u32],
            &[src, &dst],
            [groups(cols, TT), groups(rows, TT), 1],
        );
        dst
    }

    /// The sums of the columns of `src` `[rows, cols]` (rows ≥ 1), as `[cols]`.
    fn gru_column_sums(&self, src: &GpuBuffer, rows: usize, cols: usize) -> GpuBuffer {
        let mut rows = rows;
        let mut partial: Option<GpuBuffer> = None;
        loop {
            let chunks = rows.div_ceil(CS_ROWS as usize);
            let dst = self.rt.alloc(chunks * cols);
            let src = partial.as_ref().unwrap_or(src);
            self.rt.dispatch(
                &COLUMN_SUMS,
                &[rows as u32, cols as u32],
                &[src, &dst],
                [groups(cols, CS_COLS), chunks as u32, 1],
            );
            partial = Some(dst);
            rows = chunks;
            if rows == 1 {
                return partial.expect("one pass ran");
            }
        }
    }
}

impl RecurrentKernels for GpuBackend {
    fn gru_forward(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b_ih: &Tensor,
        b_hh: &Tensor,
        mask: Option<&Tensor>,
        save_gates: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (batch, length, input) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let hidden = w_hh.shape()[0];
        if batch * length * hidden * input == 0 {
            // Degenerate sizes (nothing to compute, or no input): the CPU handles them.
            let h0 = h0.map(host);
            let mask = mask.map(host);
            let (hs, gates) = CPU.gru_forward(
                &host(x),
                h0.as_ref(),
                &host(w_ih),
                &host(w_hh),
                &host(b_ih),
                &host(b_hh),
                mask.as_ref(),
                save_gates,
            );
            return (self.upload_tensor(hs), gates.map(|g| self.upload_tensor(g)));
        }
        // x·W_ih for every step, as one tall GEMM `[B·L, I] × [I, 3H]`.
        let x2 = x
            .reshaped(&[batch * length, input])
            .expect("x is [B, L, I]");
        let gx = self.buffer(&self.matmul(&x2, w_ih, false, false));
        let (whh, bih, bhh) = (self.buffer(w_hh), self.buffer(b_ih), self.buffer(b_hh));
        let h0b = h0.map(|h| self.buffer(h));
        let maskb = mask.map(|m| self.buffer(m));
        let out = self.rt.alloc(batch * length * hidden);
        let gates = if save_gates {
            self.rt.alloc(batch * length * 4 * hidden)
        } else {
            self.rt.alloc(1) // never written
        };
        // Absent read-only inputs bind some other read-only buffer; the kernel ignores them.
        let h0_or = h0b.as_deref().unwrap_or(&bih);
        let mask_or = maskb.as_deref().unwrap_or(&bih);
        let grid = [groups(hidden, TJ), groups(batch, TB), 1];
        for t in 0..length {
            let params = [
                batch as u32,
                length as u32,
                hidden as u32,
                t as u32,
                h0.is_some() as u32,
                mask.is_some() as u32,
                save_gates as u32,
            ];
            self.rt.dispatch(
                &FORWARD_STEP,
                &params,
                &[&gx, &whh, &bih, &bhh, h0_or, mask_or, &out, &gates],
                grid,
            );
        }
        let gates = save_gates.then(|| self.tensor(&[batch, length, 4 * hidden], gates));
        (self.tensor(&[batch, length, hidden], out), gates)
    }

    fn gru_backward(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        w_ih: &Tensor,
        w_hh: &Tensor,
        mask: Option<&Tensor>,
        hidden_states: &Tensor,
        gates: &Tensor,
        d_hidden: &Tensor,
        want_dx: bool,
    ) -> GruGradients {
        let (batch, length, input) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let hidden = w_hh.shape()[0];
        let g3 = 3 * hidden;
        if batch * length * hidden * input == 0 {
            let h0 = h0.map(host);
            let mask = mask.map(host);
            let g = CPU.gru_backward(
                &host(x),
                h0.as_ref(),
                &host(w_ih),
                &host(w_hh),
                mask.as_ref(),
                &host(hidden_states),
                &host(gates),
                &host(d_hidden),
                want_dx,
            );
            return GruGradients {
                dx: g.dx.map(|t| self.upload_tensor(t)),
                dh0: self.upload_tensor(g.dh0),
                dw_ih: self.upload_tensor(g.dw_ih),
                dw_hh: self.upload_tensor(g.dw_hh),
                db_ih: self.upload_tensor(g.db_ih),
                db_hh: self.upload_tensor(g.db_hh),
            };
        }
        let steps = batch * length;
        let whh = self.buffer(w_hh);
        let w_hh_t = self.gru_transpose(&whh, hidden, g3);
        let (gb, hb, dyb) = (
            self.buffer(gates),
            self.buffer(hidden_states),
            self.buffer(d_hidden),
        );
        let h0b = h0.map(|h| self.buffer(h));
        let maskb = mask.map(|m| self.buffer(m));
        let h0_or = h0b.as_deref().unwrap_or(&w_hh_t);
        let mask_or = maskb.as_deref().unwrap_or(&w_hh_t);
        let carry = self.rt.alloc(batch * hidden);
        let dgx = self.rt.alloc(steps * g3);
        let dgh = self.rt.alloc(steps * g3);
        let h_prev = self.rt.alloc(steps * hidden);
        let grid = [groups(hidden, TJ), groups(batch, TB), 1];
        let step = |t: usize, finish: bool| {
            let params = [
                batch as u32,
                length as u32,
                hidden as u32,
                t as u32,
                h0.is_some() as u32,
                mask.is_some() as u32,
                finish as u32,
            ];
            self.rt.dispatch(
                &BACKWARD_STEP,
                &params,
                &[
                    &w_hh_t, &gb, &hb, h0_or, mask_or, &dyb, &carry, &dgx, &dgh, &h_prev,
                ],
                grid,
            );
        };
        for t in (0..length).rev() {
            step(t, false);
        }
        let dh0 = if h0.is_some() {
            step(0, true);
            carry
        } else {
            // h_{-1} is a constant zero: nobody wants its gradient.
            self.rt.zeros(batch * hidden)
        };

        let db_ih = self.gru_column_sums(&dgx, steps, g3);
        let db_hh = self.gru_column_sums(&dgh, steps, g3);
        let dgx = self.tensor(&[steps, g3], dgx);
        let dgh = self.tensor(&[steps, g3], dgh);
        let h_prev = self.tensor(&[steps, hidden], h_prev);
        let x2 = x.reshaped(&[steps, input]).expect("x is [B, L, I]");
        let dw_ih = self.matmul(&x2, &dgx, true, false);
        let dw_hh = self.matmul(&h_prev, &dgh, true, false);
        let dx = want_dx.then(|| {
            self.matmul(&dgx, w_ih, false, true)
                .reshaped(&[batch, length, input])
                .expect("dx is [B, L, I]")
        });
        GruGradients {
            dx,
            dh0: self.tensor(&[batch, hidden], dh0),
            dw_ih,
            dw_hh,
            db_ih: self.tensor(&[g3], db_ih),
            db_hh: self.tensor(&[g3], db_hh),
        }
    }
}
