//! Elementwise arithmetic with broadcasting, and the reductions broadcasting needs:
//! `binary.wgsl`, `add_assign.wgsl`, `reduce_to_shape.wgsl` (`scale` runs `affine.wgsl`).

use crate::backend::broadcast_strides;
use std::sync::Arc;

use super::kernel::{Kernel, wgsl_u32};
use super::runtime::{GpuBuffer, grid};
use super::{CPU, GpuBackend, host};
use crate::backend::{BinaryOp, ElementwiseKernels};
use crate::tensor::{Storage, Tensor};
use crate::wgsl_kernel;

const BINARY: Kernel = wgsl_kernel!("binary.wgsl", "binary", [Read, Read, ReadWrite]);
const BINARY_SAME: Kernel = wgsl_kernel!("binary.wgsl", "binary_same", [Read, Read, ReadWrite]);
const ADD_ASSIGN: Kernel = wgsl_kernel!("add_assign.wgsl", "add_assign", [ReadWrite, Read]);
const REDUCE_COLUMNS: Kernel =
    wgsl_kernel!("reduce_to_shape.wgsl", "reduce_columns", [Read, ReadWrite]);
const REDUCE_ROWS: Kernel = wgsl_kernel!("reduce_to_shape.wgsl", "reduce_rows", [Read, ReadWrite]);

/// Threads per workgroup of every kernel here.
const WG: u32 = 256;
const _: () = assert!(wgsl_u32(BINARY.source, "WG") == WG);
const _: () = assert!(wgsl_u32(ADD_ASSIGN.source, "WG") == WG);
const _: () = assert!(wgsl_u32(REDUCE_ROWS.source, "WG") == WG);

/// Coalesced axes `binary.wgsl` takes.
const BINARY_AXES: usize = 4;

/// The shader's op codes, read from its source.
const OP_ADD: u32 = wgsl_u32(BINARY.source, "OP_ADD");
const OP_SUB: u32 = wgsl_u32(BINARY.source, "OP_SUB");
const OP_MUL: u32 = wgsl_u32(BINARY.source, "OP_MUL");
const OP_DIV: u32 = wgsl_u32(BINARY.source, "OP_DIV");

fn op_code(op: BinaryOp) -> u32 {
    match op {
        BinaryOp::Add => OP_ADD,
        BinaryOp::Sub => OP_SUB,
        BinaryOp::Mul => OP_MUL,
        BinaryOp::Div => OP_DIV,
    }
}

/// The output axes of a broadcast, outermost first, as (size, stride in a, stride in b):
/// size-1 axes dropped and neighbours merged where both operands continue contiguously.
fn coalesced_axes(a: &[usize], b: &[usize], out_shape: &[usize]) -> Vec<(usize, usize, usize)> {
    let (sa, sb) = (
        broadcast_strides(a, out_shape),
        broadcast_strides(b, out_shape),
    );
    let mut axes: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &size) in out_shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        match axes.last_mut() {
            Some(outer) if outer.1 == size * sa[i] && outer.2 == size * sb[i] => {
                *outer = (outer.0 * size, sa[i], sb[i]);
            }
            _ => axes.push((size, sa[i], sb[i])),
        }
    }
    axes
}

/// How `reduce_to_shape.wgsl` sees a sum of x down to a broadcastable shape (see the shader).
#[derive(Clone, Copy, Debug)]
struct ReduceLayout {
    n_out: usize,
    reduced: usize,
    kept0: usize,
    kstride0: usize,
    kstride1: usize,
    red0: usize,
    rstride0: usize,
    rstride1: usize,
    /// The innermost axis of x is summed (contiguous runs per output).
    inner_reduced: bool,
}

