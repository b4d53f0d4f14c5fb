//! Copies that rearrange values on the GPU: `permute.wgsl`, `slice.wgsl` (slice and unslice),
//! `concat.wgsl`, `index_select.wgsl`, `index_add.wgsl`, `masked_fill.wgsl`. Axis ops see a
//! tensor as `[outer, axis, inner]`, like their CPU twins in `backend/cpu/shape.rs`.

use super::GpuBackend;
use super::kernel::{Kernel, wgsl_u32};
use super::runtime::grid;
use crate::backend::ShapeKernels;
use crate::backend::broadcast_strides;
use crate::tensor::Tensor;
use crate::wgsl_kernel;

const GATHER: Kernel = wgsl_kernel!("permute.wgsl", "gather", [Read, ReadWrite]);
const TRANSPOSE: Kernel = wgsl_kernel!("permute.wgsl", "transpose_tiles", [Read, ReadWrite]);
const SLICE: Kernel = wgsl_kernel!("slice.wgsl", "slice", [Read, ReadWrite]);
const UNSLICE: Kernel = wgsl_kernel!("slice.wgsl", "unslice", [Read, ReadWrite]);
const CONCAT: Kernel = wgsl_kernel!("concat.wgsl", "concat", [Read, ReadWrite]);
const INDEX_SELECT: Kernel =
    wgsl_kernel!("index_select.wgsl", "index_select", [Read, Read, ReadWrite]);
const INDEX_ADD: Kernel =
    wgsl_kernel!("index_add.wgsl", "index_add", [Read, Read, Read, ReadWrite]);
const MASKED_FILL: Kernel =
    wgsl_kernel!("masked_fill.wgsl", "masked_fill", [Read, Read, ReadWrite]);

/// Threads per workgroup of the one-thread-per-element kernels.
const WG: u32 = 256;
const _: () = assert!(wgsl_u32(GATHER.source, "WG") == WG);
const _: () = assert!(wgsl_u32(SLICE.source, "WG") == WG);
const _: () = assert!(wgsl_u32(CONCAT.source, "WG") == WG);
const _: () = assert!(wgsl_u32(INDEX_SELECT.source, "WG") == WG);
const _: () = assert!(wgsl_u32(INDEX_ADD.source, "WG") == WG);
const _: () = assert!(wgsl_u32(MASKED_FILL.source, "WG") == WG);
/// The transpose tile (TILE × TILE, TILE × ROWS threads).
const TILE: u32 = 32;
const ROWS: u32 = 8;
const _: () = assert!(wgsl_u32(TRANSPOSE.source, "TILE") == TILE);
const _: () = assert!(wgsl_u32(TRANSPOSE.source, "ROWS") == ROWS);
/// Below this size of the transposed axes the tiles would be mostly idle: plain gather.
const MIN_TRANSPOSE: usize = 16;

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

/// Row-major strides of `shape`.
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// A row-major walk over `shape` reading at `strides`, as at most 4 (size, stride) axes:
/// size-1 axes dropped, neighbours merged where the outer one steps over the whole inner
/// one, padded in front with (1, 0). `None` when more than 4 axes remain.
fn collapse(shape: &[usize], strides: &[usize]) -> Option<[(u32, u32); 4]> {
    let mut axes: Vec<(usize, usize)> = Vec::with_capacity(shape.len());
    for (&size, &stride) in shape.iter().zip(strides) {
        if size == 1 {
            continue;
        }
        match axes.last_mut() {
            Some(last) if last.1 == stride * size => *last = (last.0 * size, stride),
            _ => axes.push((size, stride)),
        }
    }
    if axes.len() > 4 {
        return None;
    }
    let mut out = [(1u32, 0u32); 4];
    let pad = 4 - axes.len();
    for (o, &(size, stride)) in out[pad..].iter_mut().zip(&axes) {
        *o = (size as u32, stride as u32);
    }
    Some(out)
}

/// Launch geometry of a one-thread-per-element kernel over `n` elements.
fn elements(n: usize) -> [u32; 3] {
    grid(n, WG)
}

