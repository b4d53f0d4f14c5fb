//! Fused scaled-dot-product attention on the CPU, FlashAttention-2 style.
//!
//! Per batch item b and head h (columns h·d_h..(h+1)·d_h of the `[B, L, D]` inputs, read in
//! place with row stride D), with s = 1/√d_h:
//!
//! Forward, one block of query rows at a time, streaming over blocks of keys:
//!   S = Q_i K_jᵀ · s + mask            (mask: −∞ for padding keys and, if causal, keys j > i)
//!   m' = max(m, rowmax S);  P = exp(S − m');  l = l·exp(m − m') + rowsum P
//!   acc = acc·exp(m − m') + (P ∘ Z) V_j (Z: inverted dropout scales, 0 or 1/(1−p))
//!   O = acc / l,  LSE = m + ln l        (a row with no visible key: O = 0, LSE = +∞)
//! Only O and LSE are kept; the L×L probabilities never exist in full.
//!
//! Backward, recomputing P = exp(S − LSE) block by block:
//!   Dᵢ = rowsum(dO ∘ O)
//!   dV_j += (P ∘ Z)ᵀ dO_i;  dP = (dO_i V_jᵀ) ∘ Z;  dS = P ∘ (dP − D) · s
//!   dQ_i += dS K_j;  dK_j += dSᵀ Q_i
//! (Dᵢ = Σⱼ Pᵢⱼ dPᵢⱼ even with dropout, because O already holds P ∘ Z.)
//!
//! Parallelism: one rayon task per batch item (it owns that item's rows of every output), all
//! heads inside it. Block products go through `gemm_into` (the AVX-512 register-tiled
//! micro-kernel, which needs no packing): per item and head Kᵀ (and Vᵀ for the backward) are
//! transposed once, so every product reads contiguous rows, and the products add straight
//! into the accumulators and gradients. Query blocks are small (`QUERY_BLOCK` rows) so that a
//! causal block computes scores only up to its own last row: at L = 50 that is 67% of the
//! full square instead of 100%. The softmax works on contiguous rows of a block, one pass for
//! the masked maximum and one for mask, scale, shift, `exp` and sum (`math::max_plus`,
//! `math::exp_affine_sum`, explicit AVX-512 with one in-register reduction per row). Items of
//! 32 KiB or more (L = 200) prefetch the next item's inputs into L2 while they compute.

use super::fresh::fill_pieces;
use super::math::{dot, exp_affine_sum, fast_exp, max_plus};
use super::microkernel::{TILE_ROWS, transpose};
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, gemm_into, tensor};
use crate::backend::{AttentionKernels, AttentionSpec};
use crate::rng::uniform_at;
use crate::tensor::Tensor;

/// Query rows per block: three micro-kernel tiles. Small, because a causal block only needs
/// the keys up to its last row; the products have no per-call packing, so small blocks cost
/// little.
pub const QUERY_BLOCK: usize = 3 * TILE_ROWS;
/// Keys per block: a block of scores (18×64 floats) and of Kᵀ (d_h×64) stays in L1.
pub const KEY_BLOCK: usize = 64;

/// Per-thread scratch buffers, reused across the batch items a thread handles.
struct Scratch {
    scores: Vec<f32>,
    probs: Vec<f32>,
    drop_scales: Vec<f32>,
    d_scores: Vec<f32>,
    acc: Vec<f32>,
    key_bias: Vec<f32>,
    row_max: Vec<f32>,
    row_sum: Vec<f32>,
    /// Kᵀ and Vᵀ of the current head, `[d_h, L]` row-major.
    keys_t: Vec<f32>,
    values_t: Vec<f32>,
    /// Backward: D_i of the current head. (The item's gradients are summed straight into the
    /// zeroed outputs: a per-item buffer zeroed, summed into and copied out cost 5% more at
    /// L = 50 on Zen 4, 1.97 against 2.07 ms median over five alternating runs.)
    row_dot: Vec<f32>,
}

impl Scratch {
    fn new(head_dim: usize) -> Scratch {
        Scratch {
            scores: vec![0.0; QUERY_BLOCK * KEY_BLOCK],
            probs: vec![0.0; QUERY_BLOCK * KEY_BLOCK],
            drop_scales: vec![0.0; QUERY_BLOCK * KEY_BLOCK],
            d_scores: vec![0.0; QUERY_BLOCK * KEY_BLOCK],
            acc: vec![0.0; QUERY_BLOCK * head_dim],
            key_bias: vec![0.0; KEY_BLOCK],
            row_max: vec![0.0; QUERY_BLOCK],
            row_sum: vec![0.0; QUERY_BLOCK],
            keys_t: Vec::new(),
            values_t: Vec::new(),
            row_dot: Vec::new(),
        }
    }
}