impl ReduceLayout {
    /// `None` when `shape` does not broadcast to `x_shape` or needs more than two runs of
    /// either kind (impossible at rank ≤ 4).
    fn new(x_shape: &[usize], shape: &[usize]) -> Option<ReduceLayout> {
        let offset = x_shape.len().checked_sub(shape.len())?;
        // (kept, size, stride) runs, outermost first.
        let mut runs: Vec<(bool, usize, usize)> = Vec::new();
        let mut stride = 1;
        for i in (0..x_shape.len()).rev() {
            let size = x_shape[i];
            let target = if i >= offset { shape[i - offset] } else { 1 };
            if size != 1 {
                let kept = if target == size {
                    true
                } else if target == 1 {
                    false
                } else {
                    return None;
                };
                match runs.first_mut() {
                    Some(next) if next.0 == kept => next.1 *= size,
                    _ => runs.insert(0, (kept, size, stride)),
                }
            } else if target != 1 {
                return None;
            }
            stride *= size;
        }
        let kept: Vec<_> = runs.iter().filter(|r| r.0).collect();
        let red: Vec<_> = runs.iter().filter(|r| !r.0).collect();
        if kept.len() > 2 || red.len() > 2 {
            return None;
        }
        let run = |v: &[&(bool, usize, usize)], k: usize| {
            v.len()
                .checked_sub(k + 1)
                .map_or((1, 0), |j| (v[j].1, v[j].2))
        };
        let ((kept0, kstride0), (_, kstride1)) = (run(&kept, 0), run(&kept, 1));
        let ((red0, rstride0), (_, rstride1)) = (run(&red, 0), run(&red, 1));
        Some(ReduceLayout {
            n_out: kept.iter().map(|r| r.1).product(),
            reduced: red.iter().map(|r| r.1).product(),
            kept0,
            kstride0,
            kstride1,
            red0,
            rstride0,
            rstride1,
            inner_reduced: runs.last().is_some_and(|r| !r.0),
        })
    }
}

/// `reduce_rows` is used when x's innermost axis is summed over runs at least this long.
const ROWS_MIN_RUN: usize = 32;
/// Workgroups `reduce_rows` aims for before it splits the reduced range.
const ROWS_TARGET_GROUPS: usize = 512;
/// Least elements per workgroup chunk of a split `reduce_rows`.
const ROWS_MIN_CHUNK: usize = 2048;
/// Threads `reduce_columns` aims for before it splits the reduced range.
const COLUMNS_TARGET_THREADS: usize = 1 << 16;
/// Least elements per thread chunk of a split `reduce_columns`.
const COLUMNS_MIN_CHUNK: usize = 64;

impl GpuBackend {
    /// Sums `x` (laid out as `layout` says) into a new buffer of `layout.n_out` values, in
    /// one dispatch or, when the outputs are too few to fill the GPU, in a dispatch over
    /// chunks of the reduced range followed by a reduction of the partial sums.
    fn reduce(&self, x: &GpuBuffer, l: &ReduceLayout) -> GpuBuffer {
        let rows = l.inner_reduced && l.red0 >= ROWS_MIN_RUN;
        let (target, min_chunk) = if rows {
            (ROWS_TARGET_GROUPS, ROWS_MIN_CHUNK)
        } else {
            (COLUMNS_TARGET_THREADS, COLUMNS_MIN_CHUNK)
        };
        let wanted = target
            .div_ceil(l.n_out)
            .min(l.reduced.div_ceil(min_chunk))
            .max(1);
        let chunk = l.reduced.div_ceil(wanted);
        let splits = l.reduced.div_ceil(chunk);
        // Partials are [n_out, splits] for rows (the next pass reads contiguous runs) and
        // [splits, n_out] for columns (the next pass reads contiguous outputs).
        let (out_o, out_g) = if rows { (splits, 1) } else { (1, l.n_out) };
        let out = self.rt.alloc(l.n_out * splits);
        let params = [
            l.n_out, splits, chunk, l.reduced, l.kept0, l.kstride0, l.kstride1, l.red0, l.rstride0,
            l.rstride1, out_o, out_g,
        ]
        .map(|v| v as u32);
        let (kernel, groups) = if rows {
            (&REDUCE_ROWS, grid(l.n_out * splits, 1))
        } else {
            (&REDUCE_COLUMNS, grid(l.n_out * splits, WG))
        };
        self.rt.dispatch(kernel, &params, &[x, &out], groups);
        if splits == 1 {
            return out;
        }
        let next = ReduceLayout {
            n_out: l.n_out,
            reduced: splits,
            kept0: l.n_out,
            kstride0: out_o,
            kstride1: 0,
            red0: splits,
            rstride0: out_g,
            rstride1: 0,
            inner_reduced: rows,
        };
        self.reduce(&out, &next)
    }

    /// `op(a, b)` elementwise over buffers of `n` values each.
    fn binary_same(&self, op: BinaryOp, a: &GpuBuffer, b: &GpuBuffer, n: usize) -> GpuBuffer {
        let out = self.rt.alloc(n);
        self.rt.dispatch(
            &BINARY_SAME,
            &[n as u32, op_code(op)],
            &[a, b, &out],
            grid(n, WG),
        );
        out
    }
}

