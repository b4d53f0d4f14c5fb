//! GEMM on the CPU: `matrixmultiply::sgemm` on each block, rayon across blocks.
//!
//! Parallelism is one level only: across batch items when there are enough of them,
//! otherwise across row blocks of a single product. Each block's sgemm is single-threaded.

use rayon::prelude::*;

use super::{CpuBackend, tensor};
use crate::backend::LinalgKernels;
use crate::tensor::Tensor;

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
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let a_extent = (m - 1) as isize * rsa + (k - 1) as isize * csa;
    let b_extent = (k - 1) as isize * rsb + (n - 1) as isize * csb;
    assert!(
        a_extent < a.len() as isize && b_extent < b.len() as isize,
        "sgemm operand out of bounds"
    );
    // SAFETY: the asserts above keep every element sgemm reads inside `a` and `b`, and `c`
    // holds the m×n row-major output.
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
            n as isize,
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
        let (rsa, csa) = strides(a_cols, transpose_a);
        let (rsb, csb) = strides(b_cols, transpose_b);
        let (a_data, b_data) = (a.cpu(), b.cpu());
        let (a_size, b_size) = (a_rows * a_cols, b_rows * b_cols);

        let mut out = vec![0.0f32; batch * m * n];
        let threads = rayon::current_num_threads();
        let flops = 2 * batch * m * n * k;
        if batch >= threads && flops > 1 << 16 {
            out.par_chunks_mut(m * n).enumerate().for_each(|(i, c)| {
                let b_item = if b_shared {
                    b_data
                } else {
                    &b_data[i * b_size..(i + 1) * b_size]
                };
                sgemm(
                    m,
                    k,
                    n,
                    &a_data[i * a_size..(i + 1) * a_size],
                    rsa,
                    csa,
                    b_item,
                    rsb,
                    csb,
                    c,
                );
            });
        } else {
            for (i, c) in out.chunks_mut(m * n).enumerate() {
                let a_item = &a_data[i * a_size..(i + 1) * a_size];
                let b_item = if b_shared {
                    b_data
                } else {
                    &b_data[i * b_size..(i + 1) * b_size]
                };
                // One product: split its rows into blocks, one rayon task each.
                let rows_per_block = if m * n * k > 1 << 18 {
                    m.div_ceil(threads * 4).max(16)
                } else {
                    m
                };
                c.par_chunks_mut(rows_per_block * n)
                    .enumerate()
                    .for_each(|(block, c_block)| {
                        let rows = c_block.len() / n;
                        let a_block = &a_item[block * rows_per_block * rsa as usize..];
                        sgemm(rows, k, n, a_block, rsa, csa, b_item, rsb, csb, c_block);
                    });
            }
        }
        let mut shape = a.shape()[..ra - 2].to_vec();
        shape.extend([m, n]);
        tensor(&shape, out)
    }
}
