//! The CPU matmul kernel against a plain f64 reference, on shapes that reach every path of
//! `src/backend/cpu/linalg.rs`: single-threaded small products, row blocks (m ≥ n), column
//! blocks (n > m), split-k (small output, long k), batched items in parallel and in sequence,
//! a shared `b` folded into one tall product, all four transposes, and empty dimensions.
//! Each test runs in a rayon pool of 1 and of 3 threads, so the parallel paths really split.

use seqrec::Tensor;
use seqrec::backend::cpu::{par_sgemm, sgemm};
use seqrec::backend::{CpuBackend, LinalgKernels};
use seqrec::rng::Rng;

fn random_values(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()
}

/// `op(a) · op(b)` in f64 with plain loops; `a` is stored `a_rows×a_cols` (row-major) per batch
/// item, `b` likewise, `b_shared` when one `b` serves every item.
#[allow(clippy::too_many_arguments)]
fn reference(
    a: &[f32],
    b: &[f32],
    batch: usize,
    (m, k, n): (usize, usize, usize),
    transpose_a: bool,
    transpose_b: bool,
    b_shared: bool,
) -> Vec<f64> {
    let mut c = vec![0.0f64; batch * m * n];
    for item in 0..batch {
        let a_item = &a[item * m * k..];
        let b_item = if b_shared { b } else { &b[item * k * n..] };
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0f64;
                for p in 0..k {
                    let a_ip = if transpose_a {
                        a_item[p * m + i]
                    } else {
                        a_item[i * k + p]
                    };
                    let b_pj = if transpose_b {
                        b_item[j * k + p]
                    } else {
                        b_item[p * n + j]
                    };
                    sum += a_ip as f64 * b_pj as f64;
                }
                c[item * m * n + i * n + j] = sum;
            }
        }
    }
    c
}

/// f32 sums of k products of values in [-1, 1): the error grows like sqrt(k)·ε.
fn assert_close(got: &[f32], want: &[f64], k: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let tol = 1e-5 * (k as f64).sqrt().max(1.0) * 4.0;
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {index}: got {g}, want {w}"
        );
    }
}

/// Checks `CpuBackend::matmul` on `batch` items (0 = rank-2 operands) of `m×k · k×n`.
#[allow(clippy::too_many_arguments)]
fn check_matmul(
    batch: usize,
    (m, k, n): (usize, usize, usize),
    transpose_a: bool,
    transpose_b: bool,
    b_shared: bool,
    rng: &mut Rng,
) {
    let items = batch.max(1);
    let a_mat = if transpose_a { [k, m] } else { [m, k] };
    let b_mat = if transpose_b { [n, k] } else { [k, n] };
    let a_shape: Vec<usize> = if batch == 0 {
        a_mat.to_vec()
    } else {
        [batch, a_mat[0], a_mat[1]].to_vec()
    };
    let b_shape: Vec<usize> = if batch == 0 || b_shared {
        b_mat.to_vec()
    } else {
        [batch, b_mat[0], b_mat[1]].to_vec()
    };
    let a_values = random_values(a_shape.iter().product(), rng);
    let b_values = random_values(b_shape.iter().product(), rng);
    let want = reference(
        &a_values,
        &b_values,
        items,
        (m, k, n),
        transpose_a,
        transpose_b,
        b_shared || batch == 0,
    );
    let a = Tensor::from_vec(&a_shape, a_values).unwrap();
    let b = Tensor::from_vec(&b_shape, b_values).unwrap();
    let c = CpuBackend.matmul(&a, &b, transpose_a, transpose_b);
    let mut want_shape = a_shape[..a_shape.len() - 2].to_vec();
    want_shape.extend([m, n]);
    let what = format!(
        "batch {batch} {m}x{k}x{n} transposes ({transpose_a}, {transpose_b}) shared {b_shared}, {} threads",
        rayon::current_num_threads()
    );
    assert_eq!(c.shape(), want_shape.as_slice(), "{what}: shape");
    assert_close(c.cpu(), &want, k, &what);
}

fn in_pools(test: impl Fn() + Sync) {
    for threads in [1, 3] {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(&test);
    }
}

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

