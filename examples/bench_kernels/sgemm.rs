//! sgemm cases: the matrix products the models run, at the sizes they run them.
//!
//! Shapes are `m×k×n` of `op(A)·op(B)`; `nt` means B is transposed (`A·Bᵀ`), `tn` that A is.
//! SASRec on MovieLens-1M-sized batches: 128 sequences × 50 positions = 6400 rows, width 64,
//! 1683 item rows (1682 items + padding) in the tied output layer.

use seqrec::Tensor;
use seqrec::backend;
use seqrec::rng::Rng;

use crate::Case;

/// One product case: `a_shape` and `b_shape` as stored, with the transposes applied by the
/// kernel. `m`, `k`, `n` (and `batch`) give the flop count.
struct Product {
    name: &'static str,
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
    transpose_a: bool,
    transpose_b: bool,
}

fn random_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    let values = (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    Tensor::from_vec(shape, values)
        .expect("benchmark shapes are valid")
        .to_device(crate::device())
}

/// The flop count `2·batch·m·k·n` of `op(a)·op(b)`.
fn flops(product: &Product) -> f64 {
    let (a, b) = (&product.a_shape, &product.b_shape);
    let (ra, rb) = (a.len(), b.len());
    let (m, k) = if product.transpose_a {
        (a[ra - 1], a[ra - 2])
    } else {
        (a[ra - 2], a[ra - 1])
    };
    let n = if product.transpose_b {
        b[rb - 2]
    } else {
        b[rb - 1]
    };
    let batch: usize = a[..ra - 2].iter().product();
    2.0 * (batch * m * k * n) as f64
}

pub fn cases() -> Vec<Case> {
    let products = [
        Product {
            name: "sgemm 1024x1024x1024 nn",
            a_shape: vec![1024, 1024],
            b_shape: vec![1024, 1024],
            transpose_a: false,
            transpose_b: false,
        },
        // Position-wise FFN / projections: [6400,64]·[64,64] and its two gradients.
        Product {
            name: "sgemm 6400x64x64 nn (linear)",
            a_shape: vec![6400, 64],
            b_shape: vec![64, 64],
            transpose_a: false,
            transpose_b: false,
        },
        Product {
            name: "sgemm 6400x64x64 nt (linear dX)",
            a_shape: vec![6400, 64],
            b_shape: vec![64, 64],
            transpose_a: false,
            transpose_b: true,
        },
        Product {
            name: "sgemm 64x6400x64 tn (linear dW)",
            a_shape: vec![6400, 64],
            b_shape: vec![6400, 64],
            transpose_a: true,
            transpose_b: false,
        },
        // The same linear layer on a [128,50,64] batch with a shared weight.
        Product {
            name: "sgemm batched 128x[50x64x64] shared B",
            a_shape: vec![128, 50, 64],
            b_shape: vec![64, 64],
            transpose_a: false,
            transpose_b: false,
        },
        // Tied output layer: logits = H·Eᵀ, dH = dLogits·E, dE = dLogitsᵀ·H.
        Product {
            name: "sgemm 6400x64x1683 nt (logits)",
            a_shape: vec![6400, 64],
            b_shape: vec![1683, 64],
            transpose_a: false,
            transpose_b: true,
        },
        Product {
            name: "sgemm 6400x64x1683 nn",
            a_shape: vec![6400, 64],
            b_shape: vec![64, 1683],
            transpose_a: false,
            transpose_b: false,
        },
        Product {
            name: "sgemm 6400x1683x64 nn (logits dH)",
            a_shape: vec![6400, 1683],
            b_shape: vec![1683, 64],
            transpose_a: false,
            transpose_b: false,
        },
        Product {
            name: "sgemm 1683x6400x64 tn (logits dE)",
            a_shape: vec![6400, 1683],
            b_shape: vec![6400, 64],
            transpose_a: true,
            transpose_b: false,
        },
        // Attention, one head: scores = Q·Kᵀ and output = P·V, per sequence.
        Product {
            name: "sgemm batched 128x[50x64x50] nt (QK^T)",
            a_shape: vec![128, 50, 64],
            b_shape: vec![128, 50, 64],
            transpose_a: false,
            transpose_b: true,
        },
        Product {
            name: "sgemm batched 128x[50x50x64] nn (PV)",
            a_shape: vec![128, 50, 50],
            b_shape: vec![128, 50, 64],
            transpose_a: false,
            transpose_b: false,
        },
    ];
    let mut rng = Rng::new(7);
    products
        .into_iter()
        .map(|product| {
            let a = random_tensor(&product.a_shape, &mut rng);
            let b = random_tensor(&product.b_shape, &mut rng);
            let (ta, tb) = (product.transpose_a, product.transpose_b);
            Case {
                name: product.name.to_string(),
                flops: Some(flops(&product)),
                run: Box::new(move || {
                    let be = backend::for_device(crate::device());
                    std::hint::black_box(be.matmul(&a, &b, ta, tb));
                }),
            }
        })
        .collect()
}
