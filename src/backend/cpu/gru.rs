//! The fused GRU layer on the CPU (math in `ops/gru.rs`).
//!
//! Batch rows are independent through the whole recurrence, so the batch is split into one
//! block per thread and each block runs all L steps on its own, with no synchronisation
//! between steps. Inside a block, per step: the input projections `[rows, I] × [I, 3H]`, the
//! recurrent ones `[rows, H] × [H, 3H]`, and a fused pass over the gates (one GEMM over all
//! steps for the input projections measured no faster, and held a `[rows·L, 3H]` buffer).
//! Backward mirrors it: per step a fused pass for the gate gradients, then the four
//! products that use them while they are in cache — dx_t = dGX_t·W_ihᵀ,
//! dW_ih += X_tᵀ·dGX_t, dW_hh += H_{t−1}ᵀ·dGH_t and dh_{t−1} += dGH_t·W_hhᵀ (W_ihᵀ and W_hhᵀ
//! transposed once per call, so that every product reads contiguous rows and needs no
//! packing). The blocks' weight gradients are summed at the end. (Computing the weight
//! gradients once over all steps instead, `[I, rows·L] × [rows·L, 3H]`, ran at ~110 GFLOP/s
//! from memory against ~165 for the per-step products from cache.)
//!
//! The gate math uses `math::fast_exp` (relative error ~1e-7) instead of libm's `exp`: it is
//! branch-free, so the loops over H vectorize, and libm calls would dominate the run time.

use rayon::prelude::*;

use super::math::fast_exp;
use super::microkernel::transpose;
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, gemm_into, sgemm, tensor};
use crate::backend::{GruGradients, RecurrentKernels};
use crate::tensor::Tensor;

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-v))
}

#[inline(always)]
fn tanh(v: f32) -> f32 {
    1.0 - 2.0 / (fast_exp(2.0 * v) + 1.0)
}

/// Sizes of one GRU call.
#[derive(Clone, Copy)]
struct Dims {
    length: usize,
    input: usize,
    hidden: usize,
}

/// Splits the batch into blocks of rows for rayon: one per thread when the work pays for it.
fn rows_per_block(batch: usize, length: usize, hidden: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads > 1 && batch > 1 && batch * length * 3 * hidden >= PARALLEL_MIN_ELEMENTS {
        batch.div_ceil(threads.min(batch))
    } else {
        batch.max(1)
    }
}

/// One step of one row: gates from the projections, new hidden state, saved gates.
// Not inlined: as a function its slices are known not to overlap, so the loop vectorizes.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn cell_forward(
    gx: &[f32],
    gh: &[f32],
    b_ih: &[f32],
    b_hh: &[f32],
    h_prev: &[f32],
    mask: f32,
    h_out: &mut [f32],
    saved: &mut [f32],
) {
    let h = h_out.len();
    let (gx_r, gx_z, gx_n) = (&gx[..h], &gx[h..2 * h], &gx[2 * h..3 * h]);
    let (gh_r, gh_z, gh_n) = (&gh[..h], &gh[h..2 * h], &gh[2 * h..3 * h]);
    let (bi_r, bi_z, bi_n) = (&b_ih[..h], &b_ih[h..2 * h], &b_ih[2 * h..3 * h]);
    let (bh_r, bh_z, bh_n) = (&b_hh[..h], &b_hh[h..2 * h], &b_hh[2 * h..3 * h]);
    let h_prev = &h_prev[..h];
    let (s_r, rest) = saved[..4 * h].split_at_mut(h);
    let (s_z, rest) = rest.split_at_mut(h);
    let (s_n, s_hn) = rest.split_at_mut(h);
    for j in 0..h {
        let r = sigmoid(gx_r[j] + bi_r[j] + gh_r[j] + bh_r[j]);
        let z = sigmoid(gx_z[j] + bi_z[j] + gh_z[j] + bh_z[j]);
        let hn = gh_n[j] + bh_n[j];
        let n = tanh(gx_n[j] + bi_n[j] + r * hn);
        let updated = n + z * (h_prev[j] - n);
        h_out[j] = h_prev[j] + mask * (updated - h_prev[j]);
        s_r[j] = r;
        s_z[j] = z;
        s_n[j] = n;
        s_hn[j] = hn;
    }
}

