//! The GPU shape kernels (permute, slice/unslice, concat, index_select/index_add,
//! masked_fill) against the CPU backend. They only move values (index_add sums in the CPU's
//! order), so the results must be bit-equal; and none may fall back to the host.

mod common;

use common::gpu_or_skip;
use seqrec::backend::{self, ShapeKernels};
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

fn gpu(t: &Tensor) -> Tensor {
    t.to_device(Device::Gpu)
}

/// GPU result `g` equals CPU result `c`: same shape, same device kind, same bits.
fn assert_same(what: &str, g: &Tensor, c: &Tensor) {
    assert_eq!(g.device(), Device::Gpu, "{what}: result left the GPU");
    assert_eq!(g.shape(), c.shape(), "{what}: shapes differ");
    let (gv, cv) = (g.to_vec(), c.to_vec());
    for (i, (a, b)) in gv.iter().zip(&cv).enumerate() {
        assert!(
            a.to_bits() == b.to_bits(),
            "{what}[{i}]: gpu {a} vs cpu {b}"
        );
    }
}

fn no_fallbacks(test: &str) {
    assert_eq!(
        backend::gpu::fallback_count(),
        0,
        "{test}: a shape kernel fell back to the host"
    );
}

/// Every permutation of 0..n.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn permute_matches_the_cpu() {
    let Some(g) = gpu_or_skip("permute_matches_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(11);
    // Small axes (gather), transposed planes ≥ 16 (tiled, with partial tiles), size-1 axes.
    let shapes: [&[usize]; 11] = [
        &[7],
        &[1],
        &[7, 3],
        &[37, 45],
        &[3, 33, 17],
        &[2, 40, 50],
        &[2, 3, 4, 5],
        &[1, 19, 1, 23],
        &[4, 17, 33, 2],
        &[2, 3, 20, 18],
        &[3, 1, 33, 16],
    ];
    for shape in shapes {
        let x = random(shape, &mut rng);
        let xg = gpu(&x);
        for axes in permutations(shape.len()) {
            let c = cpu.permute(&x, &axes);
            assert_same(
                &format!("permute {shape:?} {axes:?}"),
                &g.permute(&xg, &axes),
                &c,
            );
        }
    }
    // A host tensor handed to the GPU backend is uploaded first.
    let x = random(&[5, 20, 24], &mut rng);
    assert_same(
        "permute of a host tensor",
        &g.permute(&x, &[0, 2, 1]),
        &cpu.permute(&x, &[0, 2, 1]),
    );
    no_fallbacks("permute_matches_the_cpu");
}

