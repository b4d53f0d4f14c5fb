//! The fused output layer + cross-entropy (`Tape::linear_cross_entropy`): its gradients
//! against f64 finite differences, its values and gradients against the composed
//! `matmul_t` + `cross_entropy` graph on sizes that cross its row parts (128-512 rows), the same
//! bits on 1 and 2 threads, shape errors, and the no-grad path.

mod common;

use common::{Check, assert_close, check_op, random_values};
use seqrec::rng::Rng;
use seqrec::{Ids, Tape, Tensor};

fn random_tensor(shape: &[usize], scale: f32, rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(
        shape,
        random_values(n, rng)
            .iter()
            .map(|&v| scale * v as f32)
            .collect(),
    )
    .unwrap()
}

/// Weights with zeros (padding) and uneven positive values.
fn weights(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|r| {
            if r % 5 == 3 {
                0.0
            } else {
                0.25 + 2.0 * rng.uniform()
            }
        })
        .collect()
}

/// Random rows `[n, d]`, items `[v, d]`, targets and weights (some zero).
fn problem(n: usize, v: usize, d: usize, seed: u64) -> (Tensor, Tensor, Ids, Tensor) {
    let mut rng = Rng::new(seed);
    let rows = random_tensor(&[n, d], 1.0, &mut rng);
    let items = random_tensor(&[v, d], 1.0, &mut rng);
    let targets =
        Ids::from_vec(&[n], (0..n).map(|_| rng.below(v as u64) as u32).collect()).unwrap();
    let w = Tensor::from_vec(&[n], weights(n, &mut rng)).unwrap();
    (rows, items, targets, w)
}

#[test]
fn gradients_match_finite_differences() {
    let (n, v, d) = (6, 9, 4);
    let mut rng = Rng::new(11);
    let rows = random_values(n * d, &mut rng);
    let items = random_values(v * d, &mut rng);
    let targets: Vec<u32> = vec![3, 0, 8, 5, 5, 1];
    let w = weights(n, &mut rng);
    let (t2, w2) = (
        Ids::from_vec(&[n], targets.clone()).unwrap(),
        Tensor::from_vec(&[n], w.clone()).unwrap(),
    );
    check_op(
        "linear_cross_entropy",
        &[(vec![n, d], rows), (vec![v, d], items)],
        &[true, true],
        move |tape, x| tape.linear_cross_entropy(x[0], x[1], &t2, Some(&w2)),
        &move |x: &[Vec<f64>]| {
            let (h, e) = (&x[0], &x[1]);
            let mut loss = 0.0;
            for r in 0..n {
                let z: Vec<f64> = (0..v)
                    .map(|i| (0..d).map(|k| h[r * d + k] * e[i * d + k]).sum())
                    .collect();
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + z.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
                loss += w[r] as f64 * (lse - z[targets[r] as usize]);
            }
            vec![loss / w.iter().map(|&x| x as f64).sum::<f64>()]
        },
        &Check::default(),
    );
}

/// (loss, ∂rows, ∂items) through the fused op or the composed graph.
fn run(
    rows: &Tensor,
    items: &Tensor,
    targets: &Ids,
    w: &Tensor,
    fused: bool,
) -> (f32, Vec<f32>, Vec<f32>) {
    let mut tape = Tape::new();
    let (h, e) = (tape.leaf(rows.clone()), tape.leaf(items.clone()));
    let loss = if fused {
        tape.linear_cross_entropy(h, e, targets, Some(w)).unwrap()
    } else {
        let logits = tape.matmul_t(h, e, false, true).unwrap();
        tape.cross_entropy(logits, targets, Some(w)).unwrap()
    };
    let value = tape.value(loss).item();
    let grads = tape.backward(loss).unwrap();
    (
        value,
        grads.get(h).unwrap().to_vec(),
        grads.get(e).unwrap().to_vec(),
    )
}