/// The weights of a call, as slices (`w_ih_t`, `w_hh_t`: W_ihᵀ and W_hhᵀ row-major, backward
/// only).
struct Weights<'a> {
    w_ih: &'a [f32],
    w_hh: &'a [f32],
    w_ih_t: &'a [f32],
    w_hh_t: &'a [f32],
    b_ih: &'a [f32],
    b_hh: &'a [f32],
}

/// Runs the whole sequence for one block of batch rows. `out` is the block's `[rows, L, H]`.
fn forward_block(
    d: Dims,
    w: &Weights<'_>,
    x: &[f32],
    h0: Option<&[f32]>,
    mask: Option<&[f32]>,
    out: &mut [f32],
    mut gates: Option<&mut [f32]>,
) {
    let Dims {
        length,
        input,
        hidden,
    } = d;
    let g3 = 3 * hidden;
    let rows = out.len() / (length * hidden);
    // The step's input projections, X_t · W_ih, computed per step like h_{t−1} · W_hh so
    // that the cell pass reads both from cache.
    let mut gx = vec![0.0f32; rows * g3];
    let mut gh = vec![0.0f32; rows * g3];
    let zeros = vec![0.0f32; hidden];
    let mut scratch = vec![0.0f32; 4 * hidden];
    for t in 0..length {
        // gx = x_t · W_ih for every row of the block; x_t of row i is x[i, t].
        let x_t = &x[t * input..];
        gemm_into(
            rows,
            input,
            g3,
            x_t,
            [length * input, 1],
            w.w_ih,
            g3,
            &mut gx,
            g3,
            false,
        );
        // gh = h_{t-1} · W_hh for every row of the block. h_{t-1} of row i is out[i, t-1].
        if t > 0 {
            let row_stride = (length * hidden) as isize;
            let prev = &out[(t - 1) * hidden..];
            sgemm(
                rows,
                hidden,
                g3,
                prev,
                row_stride,
                1,
                w.w_hh,
                g3 as isize,
                1,
                &mut gh,
            );
        } else if let Some(h0) = h0 {
            sgemm(
                rows,
                hidden,
                g3,
                h0,
                hidden as isize,
                1,
                w.w_hh,
                g3 as isize,
                1,
                &mut gh,
            );
        } else {
            gh.fill(0.0);
        }
        for i in 0..rows {
            let row = &mut out[i * length * hidden..(i + 1) * length * hidden];
            let (before, current) = row.split_at_mut(t * hidden);
            let h_prev = if t > 0 {
                &before[(t - 1) * hidden..]
            } else {
                h0.map_or(&zeros[..], |h0| &h0[i * hidden..(i + 1) * hidden])
            };
            let step = i * length + t;
            let saved = match gates.as_deref_mut() {
                Some(g) => &mut g[step * 4 * hidden..(step + 1) * 4 * hidden],
                None => &mut scratch[..],
            };
            cell_forward(
                &gx[i * g3..(i + 1) * g3],
                &gh[i * g3..(i + 1) * g3],
                w.b_ih,
                w.b_hh,
                h_prev,
                mask.map_or(1.0, |m| m[step]),
                &mut current[..hidden],
                saved,
            );
        }
    }
}

