//! Row-wise neural-network kernels on the CPU: softmax, log-softmax, layer norm, dropout,
//! the fused cross-entropy, and binary cross-entropy. Rows are independent: rayon over rows.

use rayon::prelude::*;

use super::fresh::{collect_chunks, fill_chunks, fill_pieces};
use super::linear_ce::{cross_entropy_row, linear_cross_entropy};
use super::math::{fast_exp, max_of, sum_of};
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, tensor};
use crate::backend::{NnKernels, sigmoid};
use crate::rng::{hash32, stream_key};
use crate::tensor::Tensor;

/// A fresh buffer of `len` floats filled by `f(row index, output row)` over rows of
/// `width`, in parallel when large.
fn fill_rows(len: usize, width: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    fill_chunks(len, width, len >= PARALLEL_MIN_ELEMENTS, f)
}

fn last(x: &Tensor) -> usize {
    x.shape().last().copied().unwrap_or(1)
}

/// log Σ exp(x) of a row, as max + log Σ exp(x − max). The exponentials go through a small
/// buffer so that both loops are plain element-wise loops, which LLVM vectorizes (a fused
/// "exp and accumulate" loop stays scalar).
#[inline]
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = max_of(row);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut buffer = [0.0f32; 256];
    let mut total = 0.0f32;
    for chunk in row.chunks(256) {
        let exps = &mut buffer[..chunk.len()];
        for (e, &v) in exps.iter_mut().zip(chunk) {
            *e = fast_exp(v - max);
        }
        total += sum_of(exps);
    }
    max + total.ln()
}

impl NnKernels for CpuBackend {
    fn softmax(&self, x: &Tensor) -> Tensor {
        let (xs, w) = (x.cpu(), last(x));
        let out = fill_rows(xs.len(), w, |r, o| {
            let row = &xs[r * w..(r + 1) * w];
            let max = max_of(row);
            for (o, &v) in o.iter_mut().zip(row) {
                *o = fast_exp(v - max);
            }
            let inv = 1.0 / sum_of(o);
            o.iter_mut().for_each(|o| *o *= inv);
        });
        tensor(x.shape(), out)
    }

    fn softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor {
        let (ys, ds, w) = (y.cpu(), dy.cpu(), last(y));
        let out = fill_rows(ys.len(), w, |r, o| {
            let (yr, dr) = (&ys[r * w..(r + 1) * w], &ds[r * w..(r + 1) * w]);
            let dot: f32 = yr.iter().zip(dr).map(|(a, b)| a * b).sum();
            for ((o, &y), &d) in o.iter_mut().zip(yr).zip(dr) {
                *o = y * (d - dot);
            }
        });
        tensor(y.shape(), out)
    }

    fn log_softmax(&self, x: &Tensor) -> Tensor {
        let (xs, w) = (x.cpu(), last(x));
        let out = fill_rows(xs.len(), w, |r, o| {
            let row = &xs[r * w..(r + 1) * w];
            let lse = log_sum_exp(row);
            for (o, &v) in o.iter_mut().zip(row) {
                *o = v - lse;
            }
        });
        tensor(x.shape(), out)
    }

    fn log_softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor {
        let (ys, ds, w) = (y.cpu(), dy.cpu(), last(y));
        let out = fill_rows(ys.len(), w, |r, o| {
            let (yr, dr) = (&ys[r * w..(r + 1) * w], &ds[r * w..(r + 1) * w]);
            let total: f32 = dr.iter().sum();
            for ((o, &y), &d) in o.iter_mut().zip(yr).zip(dr) {
                *o = d - fast_exp(y) * total;
            }
        });
        tensor(y.shape(), out)
    }

