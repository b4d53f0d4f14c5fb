//! Gradient checks for the core ops: matmul (all transposes, batched, shared weights) and
//! broadcasting arithmetic.

mod common;

use common::*;
use seqrec::Tape;
use seqrec::rng::Rng;

fn input(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    (shape.to_vec(), random_values(shape.iter().product(), rng))
}

#[test]
fn matmul_all_transposes_batched_and_shared() {
    let mut rng = Rng::new(11);
    let (batch, m, k, n) = (3, 4, 5, 6);
    for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
        for &shared in &[false, true] {
            if ta && shared {
                continue; // rejected by design, tested below
            }
            let a_shape = if ta {
                vec![batch, k, m]
            } else {
                vec![batch, m, k]
            };
            let b_shape = match (shared, tb) {
                (true, false) => vec![k, n],
                (true, true) => vec![n, k],
                (false, false) => vec![batch, k, n],
                (false, true) => vec![batch, n, k],
            };
            let inputs = [input(&a_shape, &mut rng), input(&b_shape, &mut rng)];
            let reference = move |x: &[Vec<f64>]| {
                let a = if ta {
                    ref_transpose(&x[0], batch, k, m)
                } else {
                    x[0].clone()
                };
                let b_batch = if shared { 1 } else { batch };
                let b = if tb {
                    ref_transpose(&x[1], b_batch, n, k)
                } else {
                    x[1].clone()
                };
                ref_matmul(&a, &b, batch, m, k, n, shared)
            };
            check_op(
                &format!("matmul ta={ta} tb={tb} shared={shared}"),
                &inputs,
                &[true, true],
                |t, v| t.matmul_t(v[0], v[1], ta, tb),
                &reference,
                &Check::default(),
            );
        }
    }
}

#[test]
fn matmul_shape_errors_are_errors() {
    let mut tape = Tape::new();
    let a = tape.leaf(seqrec::Tensor::zeros(&[2, 3]));
    let b = tape.leaf(seqrec::Tensor::zeros(&[4, 5]));
    assert!(tape.matmul(a, b).is_err());
    let v = tape.leaf(seqrec::Tensor::zeros(&[3]));
    assert!(tape.matmul(a, v).is_err());
    let c = tape.leaf(seqrec::Tensor::zeros(&[2, 3, 4]));
    let d = tape.leaf(seqrec::Tensor::zeros(&[3, 4, 5]));
    assert!(tape.matmul(c, d).is_err());
    assert!(tape.matmul_t(c, b, true, false).is_err());
}

#[test]
fn large_matmul_matches_reference() {
    // Large enough to take the parallel row-block path.
    let mut rng = Rng::new(5);
    let (m, k, n) = (130, 70, 90);
    let a = random_values(m * k, &mut rng);
    let b = random_values(k * n, &mut rng);
    let mut tape = Tape::new();
    let va = tape.constant(
        seqrec::Tensor::from_vec(&[m, k], a.iter().map(|&x| x as f32).collect()).unwrap(),
    );
    let vb = tape.constant(
        seqrec::Tensor::from_vec(&[k, n], b.iter().map(|&x| x as f32).collect()).unwrap(),
    );
    let c = tape.matmul(va, vb).unwrap();
    let a32: Vec<f64> = a.iter().map(|&x| x as f32 as f64).collect();
    let b32: Vec<f64> = b.iter().map(|&x| x as f32 as f64).collect();
    let expected: Vec<f32> = ref_matmul(&a32, &b32, 1, m, k, n, true)
        .iter()
        .map(|&x| x as f32)
        .collect();
    assert_close("matmul 130x70x90", &tape.value(c).to_vec(), &expected, 1e-4);
}

#[test]
fn broadcasting_arithmetic() {
    let mut rng = Rng::new(3);
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[2, 3], &[2, 3]),
        (&[2, 3, 4], &[4]),
        (&[2, 1, 4], &[3, 1]),
        (&[4], &[2, 3, 4]),
        (&[2, 3], &[]),
    ];
    for (sa, sb) in shapes {
        let out = seqrec::ops::broadcast_shape("test", sa, sb).unwrap();
        for op in 0..4 {
            let mut a = input(sa, &mut rng);
            let mut b = input(sb, &mut rng);
            if op == 3 {
                // Keep divisors away from zero.
                b.1.iter_mut().for_each(|x| *x += 1.5);
                a.1.iter_mut().for_each(|x| *x *= 2.0);
            }
            let (sa2, sb2, out2) = (sa.to_vec(), sb.to_vec(), out.clone());
            let reference = move |x: &[Vec<f64>]| {
                let n: usize = out2.iter().product();
                (0..n)
                    .map(|i| {
                        let (p, q) = (bcast_index(i, &out2, &sa2), bcast_index(i, &out2, &sb2));
                        let (u, v) = (x[0][p], x[1][q]);
                        [u + v, u - v, u * v, u / v][op]
                    })
                    .collect()
            };
            check_op(
                &format!("binary op {op} {sa:?} {sb:?}"),
                &[a, b],
                &[true, true],
                |t, v| match op {
                    0 => t.add(v[0], v[1]),
                    1 => t.sub(v[0], v[1]),
                    2 => t.mul(v[0], v[1]),
                    _ => t.div(v[0], v[1]),
                },
                &reference,
                &Check::default(),
            );
        }
    }
    let mut tape = Tape::new();
    let a = tape.leaf(seqrec::Tensor::zeros(&[2, 3]));
    let b = tape.leaf(seqrec::Tensor::zeros(&[4]));
    assert!(tape.add(a, b).is_err());
}

/// The flat index into an operand of shape `shape` for output element `i` under broadcasting.
fn bcast_index(mut i: usize, out: &[usize], shape: &[usize]) -> usize {
    let offset = out.len() - shape.len();
    let mut index = 0;
    let mut stride = 1;
    for axis in (0..out.len()).rev() {
        let coord = i % out[axis];
        i /= out[axis];
        if axis >= offset {
            let dim = shape[axis - offset];
            if dim != 1 {
                index += coord * stride;
            }
            stride *= dim;
        }
    }
    index
}

#[test]
fn gradient_accumulates_over_reuse() {
    // y = x * x + x: dy/dx = 2x + 1, with x used three times.
    let mut tape = Tape::new();
    let x = tape.leaf(seqrec::Tensor::from_vec(&[3], vec![1.0, -2.0, 0.5]).unwrap());
    let xx = tape.mul(x, x).unwrap();
    let y = tape.add(xx, x).unwrap();
    let grads = tape
        .backward_with(y, seqrec::Tensor::full(&[3], 1.0))
        .unwrap();
    assert_eq!(grads.get(x).unwrap().to_vec(), vec![3.0, -3.0, 2.0]);
}

#[test]
fn no_grad_records_no_backward() {
    let mut tape = Tape::new();
    let x = tape.leaf(seqrec::Tensor::from_vec(&[2], vec![1.0, 2.0]).unwrap());
    let y = tape.no_grad(|t| t.mul(x, x).unwrap());
    assert!(!tape.requires_grad(y));
    let mut inference = Tape::inference();
    let z = inference.leaf(seqrec::Tensor::zeros(&[2]));
    assert!(!inference.requires_grad(z));
}