/// One step of one row, backward. `carry` holds the gradient reaching h_t from step t+1 on
/// entry and the part of dh_{t-1} that does not go through W_hh on exit.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn cell_backward(
    saved: &[f32],
    h_prev: &[f32],
    dy: &[f32],
    mask: f32,
    carry: &mut [f32],
    dgx: &mut [f32],
    dgh: &mut [f32],
    db_ih: &mut [f32],
    db_hh: &mut [f32],
) {
    let h = carry.len();
    let (r, z, n, hn) = (
        &saved[..h],
        &saved[h..2 * h],
        &saved[2 * h..3 * h],
        &saved[3 * h..4 * h],
    );
    let (h_prev, dy) = (&h_prev[..h], &dy[..h]);
    let (dgx_r, rest) = dgx[..3 * h].split_at_mut(h);
    let (dgx_z, dgx_n) = rest.split_at_mut(h);
    let (dgh_r, rest) = dgh[..3 * h].split_at_mut(h);
    let (dgh_z, dgh_n) = rest.split_at_mut(h);
    let (dbi_r, rest) = db_ih[..3 * h].split_at_mut(h);
    let (dbi_z, dbi_n) = rest.split_at_mut(h);
    let (dbh_r, rest) = db_hh[..3 * h].split_at_mut(h);
    let (dbh_z, dbh_n) = rest.split_at_mut(h);
    for j in 0..h {
        let g = dy[j] + carry[j];
        let d_updated = mask * g;
        let dn = (1.0 - z[j]) * d_updated;
        let dz = (h_prev[j] - n[j]) * d_updated;
        let da_n = (1.0 - n[j] * n[j]) * dn;
        let dr = hn[j] * da_n;
        let dhn = r[j] * da_n;
        let da_r = r[j] * (1.0 - r[j]) * dr;
        let da_z = z[j] * (1.0 - z[j]) * dz;
        dgx_r[j] = da_r;
        dgx_z[j] = da_z;
        dgx_n[j] = da_n;
        dgh_r[j] = da_r;
        dgh_z[j] = da_z;
        dgh_n[j] = dhn;
        dbi_r[j] += da_r;
        dbi_z[j] += da_z;
        dbi_n[j] += da_n;
        dbh_r[j] += da_r;
        dbh_z[j] += da_z;
        dbh_n[j] += dhn;
        carry[j] = (1.0 - mask) * g + z[j] * d_updated;
    }
}

/// A block's share of the weight gradients (summed over blocks).
struct WeightGrads {
    dw_ih: Vec<f32>,
    dw_hh: Vec<f32>,
    db_ih: Vec<f32>,
    db_hh: Vec<f32>,
}

impl WeightGrads {
    fn add(mut self, other: WeightGrads) -> WeightGrads {
        for (sum, part) in [
            (&mut self.dw_ih, &other.dw_ih),
            (&mut self.dw_hh, &other.dw_hh),
            (&mut self.db_ih, &other.db_ih),
            (&mut self.db_hh, &other.db_hh),
        ] {
            for (s, &p) in sum.iter_mut().zip(part) {
                *s += p;
            }
        }
        self
    }
}

/// The inputs of one block's backward, all restricted to the block's rows.
struct BlockInputs<'a> {
    x: &'a [f32],
    h0: Option<&'a [f32]>,
    mask: Option<&'a [f32]>,
    hidden: &'a [f32],
    gates: &'a [f32],
    d_hidden: &'a [f32],
}

