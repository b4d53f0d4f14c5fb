//! The fused feed-forward block on the CPU (math in `ops/ffn.rs`).
//!
//! Rows are independent, so the work is cut into blocks of rows (`block_rows`), one rayon task
//! each. A block runs the whole block while its data is in cache: GEMM x·W1, one pass for
//! bias + activation (+ dropout), GEMM h·W2, bias. Its backward is likewise one task per
//! block: GEMM dy·W2ᵀ, one pass that recomputes h and turns dh into da, then GEMMs for dx
//! and the block's shares of dW1 and dW2, which rayon's fold/reduce sums over blocks.

use rayon::prelude::*;

use super::fresh::fill_blocks;
use super::gru::optional_chunks;
use super::math::fast_exp;
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, sgemm, tensor};
use crate::backend::{FeedForwardKernels, FfnGradients};
use crate::ops::Activation;
use crate::rng::uniform_at;
use crate::tensor::Tensor;

/// Hidden values per block: a block's hidden buffers (256 KiB each) stay in L2.
const BLOCK_HIDDEN_VALUES: usize = 1 << 16;

/// Rows per task: as many as keep the block in L2 (fewer, larger GEMMs amortise packing),
/// but at least four blocks per thread so that the threads stay evenly loaded.
fn block_rows(rows: usize, hidden: usize) -> usize {
    let per_thread = rows.div_ceil(4 * rayon::current_num_threads());
    (BLOCK_HIDDEN_VALUES / hidden).min(per_thread).max(16)
}

