//! Trimmed and length-bucketed training batches: a trimmed batch is the full-width batch
//! without its all-padding columns (same examples, same negatives); bucketing covers every
//! example once per epoch, deterministically, in narrow batches; and SASRec, AMSRM and
//! GRU4Rec (with each of its losses) give the same loss, gradients and scores on a trimmed
//! batch as on the full-width one.

mod common;

use seqrec::config::Config;
use seqrec::data::batch::{Batch, BatchConfig, Batcher, Examples, Sampling};
use seqrec::data::split::TrainSequence;
use seqrec::models::Model;
use seqrec::models::{LossKind, TrainingBatch};
use seqrec::rng::Rng;
use seqrec::train::Experiment;
use seqrec::{Ids, Tape};

/// Users with skewed lengths: most short, a few long (as in Amazon Beauty).
fn skewed_sequences(users: u32, items: u32, seed: u64) -> Vec<TrainSequence> {
    let mut rng = Rng::new(seed);
    (1..=users)
        .map(|user| {
            let len = if rng.uniform() < 0.1 {
                30 + rng.below(40) as usize
            } else {
                2 + rng.below(6) as usize
            };
            let items: Vec<u32> = (0..len)
                .map(|_| 1 + rng.below(items as u64) as u32)
                .collect();
            TrainSequence {
                user,
                behaviours: vec![0; items.len()],
                items,
            }
        })
        .collect()
}

fn config(max_len: usize, negatives: usize) -> BatchConfig {
    BatchConfig {
        max_len,
        batch_size: 16,
        examples: Examples::EveryPosition,
        negatives,
        sampling: Sampling::Uniform,
        exclude_user_items: true,
        seed: 5,
    }
}

/// Row r of `batch` as (user, inputs, positives, negatives, weights), the inputs etc. left-
/// padded to `width` columns.
fn row(batch: &Batch, r: usize, width: usize) -> (u32, Vec<u32>, Vec<u32>, Vec<u32>, Vec<f32>) {
    let n = batch.inputs.shape()[1];
    let k = batch.negatives.shape()[2];
    let pad = width - n;
    let widen = |values: &[u32], per: usize| {
        let mut out = vec![0u32; pad * per];
        out.extend_from_slice(values);
        out
    };
    let weights = batch.weights.to_vec();
    let mut w = vec![0.0f32; pad];
    w.extend_from_slice(&weights[r * n..(r + 1) * n]);
    (
        batch.users.values()[r],
        widen(&batch.inputs.values()[r * n..(r + 1) * n], 1),
        widen(&batch.positives.values()[r * n..(r + 1) * n], 1),
        widen(&batch.negatives.values()[r * n * k..(r + 1) * n * k], k),
        w,
    )
}

#[test]
fn a_trimmed_batch_is_the_full_batch_without_its_padding_columns() {
    let sequences = skewed_sequences(100, 50, 1);
    let full = Batcher::new(&sequences, 50, config(20, 2)).unwrap();
    let trimmed = Batcher::new(&sequences, 50, config(20, 2))
        .unwrap()
        .trim_padding(true);
    let (full, trimmed) = (full.epoch(3).unwrap(), trimmed.epoch(3).unwrap());
    assert_eq!(full.len(), trimmed.len());
    let mut narrower = 0;
    for (f, t) in full.iter().zip(&trimmed) {
        let width = t.inputs.shape()[1];
        // The width is the longest input: its first column holds a real item somewhere.
        assert!((0..t.users.len()).any(|r| t.inputs.values()[r * width] != 0));
        narrower += (width < 20) as usize;
        for r in 0..f.users.len() {
            assert_eq!(row(f, r, 20), row(t, r, 20), "row {r}");
        }
    }
    assert!(narrower > 0, "no batch was trimmed");
}

#[test]
fn bucketing_covers_every_example_once_in_narrower_batches() {
    let sequences = skewed_sequences(400, 60, 2);
    let plain = Batcher::new(&sequences, 60, config(50, 1))
        .unwrap()
        .trim_padding(true);
    let bucketed = Batcher::new(&sequences, 60, config(50, 1))
        .unwrap()
        .bucket_by_length(true);
    let users = |batches: &[Batch]| {
        let mut users: Vec<u32> = batches
            .iter()
            .flat_map(|b| b.users.values().to_vec())
            .collect();
        users.sort_unstable();
        users
    };
    let cells = |batches: &[Batch]| -> usize { batches.iter().map(|b| b.inputs.len()).sum() };
    let (p, b) = (plain.epoch(0).unwrap(), bucketed.epoch(0).unwrap());
    assert_eq!(users(&p), users(&b), "the same examples");
    assert_eq!(users(&b), (1..=400).collect::<Vec<_>>());
    assert!(
        2 * cells(&b) < cells(&p),
        "bucketed {} cells vs {} unbucketed",
        cells(&b),
        cells(&p)
    );
    // Seeded: the same epoch twice is the same; another epoch is another order.
    let again = bucketed.epoch(0).unwrap();
    let order = |batches: &[Batch]| -> Vec<u32> {
        batches
            .iter()
            .flat_map(|b| b.users.values().to_vec())
            .collect()
    };
    assert_eq!(order(&b), order(&again));
    assert_ne!(order(&b), order(&bucketed.epoch(1).unwrap()));
}

