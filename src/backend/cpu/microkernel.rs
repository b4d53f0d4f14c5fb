//! A register-tiled AVX-512 GEMM for the small products inside the fused kernels.
//!
//!   C[i, j] (+)= Σ_p A[i, p] · B[p, j]      (i < m, j < n, p < k; C overwritten or added to)
//!
//! A is read through any strides (element (i, p) at `a[i·rsa + p·csa]`, broadcast one at a
//! time, so a transposed A costs nothing); B must have contiguous rows (element (p, j) at
//! `b[p·ldb + j]`), because its rows are what the vector loads read. C is cut into tiles of
//! up to `TILE_ROWS` rows × `TILE_COLS` columns whose sums stay in 24 zmm registers for the
//! whole of a block of k (`DEPTH_BLOCK`; the next block adds to C): per p, four B vectors are loaded and six A values broadcast for 24 fused
//! multiply-adds. Column edges use masked loads and stores (a masked-off lane is never read),
//! so any n works without padding.
//!
//! Why not `matrixmultiply` here: it packs both operands on every call, which for the
//! 50×64×50 score blocks of attention or the 64×64×192 steps of a GRU costs as much as the
//! multiply. On an AVX-512 Xeon, one core: 64×64×64 112 → 185 GFLOP/s, 64×64×192 131 → 165,
//! 64×192×64 119 → 174. Sums run over p in order, one output element at a time, so results
//! do not depend on how the caller splits rows or columns across threads.
//!
//! Without AVX-512 (`target_feature` is fixed at build time by `.cargo/config.toml`'s
//! `target-cpu=native`) `available()` is false and callers use `matrixmultiply`.

/// Rows and columns of one register tile: 6 × 4 vectors of 16 = 24 accumulators of the 32
/// zmm registers, leaving room for the 4 B vectors and one broadcast.
pub const TILE_ROWS: usize = 6;
pub const TILE_COLS: usize = 64;

/// Whether this build has the AVX-512 kernel.
pub const fn available() -> bool {
    cfg!(all(target_arch = "x86_64", target_feature = "avx512f"))
}

/// `c[i·ldc + j] (+)= Σ_p a[i·rsa + p·csa] · b[p·ldb + j]` for i < m, j < n, p < k; with
/// `accumulate` the sum is added to C, otherwise C is overwritten.
/// Panics (a caller bug, not user input) if an operand is too short. A build without AVX-512
/// runs a plain loop instead: correct but slow, so callers check `available()` and use
/// `matrixmultiply` there.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "gemm: c too short"
    );
    if k == 0 {
        if accumulate {
            return;
        }
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    assert!(
        // (Rows of B may overlap, e.g. ldb = 0 for a broadcast row: only reads matter.)
        (m - 1) * rsa + (k - 1) * csa < a.len() && (k - 1) * ldb + n <= b.len(),
        "gemm: operand too short"
    );
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    // SAFETY: the asserts above keep every element read inside `a` and `b` and every element
    // written inside `c`; tiles read and write only rows < m and (through masks) columns < n.
    unsafe {
        avx512::gemm(
            m,
            k,
            n,
            a.as_ptr(),
            [rsa, csa],
            b.as_ptr(),
            ldb,
            c.as_mut_ptr(),
            ldc,
            accumulate,
        )
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    for i in 0..m {
        for j in 0..n {
            let sum: f32 = (0..k).map(|p| a[i * rsa + p * csa] * b[p * ldb + j]).sum();
            let out = &mut c[i * ldc + j];
            *out = if accumulate { *out + sum } else { sum };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{gemm, transpose};
    use crate::rng::Rng;

    /// The f64 product, element by element.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        [m, k, n]: [usize; 3],
        a: &[f32],
        [rsa, csa]: [usize; 2],
        b: &[f32],
        ldb: usize,
        c: &[f32],
        ldc: usize,
        accumulate: bool,
    ) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let start = if accumulate {
                    c[i * ldc + j] as f64
                } else {
                    0.0
                };
                out[i * n + j] = start
                    + (0..k)
                        .map(|p| a[i * rsa + p * csa] as f64 * b[p * ldb + j] as f64)
                        .sum::<f64>();
            }
        }
        out
    }

    #[test]
    fn matches_the_f64_product_on_every_edge() {
        let mut rng = Rng::new(7);
        // Rows around the 6-row tile and the 240-row block, columns around the 16-lane
        // vector and 64-column tile, depths across the 256 block; A plain and transposed;
        // C a window of a wider matrix (ldc > n) whose other columns must stay untouched.
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 3, 17),
            (6, 64, 64),
            (7, 64, 50),
            (13, 192, 64),
            (64, 64, 192),
            (250, 300, 33),
            (60, 70, 100),
            (12, 513, 80),
        ] {
            for transpose_a in [false, true] {
                for accumulate in [false, true] {
                    let (rsa, csa) = if transpose_a { (1, m) } else { (k, 1) };
                    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform() - 0.5).collect();
                    // A B whose rows are far apart (a window of a wide matrix) is packed.
                    let ldb = if m >= 48 { n + 300 } else { n + 3 };
                    let b: Vec<f32> = (0..k * ldb).map(|_| rng.uniform() - 0.5).collect();
                    let ldc = n + 5;
                    let c0: Vec<f32> = (0..m * ldc).map(|_| rng.uniform() - 0.5).collect();
                    let mut c = c0.clone();
                    gemm(m, k, n, &a, rsa, csa, &b, ldb, &mut c, ldc, accumulate);
                    let want = reference([m, k, n], &a, [rsa, csa], &b, ldb, &c0, ldc, accumulate);
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j];
                            if j >= n {
                                assert_eq!(got, c0[i * ldc + j], "column {j} ≥ n was written");
                                continue;
                            }
                            let w = want[i * n + j];
                            assert!(
                                (got as f64 - w).abs()
                                    <= 1e-5 * (1.0 + k as f64).sqrt() * (1.0 + w.abs()),
                                "{m}×{k}×{n} transpose_a={transpose_a} accumulate={accumulate} \
                                 at ({i}, {j}): {got} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_matches_the_definition() {
        let mut rng = Rng::new(3);
        for &(rows, cols) in &[(1, 1), (16, 16), (50, 64), (17, 5), (3, 40), (200, 32)] {
            let src_stride = cols + 2;
            let src: Vec<f32> = (0..rows * src_stride).map(|_| rng.uniform()).collect();
            let dst_stride = rows + 1;
            let mut dst = vec![-7.0f32; cols * dst_stride];
            transpose(&src, src_stride, [rows, cols], &mut dst, dst_stride);
            for c in 0..cols {
                for r in 0..dst_stride {
                    let want = if r < rows {
                        src[r * src_stride + c]
                    } else {
                        -7.0
                    };
                    assert_eq!(dst[c * dst_stride + r], want, "{rows}×{cols} at ({c}, {r})");
                }
            }
        }
    }

    #[test]
    fn zero_depth_clears_or_keeps_c() {
        let mut c = vec![1.0f32; 6];
        gemm(2, 0, 3, &[], 0, 1, &[], 3, &mut c, 3, true);
        assert_eq!(c, vec![1.0; 6]);
        gemm(2, 0, 3, &[], 0, 1, &[], 3, &mut c, 3, false);
        assert_eq!(c, vec![0.0; 6]);
    }
}