impl ElementwiseKernels for GpuBackend {
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Tensor {
        let n: usize = out_shape.iter().product();
        let axes = coalesced_axes(a.shape(), b.shape(), out_shape);
        if axes.len() > BINARY_AXES {
            return self.upload_tensor(CPU.binary(op, &host(a), &host(b), out_shape));
        }
        let (ab, bb) = (self.buffer(a), self.buffer(b));
        if axes.len() <= 1 && axes.first().is_none_or(|&(_, sa, sb)| sa == 1 && sb == 1) {
            return self.tensor(out_shape, self.binary_same(op, &ab, &bb, n));
        }
        let mut padded = [(1usize, 0usize, 0usize); BINARY_AXES];
        padded[BINARY_AXES - axes.len()..].copy_from_slice(&axes);
        let mut params = vec![n as u32, op_code(op)];
        params.extend(padded.iter().map(|x| x.0 as u32));
        params.extend(padded.iter().map(|x| x.1 as u32));
        params.extend(padded.iter().map(|x| x.2 as u32));
        let out = self.rt.alloc(n);
        self.rt
            .dispatch(&BINARY, &params, &[&ab, &bb, &out], grid(n, WG));
        self.tensor(out_shape, out)
    }

    fn add_assign(&self, sum: Tensor, x: &Tensor) -> Tensor {
        let n = sum.len();
        let xb = self.buffer(x);
        match sum.storage() {
            Storage::Gpu(s) if Arc::strong_count(s) == 1 => {
                self.rt
                    .dispatch(&ADD_ASSIGN, &[n as u32], &[s, &xb], grid(n, WG));
                sum
            }
            _ => {
                let s = self.buffer(&sum);
                self.tensor(sum.shape(), self.binary_same(BinaryOp::Add, &s, &xb, n))
            }
        }
    }

    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Tensor {
        if x.shape() == shape {
            return self.upload_tensor(x.clone());
        }
        let Some(layout) = ReduceLayout::new(x.shape(), shape) else {
            return self.upload_tensor(CPU.sum_to_shape(&host(x), shape));
        };
        let n_out: usize = shape.iter().product();
        debug_assert_eq!(layout.n_out, n_out);
        if n_out == 0 || layout.reduced == 0 {
            return self.tensor(shape, self.rt.zeros(n_out));
        }
        let out = self.reduce(&self.buffer(x), &layout);
        self.tensor(shape, out)
    }

    fn scale(&self, x: &Tensor, alpha: f32) -> Tensor {
        self.affine_map(x, alpha, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_axes_coalesce() {
        // Same shapes: one contiguous axis.
        assert_eq!(
            coalesced_axes(&[2, 3, 4], &[2, 3, 4], &[2, 3, 4]),
            vec![(24, 1, 1)]
        );
        // Bias over rows.
        assert_eq!(
            coalesced_axes(&[2, 3, 4], &[4], &[2, 3, 4]),
            vec![(6, 4, 0), (4, 1, 1)]
        );
        // Scalar.
        assert_eq!(coalesced_axes(&[5, 6], &[], &[5, 6]), vec![(30, 1, 0)]);
        // Outer product.
        assert_eq!(
            coalesced_axes(&[3, 1], &[1, 4], &[3, 4]),
            vec![(3, 1, 0), (4, 0, 1)]
        );
    }

    #[test]
    fn reduce_layouts_group_axes() {
        let l = ReduceLayout::new(&[8, 5], &[5]).unwrap();
        assert_eq!((l.n_out, l.reduced, l.kept0, l.kstride0), (5, 8, 5, 1));
        assert_eq!((l.red0, l.rstride0, l.inner_reduced), (8, 5, false));
        let l = ReduceLayout::new(&[2, 3, 4, 5], &[3, 1, 5]).unwrap();
        assert_eq!((l.n_out, l.reduced), (15, 8));
        assert_eq!((l.kept0, l.kstride0, l.kstride1), (5, 1, 20));
        assert_eq!((l.red0, l.rstride0, l.rstride1), (4, 5, 60));
        let l = ReduceLayout::new(&[4, 6], &[]).unwrap();
        assert_eq!((l.n_out, l.reduced, l.red0, l.rstride0), (1, 24, 24, 1));
        assert!(l.inner_reduced);
        assert!(ReduceLayout::new(&[4, 6], &[3]).is_none());
    }
}
