//! The output layer and its full-softmax cross-entropy in one kernel, without the `[N, V]`
//! logits matrix.
//!
//! For rows H `[N, d]` (one per target position), the item table E `[V, d]`, targets t and
//! weights w:
//!   z_r  = H_r · Eᵀ                                   (the logits of row r over all V items)
//!   L    = Σ_r w_r·(lse(z_r) − z_{r,t_r}) / Σ_r w_r
//!   g_r  = w_r/Σw · (softmax(z_r) − onehot(t_r))       (∂L/∂z_r)
//!   ∂L/∂H = g · E,   ∂L/∂E = gᵀ · H
//!
//! Composed from ops, this allocates the logits and their gradient (N·V floats each, 42 MB for
//! a batch of 880 rows over Beauty's 12,102 items), writes them to memory and reads them back
//! three times. Here the rows are cut into parts (`part_rows`): a part's logits live in a
//! per-thread scratch buffer, turn into its gradient in place and are consumed at once by the
//! two gradient products, so the `[N, V]` matrices never exist. The three products go through
//! the register-tiled micro-kernel (`gemm_into`), which reads the part's gradient through
//! strides where `matrixmultiply` copied (packed) all of it twice per part: on Zen 4 the
//! packing was a quarter of matrixmultiply's time here, and the kernel ran 28.6-30.5 ms with
//! it against 22.5-23.7 ms without (6400 rows × 1,683 items, fwd+bwd, two threads). The
//! gradient is computed with the loss (the loss is the last op of a step, so dloss is almost
//! always 1; the tape's backward only rescales it).
//!
//! Parts run in parallel; each sums its share of ∂L/∂E in its own `[V, d]` accumulator and the
//! accumulators are added in part order. The parts depend only on N, never on the thread
//! count, so the result is the same bits on any number of threads.

use std::cell::RefCell;

use rayon::prelude::*;

use super::linalg::gemm_into;
use super::math::{fast_exp, max_of, sum_of};
use super::microkernel::transpose;

/// Rows per part: the part's logits (rows × V floats) should stay within about 4 MiB, while
/// a part keeps enough rows to reuse each block of E it reads. Depends only on V, never on
/// the thread count. Measured on an AVX-512 Xeon with matrixmultiply, fwd+bwd: 6400 rows ×
/// 1,683 items 28.7 ms at 256 rows, 24.6 ms at 512; 880 rows × 12,102 items 34.1 ms at 256,
/// 26.5 ms at 128. With the micro-kernel on Zen 4, a 1 MiB part (128 rows at 1,683 items) was
/// no faster than 4 MiB.
fn part_rows(items: usize) -> usize {
    const SCRATCH_FLOATS: usize = 1 << 20;
    let fit = (SCRATCH_FLOATS / items.max(1)).max(1);
    // The largest power of two that fits, between 128 and 512.
    (1usize << fit.ilog2()).clamp(128, 512)
}

