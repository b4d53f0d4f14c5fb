//! BPR-MF's full-softmax loss takes the softmax once per user (every position of a user has
//! the same query w_u): it must equal the per-position cross-entropy, value and gradients.

mod common;

use common::synthetic::synthetic;
use common::{first_batch, small_config};
use seqrec::models::{LossKind, Model, TrainingBatch};
use seqrec::train::Experiment;
use seqrec::{Ids, Tape, Tensor};

/// Loss and the gradients of the user and item tables, from `loss`.
fn loss_and_grads(
    model: &mut dyn Model,
    loss: impl Fn(&mut Tape, &dyn Model) -> seqrec::Var,
) -> (f32, Vec<f32>, Vec<f32>) {
    let mut tape = Tape::new();
    let value = loss(&mut tape, &*model);
    let grads = tape.backward(value).unwrap();
    let store = model.params_mut();
    store.zero_grad();
    grads.accumulate_into(store);
    let grad = |name: &str| store.grad(store.find(name).unwrap()).unwrap().to_vec();
    (
        tape.value(value).to_vec()[0],
        grad("user_embedding"),
        grad("item_embedding"),
    )
}

/// The per-position definition: one row w_u per position, each scored against every item.
fn per_position_loss(tape: &mut Tape, model: &dyn Model, batch: &TrainingBatch) -> seqrec::Var {
    let (b, n) = (batch.positives.shape()[0], batch.positives.shape()[1]);
    let store = model.params();
    let users = tape.param(store, store.find("user_embedding").unwrap());
    let items = tape.param(store, store.find("item_embedding").unwrap());
    let rows: Vec<u32> = batch
        .input
        .users
        .values()
        .iter()
        .flat_map(|&u| std::iter::repeat_n(u, n))
        .collect();
    let w_u = tape
        .embedding(users, &Ids::from_vec(&[b * n], rows).unwrap())
        .unwrap();
    let logits = tape.matmul_t(w_u, items, false, true).unwrap();
    let targets = Ids::from_vec(&[b * n], batch.positives.values().to_vec()).unwrap();
    let weights = Tensor::from_vec(&[b * n], batch.weights.to_vec()).unwrap();
    tape.cross_entropy(logits, &targets, Some(&weights))
        .unwrap()
}

#[test]
fn the_per_user_softmax_equals_the_per_position_cross_entropy() {
    let exp = Experiment::prepare(&synthetic(40, 11), &small_config("bprmf", &[])).unwrap();
    let batch = first_batch(&exp, 16, 1, 2);
    assert!(
        batch.weights.to_vec().contains(&0.0),
        "the batch has padding positions, which must not count"
    );
    let mut model = exp.build_model().unwrap();
    let fast = loss_and_grads(model.as_mut(), |tape, m| {
        m.loss(tape, &batch, LossKind::FullSoftmax).unwrap()
    });
    let reference = loss_and_grads(model.as_mut(), |tape, m| per_position_loss(tape, m, &batch));
    assert!(
        (fast.0 - reference.0).abs() <= 1e-5 * reference.0.abs(),
        "loss {} vs {}",
        fast.0,
        reference.0
    );
    for (name, got, want) in [
        ("user", &fast.1, &reference.1),
        ("item", &fast.2, &reference.2),
    ] {
        let scale = want.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        assert!(scale > 0.0, "{name} table gets a gradient");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{name} gradient {i}: {g} vs {w}"
            );
        }
    }
}