/// erf(x) and e^{-x²} (GELU's derivative needs both and they share the exponential).
/// Abramowitz & Stegun 7.1.26: erf(|x|) = 1 − t(a1 + t(a2 + … + t a5)) e^{−x²},
/// t = 1 / (1 + p|x|), absolute error below 1.5e-7; erf is odd.
#[inline(always)]
fn erf_and_gaussian(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let gaussian = fast_exp(-ax * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    ((1.0 - poly * gaussian).copysign(x), gaussian)
}

/// erf(x), for tests of the approximation.
#[cfg(test)]
fn erf(x: f32) -> f32 {
    erf_and_gaussian(x).0
}

/// act(a).
#[inline(always)]
fn activate(activation: Activation, a: f32) -> f32 {
    match activation {
        Activation::Relu => a.max(0.0),
        Activation::Gelu => {
            let (erf, _) = erf_and_gaussian(a * std::f32::consts::FRAC_1_SQRT_2);
            0.5 * a * (1.0 + erf)
        }
    }
}

/// (act(a), act'(a)). GELU: act = a Φ(a), act' = Φ(a) + a φ(a), φ(a) = e^{−a²/2} / √(2π).
#[inline(always)]
fn activate_with_slope(activation: Activation, a: f32) -> (f32, f32) {
    match activation {
        Activation::Relu => {
            if a > 0.0 {
                (a, 1.0)
            } else {
                (0.0, 0.0)
            }
        }
        Activation::Gelu => {
            const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
            let (erf, gaussian) = erf_and_gaussian(a * std::f32::consts::FRAC_1_SQRT_2);
            let cdf = 0.5 * (1.0 + erf);
            (a * cdf, cdf + a * gaussian * FRAC_1_SQRT_2PI)
        }
    }
}

/// The inverted-dropout scale of hidden element `index`: 0 (dropped) or 1 / (1 − p).
#[inline(always)]
fn dropout_scale(dropout: Option<(f32, u32)>, index: usize) -> f32 {
    match dropout {
        None => 1.0,
        // Indices wrap past 2^32 elements; the mask stays a fixed function of the index.
        Some((p, stream)) => {
            if uniform_at(stream, index as u32) >= p {
                1.0 / (1.0 - p)
            } else {
                0.0
            }
        }
    }
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    width: usize,
    hidden: usize,
    out_width: usize,
}

/// Forward of one block: `a` `[r, F]` and `y` `[r, d_out]` are the block's rows, from `first`.
#[allow(clippy::too_many_arguments)]
fn forward_block(
    d: Dims,
    first: usize,
    x: &[f32],
    w1: &[f32],
    b1: &[f32],
    w2: &[f32],
    b2: &[f32],
    activation: Activation,
    dropout: Option<(f32, u32)>,
    a: &mut [f32],
    y: &mut [f32],
    h: &mut Vec<f32>,
) {
    let Dims {
        width,
        hidden,
        out_width,
    } = d;
    let rows = a.len() / hidden;
    let x = &x[first * width..(first + rows) * width];
    sgemm(
        rows,
        width,
        hidden,
        x,
        width as isize,
        1,
        w1,
        hidden as isize,
        1,
        a,
    );
    h.resize(rows * hidden, 0.0);
    for (i, (a_row, h_row)) in a
        .chunks_exact_mut(hidden)
        .zip(h.chunks_exact_mut(hidden))
        .enumerate()
    {
        let base = (first + i) * hidden;
        for (j, ((a, h), &b)) in a_row.iter_mut().zip(h_row).zip(b1).enumerate() {
            *a += b;
            *h = activate(activation, *a) * dropout_scale(dropout, base + j);
        }
    }
    sgemm(
        rows,
        hidden,
        out_width,
        h,
        hidden as isize,
        1,
        w2,
        out_width as isize,
        1,
        y,
    );
    for y_row in y.chunks_exact_mut(out_width) {
        for (y, &b) in y_row.iter_mut().zip(b2) {
            *y += b;
        }
    }
}

/// Weight and bias gradients summed over the blocks one task has seen, plus that task's
/// scratch buffers (reused from block to block: fresh large buffers cost page faults).
struct Partial {
    dw1: Vec<f32>,
    db1: Vec<f32>,
    dw2: Vec<f32>,
    db2: Vec<f32>,
    scratch: Vec<f32>,
    da: Vec<f32>,
    h: Vec<f32>,
}

impl Partial {
    fn zeros(d: Dims) -> Partial {
        Partial {
            dw1: vec![0.0; d.width * d.hidden],
            db1: vec![0.0; d.hidden],
            dw2: vec![0.0; d.hidden * d.out_width],
            db2: vec![0.0; d.out_width],
            scratch: vec![0.0; (d.width.max(d.out_width)) * d.hidden],
            da: Vec::new(),
            h: Vec::new(),
        }
    }

    fn add(mut self, other: Partial) -> Partial {
        for (sum, part) in [
            (&mut self.dw1, &other.dw1),
            (&mut self.db1, &other.db1),
            (&mut self.dw2, &other.dw2),
            (&mut self.db2, &other.db2),
        ] {
            add_into(sum, part);
        }
        self
    }
}

fn add_into(sum: &mut [f32], part: &[f32]) {
    for (s, &p) in sum.iter_mut().zip(part) {
        *s += p;
    }
}

/// Everything a block's backward reads.
struct BackwardInputs<'a> {
    d: Dims,
    x: &'a [f32],
    w1: &'a [f32],
    w2: &'a [f32],
    pre_activation: &'a [f32],
    d_y: &'a [f32],
    activation: Activation,
    dropout: Option<(f32, u32)>,
    rows: usize,
    block_rows: usize,
}