thread_local! {
    /// The part's logits / gradient, reused across parts and steps (no allocation, no zeroing:
    /// the logits product overwrites it).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// What the kernel returns: the loss and, when asked for, ∂L/∂H `[N, d]` and ∂L/∂E `[V, d]`.
pub struct LinearCrossEntropy {
    pub loss: f32,
    pub grads: Option<(Vec<f32>, Vec<f32>)>,
}

/// Turns one row of logits into its gradient `ws·(softmax(z) − onehot(t))`, in place, and
/// returns the row's unweighted loss `lse(z) − z_t`.
pub fn cross_entropy_row(z: &mut [f32], target: usize, ws: f32) -> f32 {
    let z_target = z[target];
    let max = max_of(z);
    for v in z.iter_mut() {
        *v = fast_exp(*v - max);
    }
    let sum = sum_of(z);
    let factor = ws / sum;
    for v in z.iter_mut() {
        *v *= factor;
    }
    z[target] -= ws;
    max + sum.ln() - z_target
}

/// The fused kernel. `rows` is `[N, d]`, `items` `[V, d]`, `targets` and `weights` `[N]`
/// (targets already checked to be < V).
pub fn linear_cross_entropy(
    rows: &[f32],
    items: &[f32],
    d: usize,
    targets: &[u32],
    weights: &[f32],
    with_grads: bool,
) -> LinearCrossEntropy {
    let n = targets.len();
    let v = items.len().checked_div(d).unwrap_or(0);
    let total_weight: f64 = weights.iter().map(|&w| w as f64).sum();
    let scale = if total_weight == 0.0 {
        0.0
    } else {
        (1.0 / total_weight) as f32
    };
    if n == 0 || v == 0 || d == 0 || scale == 0.0 {
        return LinearCrossEntropy {
            loss: 0.0,
            grads: with_grads.then(|| (vec![0.0; n * d], vec![0.0; v * d])),
        };
    }

    // Eᵀ `[d, V]`, so that every product reads contiguous rows of its right operand.
    let mut items_t = vec![0.0f32; d * v];
    transpose(items, d, [v, d], &mut items_t, v);

    // One part: its loss sum and (with gradients) its ∂L/∂E accumulator; its ∂L/∂H rows go
    // straight into `drows_part`.
    let rows_per_part = part_rows(v);
    let part = |index: usize, drows_part: Option<&mut [f32]>| -> (f64, Option<Vec<f32>>) {
        let first = index * rows_per_part;
        let m = rows_per_part.min(n - first);
        let h = &rows[first * d..(first + m) * d];
        SCRATCH.with_borrow_mut(|scratch| {
            if scratch.len() < m * v {
                scratch.resize(m * v, 0.0);
            }
            let z = &mut scratch[..m * v];
            // z = H_part · Eᵀ.
            gemm_into(m, d, v, h, [d, 1], &items_t, v, z, v, false);
            let mut loss = 0.0f64;
            for (r, z_row) in z.chunks_mut(v).enumerate() {
                let w = weights[first + r];
                if w == 0.0 {
                    z_row.fill(0.0);
                    continue;
                }
                let t = targets[first + r] as usize;
                loss += w as f64 * cross_entropy_row(z_row, t, w * scale) as f64;
            }
            let Some(drows_part) = drows_part else {
                return (loss, None);
            };
            // ∂L/∂H_part = g · E, and this part's share of ∂L/∂E = gᵀ · H_part (gᵀ read
            // through strides).
            gemm_into(m, v, d, z, [v, 1], items, d, drows_part, d, false);
            let mut ditems = vec![0.0f32; v * d];
            gemm_into(v, m, d, z, [1, v], h, d, &mut ditems, d, false);
            (loss, Some(ditems))
        })
    };

    let parts = n.div_ceil(rows_per_part);
    let mut drows = if with_grads {
        vec![0.0f32; n * d]
    } else {
        Vec::new()
    };
    let results: Vec<(f64, Option<Vec<f32>>)> = match (with_grads, parts) {
        (true, 1) => vec![part(0, Some(&mut drows))],
        (true, _) => drows
            .par_chunks_mut(rows_per_part * d)
            .enumerate()
            .map(|(index, drows_part)| part(index, Some(drows_part)))
            .collect(),
        (false, 1) => vec![part(0, None)],
        (false, _) => (0..parts)
            .into_par_iter()
            .map(|index| part(index, None))
            .collect(),
    };

    // Reduce in part order: the same sums whatever thread ran which part.
    let loss: f64 = results.iter().map(|(loss, _)| loss).sum();
    let grads = with_grads.then(|| {
        let mut accumulators = results.into_iter().filter_map(|(_, acc)| acc);
        let mut ditems = accumulators.next().expect("at least one part");
        for acc in accumulators {
            ditems.iter_mut().zip(&acc).for_each(|(sum, x)| *sum += x);
        }
        (drows, ditems)
    });
    LinearCrossEntropy {
        loss: (loss * scale as f64) as f32,
        grads,
    }
}
