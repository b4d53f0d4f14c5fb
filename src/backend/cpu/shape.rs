//! Copies that move values around: permute, slice, concat, gather/scatter along an axis,
//! masked fill. Axis ops view a tensor as `[outer, axis, inner]`.

use super::fresh::fill_chunks;
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, tensor};
use crate::backend::ShapeKernels;
use crate::backend::broadcast_strides;
use crate::tensor::Tensor;

/// (outer, size of the axis, inner) of `shape` around `axis`.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

fn with_axis(shape: &[usize], axis: usize, size: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = size;
    s
}

impl ShapeKernels for CpuBackend {
    fn permute(&self, x: &Tensor, axes: &[usize]) -> Tensor {
        let shape = x.shape();
        let out_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
        let mut in_strides = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * shape[i + 1];
        }
        // Stride in the input of each output axis.
        let strides: Vec<usize> = axes.iter().map(|&a| in_strides[a]).collect();
        let xs = x.cpu();
        let width = out_shape.last().copied().unwrap_or(1).max(1);
        let step = strides.last().copied().unwrap_or(0);
        let n = x.len();
        let out = fill_chunks(n, width, n >= PARALLEL_MIN_ELEMENTS, |row, o| {
            let (mut r, mut offset) = (row, 0);
            for axis in (0..out_shape.len().saturating_sub(1)).rev() {
                offset += (r % out_shape[axis]) * strides[axis];
                r /= out_shape[axis];
            }
            for (j, o) in o.iter_mut().enumerate() {
                *o = xs[offset + j * step];
            }
        });
        tensor(&out_shape, out)
    }

    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
        let (outer, size, inner) = around(x.shape(), axis);
        let xs = x.cpu();
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = (o * size + start) * inner;
            out.extend_from_slice(&xs[base..base + len * inner]);
        }
        tensor(&with_axis(x.shape(), axis, len), out)
    }

    fn unslice(&self, dy: &Tensor, axis: usize, start: usize, full: usize) -> Tensor {
        let (outer, len, inner) = around(dy.shape(), axis);
        let ds = dy.cpu();
        let mut out = vec![0.0f32; outer * full * inner];
        for o in 0..outer {
            let base = (o * full + start) * inner;
            out[base..base + len * inner]
                .copy_from_slice(&ds[o * len * inner..(o + 1) * len * inner]);
        }
        tensor(&with_axis(dy.shape(), axis, full), out)
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Tensor {
        let total: usize = xs.iter().map(|x| x.shape()[axis]).sum();
        let shape = with_axis(xs[0].shape(), axis, total);
        let (outer, _, inner) = around(&shape, axis);
        let mut out = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for x in xs {
                let part = x.shape()[axis] * inner;
                out.extend_from_slice(&x.cpu()[o * part..(o + 1) * part]);
            }
        }
        tensor(&shape, out)
    }

    fn index_select(&self, x: &Tensor, axis: usize, index: &[u32]) -> Tensor {
        let (outer, size, inner) = around(x.shape(), axis);
        let xs = x.cpu();
        let n = outer * index.len() * inner;
        let out = fill_chunks(n, inner, n >= PARALLEL_MIN_ELEMENTS, |row, o| {
            let (outer_i, j) = (row / index.len(), row % index.len());
            let src = (outer_i * size + index[j] as usize) * inner;
            o.copy_from_slice(&xs[src..src + inner]);
        });
        tensor(&with_axis(x.shape(), axis, index.len()), out)
    }

    fn index_add(
        &self,
        dy: &Tensor,
        axis: usize,
        index: &[u32],
        size: usize,
        skip_zero: bool,
    ) -> Tensor {
        let (outer, count, inner) = around(dy.shape(), axis);
        let ds = dy.cpu();
        // Group the positions of dy by the index they scatter to (a counting sort), so each
        // output row is owned by one task and summed in a fixed order: parallel, yet
        // deterministic.
        let mut starts = vec![0usize; size + 1];
        for &i in index {
            starts[i as usize + 1] += 1;
        }
        for i in 0..size {
            starts[i + 1] += starts[i];
        }
        let mut fill = starts.clone();
        let mut positions = vec![0usize; index.len()];
        for (p, &i) in index.iter().enumerate() {
            positions[fill[i as usize]] = p;
            fill[i as usize] += 1;
        }
        let n = outer * size * inner;
        let out = fill_chunks(n, inner, dy.len() >= PARALLEL_MIN_ELEMENTS, |row, o| {
            let (outer_i, target) = (row / size, row % size);
            if skip_zero && target == 0 {
                return;
            }
            for &p in &positions[starts[target]..starts[target + 1]] {
                let src = &ds[(outer_i * count + p) * inner..(outer_i * count + p + 1) * inner];
                for (o, &v) in o.iter_mut().zip(src) {
                    *o += v;
                }
            }
        });
        tensor(&with_axis(dy.shape(), axis, size), out)
    }

    fn masked_fill(&self, x: &Tensor, mask: &Tensor, value: f32) -> Tensor {
        let shape = x.shape();
        let strides = broadcast_strides(mask.shape(), shape);
        let (xs, ms) = (x.cpu(), mask.cpu());
        let width = shape.last().copied().unwrap_or(1).max(1);
        let step = strides.last().copied().unwrap_or(0);
        let n = x.len();
        let out = fill_chunks(n, width, n >= PARALLEL_MIN_ELEMENTS, |row, o| {
            let (mut r, mut offset) = (row, 0);
            for axis in (0..shape.len().saturating_sub(1)).rev() {
                offset += (r % shape[axis]) * strides[axis];
                r /= shape[axis];
            }
            let src = &xs[row * width..(row + 1) * width];
            for (j, (o, &v)) in o.iter_mut().zip(src).enumerate() {
                *o = if ms[offset + j * step] != 0.0 {
                    value
                } else {
                    v
                };
            }
        });
        tensor(shape, out)
    }
}