/// Backward of block `block`: writes its dx rows (when asked) and adds its weight gradients
/// into `acc`.
fn backward_block(
    inp: &BackwardInputs<'_>,
    mut acc: Partial,
    block: usize,
    dx: Option<&mut [f32]>,
) -> Partial {
    let Dims {
        width,
        hidden,
        out_width,
    } = inp.d;
    let first = block * inp.block_rows;
    let rows = inp.block_rows.min(inp.rows - first);
    let x = &inp.x[first * width..(first + rows) * width];
    let a = &inp.pre_activation[first * hidden..(first + rows) * hidden];
    let d_y = &inp.d_y[first * out_width..(first + rows) * out_width];

    // dh = dy · W2ᵀ, then in place da = dh ∘ s ∘ act'(a); h is recomputed next to it.
    let (mut da, mut h) = (std::mem::take(&mut acc.da), std::mem::take(&mut acc.h));
    da.resize(rows * hidden, 0.0);
    h.resize(rows * hidden, 0.0);
    sgemm(
        rows,
        out_width,
        hidden,
        d_y,
        out_width as isize,
        1,
        inp.w2,
        1,
        out_width as isize,
        &mut da,
    );
    for (i, ((a_row, da_row), h_row)) in a
        .chunks_exact(hidden)
        .zip(da.chunks_exact_mut(hidden))
        .zip(h.chunks_exact_mut(hidden))
        .enumerate()
    {
        let base = (first + i) * hidden;
        for (j, (((&a, da), h), db1)) in a_row
            .iter()
            .zip(da_row)
            .zip(h_row)
            .zip(&mut acc.db1)
            .enumerate()
        {
            let scale = dropout_scale(inp.dropout, base + j);
            let (value, slope) = activate_with_slope(inp.activation, a);
            *h = value * scale;
            *da *= scale * slope;
            *db1 += *da;
        }
    }
    for dy_row in d_y.chunks_exact(out_width) {
        add_into(&mut acc.db2, dy_row);
    }
    // dW2 += hᵀ · dy and dW1 += xᵀ · da (transposes through strides).
    let scratch = &mut acc.scratch[..hidden * out_width];
    sgemm(
        hidden,
        rows,
        out_width,
        &h,
        1,
        hidden as isize,
        d_y,
        out_width as isize,
        1,
        scratch,
    );
    add_into(&mut acc.dw2, scratch);
    let scratch = &mut acc.scratch[..width * hidden];
    sgemm(
        width,
        rows,
        hidden,
        x,
        1,
        width as isize,
        &da,
        hidden as isize,
        1,
        scratch,
    );
    add_into(&mut acc.dw1, scratch);
    if let Some(dx) = dx {
        // dx = da · W1ᵀ.
        sgemm(
            rows,
            hidden,
            width,
            &da,
            hidden as isize,
            1,
            inp.w1,
            1,
            hidden as isize,
            dx,
        );
    }
    (acc.da, acc.h) = (da, h);
    acc
}

impl FeedForwardKernels for CpuBackend {
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
        let d = Dims {
            width,
            hidden,
            out_width,
        };
        let (x, w1, b1, w2, b2) = (x.cpu(), w1.cpu(), b1.cpu(), w2.cpu(), b2.cpu());
        let block_rows = block_rows(rows, hidden);
        let [a, y] = fill_blocks(
            [rows * hidden, rows * out_width],
            [block_rows * hidden, block_rows * out_width],
            rows.div_ceil(block_rows),
            rows * hidden >= PARALLEL_MIN_ELEMENTS,
            Vec::new,
            |h, block, [a, y]| {
                let first = block * block_rows;
                forward_block(d, first, x, w1, b1, w2, b2, activation, dropout, a, y, h);
            },
        );
        (tensor(&[rows, out_width], y), tensor(&[rows, hidden], a))
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
        let d = Dims {
            width,
            hidden,
            out_width,
        };
        let inputs = BackwardInputs {
            d,
            x: x.cpu(),
            w1: w1.cpu(),
            w2: w2.cpu(),
            pre_activation: pre_activation.cpu(),
            d_y: d_y.cpu(),
            activation,
            dropout,
            rows,
            block_rows: block_rows(rows, hidden),
        };
        let blocks = rows.div_ceil(inputs.block_rows);
        let mut dx = want_dx.then(|| vec![0.0f32; rows * width]);
        let dx_chunks = optional_chunks(dx.as_deref_mut(), inputs.block_rows * width, blocks);
        let step = |acc: Partial, (block, dx): (usize, Option<&mut [f32]>)| {
            backward_block(&inputs, acc, block, dx)
        };
        let sums = if rows * hidden >= PARALLEL_MIN_ELEMENTS {
            (0..blocks)
                .into_par_iter()
                .zip(dx_chunks)
                .fold(|| Partial::zeros(d), step)
                .reduce(|| Partial::zeros(d), Partial::add)
        } else {
            (0..blocks).zip(dx_chunks).fold(Partial::zeros(d), step)
        };
        FfnGradients {
            dx: dx.map(|v| tensor(&[rows, width], v)),
            dw1: tensor(&[width, hidden], sums.dw1),
            db1: tensor(&[hidden], sums.db1),
            dw2: tensor(&[hidden, out_width], sums.dw2),
            db2: tensor(&[out_width], sums.db2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf at a few points (Abramowitz & Stegun table 7.1), and its oddness.
        for (x, expected) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (3.5, 0.999_999_3),
        ] {
            assert!((erf(x) - expected).abs() < 3e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + expected).abs() < 3e-7, "erf(-{x}) = {}", erf(-x));
        }
    }
}