/// Sizes shared by every task of one call.
#[derive(Clone, Copy)]
struct Dims {
    heads: usize,
    len: usize,
    width: usize,
    head_dim: usize,
    scale: f32,
}

/// Fills `bias[..count]` with 0 for real keys and −∞ for padding keys `first..first+count`;
/// returns whether any key of the block is real.
fn fill_key_bias(mask: Option<&[f32]>, first: usize, bias: &mut [f32]) -> bool {
    match mask {
        None => {
            bias.fill(0.0);
            true
        }
        Some(mask) => {
            let mut any_real = false;
            for (b, &m) in bias.iter_mut().zip(&mask[first..]) {
                let real = m != 0.0;
                any_real |= real;
                *b = if real { 0.0 } else { f32::NEG_INFINITY };
            }
            any_real
        }
    }
}

/// The inverted-dropout scale (0 or 1/(1−p)) of each probability in one row of a block;
/// `first_index` is the flat index of the row's first key in the `[B, H, L, L]` layout.
fn fill_drop_scales(spec: &AttentionSpec, first_index: usize, scales: &mut [f32]) {
    let keep_scale = 1.0 / (1.0 - spec.dropout);
    for (c, z) in scales.iter_mut().enumerate() {
        let index = (first_index + c) as u32; // wraps past 2³²: still a fixed, distinct-enough index
        *z = if uniform_at(spec.stream, index) < spec.dropout {
            0.0
        } else {
            keep_scale
        };
    }
}

/// `dst` = the `[d_h, L]` transpose of columns `col..col + d_h` of the `[L, width]` `src`.
fn transpose_head(src: &[f32], width: usize, col: usize, head_dim: usize, dst: &mut Vec<f32>) {
    let len = src.len() / width;
    dst.resize(head_dim * len, 0.0); // every element is overwritten
    transpose(&src[col..], width, [len, head_dim], dst, len);
}

/// The number of keys query block `q0..q0+rows` can see: causal rows see no key beyond the
/// block's last row, so the key blocks past it are skipped entirely.
fn visible_keys(dims: &Dims, causal: bool, q0: usize, rows: usize) -> usize {
    if causal { q0 + rows } else { dims.len }
}

/// Items at least this large (floats per input, 32 KiB) have the next item's inputs
/// prefetched while they compute: at L = 200 an item's K and V no longer sit in L2 when its
/// task starts, and the first reads of them (the Kᵀ transposes and the first products) wait
/// on memory. Small items (L = 50) are left to the hardware prefetcher: prefetching them did
/// not pay (L = 50 fwd+bwd 1.96 → 2.20 ms with a whole-item prefetch in stop 13, level within
/// noise with this one spread over the query blocks in stop 16).
const PREFETCH_MIN_FLOATS: usize = 8192;