/// Backward through time for one block of rows; writes the block's dx and dh0 and returns
/// its share of the weight gradients. Every product that needs a step's gate gradients runs
/// in that step, so only one step of them is ever held (`[rows, 3H]`, in L1/L2), and each
/// product is a small one the micro-kernel runs from cache.
fn backward_block(
    d: Dims,
    w: &Weights<'_>,
    b: &BlockInputs<'_>,
    mut dx: Option<&mut [f32]>,
    dh0: &mut [f32],
) -> WeightGrads {
    let Dims {
        length,
        input,
        hidden,
    } = d;
    let g3 = 3 * hidden;
    let rows = dh0.len() / hidden;
    let mut dgx = vec![0.0f32; rows * g3];
    let mut dgh = vec![0.0f32; rows * g3];
    let mut dw_ih = vec![0.0f32; input * g3];
    let mut dw_hh = vec![0.0f32; hidden * g3];
    let mut db_ih = vec![0.0f32; g3];
    let mut db_hh = vec![0.0f32; g3];
    let mut carry = vec![0.0f32; rows * hidden];
    let zeros = vec![0.0f32; hidden];
    for t in (0..length).rev() {
        for i in 0..rows {
            let step = i * length + t;
            let h_prev = if t > 0 {
                &b.hidden[(step - 1) * hidden..step * hidden]
            } else {
                b.h0.map_or(&zeros[..], |h0| &h0[i * hidden..(i + 1) * hidden])
            };
            cell_backward(
                &b.gates[step * 4 * hidden..(step + 1) * 4 * hidden],
                h_prev,
                &b.d_hidden[step * hidden..(step + 1) * hidden],
                b.mask.map_or(1.0, |m| m[step]),
                &mut carry[i * hidden..(i + 1) * hidden],
                &mut dgx[i * g3..(i + 1) * g3],
                &mut dgh[i * g3..(i + 1) * g3],
                &mut db_ih,
                &mut db_hh,
            );
        }
        // dx_t = dGX_t · W_ihᵀ, into row (i, t) of the block's dx for every row i.
        if let Some(dx) = dx.as_deref_mut() {
            let out = &mut dx[t * input..];
            gemm_into(
                rows,
                g3,
                input,
                &dgx,
                [g3, 1],
                w.w_ih_t,
                input,
                out,
                length * input,
                false,
            );
        }
        // dW_ih += X_tᵀ · dGX_t, element (j, i) of X_tᵀ at x[(i·L + t)·I + j].
        let x_t = &b.x[t * input..];
        gemm_into(
            input,
            rows,
            g3,
            x_t,
            [1, length * input],
            &dgx,
            g3,
            &mut dw_ih,
            g3,
            true,
        );
        // dW_hh += H_{t−1}ᵀ · dGH_t, H_{t−1} the states step t started from (h0 at t = 0,
        // a constant zero without it).
        let h_prev = match (t, b.h0) {
            (0, None) => None,
            (0, Some(h0)) => Some((h0, hidden)),
            _ => Some((&b.hidden[(t - 1) * hidden..], length * hidden)),
        };
        let Some((h_prev, stride)) = h_prev else {
            break; // h_{-1} is a constant zero: nobody wants its gradient.
        };
        gemm_into(
            hidden,
            rows,
            g3,
            h_prev,
            [1, stride],
            &dgh,
            g3,
            &mut dw_hh,
            g3,
            true,
        );
        // carry += dGH_t · W_hhᵀ
        gemm_into(
            rows,
            g3,
            hidden,
            &dgh,
            [g3, 1],
            w.w_hh_t,
            hidden,
            &mut carry,
            hidden,
            true,
        );
    }
    if b.h0.is_some() {
        dh0.copy_from_slice(&carry);
    }
    WeightGrads {
        dw_ih,
        dw_hh,
        db_ih,
        db_hh,
    }
}

/// Splits `values` into `blocks` chunks of `chunk` elements (the last may be shorter), or
/// `blocks` `None`s when there are no values to write.
pub(super) fn optional_chunks(
    values: Option<&mut [f32]>,
    chunk: usize,
    blocks: usize,
) -> Vec<Option<&mut [f32]>> {
    match values {
        // Zero-width chunks (e.g. an input width of 0): every block writes nothing.
        Some(_) if chunk == 0 => (0..blocks).map(|_| Some(&mut [][..])).collect(),
        Some(v) => v.chunks_mut(chunk).map(Some).collect(),
        None => (0..blocks).map(|_| None).collect(),
    }
}

