//! GEMM on the CPU: our register-tiled AVX-512 kernel (`microkernel`) where the build has
//! AVX-512 and B's rows are contiguous (or B is small enough to transpose into scratch),
//! otherwise `matrixmultiply::sgemm` (its AVX2+FMA micro-kernel); rayon across blocks. Parallelism is one level only, and every
//! block's sgemm is single-threaded.
//!
//! How a product is cut into parallel blocks:
//! - a batch of products whose `b` is shared and `a` not transposed is one tall product
//!   (`[batch·m, k] · [k, n]`): one packing of `b` instead of one per item;
//! - a batch of at least `threads` products runs items in parallel, several per task;
//! - a single large product splits the larger of `m` and `n`: every block repacks the whole
//!   other operand, so cutting the larger side keeps that repacking small. Blocks hold at
//!   least `MIN_BLOCK` rows (columns) and there are at most `BLOCKS_PER_THREAD` per thread,
//!   so work stealing can even out a core that is busy with something else;
//! - a product with a small output and a long `k` (a weight gradient `Xᵀ·dY`) splits `k`
//!   and sums the partial products;
//! - anything under `PARALLEL_MIN_FLOPS` runs on the calling thread.

use rayon::prelude::*;

use super::fresh::fill_chunks;
use super::microkernel;
use super::{CpuBackend, tensor};
use crate::backend::LinalgKernels;
use crate::tensor::Tensor;

/// Below this many flops a product runs on the calling thread: at ~50-100 GFLOP/s that is
/// ~20 µs, a few times rayon's fork/join cost.
const PARALLEL_MIN_FLOPS: usize = 1 << 21;
/// The fewest rows (or columns) of the output in one parallel block.
const MIN_BLOCK: usize = 128;
/// At most this many blocks per thread: more balances load, fewer repacks less.
const BLOCKS_PER_THREAD: usize = 2;
/// Split `k` instead of the output when the output has fewer elements than this and `k` is
/// long enough that each part still does real work.
const SPLIT_K_MAX_OUTPUT: usize = 1 << 14;
const SPLIT_K_MIN_DEPTH: usize = 512;

/// Products the micro-kernel takes: B at most 256 wide, and A's columns at most 256 floats
/// apart (row-major A: 1) or, if further apart, A spanning at most 64 KiB (a tile
/// reads one element of each of k rows of A per row: far-apart rows would each cost a cache
/// miss). Wider B — the 1683- to 12,102-wide output layers — runs faster through
/// `matrixmultiply`, whose packing makes every access unit-stride (6400×64×1683 on an AVX-512
/// Xeon: 9.2 against 7.2 ms). Long k is fine on Zen 4 (the kernel blocks k by 256): the
/// weight gradient Xᵀ·dY, 64×6400×64, 0.29 → 0.25 ms, and 6400×1683×64 13-16 → 9.5-14 ms,
/// where the Xeon had preferred `matrixmultiply` (7.9 against 6.3 ms).
fn kernel_takes(k: usize, n: usize, csa: isize) -> bool {
    n <= 256 && (csa <= 256 || k * csa as usize <= 1 << 14)
}

/// A transposed B is copied to row-major scratch only for at least this many rows of A, so
/// that the copy (k·n moves) is small against the product (2·m·k·n flops).
const TRANSPOSE_MIN_ROWS: usize = 256;

thread_local! {
    /// Per-thread scratch for a transposed B.
    static B_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `c = op(a) · op(b)` for one `m×k · k×n` product, single-threaded. `a` and `b` are given
/// with their row and column strides, which is how transposes are expressed.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    c: &mut [f32],
) {
    assert!(c.len() >= m * n);
    sgemm_strided_c(m, k, n, a, rsa, csa, b, rsb, csb, c, n);
}

