//! Fused scaled-dot-product attention on the GPU, FlashAttention-2 style:
//! `attention_forward.wgsl` (online softmax, saves the log-sum-exp) and
//! `attention_backward.wgsl` (row dots D, then dK/dV per key block and dQ per query block,
//! P recomputed; no atomics). Same layouts, masking and dropout mask as the CPU kernel; the
//! shader headers give the math and the tiling. Head dims above `MAX_DH` (and empty inputs)
//! go through the host.

use std::sync::Arc;

use super::kernel::{Kernel, wgsl_u32};
use super::runtime::{GpuBuffer, grid};
use super::{CPU, GpuBackend, host};
use crate::backend::{AttentionKernels, AttentionSpec};
use crate::rng::stream_key;
use crate::tensor::Tensor;
use crate::wgsl_kernel;

const FORWARD: Kernel = wgsl_kernel!(
    "attention_forward.wgsl",
    "attention_forward",
    [Read, Read, Read, Read, ReadWrite, ReadWrite]
);
const ROW_DOT: Kernel = wgsl_kernel!(
    "attention_backward.wgsl",
    "attention_row_dot",
    [Read, Read, Read, ReadWrite]
);
const DKDV: Kernel = wgsl_kernel!(
    "attention_backward.wgsl",
    "attention_dkdv",
    [Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite]
);
const DQ: Kernel = wgsl_kernel!(
    "attention_backward.wgsl",
    "attention_dq",
    [Read, Read, Read, Read, Read, Read, ReadWrite]
);

/// The largest head dim the kernels hold in workgroup memory and registers.
const MAX_DH: usize = 64;
/// Forward: query rows and keys per block.
const FWD_BQ: usize = 32;
const FWD_BK: usize = 16;
/// Backward: threads of the row-dot pass, of the dK/dV and dQ passes.
const ROW_DOT_WG: u32 = 256;
const PASS_WG: usize = 128;
/// dK/dV pass: keys per workgroup, query rows per step; dQ pass: query rows per workgroup,
/// keys per step.
const KV_BK: usize = 16;
const KV_BQ: usize = 8;
const Q_BQ: usize = 16;
const Q_BK: usize = 8;
/// Accumulator lanes per row (backward).
const LANES: usize = 8;

const FWD_SRC: &str = FORWARD.source;
const BWD_SRC: &str = DKDV.source;
const _: () = {
    assert!(wgsl_u32(FWD_SRC, "BQ") as usize == FWD_BQ);
    assert!(wgsl_u32(FWD_SRC, "BK") as usize == FWD_BK);
    assert!(wgsl_u32(FWD_SRC, "MAX_DH") as usize == MAX_DH);
    assert!(wgsl_u32(FWD_SRC, "PAD") as usize == MAX_DH + 1);
    assert!(wgsl_u32(FWD_SRC, "SP") as usize == FWD_BK + 1);
    // Scores: 4 threads per row, 4 keys each; P V: 4 threads per row, MAX_DH / 4 columns each.
    assert!(wgsl_u32(FWD_SRC, "WG") as usize == FWD_BQ * 4 && FWD_BK == 16);
    assert!(wgsl_u32(FWD_SRC, "COLS") as usize * 4 == MAX_DH);
    let words = (FWD_BQ + FWD_BK) * (MAX_DH + 1) + FWD_BQ * (FWD_BK + 1) + 3 * FWD_BQ + FWD_BK;
    assert!(words * 4 <= 16384);

    assert!(wgsl_u32(BWD_SRC, "WG") == ROW_DOT_WG);
    assert!(wgsl_u32(BWD_SRC, "PASS_WG") as usize == PASS_WG);
    assert!(wgsl_u32(BWD_SRC, "KV_BK") as usize == KV_BK);
    assert!(wgsl_u32(BWD_SRC, "KV_BQ") as usize == KV_BQ);
    assert!(wgsl_u32(BWD_SRC, "Q_BQ") as usize == Q_BQ);
    assert!(wgsl_u32(BWD_SRC, "Q_BK") as usize == Q_BK);
    assert!(wgsl_u32(BWD_SRC, "MAX_DH") as usize == MAX_DH);
    assert!(wgsl_u32(BWD_SRC, "PAD") as usize == MAX_DH + 1);
    assert!(wgsl_u32(BWD_SRC, "LANES") as usize == LANES);
    assert!(wgsl_u32(BWD_SRC, "COLS") as usize * LANES == MAX_DH);
    // One score entry per thread; LANES threads per accumulator row.
    assert!(KV_BQ * KV_BK == PASS_WG && Q_BQ * Q_BK == PASS_WG);
    assert!(PASS_WG / LANES == KV_BK && PASS_WG / LANES == Q_BQ);
    let kv_words = (2 * KV_BK + 2 * KV_BQ) * (MAX_DH + 1) + 2 * KV_BQ * KV_BK + KV_BK + 3 * KV_BQ;
    let q_words = (2 * Q_BQ + 2 * Q_BK) * (MAX_DH + 1) + Q_BQ * Q_BK + Q_BK + 3 * Q_BQ;
    assert!(kv_words * 4 <= 16384 && q_words * 4 <= 16384);
};

