//! One SASRec training step (forward, backward, Adam) at the shapes of
//! `torch_micro.py` case d): batch 128, L = 50, d = 64, 2 blocks, 1 head, every position a
//! real target, 1,682 items; full-softmax CE with dropout 0.2 and 0.0, and BCE with one
//! negative and dropout 0.2.

use seqrec::config::ModelConfig;
use seqrec::models::sasrec::SasRec;
use seqrec::models::{LossKind, Model, SequenceInput, TrainingBatch};
use seqrec::optim::Adam;
use seqrec::rng::Rng;
use seqrec::{Ids, Tape, Tensor};

use crate::Case;

const ITEMS: usize = 1682;

fn batch(len: usize, seed: u64) -> TrainingBatch {
    let (b, n) = (128, len);
    let mut rng = Rng::new(seed);
    let mut draw = |count: usize| {
        (0..count)
            .map(|_| 1 + rng.below(ITEMS as u64) as u32)
            .collect::<Vec<_>>()
    };
    let items = draw(b * n);
    let positives = draw(b * n);
    let negatives = draw(b * n);
    TrainingBatch {
        input: SequenceInput {
            users: Ids::from_vec(&[b], vec![1; b]).unwrap(),
            items: Ids::from_vec(&[b, n], items).unwrap(),
            behaviours: Ids::from_vec(&[b, n], vec![0; b * n]).unwrap(),
        },
        positives: Ids::from_vec(&[b, n], positives).unwrap(),
        negatives: Ids::from_vec(&[b, n, 1], negatives).unwrap(),
        weights: Tensor::full(&[b, n], 1.0),
    }
}

fn step_case(name: &str, len: usize, loss: LossKind, dropout: f32) -> Case {
    let config = ModelConfig {
        dropout,
        ..ModelConfig::default()
    };
    let mut model = SasRec::new(ITEMS, len, &config, 1).unwrap();
    model.params_mut().to_device(crate::device());
    let mut adam = Adam::new(1e-3);
    let data = batch(len, 7);
    let mut step = 0u32;
    Case {
        name: name.to_string(),
        flops: None,
        run: Box::new(move || {
            step += 1;
            let mut tape = Tape::new().on(crate::device());
            tape.set_seed(step);
            let l = model.loss(&mut tape, &data, loss).unwrap();
            let loss_value = tape.value(l).clone();
            let grads = tape.backward(l).unwrap();
            drop(tape);
            let store = model.params_mut();
            store.zero_grad();
            grads.accumulate_into(store);
            adam.step(store);
            // The loss readback that ends a real training step.
            std::hint::black_box(loss_value.item());
        }),
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        step_case(
            "sasrec_train_step_ce_L50_dropout0.2",
            50,
            LossKind::FullSoftmax,
            0.2,
        ),
        step_case(
            "sasrec_train_step_ce_L50_dropout0.0",
            50,
            LossKind::FullSoftmax,
            0.0,
        ),
        step_case(
            "sasrec_train_step_bce_L50_dropout0.2",
            50,
            LossKind::SampledBce,
            0.2,
        ),
        step_case(
            "sasrec_train_step_ce_L200_dropout0.2",
            200,
            LossKind::FullSoftmax,
            0.2,
        ),
    ]
}

/// The output layer with its loss, fwd+bwd, fused (`linear_cross_entropy`) or composed
/// (`matmul_t` then `cross_entropy`): rows `[n, 64]` against `v` items. Shapes: a SASRec
/// step on ml-100k (6400 rows, 1,683 items) and on Amazon Beauty (880 real positions of a
/// batch, 12,102 items).
fn output_layer_case(rows: usize, items: usize, fused: bool) -> Case {
    let d = 64;
    let mut rng = Rng::new(5);
    let mut values = |count: usize| {
        (0..count)
            .map(|_| rng.uniform() * 0.2 - 0.1)
            .collect::<Vec<f32>>()
    };
    let hidden = Tensor::from_vec(&[rows, d], values(rows * d))
        .unwrap()
        .to_device(crate::device());
    let table = Tensor::from_vec(&[items, d], values(items * d))
        .unwrap()
        .to_device(crate::device());
    let targets = Ids::from_vec(
        &[rows],
        (0..rows)
            .map(|r| 1 + (r * 7919 % (items - 1)) as u32)
            .collect(),
    )
    .unwrap();
    let kind = if fused { "fused" } else { "composed" };
    Case {
        name: format!("output_layer_ce_fwdbwd_{rows}x{d}x{items}_{kind}"),
        flops: Some(3.0 * 2.0 * (rows * d * items) as f64),
        run: Box::new(move || {
            let mut tape = Tape::new().on(crate::device());
            let h = tape.leaf(hidden.clone());
            let e = tape.leaf(table.clone());
            let loss = if fused {
                tape.linear_cross_entropy(h, e, &targets, None).unwrap()
            } else {
                let logits = tape.matmul_t(h, e, false, true).unwrap();
                tape.cross_entropy(logits, &targets, None).unwrap()
            };
            std::hint::black_box(tape.backward(loss).unwrap());
        }),
    }
}

/// The full-softmax cross-entropy of a SASRec step alone: logits `[6400, 1683]`; and the
/// output layer with it, fused and composed.
pub fn loss_cases() -> Vec<Case> {
    let (rows, classes) = (6400, ITEMS + 1);
    let mut rng = Rng::new(3);
    let logits = Tensor::from_vec(
        &[rows, classes],
        (0..rows * classes)
            .map(|_| rng.uniform() * 4.0 - 2.0)
            .collect(),
    )
    .unwrap()
    .to_device(crate::device());
    let targets =
        Ids::from_vec(&[rows], (0..rows).map(|r| 1 + (r % ITEMS) as u32).collect()).unwrap();
    let mut cases = Vec::new();
    for (rows, items) in [(6400, ITEMS + 1), (880, 12102)] {
        cases.push(output_layer_case(rows, items, false));
        cases.push(output_layer_case(rows, items, true));
    }
    cases.push(Case {
        name: "cross_entropy_fwdbwd_6400x1683".into(),
        flops: None,
        run: Box::new(move || {
            let mut tape = Tape::new().on(crate::device());
            let x = tape.leaf(logits.clone());
            let loss = tape.cross_entropy(x, &targets, None).unwrap();
            std::hint::black_box(tape.backward(loss).unwrap());
        }),
    });
    cases
}