/// `sgemm` writing into an `m×n` window of a row-major matrix whose rows are `ldc` apart
/// (a column block of a wider output).
#[allow(clippy::too_many_arguments)]
fn sgemm_strided_c(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "sgemm output out of bounds"
    );
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    let a_extent = (m - 1) as isize * rsa + (k - 1) as isize * csa;
    let b_extent = (k - 1) as isize * rsb + (n - 1) as isize * csb;
    assert!(
        a_extent < a.len() as isize && b_extent < b.len() as isize,
        "sgemm operand out of bounds"
    );
    if microkernel::available() && rsa >= 0 && csa >= 0 && rsb >= 0 && kernel_takes(k, n, csa) {
        let (rsa, csa) = (rsa as usize, csa as usize);
        if csb == 1 {
            microkernel::gemm(m, k, n, a, rsa, csa, b, rsb as usize, c, ldc, false);
            return;
        }
        if rsb == 1 && m >= TRANSPOSE_MIN_ROWS {
            // B is stored transposed (a weight `Wᵀ` read through strides): copy it into
            // row-major scratch once, which every tile then reads with vector loads.
            B_SCRATCH.with_borrow_mut(|scratch| {
                scratch.resize(k * n, 0.0);
                microkernel::transpose(b, csb as usize, [n, k], scratch, n);
                microkernel::gemm(m, k, n, a, rsa, csa, scratch, n, c, ldc, false);
            });
            return;
        }
    }
    // SAFETY: the asserts above keep every element sgemm reads inside `a` and `b`, and every
    // element it writes inside `c`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// `c (+)= a · b` for the small products inside the fused kernels (attention blocks, GRU
/// steps): element (i, p) of A at `a[i·rsa + p·csa]`, row p of B at `b[p·ldb..]` (contiguous),
/// row i of C at `c[i·ldc..]`; with `accumulate` the product is added to C. The AVX-512
/// micro-kernel where the build has it, `matrixmultiply` (which handles any strides)
/// otherwise. Single-threaded.
#[allow(clippy::too_many_arguments)]
pub fn gemm_into(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    [rsa, csa]: [usize; 2],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if microkernel::available() {
        return microkernel::gemm(m, k, n, a, rsa, csa, b, ldb, c, ldc, accumulate);
    }
    if m == 0 || n == 0 || (k == 0 && accumulate) {
        return;
    }
    if !accumulate || k == 0 {
        return sgemm_strided_c(
            m,
            k,
            n,
            a,
            rsa as isize,
            csa as isize,
            b,
            ldb as isize,
            1,
            c,
            ldc,
        );
    }
    assert!(
        ldc >= n
            && c.len() >= (m - 1) * ldc + n
            && (m - 1) * rsa + (k - 1) * csa < a.len()
            && (k - 1) * ldb + n <= b.len(),
        "gemm_into operand out of bounds"
    );
    // SAFETY: the assert keeps every element read inside `a` and `b` and every element
    // written inside `c`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            ldb as isize,
            1,
            1.0,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// Strides (row, column) of `op(x)` for a row-major matrix stored as `rows×cols`.
fn strides(stored_cols: usize, transpose: bool) -> (isize, isize) {
    if transpose {
        (1, stored_cols as isize)
    } else {
        (stored_cols as isize, 1)
    }
}

/// How many parallel blocks to cut `extent` rows (or columns) into: at least `MIN_BLOCK`
/// each, at most `BLOCKS_PER_THREAD` per thread.
fn block_count(extent: usize, threads: usize) -> usize {
    (extent / MIN_BLOCK).clamp(1, threads * BLOCKS_PER_THREAD)
}

/// `block` rounded up to a multiple of 16, so that block edges fall on micro-kernel edges.
fn kernel_aligned(block: usize) -> usize {
    block.div_ceil(16) * 16
}

/// How `par_sgemm` cuts one product (see the header).
enum Split {
    /// On the calling thread.
    Serial,
    /// `parts` slices of `k`, each of `depth`, summed.
    Depth { parts: usize, depth: usize },
    /// Blocks of `rows` rows of `c`.
    Rows(usize),
    /// Blocks of `cols` columns of `c`.
    Columns(usize),
}

fn split(m: usize, k: usize, n: usize) -> Split {
    let threads = rayon::current_num_threads();
    if threads == 1 || 2 * m * n * k < PARALLEL_MIN_FLOPS {
        Split::Serial
    } else if m * n < SPLIT_K_MAX_OUTPUT && k >= SPLIT_K_MIN_DEPTH {
        let parts = (k / (SPLIT_K_MIN_DEPTH / 2)).clamp(1, threads);
        Split::Depth {
            parts,
            depth: k.div_ceil(parts),
        }
    } else if m >= n {
        Split::Rows(kernel_aligned(m.div_ceil(block_count(m, threads))))
    } else {
        Split::Columns(kernel_aligned(n.div_ceil(block_count(n, threads))))
    }
}

/// `c = op(a) · op(b)` for one `m×k · k×n` product, parallel over blocks of `c` (see the
/// header). `c` is the `m×n` row-major output.
#[allow(clippy::too_many_arguments)]
pub fn par_sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    c: &mut [f32],
) {
    let product = Product {
        m,
        k,
        n,
        a,
        a_strides: (rsa, csa),
        b,
        b_strides: (rsb, csb),
    };
    product.run_parallel(c);
}