/// The params shared by the passes (the shaders' `Params`), `blocks` last.
fn params(
    batch: usize,
    len: usize,
    width: usize,
    spec: &AttentionSpec,
    blocks: usize,
) -> [u32; 12] {
    let head_dim = width / spec.heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let keep_scale = 1.0 / (1.0 - spec.dropout);
    [
        batch as u32,
        len as u32,
        width as u32,
        spec.heads as u32,
        head_dim as u32,
        scale.to_bits(),
        spec.causal as u32,
        0, // has_mask, set by the caller
        spec.dropout.to_bits(),
        keep_scale.to_bits(),
        stream_key(spec.stream),
        blocks as u32,
    ]
}

/// Whether the kernels handle these sizes (else the host does).
fn native(q: &Tensor, spec: &AttentionSpec) -> bool {
    let (len, width) = (q.shape()[1], q.shape()[2]);
    let head_dim = width / spec.heads;
    !q.is_empty() && len > 0 && (1..=MAX_DH).contains(&head_dim)
}

impl GpuBackend {
    /// The key mask's buffer, or a placeholder the kernels never read; and the has_mask flag.
    fn key_mask_buffer(&self, key_mask: Option<&Tensor>) -> (Arc<GpuBuffer>, u32) {
        match key_mask {
            Some(m) => (self.buffer(m), 1),
            None => (Arc::new(self.rt.zeros(1)), 0),
        }
    }
}

impl AttentionKernels for GpuBackend {
    fn attention_forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: Option<&Tensor>,
        spec: &AttentionSpec,
    ) -> (Tensor, Tensor) {
        if !native(q, spec) {
            let mask = key_mask.map(host);
            let (out, lse) =
                CPU.attention_forward(&host(q), &host(k), &host(v), mask.as_ref(), spec);
            return (self.upload_tensor(out), self.upload_tensor(lse));
        }
        let (batch, len, width) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let blocks = len.div_ceil(FWD_BQ);
        let (mask, has_mask) = self.key_mask_buffer(key_mask);
        let mut p = params(batch, len, width, spec, blocks);
        p[7] = has_mask;
        let (qb, kb, vb) = (self.buffer(q), self.buffer(k), self.buffer(v));
        let out = self.rt.alloc(batch * len * width);
        let lse = self.rt.alloc(batch * spec.heads * len);
        self.rt.dispatch(
            &FORWARD,
            &p,
            &[&qb, &kb, &vb, &mask, &out, &lse],
            grid(batch * spec.heads * blocks, 1),
        );
        (
            self.tensor(&[batch, len, width], out),
            self.tensor(&[batch, spec.heads, len], lse),
        )
    }

    fn attention_backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        d_out: &Tensor,
        key_mask: Option<&Tensor>,
        spec: &AttentionSpec,
    ) -> (Tensor, Tensor, Tensor) {
        if !native(q, spec) {
            let mask = key_mask.map(host);
            let (dq, dk, dv) = CPU.attention_backward(
                &host(q),
                &host(k),
                &host(v),
                &host(out),
                &host(lse),
                &host(d_out),
                mask.as_ref(),
                spec,
            );
            return (
                self.upload_tensor(dq),
                self.upload_tensor(dk),
                self.upload_tensor(dv),
            );
        }
        let (batch, len, width) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let rows = batch * spec.heads * len;
        let (mask, has_mask) = self.key_mask_buffer(key_mask);
        let (qb, kb, vb) = (self.buffer(q), self.buffer(k), self.buffer(v));
        let (ob, lb, gb) = (self.buffer(out), self.buffer(lse), self.buffer(d_out));

        // stats = (LSE, D) per row.
        let stats = self.rt.alloc(2 * rows);
        let p = params(batch, len, width, spec, 0);
        self.rt.dispatch(
            &ROW_DOT,
            &p,
            &[&ob, &gb, &lb, &stats],
            grid(rows, ROW_DOT_WG),
        );

        let total = batch * len * width;
        let (dk, dv) = (self.rt.alloc(total), self.rt.alloc(total));
        let kv_blocks = len.div_ceil(KV_BK);
        let mut p = params(batch, len, width, spec, kv_blocks);
        p[7] = has_mask;
        self.rt.dispatch(
            &DKDV,
            &p,
            &[&qb, &kb, &vb, &gb, &stats, &mask, &dk, &dv],
            grid(batch * spec.heads * kv_blocks, 1),
        );

        let dq = self.rt.alloc(total);
        let q_blocks = len.div_ceil(Q_BQ);
        let mut p = params(batch, len, width, spec, q_blocks);
        p[7] = has_mask;
        self.rt.dispatch(
            &DQ,
            &p,
            &[&qb, &kb, &vb, &gb, &stats, &mask, &dq],
            grid(batch * spec.heads * q_blocks, 1),
        );

        let shape = [batch, len, width];
        (
            self.tensor(&shape, dq),
            self.tensor(&shape, dk),
            self.tensor(&shape, dv),
        )
    }
}