    fn layer_norm(
        &self,
        x: &Tensor,
        gain: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> (Tensor, Tensor, Tensor) {
        let (xs, g, b, w) = (x.cpu(), gain.cpu(), bias.cpu(), last(x));
        let rows = xs.len() / w.max(1);
        let [out, mean, rstd] = fill_pieces(
            [w, 1, 1],
            rows,
            xs.len() >= PARALLEL_MIN_ELEMENTS,
            || (),
            |_, r, [o, mean, rstd]| {
                let row = &xs[r * w..(r + 1) * w];
                // Two passes over the row (it is in L1): the mean, then the sum of squared
                // deviations from it. As exact as Welford's update, without its division per
                // element, and both passes vectorize.
                let row_mean = sum_of(row) / w as f32;
                let mut lanes = [0.0f32; 8];
                let chunks = row.chunks_exact(8);
                let tail: f32 = chunks
                    .remainder()
                    .iter()
                    .map(|&v| (v - row_mean) * (v - row_mean))
                    .sum();
                for chunk in chunks {
                    for (l, &v) in lanes.iter_mut().zip(chunk) {
                        *l += (v - row_mean) * (v - row_mean);
                    }
                }
                let m2 = lanes.iter().sum::<f32>() + tail;
                let row_rstd = 1.0 / (m2 / w as f32 + eps).sqrt();
                for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(g).zip(b) {
                    *o = (v - row_mean) * row_rstd * g + b;
                }
                (mean[0], rstd[0]) = (row_mean, row_rstd);
            },
        );
        (
            tensor(x.shape(), out),
            tensor(&[rows], mean),
            tensor(&[rows], rstd),
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
        let (xs, g, ds, w) = (x.cpu(), gain.cpu(), dy.cpu(), last(x));
        let (mean, rstd) = (mean.cpu(), rstd.cpu());
        // dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dy·g, x̂ = (x − μ)·rstd.
        let dx = fill_rows(xs.len(), w, |r, o| {
            let (row, d) = (&xs[r * w..(r + 1) * w], &ds[r * w..(r + 1) * w]);
            let (mu, rs) = (mean[r], rstd[r]);
            let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
            for i in 0..w {
                let gh = d[i] * g[i];
                sum_g += gh;
                sum_gx += gh * (row[i] - mu) * rs;
            }
            let (mean_g, mean_gx) = (sum_g / w as f32, sum_gx / w as f32);
            for i in 0..w {
                let xhat = (row[i] - mu) * rs;
                o[i] = rs * (d[i] * g[i] - mean_g - xhat * mean_gx);
            }
        });
        // dgain = Σ_rows dy·x̂, dbias = Σ_rows dy: per-thread partial sums, then added.
        let rows = xs.len() / w.max(1);
        let (dg, db) = (0..rows)
            .into_par_iter()
            .with_min_len(256)
            .fold(
                || (vec![0.0f32; w], vec![0.0f32; w]),
                |(mut dg, mut db), r| {
                    let (row, d) = (&xs[r * w..(r + 1) * w], &ds[r * w..(r + 1) * w]);
                    for i in 0..w {
                        dg[i] += d[i] * (row[i] - mean[r]) * rstd[r];
                        db[i] += d[i];
                    }
                    (dg, db)
                },
            )
            .reduce(
                || (vec![0.0f32; w], vec![0.0f32; w]),
                |(mut a, mut b), (c, d)| {
                    a.iter_mut().zip(&c).for_each(|(a, c)| *a += c);
                    b.iter_mut().zip(&d).for_each(|(b, d)| *b += d);
                    (a, b)
                },
            );
        (tensor(x.shape(), dx), tensor(&[w], dg), tensor(&[w], db))
    }

    fn dropout(&self, x: &Tensor, p: f32, stream: u32) -> Tensor {
        let xs = x.cpu();
        let scale = 1.0 / (1.0 - p);
        // Element i is dropped when uniform_at(stream, i) < p, i.e. when its 24 random bits
        // are below ⌈p·2²⁴⌉: the same test in integers, with the stream's key hashed once.
        let threshold = (p as f64 * 16_777_216.0).ceil() as u32;
        let key = stream_key(stream);
        let parallel = xs.len() >= PARALLEL_MIN_ELEMENTS;
        let out = collect_chunks(xs.len(), 4096, parallel, |_, range| {
            let start = range.start;
            xs[range].iter().enumerate().map(move |(j, &v)| {
                let bits = hash32((start + j) as u32 ^ key) >> 8;
                if bits < threshold { 0.0 } else { v * scale }
            })
        });
        tensor(x.shape(), out)
    }

    fn cross_entropy(&self, logits: &Tensor, targets: &[u32], weights: &[f32]) -> (Tensor, Tensor) {
        // One pass per row computes both the loss term and its gradient while the row is in L1:
        // the logits matrix is read once and the gradient written once.
        let (xs, c) = (logits.cpu(), last(logits));
        let total_weight: f64 = weights.iter().map(|&w| w as f64).sum();
        let scale = if total_weight == 0.0 {
            0.0
        } else {
            (1.0 / total_weight) as f32
        };
        let mut grad = vec![0.0f32; xs.len()];
        let row_loss = |(r, g): (usize, &mut [f32])| -> f64 {
            let w = weights[r];
            if w == 0.0 {
                return 0.0;
            }
            g.copy_from_slice(&xs[r * c..(r + 1) * c]);
            w as f64 * cross_entropy_row(g, targets[r] as usize, w * scale) as f64
        };
        let loss: f64 = if c == 0 {
            0.0
        } else if xs.len() >= PARALLEL_MIN_ELEMENTS {
            grad.par_chunks_mut(c).enumerate().map(row_loss).sum()
        } else {
            grad.chunks_mut(c).enumerate().map(row_loss).sum()
        };
        (
            tensor(&[], vec![(loss * scale as f64) as f32]),
            tensor(logits.shape(), grad),
        )
    }

    fn linear_cross_entropy(
        &self,
        rows: &Tensor,
        items: &Tensor,
        targets: &[u32],
        weights: &[f32],
        with_grads: bool,
    ) -> (Tensor, Option<(Tensor, Tensor)>) {
        let d = last(rows);
        let fused = linear_cross_entropy(rows.cpu(), items.cpu(), d, targets, weights, with_grads);
        let grads = fused
            .grads
            .map(|(drows, ditems)| (tensor(rows.shape(), drows), tensor(items.shape(), ditems)));
        (tensor(&[], vec![fused.loss]), grads)
    }

    fn bce_with_logits(&self, logits: &Tensor, labels: &Tensor, weights: &[f32]) -> Tensor {
        let (xs, ys) = (logits.cpu(), labels.cpu());
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        if total == 0.0 {
            return tensor(&[], vec![0.0]);
        }
        let loss: f64 = xs
            .iter()
            .zip(ys)
            .zip(weights)
            .filter(|(_, w)| **w != 0.0)
            .map(|((&x, &y), &w)| w as f64 * (x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()) as f64)
            .sum();
        tensor(&[], vec![(loss / total) as f32])
    }

    fn bce_with_logits_backward(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        weights: &[f32],
        dloss: &Tensor,
    ) -> Tensor {
        let (xs, ys, dloss) = (logits.cpu(), labels.cpu(), dloss.item());
        let total: f32 = weights.iter().sum();
        let scale = if total == 0.0 { 0.0 } else { dloss / total };
        let out = xs
            .iter()
            .zip(ys)
            .zip(weights)
            .map(|((&x, &y), &w)| w * scale * (sigmoid(x) - y))
            .collect();
        tensor(logits.shape(), out)
    }
}