#[test]
fn fused_equals_composed_across_part_boundaries() {
    for (n, v, d) in [
        (1, 2, 1),
        (7, 33, 5),
        (511, 40, 8),
        (512, 41, 8),
        (513, 129, 16),
        (700, 1683, 64),
        (300, 12102, 4),
    ] {
        let (rows, items, targets, w) = problem(n, v, d, 12 + n as u64);
        let (loss_f, drows_f, ditems_f) = run(&rows, &items, &targets, &w, true);
        let (loss_c, drows_c, ditems_c) = run(&rows, &items, &targets, &w, false);
        let what = |part: &str| format!("{part} for [{n}, {d}] · [{v}, {d}]ᵀ");
        assert_close(&what("loss"), &[loss_f], &[loss_c], 1e-5);
        assert_close(&what("∂rows"), &drows_f, &drows_c, 1e-5);
        assert_close(&what("∂items"), &ditems_f, &ditems_c, 1e-5);
        assert!(loss_f > 0.0, "{}", what("a positive loss"));
    }
}

#[test]
fn same_bits_on_one_and_two_threads() {
    let (rows, items, targets, w) = problem(900, 300, 32, 13);
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&rows, &items, &targets, &w, true))
    };
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (one, two) = (on(1), on(2));
    assert_eq!(one.0.to_bits(), two.0.to_bits(), "loss");
    assert_eq!(bits(&one.1), bits(&two.1), "∂rows");
    assert_eq!(bits(&one.2), bits(&two.2), "∂items");
}

#[test]
fn scaled_upstream_gradient_and_no_grad() {
    let (rows, items, targets, _) = problem(10, 12, 3, 14);
    let w = Tensor::full(&[10], 1.0);
    let (_, drows, ditems) = run(&rows, &items, &targets, &w, true);

    // loss · 3: every gradient triples.
    let mut tape = Tape::new();
    let (h, e) = (tape.leaf(rows.clone()), tape.leaf(items.clone()));
    let loss = tape.linear_cross_entropy(h, e, &targets, Some(&w)).unwrap();
    let tripled = tape.scale(loss, 3.0).unwrap();
    let grads = tape.backward(tripled).unwrap();
    let times3 = |x: &[f32]| x.iter().map(|v| 3.0 * v).collect::<Vec<_>>();
    assert_close(
        "3·∂rows",
        &grads.get(h).unwrap().to_vec(),
        &times3(&drows),
        1e-6,
    );
    assert_close(
        "3·∂items",
        &grads.get(e).unwrap().to_vec(),
        &times3(&ditems),
        1e-6,
    );

    // An inference tape gives the same loss and records nothing to differentiate.
    let mut inference = Tape::inference();
    let (h2, e2) = (inference.leaf(rows.clone()), inference.leaf(items.clone()));
    let loss2 = inference
        .linear_cross_entropy(h2, e2, &targets, Some(&w))
        .unwrap();
    assert_eq!(inference.value(loss2).item(), tape.value(loss).item());
    assert!(!inference.requires_grad(loss2));
}

#[test]
fn bad_shapes_and_targets_are_errors() {
    let mut tape = Tape::new();
    let h = tape.leaf(Tensor::zeros(&[4, 3]));
    let e = tape.leaf(Tensor::zeros(&[5, 3]));
    let e_wide = tape.leaf(Tensor::zeros(&[5, 4]));
    let targets = Ids::from_vec(&[4], vec![0, 1, 2, 4]).unwrap();
    assert!(tape.linear_cross_entropy(h, e, &targets, None).is_ok());
    assert!(
        tape.linear_cross_entropy(h, e_wide, &targets, None)
            .is_err()
    );
    let out_of_range = Ids::from_vec(&[4], vec![0, 1, 2, 5]).unwrap();
    assert!(
        tape.linear_cross_entropy(h, e, &out_of_range, None)
            .is_err()
    );
    let too_few = Ids::from_vec(&[3], vec![0, 1, 2]).unwrap();
    assert!(tape.linear_cross_entropy(h, e, &too_few, None).is_err());
    let bad_weights = Tensor::zeros(&[3]);
    assert!(
        tape.linear_cross_entropy(h, e, &targets, Some(&bad_weights))
            .is_err()
    );
    // All-zero weights: loss 0 and zero gradients, no NaN.
    let zeros = Tensor::zeros(&[4]);
    let loss = tape
        .linear_cross_entropy(h, e, &targets, Some(&zeros))
        .unwrap();
    assert_eq!(tape.value(loss).item(), 0.0);
    let grads = tape.backward(loss).unwrap();
    assert!(grads.get(h).unwrap().to_vec().iter().all(|&g| g == 0.0));
    assert!(grads.get(e).unwrap().to_vec().iter().all(|&g| g == 0.0));
}
