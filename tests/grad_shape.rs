//! Gradient checks for the shape ops and the embedding.

mod common;

use common::*;
use seqrec::rng::Rng;
use seqrec::{Ids, Tape, Tensor};

fn input(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    (shape.to_vec(), random_values(shape.iter().product(), rng))
}

/// Element at `index` of a row-major array of `shape`.
fn at(x: &[f64], shape: &[usize], index: &[usize]) -> f64 {
    let mut flat = 0;
    for (i, &d) in shape.iter().enumerate() {
        flat = flat * d + index[i];
    }
    x[flat]
}

#[test]
fn reshape_permute_transpose() {
    let mut rng = Rng::new(1);
    let x = input(&[2, 3, 4], &mut rng);
    check_op(
        "reshape",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.reshape(v[0], &[4, 6]),
        &|x: &[Vec<f64>]| x[0].clone(),
        &Check::default(),
    );
    // permute [2,3,4] by (2,0,1) → [4,2,3].
    check_op(
        "permute",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.permute(v[0], &[2, 0, 1]),
        &|x: &[Vec<f64>]| {
            let mut out = Vec::new();
            for c in 0..4 {
                for a in 0..2 {
                    for b in 0..3 {
                        out.push(at(&x[0], &[2, 3, 4], &[a, b, c]));
                    }
                }
            }
            out
        },
        &Check::default(),
    );
    check_op(
        "transpose 1,2",
        &[x],
        &[true],
        |t, v| t.transpose(v[0], 1, 2),
        &|x: &[Vec<f64>]| {
            let mut out = Vec::new();
            for a in 0..2 {
                for c in 0..4 {
                    for b in 0..3 {
                        out.push(at(&x[0], &[2, 3, 4], &[a, b, c]));
                    }
                }
            }
            out
        },
        &Check::default(),
    );
    let mut tape = Tape::new();
    let v = tape.leaf(Tensor::zeros(&[2, 3]));
    assert!(tape.permute(v, &[0, 0]).is_err());
    assert!(tape.reshape(v, &[5]).is_err());
}

#[test]
fn slice_split_concat() {
    let mut rng = Rng::new(2);
    let x = input(&[2, 5, 3], &mut rng);
    check_op(
        "slice axis 1",
        std::slice::from_ref(&x),
        &[true],
        |t, v| t.slice(v[0], 1, 1, 3),
        &|x: &[Vec<f64>]| {
            let mut out = Vec::new();
            for a in 0..2 {
                for b in 1..4 {
                    for c in 0..3 {
                        out.push(at(&x[0], &[2, 5, 3], &[a, b, c]));
                    }
                }
            }
            out
        },
        &Check::default(),
    );
    // split into [2, 3] along axis 1 and concatenate back in reverse order.
    check_op(
        "split+concat",
        std::slice::from_ref(&x),
        &[true],
        |t, v| {
            let parts = t.split(v[0], 1, &[2, 3])?;
            t.concat(&[parts[1], parts[0]], 1)
        },
        &|x: &[Vec<f64>]| {
            let mut out = Vec::new();
            for a in 0..2 {
                for b in [2, 3, 4, 0, 1] {
                    for c in 0..3 {
                        out.push(at(&x[0], &[2, 5, 3], &[a, b, c]));
                    }
                }
            }
            out
        },
        &Check::default(),
    );
    let y = input(&[2, 5, 2], &mut rng);
    check_op(
        "concat last axis",
        &[x, y],
        &[true, true],
        |t, v| t.concat(&[v[0], v[1]], 2),
        &|x: &[Vec<f64>]| {
            let mut out = Vec::new();
            for r in 0..10 {
                out.extend_from_slice(&x[0][r * 3..r * 3 + 3]);
                out.extend_from_slice(&x[1][r * 2..r * 2 + 2]);
            }
            out
        },
        &Check::default(),
    );
    let mut tape = Tape::new();
    let a = tape.leaf(Tensor::zeros(&[2, 3]));
    let b = tape.leaf(Tensor::zeros(&[3, 3]));
    assert!(tape.concat(&[a, b], 1).is_err());
    assert!(tape.slice(a, 1, 2, 2).is_err());
    assert!(tape.split(a, 1, &[1, 1]).is_err());
}