#[test]
fn slice_and_unslice_match_the_cpu() {
    let Some(g) = gpu_or_skip("slice_and_unslice_match_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(12);
    let shapes: [&[usize]; 4] = [&[13], &[5, 9], &[3, 7, 11], &[2, 3, 17, 5]];
    for shape in shapes {
        let x = random(shape, &mut rng);
        let xg = gpu(&x);
        for axis in 0..shape.len() {
            let size = shape[axis];
            for (start, len) in [
                (0, size),
                (0, 1),
                (size - 1, 1),
                (1, size / 2),
                (size / 3, 0),
            ] {
                let what = format!("slice {shape:?} axis {axis} {start}+{len}");
                let c = cpu.slice(&x, axis, start, len);
                assert_same(&what, &g.slice(&xg, axis, start, len), &c);
                let full = size + 3;
                let back = cpu.unslice(&c, axis, start + 2, full);
                let what = format!(
                    "unslice {shape:?} axis {axis} {}+{len} of {full}",
                    start + 2
                );
                assert_same(&what, &g.unslice(&gpu(&c), axis, start + 2, full), &back);
            }
        }
    }
    no_fallbacks("slice_and_unslice_match_the_cpu");
}

#[test]
fn concat_matches_the_cpu() {
    let Some(g) = gpu_or_skip("concat_matches_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(13);
    let shapes: [&[usize]; 4] = [&[4], &[3, 5], &[2, 3, 7], &[2, 3, 5, 3]];
    for shape in shapes {
        for axis in 0..shape.len() {
            for lens in [&[3usize][..], &[1, 4], &[2, 1, 5], &[3, 0, 2, 1]] {
                let xs: Vec<Tensor> = lens
                    .iter()
                    .map(|&l| {
                        let mut s = shape.to_vec();
                        s[axis] = l;
                        random(&s, &mut rng)
                    })
                    .collect();
                let gs: Vec<Tensor> = xs.iter().map(gpu).collect();
                let c = cpu.concat(&xs.iter().collect::<Vec<_>>(), axis);
                let r = g.concat(&gs.iter().collect::<Vec<_>>(), axis);
                assert_same(&format!("concat {shape:?} axis {axis} {lens:?}"), &r, &c);
            }
        }
    }
    no_fallbacks("concat_matches_the_cpu");
}

/// `n` ids below `size`, with repeats and some padding zeros.
fn ids(n: usize, size: usize, rng: &mut Rng) -> Vec<u32> {
    (0..n)
        .map(|j| {
            if j % 7 == 3 {
                0
            } else {
                rng.below(size as u64) as u32
            }
        })
        .collect()
}

#[test]
fn index_select_matches_the_cpu() {
    let Some(g) = gpu_or_skip("index_select_matches_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(14);
    // (shape, axis, index length): an embedding table, middle and last axes.
    let cases: [(&[usize], usize, usize); 5] = [
        (&[50, 33], 0, 77),
        (&[9, 64], 0, 3),
        (&[3, 10, 5], 1, 13),
        (&[4, 6, 11], 2, 9),
        (&[2, 3, 7, 5], 2, 0),
    ];
    for (shape, axis, n) in cases {
        let x = random(shape, &mut rng);
        let index = ids(n, shape[axis], &mut rng);
        let c = cpu.index_select(&x, axis, &index);
        let r = g.index_select(&gpu(&x), axis, &index);
        assert_same(&format!("index_select {shape:?} axis {axis} n {n}"), &r, &c);
    }
    no_fallbacks("index_select_matches_the_cpu");
}

#[test]
fn index_add_matches_the_cpu() {
    let Some(g) = gpu_or_skip("index_add_matches_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(15);
    // (dy shape, axis, output size): sizes above the largest id leave empty segments.
    let cases: [(&[usize], usize, usize); 6] = [
        (&[77, 33], 0, 50),
        (&[200, 8], 0, 5),
        (&[3, 13, 5], 1, 40),
        (&[4, 6, 9], 2, 11),
        (&[2, 9, 1, 3], 1, 9),
        (&[0, 7], 0, 6),
    ];
    for (shape, axis, size) in cases {
        let dy = random(shape, &mut rng);
        // Random ids, then a hot id repeated everywhere: one long segment.
        for index in [
            ids(shape[axis], size / 2 + 1, &mut rng),
            vec![1; shape[axis]],
        ] {
            for skip_zero in [false, true] {
                let c = cpu.index_add(&dy, axis, &index, size, skip_zero);
                let r = g.index_add(&gpu(&dy), axis, &index, size, skip_zero);
                let what = format!("index_add {shape:?} axis {axis} size {size} skip {skip_zero}");
                assert_same(&what, &r, &c);
            }
        }
    }
    no_fallbacks("index_add_matches_the_cpu");
}

#[test]
fn index_add_is_the_backward_of_index_select() {
    let Some(g) = gpu_or_skip("index_add_is_the_backward_of_index_select") else {
        return;
    };
    // Σ y·w for y = x[index] equals Σ x·index_add(w): checked exactly on small integers.
    let index = [2u32, 0, 2, 4, 2, 0];
    let w = Tensor::from_vec(&[6, 2], (0..12).map(|v| v as f32).collect()).unwrap();
    let dx = g.index_add(&gpu(&w), 0, &index, 6, true).to_vec();
    let expected = [0.0, 0.0, 0.0, 0.0, 12.0, 15.0, 0.0, 0.0, 6.0, 7.0, 0.0, 0.0];
    assert_eq!(dx, expected);
    let dx = g.index_add(&gpu(&w), 0, &index, 6, false).to_vec();
    assert_eq!(&dx[..2], &[12.0, 14.0]);
    no_fallbacks("index_add_is_the_backward_of_index_select");
}

#[test]
fn masked_fill_matches_the_cpu() {
    let Some(g) = gpu_or_skip("masked_fill_matches_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(16);
    let cases: [(&[usize], &[usize]); 9] = [
        (&[2, 3, 4, 5], &[5]),
        (&[2, 3, 4, 5], &[4, 1]),
        (&[2, 3, 4, 5], &[2, 1, 4, 5]),
        (&[2, 3, 4, 5], &[1, 3, 1, 5]),
        (&[2, 3, 4, 5], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[1]),
        (&[7, 9], &[7, 1]),
        (&[3, 5, 17, 17], &[3, 1, 1, 17]),
        (&[13], &[13]),
    ];
    for (shape, mask_shape) in cases {
        let x = random(shape, &mut rng);
        let m: usize = mask_shape.iter().product();
        let mask = Tensor::from_vec(
            mask_shape,
            (0..m).map(|_| (rng.uniform() < 0.4) as u8 as f32).collect(),
        )
        .unwrap();
        for value in [-1e9, 0.0] {
            let c = cpu.masked_fill(&x, &mask, value);
            let what = format!("masked_fill {shape:?} mask {mask_shape:?} value {value}");
            // The mask may live on either device.
            assert_same(&what, &g.masked_fill(&gpu(&x), &mask, value), &c);
            assert_same(&what, &g.masked_fill(&gpu(&x), &gpu(&mask), value), &c);
        }
    }
    no_fallbacks("masked_fill_matches_the_cpu");
}