impl GpuBackend {
    /// `permute` of x `[.., d_q, .., d_3]` collapsed to 4 axes whose input strides are
    /// `axes[.].1`, with x's contiguous axis at output axis `q` < 3: the tiled transpose.
    fn transpose_tiles(
        &self,
        x: &super::GpuBuffer,
        out: &super::GpuBuffer,
        axes: &[(u32, u32); 4],
        q: usize,
    ) -> bool {
        let out_strides = {
            let sizes: Vec<usize> = axes.iter().map(|a| a.0 as usize).collect();
            contiguous_strides(&sizes)
        };
        let (dq, d3) = (axes[q].0 as usize, axes[3].0 as usize);
        let max = self.rt.limits.max_compute_workgroups_per_dimension as usize;
        let (tiles3, tilesq) = (d3.div_ceil(TILE as usize), dq.div_ceil(TILE as usize));
        if dq < MIN_TRANSPOSE || d3 < MIN_TRANSPOSE || tiles3 > max || tilesq > max {
            return false;
        }
        let batch: Vec<usize> = (0..3).filter(|&a| a != q).collect();
        let (a, b) = (batch[0], batch[1]);
        let n = axes[a].0 as usize * axes[b].0 as usize;
        let params = [
            n as u32,
            axes[b].0,
            dq as u32,
            d3 as u32,
            axes[a].1,
            axes[b].1,
            1,
            axes[3].1,
            out_strides[a] as u32,
            out_strides[b] as u32,
            out_strides[q] as u32,
        ];
        let groups = [tiles3 as u32, tilesq as u32, n.min(max) as u32];
        self.rt.dispatch(&TRANSPOSE, &params, &[x, out], groups);
        true
    }
}