impl RecurrentKernels for CpuBackend {
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
        let d = Dims {
            length,
            input,
            hidden,
        };
        let w = Weights {
            w_ih: w_ih.cpu(),
            w_hh: w_hh.cpu(),
            w_ih_t: &[],
            w_hh_t: &[],
            b_ih: b_ih.cpu(),
            b_hh: b_hh.cpu(),
        };
        let mut out = vec![0.0f32; batch * length * hidden];
        let mut gates = save_gates.then(|| vec![0.0f32; batch * length * 4 * hidden]);
        if out.is_empty() {
            let gates = gates.map(|g| tensor(&[batch, length, 4 * hidden], g));
            return (tensor(&[batch, length, hidden], out), gates);
        }
        let rows = rows_per_block(batch, length, hidden);
        let blocks = batch.div_ceil(rows);
        let (x_all, h0_all, mask_all) = (x.cpu(), h0.map(|h| h.cpu()), mask.map(|m| m.cpu()));
        let gate_chunks = optional_chunks(gates.as_deref_mut(), rows * length * 4 * hidden, blocks);
        let run = |(block, (out, gates)): (usize, (&mut [f32], Option<&mut [f32]>))| {
            let first = block * rows;
            let n = out.len() / (length * hidden);
            forward_block(
                d,
                &w,
                &x_all[first * length * input..(first + n) * length * input],
                h0_all.map(|h| &h[first * hidden..(first + n) * hidden]),
                mask_all.map(|m| &m[first * length..(first + n) * length]),
                out,
                gates,
            );
        };
        if blocks > 1 {
            out.par_chunks_mut(rows * length * hidden)
                .zip(gate_chunks)
                .enumerate()
                .for_each(run);
        } else {
            let gates = gate_chunks.into_iter().next().flatten();
            run((0, (&mut out[..], gates)));
        }
        let gates = gates.map(|g| tensor(&[batch, length, 4 * hidden], g));
        (tensor(&[batch, length, hidden], out), gates)
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
        let d = Dims {
            length,
            input,
            hidden,
        };
        // The biases do not enter the backward; empty slices stand in for them.
        let mut w_ih_t = vec![0.0f32; g3 * input];
        transpose(w_ih.cpu(), g3, [input, g3], &mut w_ih_t, input);
        let mut w_hh_t = vec![0.0f32; g3 * hidden];
        transpose(w_hh.cpu(), g3, [hidden, g3], &mut w_hh_t, hidden);
        let w = Weights {
            w_ih: w_ih.cpu(),
            w_hh: w_hh.cpu(),
            w_ih_t: &w_ih_t,
            w_hh_t: &w_hh_t,
            b_ih: &[],
            b_hh: &[],
        };
        let mut dx = want_dx.then(|| vec![0.0f32; batch * length * input]);
        let mut dh0 = vec![0.0f32; batch * hidden];
        let zero_grads = || WeightGrads {
            dw_ih: vec![0.0; input * g3],
            dw_hh: vec![0.0; hidden * g3],
            db_ih: vec![0.0; g3],
            db_hh: vec![0.0; g3],
        };
        let sums = if batch * length * hidden == 0 {
            zero_grads()
        } else {
            let rows = rows_per_block(batch, length, hidden);
            let blocks = batch.div_ceil(rows);
            let (x_all, h0_all, mask_all) = (x.cpu(), h0.map(|h| h.cpu()), mask.map(|m| m.cpu()));
            let (hidden_all, gates_all, dy_all) =
                (hidden_states.cpu(), gates.cpu(), d_hidden.cpu());
            let dx_chunks = optional_chunks(dx.as_deref_mut(), rows * length * input, blocks);
            let run = |(block, (dh0, dx)): (usize, (&mut [f32], Option<&mut [f32]>))| {
                let first = block * rows;
                let n = dh0.len() / hidden;
                let steps = first * length..(first + n) * length;
                let inputs = BlockInputs {
                    x: &x_all[steps.start * input..steps.end * input],
                    h0: h0_all.map(|h| &h[first * hidden..(first + n) * hidden]),
                    mask: mask_all.map(|m| &m[steps.clone()]),
                    hidden: &hidden_all[steps.start * hidden..steps.end * hidden],
                    gates: &gates_all[steps.start * 4 * hidden..steps.end * 4 * hidden],
                    d_hidden: &dy_all[steps.start * hidden..steps.end * hidden],
                };
                backward_block(d, &w, &inputs, dx, dh0)
            };
            if blocks > 1 {
                dh0.par_chunks_mut(rows * hidden)
                    .zip(dx_chunks)
                    .enumerate()
                    .map(run)
                    .reduce(zero_grads, WeightGrads::add)
            } else {
                let dx = dx_chunks.into_iter().next().flatten();
                run((0, (&mut dh0[..], dx)))
            }
        };
        GruGradients {
            dx: dx.map(|v| tensor(&[batch, length, input], v)),
            dh0: tensor(&[batch, hidden], dh0),
            dw_ih: tensor(&[input, g3], sums.dw_ih),
            dw_hh: tensor(&[hidden, g3], sums.dw_hh),
            db_ih: tensor(&[g3], sums.db_ih),
            db_hh: tensor(&[g3], sums.db_hh),
        }
    }
}