/// Cuts a full-width batch to its last `width` columns.
fn trim(batch: &TrainingBatch, width: usize) -> TrainingBatch {
    let (b, n) = (batch.positives.shape()[0], batch.positives.shape()[1]);
    let k = batch.negatives.shape()[2];
    let cut = |ids: &Ids, per: usize| {
        let values: Vec<u32> = (0..b)
            .flat_map(|r| ids.values()[(r * n + n - width) * per..(r + 1) * n * per].to_vec())
            .collect();
        let mut shape = ids.shape().to_vec();
        shape[1] = width;
        Ids::from_vec(&shape, values).unwrap()
    };
    let weights = batch.weights.to_vec();
    let weights: Vec<f32> = (0..b)
        .flat_map(|r| weights[r * n + n - width..(r + 1) * n].to_vec())
        .collect();
    TrainingBatch {
        input: seqrec::models::SequenceInput {
            users: batch.input.users.clone(),
            items: cut(&batch.input.items, 1),
            behaviours: cut(&batch.input.behaviours, 1),
        },
        positives: cut(&batch.positives, 1),
        negatives: cut(&batch.negatives, k),
        weights: seqrec::Tensor::from_vec(&[b, width], weights).unwrap(),
    }
}

#[test]
fn sasrec_amsrm_and_gru4rec_do_not_see_the_padding_width() {
    let data = common::synthetic::synthetic(60, 3);
    let cases = [
        ("sasrec", None),
        ("amsrm", None),
        ("gru4rec", None),
        ("gru4rec", Some("bpr-max")),
        ("gru4rec", Some("top1-max")),
    ];
    for (model_name, gru4rec_loss) in cases {
        let mut config = Config {
            model: model_name.into(),
            ..Config::default()
        };
        config.data.max_len = 24;
        config.model_options.dropout = 0.0;
        config.model_options.gru4rec_loss = gru4rec_loss.map(String::from);
        let model_name = format!("{model_name} {gru4rec_loss:?}");
        let exp = Experiment::prepare(&data, &config).unwrap();
        let mut model = exp.build_model().unwrap();
        assert!(model.accepts_trimmed_batches());
        // Short sequences: a full-width batch with at least 8 all-padding columns.
        let short: Vec<TrainSequence> = exp
            .split
            .train
            .iter()
            .map(|s| TrainSequence {
                user: s.user,
                items: s.items[..s.items.len().min(12)].to_vec(),
                behaviours: s.behaviours[..s.behaviours.len().min(12)].to_vec(),
            })
            .collect();
        let batcher = Batcher::new(&short, exp.num_items(), config_for(&config)).unwrap();
        let full: TrainingBatch = batcher.epoch(0).unwrap().remove(0).into();
        let narrow = trim(&full, 16);
        for kind in [LossKind::FullSoftmax, LossKind::SampledBce] {
            let run = |model: &mut Box<dyn Model>, batch: &TrainingBatch| {
                let mut tape = Tape::new();
                let loss = model.loss(&mut tape, batch, kind).unwrap();
                let value = tape.value(loss).item();
                let grads = tape.backward(loss).unwrap();
                drop(tape);
                model.params_mut().zero_grad();
                grads.accumulate_into(model.params_mut());
                (value, model.params().grad_norm())
            };
            let (lf, gf) = run(&mut model, &full);
            let (ln, gn) = run(&mut model, &narrow);
            assert!(
                (lf - ln).abs() <= 1e-5 * lf.abs().max(1.0),
                "{model_name} {kind:?}: loss {lf} full vs {ln} trimmed"
            );
            assert!(
                (gf - gn).abs() <= 1e-4 * gf.max(1e-6),
                "{model_name} {kind:?}: |grad|² {gf} full vs {gn} trimmed"
            );
        }
        let scores = |input: &seqrec::models::SequenceInput| {
            let mut tape = Tape::inference();
            let s = model.scores(&mut tape, input).unwrap();
            tape.value(s).to_vec()
        };
        common::assert_close(
            &format!("{model_name} scores"),
            &scores(&narrow.input),
            &scores(&full.input),
            1e-5,
        );
    }
}

fn config_for(config: &Config) -> BatchConfig {
    BatchConfig {
        max_len: config.data.max_len,
        batch_size: 32,
        examples: Examples::EveryPosition,
        negatives: 1,
        sampling: Sampling::Uniform,
        exclude_user_items: true,
        seed: 9,
    }
}