/// Prefetches into L2 the share of every slice of `next` that belongs to query block `q0` of
/// head `h`: spread over the blocks of one item's work, the whole of the next item's inputs
/// arrives before it is needed. No-op off x86-64 (a hint only: results never depend on it).
fn prefetch_for_block(next: &[&[f32]], dims: &Dims, h: usize, q0: usize) {
    let blocks = dims.len.div_ceil(QUERY_BLOCK);
    let (step, steps) = (h * blocks + q0 / QUERY_BLOCK, dims.heads * blocks);
    #[cfg(target_arch = "x86_64")]
    for slice in next {
        const LINE: usize = 16; // floats per 64-byte cache line
        let lines = slice.len().div_ceil(LINE);
        let (first, last) = (lines * step / steps, lines * (step + 1) / steps);
        for line in first..last.min(lines) {
            // SAFETY: `line · LINE` < slice.len(), so the address is inside the slice;
            // a prefetch never faults and changes no memory.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T1>(slice.as_ptr().add(line * LINE).cast());
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (next, step, steps);
}

/// Forward of one batch item, all heads: writes its `[L, D]` output and `[H, L]` LSE.
#[allow(clippy::too_many_arguments)]
fn forward_item(
    dims: &Dims,
    spec: &AttentionSpec,
    item: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    out: &mut [f32],
    lse: &mut [f32],
    scratch: &mut Scratch,
    next_item: &[&[f32]],
) {
    let Dims {
        heads,
        len,
        width,
        head_dim: dh,
        scale,
    } = *dims;
    if dh == 0 {
        return; // no columns: nothing to compute, the zeroed outputs stand
    }
    for h in 0..heads {
        let col = h * dh;
        transpose_head(k, width, col, dh, &mut scratch.keys_t);
        for q0 in (0..len).step_by(QUERY_BLOCK) {
            prefetch_for_block(next_item, dims, h, q0);
            let rows = QUERY_BLOCK.min(len - q0);
            let acc = &mut scratch.acc[..rows * dh];
            acc.fill(0.0);
            scratch.row_max[..rows].fill(f32::NEG_INFINITY);
            scratch.row_sum[..rows].fill(0.0);
            let key_end = visible_keys(dims, spec.causal, q0, rows);
            for k0 in (0..key_end).step_by(KEY_BLOCK) {
                let keys = KEY_BLOCK.min(key_end - k0);
                let bias = &mut scratch.key_bias[..keys];
                if !fill_key_bias(mask, k0, bias) {
                    continue; // every key of the block is padding
                }
                let scores = &mut scratch.scores[..rows * keys];
                gemm_into(
                    rows,
                    dh,
                    keys,
                    &q[q0 * width + col..],
                    [width, 1],
                    &scratch.keys_t[k0..],
                    len,
                    scores,
                    keys,
                    false,
                );
                for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
                    let i = q0 + r;
                    let visible = if spec.causal {
                        (i + 1).saturating_sub(k0)
                    } else {
                        keys
                    };
                    // max(s·scale + bias) = max(s + bias)·scale: the bias is 0 or −∞.
                    let block_max = max_plus(row, bias, visible) * scale;
                    if block_max == f32::NEG_INFINITY {
                        row.fill(0.0); // no visible key in this block for this row
                        continue;
                    }
                    let old_max = scratch.row_max[r];
                    let new_max = old_max.max(block_max);
                    let sum = exp_affine_sum(row, bias, visible, scale, new_max);
                    let correction = fast_exp(old_max - new_max);
                    scratch.row_sum[r] = scratch.row_sum[r] * correction + sum;
                    scratch.row_max[r] = new_max;
                    if correction != 1.0 {
                        acc[r * dh..(r + 1) * dh]
                            .iter_mut()
                            .for_each(|a| *a *= correction);
                    }
                    if spec.dropout > 0.0 {
                        let scales = &mut scratch.drop_scales[..keys];
                        fill_drop_scales(spec, ((item * heads + h) * len + i) * len + k0, scales);
                        row.iter_mut().zip(scales.iter()).for_each(|(p, z)| *p *= z);
                    }
                }
                // acc += (P ∘ Z) V_j
                gemm_into(
                    rows,
                    keys,
                    dh,
                    scores,
                    [keys, 1],
                    &v[k0 * width + col..],
                    width,
                    acc,
                    dh,
                    true,
                );
            }
            for r in 0..rows {
                let i = q0 + r;
                let (m, l) = (scratch.row_max[r], scratch.row_sum[r]);
                let out_row = &mut out[i * width + col..i * width + col + dh];
                if l > 0.0 {
                    let inv = 1.0 / l;
                    out_row
                        .iter_mut()
                        .zip(&acc[r * dh..(r + 1) * dh])
                        .for_each(|(o, a)| *o = a * inv);
                    lse[h * len + i] = m + l.ln();
                } else {
                    out_row.fill(0.0);
                    lse[h * len + i] = f32::INFINITY;
                }
            }
        }
    }
}

/// Backward of one batch item, all heads: accumulates its rows of dq, dk, dv (zeroed).
#[allow(clippy::too_many_arguments)]
fn backward_item(
    dims: &Dims,
    spec: &AttentionSpec,
    item: usize,
    inputs: [&[f32]; 5], // q, k, v, out, d_out of this item
    lse: &[f32],
    mask: Option<&[f32]>,
    grads: [&mut [f32]; 3], // dq, dk, dv of this item
    scratch: &mut Scratch,
    next_item: &[&[f32]],
) {
    let Dims {
        heads,
        len,
        width,
        head_dim: dh,
        scale,
    } = *dims;
    if dh == 0 {
        return; // no columns: nothing to compute, the zeroed outputs stand
    }
    let [q, k, v, out, d_out] = inputs;
    scratch.row_dot.resize(len, 0.0);
    let [dq, dk, dv] = grads;
    let row_dot = &mut scratch.row_dot;
    for h in 0..heads {
        let col = h * dh;
        transpose_head(k, width, col, dh, &mut scratch.keys_t);
        transpose_head(v, width, col, dh, &mut scratch.values_t);
        // D_i = rowsum(dO ∘ O) over this head's columns.
        for (i, d) in row_dot.iter_mut().enumerate() {
            let span = i * width + col..i * width + col + dh;
            *d = dot(&d_out[span.clone()], &out[span]);
        }
        for q0 in (0..len).step_by(QUERY_BLOCK) {
            prefetch_for_block(next_item, dims, h, q0);
            let rows = QUERY_BLOCK.min(len - q0);
            let row_lse = &lse[h * len + q0..h * len + q0 + rows];
            if row_lse.iter().all(|l| !l.is_finite()) {
                continue; // no row of this block sees any key: all gradients are zero
            }
            let key_end = visible_keys(dims, spec.causal, q0, rows);
            for k0 in (0..key_end).step_by(KEY_BLOCK) {
                let keys = KEY_BLOCK.min(key_end - k0);
                let bias = &mut scratch.key_bias[..keys];
                if !fill_key_bias(mask, k0, bias) {
                    continue;
                }
                // P = exp(S − LSE), recomputed.
                let probs = &mut scratch.probs[..rows * keys];
                gemm_into(
                    rows,
                    dh,
                    keys,
                    &q[q0 * width + col..],
                    [width, 1],
                    &scratch.keys_t[k0..],
                    len,
                    probs,
                    keys,
                    false,
                );
                for (r, row) in probs.chunks_exact_mut(keys).enumerate() {
                    let i = q0 + r;
                    if !row_lse[r].is_finite() {
                        row.fill(0.0);
                        continue;
                    }
                    let visible = if spec.causal {
                        (i + 1).saturating_sub(k0)
                    } else {
                        keys
                    };
                    exp_affine_sum(row, bias, visible, scale, row_lse[r]);
                }
                // With dropout the products use P ∘ Z; `scores` holds P ∘ Z then.
                let dropout = spec.dropout > 0.0;
                let dropped: &[f32] = if dropout {
                    let scales = &mut scratch.drop_scales[..rows * keys];
                    for (r, z) in scales.chunks_exact_mut(keys).enumerate() {
                        fill_drop_scales(spec, ((item * heads + h) * len + q0 + r) * len + k0, z);
                    }
                    let pz = &mut scratch.scores[..rows * keys];
                    pz.iter_mut()
                        .zip(probs.iter().zip(scales.iter()))
                        .for_each(|(o, (p, z))| *o = p * z);
                    pz
                } else {
                    probs
                };
                // dV_j += (P ∘ Z)ᵀ dO_i
                gemm_into(
                    keys,
                    rows,
                    dh,
                    dropped,
                    [1, keys],
                    &d_out[q0 * width + col..],
                    width,
                    &mut dv[k0 * width + col..],
                    width,
                    true,
                );
                // dP = (dO_i V_jᵀ) ∘ Z, then dS = P ∘ (dP − D) · scale, in place.
                let d_scores = &mut scratch.d_scores[..rows * keys];
                gemm_into(
                    rows,
                    dh,
                    keys,
                    &d_out[q0 * width + col..],
                    [width, 1],
                    &scratch.values_t[k0..],
                    len,
                    d_scores,
                    keys,
                    false,
                );
                let probs = &scratch.probs[..rows * keys];
                for (r, (ds_row, p_row)) in d_scores
                    .chunks_exact_mut(keys)
                    .zip(probs.chunks_exact(keys))
                    .enumerate()
                {
                    let d = row_dot[q0 + r];
                    if dropout {
                        let z_row = &scratch.drop_scales[r * keys..(r + 1) * keys];
                        for ((ds, &p), &z) in ds_row.iter_mut().zip(p_row).zip(z_row) {
                            *ds = p * (*ds * z - d) * scale;
                        }
                    } else {
                        for (ds, &p) in ds_row.iter_mut().zip(p_row) {
                            *ds = p * (*ds - d) * scale;
                        }
                    }
                }
                // dQ_i += dS K_j
                gemm_into(
                    rows,
                    keys,
                    dh,
                    d_scores,
                    [keys, 1],
                    &k[k0 * width + col..],
                    width,
                    &mut dq[q0 * width + col..],
                    width,
                    true,
                );
                // dK_j += dSᵀ Q_i
                gemm_into(
                    keys,
                    rows,
                    dh,
                    d_scores,
                    [1, keys],
                    &q[q0 * width + col..],
                    width,
                    &mut dk[k0 * width + col..],
                    width,
                    true,
                );
            }
        }
    }
}

fn dims_of(q: &Tensor, spec: &AttentionSpec) -> (usize, Dims) {
    let (batch, len, width) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let head_dim = width / spec.heads;
    let dims = Dims {
        heads: spec.heads,
        len,
        width,
        head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
    };
    (batch, dims)
}

/// The span of item b + 1, the next item the task's thread most likely takes (rayon hands
/// each thread a contiguous range), when items are big enough to prefetch.
fn next_span(b: usize, batch: usize, item_span: usize) -> Option<std::ops::Range<usize>> {
    (b + 1 < batch && item_span >= PREFETCH_MIN_FLOATS)
        .then(|| (b + 1) * item_span..(b + 2) * item_span)
}

/// Whether a call is big enough to be worth rayon's fork/join.
fn worth_parallel(batch: usize, dims: &Dims) -> bool {
    batch > 1 && batch * dims.len * dims.len * dims.width >= PARALLEL_MIN_ELEMENTS
}

impl AttentionKernels for CpuBackend {
    fn attention_forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: Option<&Tensor>,
        spec: &AttentionSpec,
    ) -> (Tensor, Tensor) {
        let (batch, dims) = dims_of(q, spec);
        let (len, width, heads) = (dims.len, dims.width, dims.heads);
        let (q, k, v) = (q.cpu(), k.cpu(), v.cpu());
        let mask = key_mask.map(|m| m.cpu());
        let item_span = len * width;
        let [out, lse] = fill_pieces(
            [item_span, heads * len],
            batch,
            worth_parallel(batch, &dims),
            || Scratch::new(dims.head_dim),
            |scratch, b, [o, l]| {
                let span = b * item_span..(b + 1) * item_span;
                let item_mask = mask.map(|m| &m[b * len..(b + 1) * len]);
                let (qb, kb, vb) = (&q[span.clone()], &k[span.clone()], &v[span]);
                let next = next_span(b, batch, item_span);
                let next_item = next.map(|n| [&q[n.clone()], &k[n.clone()], &v[n]]);
                let next_item = next_item.as_ref().map_or(&[][..], |n| &n[..]);
                forward_item(
                    &dims, spec, b, qb, kb, vb, item_mask, o, l, scratch, next_item,
                );
            },
        );
        let shape = [batch, len, width];
        (tensor(&shape, out), tensor(&[batch, heads, len], lse))
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
        let (batch, dims) = dims_of(q, spec);
        let (len, width, heads) = (dims.len, dims.width, dims.heads);
        let (q, k, v, out, lse, d_out) =
            (q.cpu(), k.cpu(), v.cpu(), out.cpu(), lse.cpu(), d_out.cpu());
        let mask = key_mask.map(|m| m.cpu());
        let item_span = len * width;
        let [dq, dk, dv] = fill_pieces(
            [item_span; 3],
            batch,
            worth_parallel(batch, &dims),
            || Scratch::new(dims.head_dim),
            |scratch, b, grads| {
                let span = b * item_span..(b + 1) * item_span;
                let inputs = [
                    &q[span.clone()],
                    &k[span.clone()],
                    &v[span.clone()],
                    &out[span.clone()],
                    &d_out[span],
                ];
                let item_lse = &lse[b * heads * len..(b + 1) * heads * len];
                let item_mask = mask.map(|m| &m[b * len..(b + 1) * len]);
                let next = next_span(b, batch, item_span);
                let next_item = next.map(|n| [&q, &k, &v, &out, &d_out].map(|t| &t[n.clone()]));
                let next_item = next_item.as_ref().map_or(&[][..], |n| &n[..]);
                backward_item(
                    &dims, spec, b, inputs, item_lse, item_mask, grads, scratch, next_item,
                );
            },
        );
        let shape = [batch, len, width];
        (tensor(&shape, dq), tensor(&shape, dk), tensor(&shape, dv))
    }
}