#[test]
fn single_products_of_every_shape_class() {
    in_pools(|| {
        let mut rng = Rng::new(1);
        let shapes = [
            (1, 1, 1),       // tiny
            (3, 5, 7),       // small, not a multiple of any block
            (6000, 24, 9),   // tall-skinny: row blocks, n not a multiple of 8
            (523, 64, 61),   // row blocks with a ragged last block
            (9, 200, 701),   // wide: column blocks with a ragged last block
            (40, 1500, 24),  // small output, long k: split-k
            (129, 130, 131), // just over the block sizes
        ];
        for &(m, k, n) in &shapes {
            for &(ta, tb) in &TRANSPOSES {
                check_matmul(0, (m, k, n), ta, tb, false, &mut rng);
            }
        }
    });
}

#[test]
fn batched_products_per_item_and_shared_b() {
    in_pools(|| {
        let mut rng = Rng::new(2);
        // Many small items: items in parallel, several per task.
        for &(ta, tb) in &TRANSPOSES {
            check_matmul(64, (20, 40, 30), ta, tb, false, &mut rng);
        }
        // A shared b with a plain a folds into one tall product; with a transposed a the
        // items run one by one (forward of the tape rejects this, the kernel must not care).
        for &(ta, tb) in &TRANSPOSES {
            check_matmul(5, (70, 33, 45), ta, tb, true, &mut rng);
        }
        // Fewer items than threads, each large enough to split on its own.
        check_matmul(2, (400, 40, 150), false, true, false, &mut rng);
        check_matmul(2, (30, 100, 400), true, false, false, &mut rng);
    });
}

#[test]
fn empty_dimensions() {
    in_pools(|| {
        let mut rng = Rng::new(3);
        for &(ta, tb) in &TRANSPOSES {
            // k = 0: the empty sum is zero everywhere.
            check_matmul(0, (4, 0, 5), ta, tb, false, &mut rng);
            check_matmul(3, (4, 0, 5), ta, tb, false, &mut rng);
            // m = 0 or n = 0: an empty result of the right shape.
            check_matmul(0, (0, 3, 5), ta, tb, false, &mut rng);
            check_matmul(0, (4, 3, 0), ta, tb, false, &mut rng);
            check_matmul(2, (0, 3, 5), ta, tb, true, &mut rng);
        }
    });
}

#[test]
fn slice_kernels_match_and_fill_the_whole_output() {
    // sgemm and par_sgemm overwrite c entirely (beta = 0): start from garbage.
    in_pools(|| {
        let mut rng = Rng::new(4);
        let (m, k, n) = (150, 70, 260);
        let a = random_values(m * k, &mut rng);
        let b = random_values(k * n, &mut rng);
        let want = reference(&a, &b, 1, (m, k, n), false, false, true);
        let mut c = vec![f32::NAN; m * n];
        sgemm(m, k, n, &a, k as isize, 1, &b, n as isize, 1, &mut c);
        assert_close(&c, &want, k, "sgemm");
        let mut c = vec![f32::NAN; m * n];
        par_sgemm(m, k, n, &a, k as isize, 1, &b, n as isize, 1, &mut c);
        assert_close(&c, &want, k, "par_sgemm");
    });
}

#[test]
fn reference_agrees_with_a_hand_computed_product() {
    // [[1,2],[3,4]] · [[5,6],[7,8]] = [[19,22],[43,50]], so the reference itself is right.
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [5.0, 6.0, 7.0, 8.0];
    assert_eq!(
        reference(&a, &b, 1, (2, 2, 2), false, false, true),
        vec![19.0, 22.0, 43.0, 50.0]
    );
    // aᵀ·b = [[1,3],[2,4]] · b = [[26,30],[38,44]].
    assert_eq!(
        reference(&a, &b, 1, (2, 2, 2), true, false, true),
        vec![26.0, 30.0, 38.0, 44.0]
    );
    let c = CpuBackend.matmul(
        &Tensor::from_vec(&[2, 2], a.to_vec()).unwrap(),
        &Tensor::from_vec(&[2, 2], b.to_vec()).unwrap(),
        false,
        false,
    );
    assert_eq!(c.to_vec(), vec![19.0, 22.0, 43.0, 50.0]);
}
