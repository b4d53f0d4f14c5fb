//! Matrix products on the GPU: `shaders/gemm.wgsl` (tiled GEMM, transposes through strides,
//! batch in the grid's z, split-K for small outputs with a long k). The FFN reuses the same
//! tile loop through the epilogue entry points (`ffn.rs`).

use super::GpuBackend;
use super::kernel::{Kernel, wgsl_u32};
use super::runtime::{GpuBuffer, grid};
use crate::backend::LinalgKernels;
use crate::tensor::Tensor;
use crate::wgsl_kernel;

pub(super) const GEMM: Kernel = wgsl_kernel!("gemm.wgsl", "gemm", [Read, Read, ReadWrite]);
pub(super) const GEMM_BIAS: Kernel =
    wgsl_kernel!("gemm.wgsl", "gemm_bias", [Read, Read, ReadWrite, Read]);
pub(super) const GEMM_BIAS_ACT: Kernel = wgsl_kernel!(
    "gemm.wgsl",
    "gemm_bias_act",
    [Read, Read, ReadWrite, Read, ReadWrite]
);
pub(super) const GEMM_ACT_GRAD: Kernel = wgsl_kernel!(
    "gemm.wgsl",
    "gemm_act_grad",
    [Read, Read, ReadWrite, Read, ReadWrite]
);
/// Binding 2 is unused by this entry (bound to the partials again).
const SUM_SPLITS: Kernel = wgsl_kernel!("gemm.wgsl", "sum_splits", [Read, Read, ReadWrite]);

/// Output rows and columns of one workgroup's tile.
const TILE: u32 = 64;
/// Depth of the k slices staged in workgroup memory; split-K ranges are multiples of it.
const TK: u32 = 16;
/// Threads of `sum_splits`' workgroups.
const SUM_WG: u32 = 256;
const _: () = assert!(wgsl_u32(GEMM.source, "TILE") == TILE);
const _: () = assert!(wgsl_u32(GEMM.source, "TK") == TK);
const _: () = assert!(wgsl_u32(GEMM.source, "SUM_WG") == SUM_WG);
// 16×16 threads with 4×4 outputs each cover the tile.
const _: () = assert!(wgsl_u32(GEMM.source, "WG_SIDE") * 4 == TILE);
const _: () = assert!(wgsl_u32(GEMM.source, "WG") == 256);

/// Split k when the product has fewer output tiles than this (an H100 has 132 SMs, each
/// running several 256-thread workgroups)...
const SPLIT_K_TARGET_GROUPS: usize = 256;
/// ...and give each split at least this much depth.
const SPLIT_K_MIN_DEPTH: usize = 128;
/// The most workgroups per grid dimension (WebGPU's guaranteed minimum).
const MAX_GROUPS: usize = 65_535;

/// One (batched) product `op(A)·op(B)` in the strides of `gemm.wgsl`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub transpose_a: bool,
    pub transpose_b: bool,
    /// `b` is one `[k, n]` (or `[n, k]`) matrix for every batch item.
    pub b_shared: bool,
}

/// The FFN epilogue's parameters (ignored by `gemm` and `gemm_bias`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Epilogue {
    /// 0 ReLU, 1 GELU.
    pub activation: u32,
    /// (p, stream) of the inverted dropout.
    pub dropout: Option<(f32, u32)>,
}

impl Gemm {
    /// A batch of products with a shared `b` and untransposed `a` is one tall product: the
    /// rows of all items follow each other (fewer, fuller tiles).
    fn folded(self) -> Gemm {
        if self.b_shared && !self.transpose_a && self.batch > 1 {
            Gemm {
                m: self.m * self.batch,
                batch: 1,
                ..self
            }
        } else {
            self
        }
    }

    /// The params words of `gemm.wgsl` for `splits` ranges of `k_per_split`, from row tile
    /// `tile_row_offset` and grid z `z_offset`.
    fn params(
        &self,
        splits: usize,
        k_per_split: usize,
        tile_row_offset: usize,
        z_offset: usize,
        epilogue: Epilogue,
    ) -> [u32; 19] {
        let Gemm { m, n, k, .. } = *self;
        // Element (i, l) of op(A) at i·rs_a + l·cs_a; (l, j) of op(B) at l·rs_b + j·cs_b.
        let (rs_a, cs_a) = if self.transpose_a { (1, m) } else { (k, 1) };
        let (rs_b, cs_b) = if self.transpose_b { (1, k) } else { (n, 1) };
        let batch_stride_b = if self.b_shared { 0 } else { k * n };
        let (dropout, drop_p, drop_scale, drop_key) = match epilogue.dropout {
            Some((p, stream)) => (1, p, 1.0 / (1.0 - p), crate::rng::stream_key(stream)),
            None => (0, 0.0f32, 1.0f32, 0),
        };
        let w = |x: usize| u32::try_from(x).expect("GEMM size exceeds u32");
        [
            w(m),
            w(n),
            w(k),
            w(rs_a),
            w(cs_a),
            w(rs_b),
            w(cs_b),
            w(m * k),
            w(batch_stride_b),
            w(self.batch),
            w(splits),
            w(k_per_split),
            w(tile_row_offset),
            w(z_offset),
            epilogue.activation,
            dropout,
            drop_p.to_bits(),
            drop_scale.to_bits(),
            drop_key,
        ]
    }
}