/// `dst[c·dst_stride + r] = src[r·src_stride + c]` for r < rows, c < cols: the transpose of
/// a `rows × cols` window. With AVX-512 in 16×16 tiles held in registers (16 loads, 64
/// shuffles, 16 stores per 256 elements, against two scalar moves per element).
pub fn transpose(
    src: &[f32],
    src_stride: usize,
    [rows, cols]: [usize; 2],
    dst: &mut [f32],
    dst_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src_stride >= cols
            && (rows - 1) * src_stride + cols <= src.len()
            && dst_stride >= rows
            && (cols - 1) * dst_stride + rows <= dst.len(),
        "transpose: operand too short"
    );
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    for r0 in (0..rows).step_by(16) {
        for c0 in (0..cols).step_by(16) {
            // SAFETY: the tile reads rows r0.. < rows and columns c0.. < cols of `src` and
            // writes the transposed window of `dst`, both inside the bounds asserted above.
            unsafe {
                avx512::transpose_tile(
                    src.as_ptr().add(r0 * src_stride + c0),
                    src_stride,
                    [16.min(rows - r0), 16.min(cols - c0)],
                    dst.as_mut_ptr().add(c0 * dst_stride + r0),
                    dst_stride,
                )
            }
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    for r in 0..rows {
        for c in 0..cols {
            dst[c * dst_stride + r] = src[r * src_stride + c];
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{TILE_COLS, TILE_ROWS};

    /// Blocking for long operands: a block of C's rows is computed against one block of k
    /// at a time, so A's block (`ROW_BLOCK × DEPTH_BLOCK`, 240 KiB) and B's (`DEPTH_BLOCK ×
    /// 64`, 64 KiB) stay in L2 while every tile of the row block reuses them.
    const ROW_BLOCK: usize = 240;
    const DEPTH_BLOCK: usize = 256;
    /// B's column block is copied to a contiguous buffer when its rows are more than this
    /// many floats apart (1 KiB: each row on its own cache lines, 64 rows on up to 64
    /// pages) and the row block has enough rows to reuse the copy.
    const PACK_MIN_STRIDE: usize = 256;
    const PACK_MIN_ROWS: usize = 8 * TILE_ROWS;

    thread_local! {
        static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// One `MR × (16·NV)` tile over the whole of k; the last vector of each row is masked
    /// by `last` (all ones when the tile is full).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const MR: usize, const NV: usize>(
        k: usize,
        a: *const f32,
        [rsa, csa]: [usize; 2],
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        last: __mmask16,
        accumulate: bool,
    ) {
        // SAFETY (whole body): the caller guarantees rows < MR of A/C, columns inside the
        // mask of B/C and p < k are in bounds.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            if accumulate {
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    for (v, s) in acc_row.iter_mut().enumerate() {
                        let mask = if v + 1 == NV { last } else { 0xffff };
                        *s = _mm512_maskz_loadu_ps(mask, c.add(r * ldc + 16 * v));
                    }
                }
            }
            let (mut a_p, mut b_p) = (a, b);
            for _ in 0..k {
                let b_vec: [__m512; NV] = std::array::from_fn(|v| {
                    if v + 1 == NV {
                        _mm512_maskz_loadu_ps(last, b_p.add(16 * v))
                    } else {
                        _mm512_loadu_ps(b_p.add(16 * v))
                    }
                });
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a_p.add(r * rsa));
                    for (s, &bv) in acc_row.iter_mut().zip(&b_vec) {
                        *s = _mm512_fmadd_ps(x, bv, *s);
                    }
                }
                a_p = a_p.add(csa);
                b_p = b_p.add(ldb);
            }
            for (r, acc_row) in acc.iter().enumerate() {
                for (v, &s) in acc_row.iter().enumerate() {
                    let out = c.add(r * ldc + 16 * v);
                    if v + 1 == NV {
                        _mm512_mask_storeu_ps(out, last, s);
                    } else {
                        _mm512_storeu_ps(out, s);
                    }
                }
            }
        }
    }

    /// Transposes one tile of up to 16 × 16 (`rows`, `cols` ≤ 16): masked loads (missing
    /// rows read as zeros), a 4-stage shuffle network, masked stores.
    pub unsafe fn transpose_tile(
        src: *const f32,
        src_stride: usize,
        [rows, cols]: [usize; 2],
        dst: *mut f32,
        dst_stride: usize,
    ) {
        let col_mask: __mmask16 = if cols == 16 { 0xffff } else { (1 << cols) - 1 };
        let row_mask: __mmask16 = if rows == 16 { 0xffff } else { (1 << rows) - 1 };
        // SAFETY (whole body): loads stay in rows < rows and (masked) columns < cols of
        // `src`; stores in rows < cols and (masked) columns < rows of `dst`.
        unsafe {
            let r: [__m512; 16] = std::array::from_fn(|i| {
                if i < rows {
                    _mm512_maskz_loadu_ps(col_mask, src.add(i * src_stride))
                } else {
                    _mm512_setzero_ps()
                }
            });
            // Stage 1: interleave pairs of rows → 2×2 blocks.
            let t: [__m512; 16] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            // Stage 2: pairs of 64-bit lanes → 4×4 blocks within each 128-bit lane.
            let u: [__m512; 16] = std::array::from_fn(|i| {
                let base = (i / 4) * 4;
                let (a, b) = (t[base + (i % 4) / 2], t[base + 2 + (i % 4) / 2]);
                if i % 2 == 0 {
                    _mm512_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm512_shuffle_ps::<0xEE>(a, b)
                }
            });
            // Stage 3: 128-bit lanes across groups of 8 rows.
            let v: [__m512; 16] = std::array::from_fn(|i| {
                let base = (i / 8) * 8;
                let (a, b) = (u[base + i % 4], u[base + 4 + i % 4]);
                if (i % 8) < 4 {
                    _mm512_shuffle_f32x4::<0x88>(a, b)
                } else {
                    _mm512_shuffle_f32x4::<0xDD>(a, b)
                }
            });
            // Stage 4: 128-bit lanes across the two halves.
            for i in 0..cols {
                let (a, b) = (v[i % 8], v[8 + i % 8]);
                let out = if i < 8 {
                    _mm512_shuffle_f32x4::<0x88>(a, b)
                } else {
                    _mm512_shuffle_f32x4::<0xDD>(a, b)
                };
                _mm512_mask_storeu_ps(dst.add(i * dst_stride), row_mask, out);
            }
        }
    }

    /// Picks the monomorphised tile for `rows` (1..=6) × `vectors` (1..=4).
    macro_rules! dispatch {
        ($rows:expr, $vectors:expr, $($args:expr),*) => {
            match ($rows, $vectors) {
                (6, 4) => tile::<6, 4>($($args),*), (6, 3) => tile::<6, 3>($($args),*),
                (6, 2) => tile::<6, 2>($($args),*), (6, 1) => tile::<6, 1>($($args),*),
                (5, 4) => tile::<5, 4>($($args),*), (5, 3) => tile::<5, 3>($($args),*),
                (5, 2) => tile::<5, 2>($($args),*), (5, 1) => tile::<5, 1>($($args),*),
                (4, 4) => tile::<4, 4>($($args),*), (4, 3) => tile::<4, 3>($($args),*),
                (4, 2) => tile::<4, 2>($($args),*), (4, 1) => tile::<4, 1>($($args),*),
                (3, 4) => tile::<3, 4>($($args),*), (3, 3) => tile::<3, 3>($($args),*),
                (3, 2) => tile::<3, 2>($($args),*), (3, 1) => tile::<3, 1>($($args),*),
                (2, 4) => tile::<2, 4>($($args),*), (2, 3) => tile::<2, 3>($($args),*),
                (2, 2) => tile::<2, 2>($($args),*), (2, 1) => tile::<2, 1>($($args),*),
                (1, 4) => tile::<1, 4>($($args),*), (1, 3) => tile::<1, 3>($($args),*),
                (1, 2) => tile::<1, 2>($($args),*), (1, 1) => tile::<1, 1>($($args),*),
                _ => unreachable!("tile sizes are 1..=6 rows × 1..=4 vectors"),
            }
        };
    }

    /// The operands of one product: A through strides, B with rows `ldb` apart, C with rows
    /// `ldc` apart (bounds checked by `super::gemm`).
    #[derive(Clone, Copy)]
    struct Operands {
        a: *const f32,
        rsa: usize,
        csa: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    }

    /// See `super::gemm`; the caller has checked the bounds.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        [rsa, csa]: [usize; 2],
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        for p0 in (0..k).step_by(DEPTH_BLOCK) {
            let depth = DEPTH_BLOCK.min(k - p0);
            // SAFETY: p0 < k, so both offsets stay inside the operands.
            let (a, b) = unsafe { (a.add(p0 * csa), b.add(p0 * ldb)) };
            let ops = Operands {
                a,
                rsa,
                csa,
                b,
                ldb,
                c,
                ldc,
            };
            let accumulate = accumulate || p0 > 0;
            for first in (0..m).step_by(ROW_BLOCK) {
                let rows = first..(first + ROW_BLOCK).min(m);
                // SAFETY: rows below m, the caller's bounds.
                unsafe { row_block(ops, rows, depth, n, accumulate) }
            }
        }
    }

    /// Rows `rows` of C against one block of k (`ops` point at that block).
    unsafe fn row_block(
        ops: Operands,
        rows: std::ops::Range<usize>,
        k: usize,
        n: usize,
        accumulate: bool,
    ) {
        let Operands {
            a,
            rsa,
            csa,
            b,
            ldb,
            c,
            ldc,
        } = ops;
        let (first, block_end) = (rows.start, rows.end);
        let pack = ldb > PACK_MIN_STRIDE && block_end - first >= PACK_MIN_ROWS;
        PACKED_B.with_borrow_mut(|packed| {
            for j0 in (0..n).step_by(TILE_COLS) {
                let width = TILE_COLS.min(n - j0);
                let vectors = width.div_ceil(16);
                let tail = width - 16 * (vectors - 1);
                let last: __mmask16 = if tail == 16 { 0xffff } else { (1 << tail) - 1 };
                let (b_chunk, b_stride) = if pack {
                    // Rows of a wide B lie on different pages: copy the k × 64 column block
                    // into one contiguous buffer that every tile of the row block then reads.
                    packed.resize(k * TILE_COLS, 0.0);
                    for p in 0..k {
                        // SAFETY: row p < k, columns j0..j0+width < n of B: inside the operand.
                        let row = unsafe { std::slice::from_raw_parts(b.add(p * ldb + j0), width) };
                        packed[p * TILE_COLS..p * TILE_COLS + width].copy_from_slice(row);
                    }
                    (packed.as_ptr(), TILE_COLS)
                } else {
                    // SAFETY: j0 < n.
                    (unsafe { b.add(j0) }, ldb)
                };
                let mut i0 = first;
                while i0 < block_end {
                    let rows = TILE_ROWS.min(block_end - i0);
                    // SAFETY: rows i0..i0+rows < m and columns j0..j0+width ≤ n, which the
                    // caller checked are inside the operands.
                    unsafe {
                        dispatch!(
                            rows,
                            vectors,
                            k,
                            a.add(i0 * rsa),
                            [rsa, csa],
                            b_chunk,
                            b_stride,
                            c.add(i0 * ldc + j0),
                            ldc,
                            last,
                            accumulate
                        );
                    }
                    i0 += rows;
                }
            }
        });
    }
}
