//! Sliding windows for the models whose short-term part looks at the latest L items only
//! (Caser, AttRec): at every position t of a `[B, n]` sequence, the window of items
//! t−L+1..=t (0 where it reaches before the sequence). Training on every window of a sequence
//! at once is the papers' sliding-window training, computed in one batch.

use crate::error::Result;
use crate::tensor::Ids;

/// `[B, n]` → `[B·n, L]`: row b·n + t holds the L items ending at position t.
pub fn all_windows(items: &Ids, window: usize) -> Result<Ids> {
    let (b, n) = (items.shape()[0], items.shape()[1]);
    let values = items.values();
    let mut out = vec![0u32; b * n * window];
    for row in 0..b {
        for t in 0..n {
            let dst = &mut out[(row * n + t) * window..(row * n + t + 1) * window];
            for (j, slot) in dst.iter_mut().enumerate() {
                // slot j holds position t − (L − 1) + j.
                if let Some(p) = (t + j + 1).checked_sub(window) {
                    *slot = values[row * n + p];
                }
            }
        }
    }
    Ids::from_vec(&[b * n, window], out)
}

/// `[B, n]` → `[B, L]`: the window ending at the last position.
pub fn last_windows(items: &Ids, window: usize) -> Result<Ids> {
    let (b, n) = (items.shape()[0], items.shape()[1]);
    let values = items.values();
    let mut out = vec![0u32; b * window];
    for row in 0..b {
        for j in 0..window {
            if let Some(p) = (n + j).checked_sub(window) {
                out[row * window + j] = values[row * n + p];
            }
        }
    }
    Ids::from_vec(&[b, window], out)
}

/// Each user id repeated n times: `[B]` → `[B·n]`.
pub fn repeat_users(users: &Ids, n: usize) -> Result<Ids> {
    let values: Vec<u32> = users
        .values()
        .iter()
        .flat_map(|&u| std::iter::repeat_n(u, n))
        .collect();
    Ids::from_vec(&[values.len()], values)
}

/// Rows `rows` of ids `[R, ...]` (rank 1 or 2), in that order: the windows (and their users)
/// that have something to predict, so that padding windows cost no logits.
pub fn select_rows(ids: &Ids, rows: &[u32]) -> Result<Ids> {
    let width: usize = ids.shape()[1..].iter().product();
    let values = ids.values();
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        let r = r as usize;
        out.extend_from_slice(&values[r * width..(r + 1) * width]);
    }
    let mut shape = ids.shape().to_vec();
    shape[0] = rows.len();
    Ids::from_vec(&shape, out)
}

/// For the models' tests: a left-padded batch and the gradients of a loss.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::autograd::{Tape, Var};
    use crate::models::{LossKind, Model, SequenceInput, TrainingBatch};
    use crate::optim::ParamStore;
    use crate::tensor::{Ids, Tensor};

    /// Three sequences of lengths 8, 3 and 1 over items 1..=9, left-padded to n = 8, one
    /// negative per position; users 1, 2, 3.
    pub fn padded_batch() -> TrainingBatch {
        let n = 8;
        let lengths = [8usize, 3, 1];
        let (mut items, mut positives, mut weights) = (vec![], vec![], vec![]);
        for (row, &len) in lengths.iter().enumerate() {
            for t in 0..n {
                let real = t >= n - len;
                let item = 1 + ((row * 5 + t * 3) % 9) as u32;
                items.push(if real { item } else { 0 });
                positives.push(if real { 1 + (item % 9) } else { 0 });
                weights.push(if real { 1.0 } else { 0.0 });
            }
        }
        let b = lengths.len();
        let negatives = positives
            .iter()
            .map(|&p| if p == 0 { 0 } else { 1 + p % 9 })
            .collect();
        TrainingBatch {
            input: SequenceInput {
                users: Ids::from_vec(&[b], vec![1, 2, 3]).unwrap(),
                items: Ids::from_vec(&[b, n], items.clone()).unwrap(),
                behaviours: Ids::from_vec(
                    &[b, n],
                    items.iter().map(|&i| u32::from(i != 0)).collect(),
                )
                .unwrap(),
            },
            positives: Ids::from_vec(&[b, n], positives).unwrap(),
            negatives: Ids::from_vec(&[b, n, 1], negatives).unwrap(),
            weights: Tensor::from_vec(&[b, n], weights).unwrap(),
        }
    }

    /// The loss value and every parameter's gradient, in store order.
    fn value_and_gradients(tape: &Tape, loss: Var, store: &mut ParamStore) -> (f32, Vec<Vec<f32>>) {
        let grads = tape.backward(loss).unwrap();
        store.zero_grad();
        grads.accumulate_into(store);
        let ids: Vec<_> = store.ids().collect();
        let gradients = ids
            .into_iter()
            .map(|id| store.grad(id).map(|g| g.to_vec()).unwrap_or_default())
            .collect();
        (tape.value(loss).to_vec()[0], gradients)
    }

    /// Asserts that `model`'s full-softmax loss on `batch` and its gradients equal those of
    /// `reference` (the same loss computed another way) to f32 rounding.
    pub fn assert_loss_matches<M: Model>(
        model: &mut M,
        batch: &TrainingBatch,
        reference: impl Fn(&M, &mut Tape) -> Var,
    ) {
        let mut tape = Tape::new();
        let loss = model.loss(&mut tape, batch, LossKind::FullSoftmax).unwrap();
        let got = value_and_gradients(&tape, loss, model.params_mut());
        let mut tape = Tape::new();
        let loss = reference(model, &mut tape);
        let want = value_and_gradients(&tape, loss, model.params_mut());
        assert!(
            (got.0 - want.0).abs() <= 1e-5 * (1.0 + want.0.abs()),
            "loss {} vs {}",
            got.0,
            want.0
        );
        assert!(
            want.1.iter().any(|g| g.iter().any(|&x| x != 0.0)),
            "some gradient is non-zero"
        );
        for (p, (g, w)) in got.1.iter().zip(&want.1).enumerate() {
            assert_eq!(g.len(), w.len(), "parameter {p}");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "parameter {p}[{i}]: {a} vs {b}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_at_each_position() {
        let items = Ids::from_vec(&[1, 4], vec![0, 7, 8, 9]).unwrap();
        let w = all_windows(&items, 2).unwrap();
        assert_eq!(w.values(), &[0, 0, 0, 7, 7, 8, 8, 9]);
        assert_eq!(last_windows(&items, 3).unwrap().values(), &[7, 8, 9]);
        assert_eq!(last_windows(&items, 5).unwrap().values(), &[0, 0, 7, 8, 9]);
        let picked = select_rows(&w, &[3, 1]).unwrap();
        assert_eq!(picked.shape(), &[2, 2]);
        assert_eq!(picked.values(), &[8, 9, 0, 7]);
    }
}