impl GpuBackend {
    /// Records `kernel` (an entry of `gemm.wgsl`) over the tiles of `g`; `buffers` are its
    /// bindings from 1 (`a`, `b`, `c`, ...). Grids wider than `MAX_GROUPS` rows of tiles or
    /// batch items are cut into several dispatches. `splits` > 1 only for `gemm` into partials.
    fn dispatch_tiles(
        &self,
        kernel: &Kernel,
        g: &Gemm,
        splits: usize,
        k_per_split: usize,
        epilogue: Epilogue,
        buffers: &[&GpuBuffer],
    ) {
        let col_tiles = g.n.div_ceil(TILE as usize);
        let row_tiles = g.m.div_ceil(TILE as usize);
        let zs = g.batch * splits;
        assert!(col_tiles <= MAX_GROUPS, "GEMM with n = {} is too wide", g.n);
        for z0 in (0..zs).step_by(MAX_GROUPS) {
            for r0 in (0..row_tiles).step_by(MAX_GROUPS) {
                let params = g.params(splits, k_per_split, r0, z0, epilogue);
                let groups = [
                    col_tiles as u32,
                    (row_tiles - r0).min(MAX_GROUPS) as u32,
                    (zs - z0).min(MAX_GROUPS) as u32,
                ];
                self.rt.dispatch(kernel, &params, buffers, groups);
            }
        }
    }

    /// `op(a)·op(b)` into a new buffer of `batch·m·n`, split over k when the output is small.
    pub(super) fn gemm(&self, g: Gemm, a: &GpuBuffer, b: &GpuBuffer) -> GpuBuffer {
        let g = g.folded();
        let out = self.rt.alloc(g.batch * g.m * g.n);
        let tiles = g.batch * g.m.div_ceil(TILE as usize) * g.n.div_ceil(TILE as usize);
        let splits = SPLIT_K_TARGET_GROUPS
            .div_ceil(tiles.max(1))
            .min(g.k / SPLIT_K_MIN_DEPTH);
        if splits < 2 {
            self.dispatch_tiles(&GEMM, &g, 1, g.k.max(1), Epilogue::default(), &[a, b, &out]);
            return out;
        }
        let k_per_split = g.k.div_ceil(splits).next_multiple_of(TK as usize);
        let splits = g.k.div_ceil(k_per_split);
        let partials = self.rt.alloc(splits * g.batch * g.m * g.n);
        self.dispatch_tiles(
            &GEMM,
            &g,
            splits,
            k_per_split,
            Epilogue::default(),
            &[a, b, &partials],
        );
        let params = g.params(splits, k_per_split, 0, 0, Epilogue::default());
        self.rt.dispatch(
            &SUM_SPLITS,
            &params,
            &[&partials, &partials, &out],
            grid(out.len(), SUM_WG),
        );
        out
    }

    /// A product with a fused epilogue (`gemm_bias`, `gemm_bias_act`, `gemm_act_grad`): no
    /// batch, no split; `buffers` as the entry binds them.
    pub(super) fn gemm_epilogue(
        &self,
        kernel: &Kernel,
        g: Gemm,
        epilogue: Epilogue,
        buffers: &[&GpuBuffer],
    ) {
        debug_assert_eq!(g.batch, 1);
        self.dispatch_tiles(kernel, &g, 1, g.k.max(1), epilogue, buffers);
    }
}

impl LinalgKernels for GpuBackend {
    fn matmul(&self, a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Tensor {
        let (ra, rb) = (a.rank(), b.rank());
        let (a_rows, a_cols) = (a.shape()[ra - 2], a.shape()[ra - 1]);
        let (b_rows, b_cols) = (b.shape()[rb - 2], b.shape()[rb - 1]);
        let (m, k) = if transpose_a {
            (a_cols, a_rows)
        } else {
            (a_rows, a_cols)
        };
        let n = if transpose_b { b_rows } else { b_cols };
        let g = Gemm {
            m,
            n,
            k,
            batch: a.shape()[..ra - 2].iter().product(),
            transpose_a,
            transpose_b,
            b_shared: rb == 2,
        };
        let mut shape = a.shape()[..ra - 2].to_vec();
        shape.extend([m, n]);
        let (ab, bb) = (self.buffer(a), self.buffer(b));
        let out = self.gemm(g, &ab, &bb);
        self.tensor(&shape, out)
    }
}