/// One product `op(a) · op(b)`, `m×k · k×n`, with `a` and `b` given by their (row, column)
/// strides, which is how transposes are expressed.
#[derive(Clone, Copy)]
struct Product<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: &'a [f32],
    a_strides: (isize, isize),
    b: &'a [f32],
    b_strides: (isize, isize),
}

impl<'a> Product<'a> {
    /// The same product with other operands of the same shape and strides (another batch item).
    fn with_operands(self, a: &'a [f32], b: &'a [f32]) -> Product<'a> {
        Product { a, b, ..self }
    }

    /// Rows `first..first + count` of the product: the same `op(b)` times those rows of `op(a)`.
    fn rows(self, first: usize, count: usize) -> Product<'a> {
        Product {
            m: count,
            a: &self.a[first * self.a_strides.0 as usize..],
            ..self
        }
    }

    /// Columns `j0..j1` of `op(b)`.
    fn columns_of_b(self, j0: usize, j1: usize) -> Product<'a> {
        Product {
            n: j1 - j0,
            b: &self.b[j0 * self.b_strides.1 as usize..],
            ..self
        }
    }

    /// `k` steps `k0..k1` of the inner dimension: op(a)[:, k0..k1] · op(b)[k0..k1, :].
    fn depth(self, k0: usize, k1: usize) -> Product<'a> {
        Product {
            k: k1 - k0,
            a: &self.a[k0 * self.a_strides.1 as usize..],
            b: &self.b[k0 * self.b_strides.0 as usize..],
            ..self
        }
    }

    /// Into the first `m×n` elements of the row-major `c`, on this thread.
    fn run(&self, c: &mut [f32]) {
        self.run_strided(c, self.n);
    }

    /// Into an `m×n` window of a row-major matrix whose rows are `ldc` apart, on this thread.
    fn run_strided(&self, c: &mut [f32], ldc: usize) {
        let ((rsa, csa), (rsb, csb)) = (self.a_strides, self.b_strides);
        sgemm_strided_c(
            self.m, self.k, self.n, self.a, rsa, csa, self.b, rsb, csb, c, ldc,
        );
    }

    /// Into the first `m×n` elements of the row-major `c`, cut into parallel blocks as
    /// `split` says.
    fn run_parallel(&self, c: &mut [f32]) {
        let (m, k, n) = (self.m, self.k, self.n);
        let c = &mut c[..m * n];
        match split(m, k, n) {
            Split::Serial => self.run(c),
            Split::Depth { parts, depth } => {
                // Each part computes op(a)[:, ks] · op(b)[ks, :] into its own buffer; then sum.
                let partials: Vec<Vec<f32>> = (0..parts)
                    .into_par_iter()
                    .map(|part| {
                        let mut partial = vec![0.0f32; m * n];
                        let (k0, k1) = (part * depth, ((part + 1) * depth).min(k));
                        self.depth(k0, k1).run(&mut partial);
                        partial
                    })
                    .collect();
                c.copy_from_slice(&partials[0]);
                for partial in &partials[1..] {
                    c.iter_mut().zip(partial).for_each(|(sum, x)| *sum += x);
                }
            }
            Split::Rows(rows) => {
                c.par_chunks_mut(rows * n)
                    .enumerate()
                    .for_each(|(block, c_block)| self.row_block(rows, block, c_block));
            }
            Split::Columns(cols) => {
                // Column blocks of a row-major `c` interleave in memory, so each task gets a
                // raw pointer to its first column rather than a slice.
                let c_start = SharedOutput(c.as_mut_ptr());
                let c_len = c.len();
                (0..n.div_ceil(cols)).into_par_iter().for_each(|block| {
                    let (j0, j1) = (block * cols, ((block + 1) * cols).min(n));
                    // SAFETY: block `block` writes only columns j0..j1 of rows 0..m of `c`,
                    // which no other block touches; the slice below starts at column j0 of
                    // row 0 and ends at the end of `c`, inside `c`'s allocation, which
                    // outlives this loop.
                    let c_block =
                        unsafe { std::slice::from_raw_parts_mut(c_start.at(j0), c_len - j0) };
                    self.columns_of_b(j0, j1).run_strided(c_block, n);
                });
            }
        }
    }

    /// Like `run_parallel`, into a fresh `m×n` buffer. Row blocks (the tall products of the
    /// linear layers) each zero their own part of it in parallel (see `fresh`) instead of a
    /// serial `vec![0.0; m·n]` first.
    fn run_fresh(&self) -> Vec<f32> {
        let (m, n) = (self.m, self.n);
        match split(m, self.k, n) {
            Split::Rows(rows) if n > 0 => fill_chunks(m * n, rows * n, true, |block, c_block| {
                self.row_block(rows, block, c_block)
            }),
            _ => {
                let mut c = vec![0.0f32; m * n];
                self.run_parallel(&mut c);
                c
            }
        }
    }

    /// Row block `block` of `Split::Rows(rows)` into its piece `c_block` of the output (the
    /// last block may be short).
    fn row_block(&self, rows: usize, block: usize, c_block: &mut [f32]) {
        self.rows(block * rows, c_block.len() / self.n).run(c_block);
    }
}

