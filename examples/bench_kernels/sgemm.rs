//! sgemm through the CPU backend's matmul: the square 1024³ product, and the shapes of a
//! SASRec step on ml-100k (6400 positions × d = 64; the output layer against 1,683 items, and
//! its item-embedding gradient, a transposed product).

use seqrec::Tensor;
use seqrec::backend::{CpuBackend, LinalgKernels};
use seqrec::rng::Rng;

use crate::Case;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.normal()).collect()).expect("shape matches")
}

pub fn cases() -> Vec<Case> {
    // (name, a shape, b shape, transpose a, transpose b, m, k, n)
    let shapes: [(&str, [usize; 2], [usize; 2], bool, bool); 5] = [
        (
            "sgemm_1024x1024x1024",
            [1024, 1024],
            [1024, 1024],
            false,
            false,
        ),
        ("sgemm_6400x64x64", [6400, 64], [64, 64], false, false),
        ("sgemm_6400x64x1683", [6400, 64], [1683, 64], false, true),
        (
            "sgemm_6400x1683x64_grad_input",
            [6400, 1683],
            [1683, 64],
            false,
            false,
        ),
        (
            "sgemm_1683x6400x64_grad_items",
            [6400, 1683],
            [6400, 64],
            true,
            false,
        ),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, sa, sb, ta, tb))| {
            let (a, b) = (random(&sa, i as u64), random(&sb, 100 + i as u64));
            let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
            let n = if tb { sb[0] } else { sb[1] };
            Case {
                name: name.to_string(),
                flops: Some(2.0 * (m * k * n) as f64),
                run: Box::new(move || {
                    std::hint::black_box(CpuBackend.matmul(&a, &b, ta, tb));
                }),
            }
        })
        .collect()
}