impl ShapeKernels for GpuBackend {
    fn permute(&self, x: &Tensor, axes: &[usize]) -> Tensor {
        let shape = x.shape();
        let out_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
        let in_strides = contiguous_strides(shape);
        let strides: Vec<usize> = axes.iter().map(|&a| in_strides[a]).collect();
        let xb = self.buffer(x);
        let n = x.len();
        let walk = collapse(&out_shape, &strides).expect("tensors have rank ≤ 4");
        if walk.iter().all(|&(size, stride)| size == 1 || stride == 0)
            || (walk[..3].iter().all(|a| a.0 == 1) && walk[3].1 == 1)
        {
            // The identity after collapsing: a plain copy.
            return self.tensor(&out_shape, self.rt.copy(&xb));
        }
        let out = self.rt.alloc(n);
        // A transpose (x's contiguous axis is not the last output axis) goes through tiles.
        if walk[3].1 != 1
            && let Some(q) = (0..3).find(|&a| walk[a].1 == 1 && walk[a].0 > 1)
            && self.transpose_tiles(&xb, &out, &walk, q)
        {
            return self.tensor(&out_shape, out);
        }
        let params = [
            n as u32, walk[1].0, walk[2].0, walk[3].0, walk[0].1, walk[1].1, walk[2].1, walk[3].1,
        ];
        self.rt
            .dispatch(&GATHER, &params, &[&xb, &out], elements(n));
        self.tensor(&out_shape, out)
    }

    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
        let (outer, size, inner) = around(x.shape(), axis);
        assert!(
            start + len <= size,
            "slice {start}..{} of {size}",
            start + len
        );
        let n = outer * len * inner;
        let xb = self.buffer(x);
        let out = self.rt.alloc(n);
        let params = [
            n as u32,
            (len * inner) as u32,
            (size * inner) as u32,
            (start * inner) as u32,
        ];
        self.rt.dispatch(&SLICE, &params, &[&xb, &out], elements(n));
        self.tensor(&with_axis(x.shape(), axis, len), out)
    }

    fn unslice(&self, dy: &Tensor, axis: usize, start: usize, full: usize) -> Tensor {
        let (outer, len, inner) = around(dy.shape(), axis);
        assert!(
            start + len <= full,
            "unslice {start}..{} of {full}",
            start + len
        );
        let n = outer * full * inner;
        let db = self.buffer(dy);
        let out = self.rt.alloc(n);
        let params = [
            n as u32,
            (full * inner) as u32,
            (len * inner) as u32,
            (start * inner) as u32,
        ];
        self.rt
            .dispatch(&UNSLICE, &params, &[&db, &out], elements(n));
        self.tensor(&with_axis(dy.shape(), axis, full), out)
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Tensor {
        let total: usize = xs.iter().map(|x| x.shape()[axis]).sum();
        let shape = with_axis(xs[0].shape(), axis, total);
        let (outer, _, inner) = around(&shape, axis);
        let out = self.rt.alloc(outer * total * inner);
        let mut start = 0;
        for x in xs {
            let len = x.shape()[axis];
            let n = outer * len * inner;
            assert_eq!(x.len(), n, "concat: {:?} does not fit {shape:?}", x.shape());
            let xb = self.buffer(x);
            let params = [
                n as u32,
                (len * inner) as u32,
                (total * inner) as u32,
                (start * inner) as u32,
            ];
            self.rt
                .dispatch(&CONCAT, &params, &[&xb, &out], elements(n));
            start += len;
        }
        self.tensor(&shape, out)
    }

    fn index_select(&self, x: &Tensor, axis: usize, index: &[u32]) -> Tensor {
        let (outer, size, inner) = around(x.shape(), axis);
        if let Some(&bad) = index.iter().find(|&&i| i as usize >= size) {
            panic!("index_select: index {bad} out of range for axis of length {size}");
        }
        let n = outer * index.len() * inner;
        let xb = self.buffer(x);
        let ib = self.rt.upload(index);
        let out = self.rt.alloc(n);
        let params = [n as u32, index.len() as u32, size as u32, inner as u32];
        self.rt
            .dispatch(&INDEX_SELECT, &params, &[&xb, &ib, &out], elements(n));
        self.tensor(&with_axis(x.shape(), axis, index.len()), out)
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
        assert_eq!(count, index.len(), "index_add: one index per entry of dy");
        if let Some(&bad) = index.iter().find(|&&i| i as usize >= size) {
            panic!("index_add: index {bad} out of range for axis of length {size}");
        }
        // CSR by target: a stable counting sort of the positions, target 0's segment left
        // empty with skip_zero.
        let kept = |i: u32| !(skip_zero && i == 0);
        let mut starts = vec![0u32; size + 1];
        for &i in index.iter().filter(|&&i| kept(i)) {
            starts[i as usize + 1] += 1;
        }
        for t in 0..size {
            starts[t + 1] += starts[t];
        }
        let mut fill = starts.clone();
        let mut positions = vec![0u32; starts[size] as usize];
        for (p, &i) in index.iter().enumerate().filter(|&(_, &i)| kept(i)) {
            positions[fill[i as usize] as usize] = p as u32;
            fill[i as usize] += 1;
        }
        let n = outer * size * inner;
        let db = self.buffer(dy);
        let (sb, pb) = (self.rt.upload(&starts), self.rt.upload(&positions));
        let out = self.rt.alloc(n);
        let params = [n as u32, count as u32, size as u32, inner as u32];
        self.rt
            .dispatch(&INDEX_ADD, &params, &[&db, &sb, &pb, &out], elements(n));
        self.tensor(&with_axis(dy.shape(), axis, size), out)
    }

    fn masked_fill(&self, x: &Tensor, mask: &Tensor, value: f32) -> Tensor {
        let shape = x.shape();
        let strides = broadcast_strides(mask.shape(), shape);
        let walk = collapse(shape, &strides).expect("tensors have rank ≤ 4");
        let n = x.len();
        let (xb, mb) = (self.buffer(x), self.buffer(mask));
        let out = self.rt.alloc(n);
        let params = [
            n as u32,
            walk[1].0,
            walk[2].0,
            walk[3].0,
            walk[0].1,
            walk[1].1,
            walk[2].1,
            walk[3].1,
            value.to_bits(),
        ];
        self.rt
            .dispatch(&MASKED_FILL, &params, &[&xb, &mb, &out], elements(n));
        self.tensor(shape, out)
    }
}