/// A pointer into the output that parallel blocks write disjoint parts of.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);

// SAFETY: only used by `Product::run_parallel`, whose blocks write disjoint elements.
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the output.
        unsafe { self.0.add(offset) }
    }
}

impl LinalgKernels for CpuBackend {
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
        let batch: usize = a.shape()[..ra - 2].iter().product();
        let b_shared = rb == 2;
        let (a_data, b_data) = (a.cpu(), b.cpu());
        let (a_size, b_size) = (a_rows * a_cols, b_rows * b_cols);
        let item = Product {
            m,
            k,
            n,
            a: a_data,
            a_strides: strides(a_cols, transpose_a),
            b: b_data,
            b_strides: strides(b_cols, transpose_b),
        };
        // Batch item i's product (`b` shared by every item when it has rank 2).
        let item_product = |i: usize| {
            let b_item = if b_shared {
                b_data
            } else {
                &b_data[i * b_size..(i + 1) * b_size]
            };
            item.with_operands(&a_data[i * a_size..(i + 1) * a_size], b_item)
        };

        let threads = rayon::current_num_threads();
        let item_flops = 2 * m * n * k;
        let out = if batch * m * n == 0 {
            Vec::new() // m, n or the batch is 0: nothing to compute (and no chunks to cut)
        } else if batch == 1 || (b_shared && !transpose_a) {
            // The rows of every item of `a` follow each other: one tall product.
            Product {
                m: batch * m,
                ..item
            }
            .run_fresh()
        } else if batch >= threads && batch * item_flops >= PARALLEL_MIN_FLOPS {
            // Several items per task, so that each task is worth rayon's overhead.
            let items_per_task =
                (PARALLEL_MIN_FLOPS / 8 / item_flops.max(1)).clamp(1, batch / threads);
            fill_chunks(
                batch * m * n,
                items_per_task * m * n,
                true,
                |task, c_items| {
                    for (j, c) in c_items.chunks_mut(m * n).enumerate() {
                        item_product(task * items_per_task + j).run(c);
                    }
                },
            )
        } else {
            let mut out = vec![0.0f32; batch * m * n];
            for (i, c) in out.chunks_mut(m * n).enumerate() {
                item_product(i).run_parallel(c);
            }
            out
        };
        let mut shape = a.shape()[..ra - 2].to_vec();
        shape.extend([m, n]);
        tensor(&shape, out)
    }
}