#[test]
fn index_select_accumulates_repeats() {
    let mut rng = Rng::new(3);
    let x = input(&[3, 4], &mut rng);
    let index = Ids::from_vec(&[5], vec![2, 0, 2, 3, 2]).unwrap();
    let idx = index.clone();
    check_op(
        "index_select axis 1",
        &[x],
        &[true],
        move |t, v| t.index_select(v[0], 1, &idx),
        &|x: &[Vec<f64>]| {
            (0..3)
                .flat_map(|r| [2, 0, 2, 3, 2].map(|c| x[0][r * 4 + c]))
                .collect()
        },
        &Check::default(),
    );
    let mut tape = Tape::new();
    let v = tape.leaf(Tensor::zeros(&[3, 4]));
    assert!(
        tape.index_select(v, 1, &Ids::from_vec(&[1], vec![4]).unwrap())
            .is_err()
    );
}

#[test]
fn embedding_scatters_and_skips_padding() {
    let mut rng = Rng::new(4);
    let table = input(&[6, 3], &mut rng);
    let ids = Ids::from_vec(&[2, 4], vec![0, 1, 5, 1, 0, 0, 3, 1]).unwrap();
    let values = ids.values().to_vec();
    // Reference: rows of the table; row 0 gets no gradient, so the reference treats row 0
    // as a constant (a copy that the finite difference cannot move).
    let frozen_row0: Vec<f64> = table.1[..3].iter().map(|&v| v as f32 as f64).collect();
    let ids2 = ids.clone();
    check_op(
        "embedding",
        &[table],
        &[true],
        move |t, v| t.embedding(v[0], &ids2),
        &move |x: &[Vec<f64>]| {
            values
                .iter()
                .flat_map(|&i| {
                    if i == 0 {
                        frozen_row0.clone()
                    } else {
                        x[0][i as usize * 3..i as usize * 3 + 3].to_vec()
                    }
                })
                .collect()
        },
        &Check::default(),
    );
    let mut tape = Tape::new();
    let t = tape.leaf(Tensor::from_vec(&[6, 3], vec![1.0; 18]).unwrap());
    let e = tape.embedding(t, &ids).unwrap();
    assert_eq!(tape.shape(e), &[2, 4, 3]);
    let grads = tape
        .backward_with(e, Tensor::full(&[2, 4, 3], 1.0))
        .unwrap();
    let g = grads.get(t).unwrap().to_vec();
    assert_eq!(
        &g[0..3],
        &[0.0, 0.0, 0.0],
        "padding row must get no gradient"
    );
    assert_eq!(&g[3..6], &[3.0, 3.0, 3.0], "id 1 appears three times");
    assert!(
        tape.embedding(t, &Ids::from_vec(&[1], vec![6]).unwrap())
            .is_err()
    );
}

#[test]
fn large_embedding_backward_is_parallel_and_exact() {
    // 40,000 ids × 8 columns takes the parallel path; every row's gradient is its count.
    let (n, d) = (50, 8);
    let ids: Vec<u32> = (0..40_000u32).map(|i| (i * 7919) % n as u32).collect();
    let mut counts = vec![0f32; n];
    ids.iter().for_each(|&i| counts[i as usize] += 1.0);
    let ids = Ids::from_vec(&[200, 200], ids).unwrap();
    let mut tape = Tape::new();
    let t = tape.leaf(Tensor::zeros(&[n, d]));
    let e = tape.embedding(t, &ids).unwrap();
    let grads = tape
        .backward_with(e, Tensor::full(&[200, 200, d], 1.0))
        .unwrap();
    let g = grads.get(t).unwrap().to_vec();
    for row in 1..n {
        assert!(
            g[row * d..(row + 1) * d].iter().all(|&v| v == counts[row]),
            "row {row}"
        );
    }
    assert!(g[..d].iter().all(|&v| v == 0.0));
}

#[test]
fn masked_fill_blocks_the_gradient() {
    let mut rng = Rng::new(5);
    let x = input(&[2, 3, 4], &mut rng);
    let mask = Tensor::from_vec(&[3, 1], vec![1.0, 0.0, 1.0]).unwrap();
    let m = mask.clone();
    check_op(
        "masked_fill",
        &[x],
        &[true],
        move |t, v| t.masked_fill(v[0], &m, -7.0),
        &|x: &[Vec<f64>]| {
            x[0].iter()
                .enumerate()
                .map(|(i, &v)| if (i / 4) % 3 != 1 { -7.0 } else { v })
                .collect()
        },
        &Check::default(),
    );
    let mut tape = Tape::new();
    let v = tape.leaf(Tensor::zeros(&[2, 3]));
    assert!(tape.masked_fill(v, &Tensor::zeros(&[4]), 0.0).is_err());
}
