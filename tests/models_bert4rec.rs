//! BERT4Rec: its attention is bidirectional, the Cloze masking (count, seed, padding, at least
//! one per sequence), the prediction input, and that it learns — on the synthetic walk and,
//! when `SEQREC_DATA` has ml-100k, on MovieLens — better than a popularity ranking.

mod common;

use std::path::PathBuf;

use common::synthetic::synthetic;
use seqrec::autograd::Tape;
use seqrec::config::{Config, ModelConfig};
use seqrec::data::Dataset;
use seqrec::eval::{EvalConfig, EvalReport, EvalUser, evaluate};
use seqrec::models::bert4rec::{Bert4Rec, cloze, evaluation_input};
use seqrec::models::{LossKind, Model, SequenceInput, TrainingBatch};
use seqrec::tensor::{Ids, Tensor};
use seqrec::train::{Experiment, TrainOptions, TrainReport, train};

fn small_options(dropout: f32) -> ModelConfig {
    ModelConfig {
        dim: 16,
        ffn_dim: Some(32),
        heads: 2,
        blocks: 2,
        dropout,
        ..ModelConfig::default()
    }
}

/// A batch as the trainer builds it from the given full sequences (oldest first, each of
/// length ≥ 2): inputs `s[..len-1]` and positives `s[1..]`, left-padded to n.
fn batch_of(sequences: &[Vec<u32>], n: usize, negatives: usize) -> TrainingBatch {
    let pad = |values: &[u32]| -> Vec<u32> {
        let kept = &values[values.len().saturating_sub(n)..];
        let mut out = vec![0; n - kept.len()];
        out.extend_from_slice(kept);
        out
    };
    let b = sequences.len();
    let mut inputs = Vec::new();
    let mut positives = Vec::new();
    for s in sequences {
        inputs.extend(pad(&s[..s.len() - 1]));
        positives.extend(pad(&s[1..]));
    }
    let weights = positives
        .iter()
        .map(|&p| if p == 0 { 0.0 } else { 1.0 })
        .collect();
    let negative_ids = positives
        .iter()
        .flat_map(|&p| (0..negatives as u32).map(move |j| if p == 0 { 0 } else { 90 + j }))
        .collect();
    TrainingBatch {
        input: SequenceInput {
            users: Ids::from_vec(&[b], (1..=b as u32).collect()).unwrap(),
            items: Ids::from_vec(&[b, n], inputs).unwrap(),
            behaviours: Ids::from_vec(&[b, n], vec![0; b * n]).unwrap(),
        },
        positives: Ids::from_vec(&[b, n], positives).unwrap(),
        negatives: Ids::from_vec(&[b, n, negatives], negative_ids).unwrap(),
        weights: Tensor::from_vec(&[b, n], weights).unwrap(),
    }
}

#[test]
fn attention_is_bidirectional() {
    let n = 6;
    let model = Bert4Rec::new(20, n, &small_options(0.0), 3).unwrap();
    let run = |row: Vec<u32>| -> Vec<f32> {
        let mut tape = Tape::inference();
        let items = Ids::from_vec(&[1, n], row).unwrap();
        let hidden = model.encode(&mut tape, &items).unwrap();
        tape.value(hidden).to_vec()
    };
    let d = 16;
    let before = run(vec![0, 0, 3, 4, 5, 6]);
    // Only the last (latest) item changes.
    let after = run(vec![0, 0, 3, 4, 5, 11]);
    let earliest = 2 * d..3 * d;
    let change: f32 = before[earliest.clone()]
        .iter()
        .zip(&after[earliest])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(
        change > 1e-3,
        "the earliest real position did not see a later item (change {change})"
    );
    // [MASK] is a real key: putting it last changes the earliest position too.
    let masked = run(vec![0, 0, 3, 4, 5, 21]);
    assert_ne!(before[2 * d..3 * d], masked[2 * d..3 * d]);
}

#[test]
fn cloze_masks_a_proportion_of_real_items_reproducibly() {
    let n = 20;
    let mask = 101;
    // 300 sequences of lengths 2..=25: short ones are left-padded, long ones cut to n.
    let sequences: Vec<Vec<u32>> = (0..300)
        .map(|u| (0..2 + u % 24).map(|t| 1 + (u + t) % 100).collect())
        .collect();
    let batch = batch_of(&sequences, n, 1);
    let task = cloze(&batch, mask, 0.2, 0.0, 12345).unwrap();
    let inputs = task.inputs.values();
    // The full sequences: the latest n items of each, left-padded.
    let fulls: Vec<Vec<u32>> = sequences
        .iter()
        .map(|s| {
            let kept = &s[s.len().saturating_sub(n)..];
            let mut full = vec![0; n - kept.len()];
            full.extend_from_slice(kept);
            full
        })
        .collect();
    let real: usize = fulls
        .iter()
        .map(|f| f.iter().filter(|&&i| i != 0).count())
        .sum();
    for (row, full) in fulls.iter().enumerate() {
        let masked: Vec<usize> = (0..n)
            .filter(|&p| task.positions.contains(&((row * n + p) as u32)))
            .collect();
        assert!(!masked.is_empty(), "row {row} has no masked item");
        for p in 0..n {
            let got = inputs[row * n + p];
            if masked.contains(&p) {
                assert_ne!(full[p], 0, "row {row}: padding at {p} was masked");
                assert_eq!(got, mask);
            } else {
                assert_eq!(got, full[p], "row {row} position {p}");
            }
        }
    }
    // Targets are the original items at the masked positions, in order.
    for (&position, &target) in task.positions.iter().zip(&task.targets) {
        let (row, p) = (position as usize / n, position as usize % n);
        assert_eq!(target, fulls[row][p]);
    }
    assert!(task.positions.windows(2).all(|w| w[0] < w[1]));
    // About ρ of the real items (a little more: the at-least-one rule on short rows).
    let fraction = task.positions.len() as f64 / real as f64;
    assert!(
        (0.19..0.26).contains(&fraction),
        "masked {fraction:.3} of the real items, expected ≈ 0.2"
    );

    // The same stream gives the same mask; another stream another one.
    let again = cloze(&batch, mask, 0.2, 0.0, 12345).unwrap();
    assert_eq!(again.positions, task.positions);
    assert_eq!(again.inputs, task.inputs);
    let other = cloze(&batch, mask, 0.2, 0.0, 54321).unwrap();
    assert_ne!(other.positions, task.positions);

    // A tiny ρ still masks exactly one item per sequence.
    let one = cloze(&batch, mask, 1e-6, 0.0, 7).unwrap();
    assert_eq!(one.positions.len(), sequences.len());
    // ρ = 1 masks every real item.
    let all = cloze(&batch, mask, 1.0, 0.0, 7).unwrap();
    assert_eq!(all.positions.len(), real);
    // The paper's last-item samples: only the last position is masked.
    let last = cloze(&batch, mask, 0.2, 1.0, 7).unwrap();
    let expected: Vec<u32> = (0..sequences.len() as u32)
        .map(|r| r * n as u32 + n as u32 - 1)
        .collect();
    assert_eq!(last.positions, expected);
    // Negatives come from the same position when the batch has a target there, else from the
    // last position.
    for (&position, &from) in task.positions.iter().zip(&task.negatives_from) {
        let weight = batch.weights.to_vec()[position as usize];
        if weight != 0.0 {
            assert_eq!(from, position);
        } else {
            assert_eq!(from as usize % n, n - 1);
            assert_eq!(from as usize / n, position as usize / n);
        }
    }
}

#[test]
fn training_loss_is_reproducible_from_the_tape_seed() {
    let n = 8;
    let mut model = Bert4Rec::new(100, n, &small_options(0.2), 1).unwrap();
    let sequences: Vec<Vec<u32>> = (0..16)
        .map(|u| (0..3 + u % 9).map(|t| 1 + (u * 7 + t) % 80).collect())
        .collect();
    let batch = batch_of(&sequences, n, 2);
    let mut loss_with = |seed: u32, kind: LossKind| -> f32 {
        let mut tape = Tape::new();
        tape.set_seed(seed);
        let loss = model.loss(&mut tape, &batch, kind).unwrap();
        let value = tape.value(loss).item();
        // Gradients reach the item table ([MASK]'s row included) and the output bias.
        let grads = tape.backward(loss).unwrap();
        drop(tape);
        let store = model.params_mut();
        store.zero_grad();
        grads.accumulate_into(store);
        for name in ["item_embedding", "output_bias", "layer0.query.weight"] {
            let id = store.find(name).unwrap();
            let grad = store.grad(id).unwrap().to_vec();
            assert!(
                grad.iter().any(|&g| g != 0.0),
                "{kind:?}: no gradient for {name}"
            );
        }
        let table = store
            .grad(store.find("item_embedding").unwrap())
            .unwrap()
            .to_vec();
        assert!(
            table[101 * 16..].iter().any(|&g| g != 0.0),
            "no gradient for [MASK]"
        );
        value
    };
    for kind in [LossKind::FullSoftmax, LossKind::SampledBce] {
        let (a, b, c) = (loss_with(9, kind), loss_with(9, kind), loss_with(10, kind));
        assert!(a.is_finite() && a > 0.0);
        assert_eq!(a, b, "{kind:?}: same seed, different loss");
        assert_ne!(
            a, c,
            "{kind:?}: a different seed gave the same mask and dropout"
        );
    }
}

#[test]
fn prediction_input_is_the_history_then_mask() {
    let mask = 51;
    let items = Ids::from_vec(&[3, 4], vec![0, 0, 3, 4, 1, 2, 3, 4, 0, 0, 0, 7]).unwrap();
    let input = evaluation_input(&items, mask).unwrap();
    assert_eq!(
        input.values(),
        [0, 3, 4, 51, 2, 3, 4, 51, 0, 0, 7, 51],
        "the oldest slot is dropped and [MASK] appended"
    );
    // Scores cover padding and the catalogue, not [MASK], and depend on the history.
    let model = Bert4Rec::new(50, 4, &small_options(0.0), 2).unwrap();
    let mut tape = Tape::inference();
    let scores = model
        .scores(
            &mut tape,
            &SequenceInput {
                users: Ids::from_vec(&[3], vec![1, 2, 3]).unwrap(),
                items,
                behaviours: Ids::from_vec(&[3, 4], vec![0; 12]).unwrap(),
            },
        )
        .unwrap();
    assert_eq!(tape.shape(scores), [3, 51]);
    let values = tape.value(scores).to_vec();
    assert_ne!(values[..51], values[51..102]);
    // Bad options are errors, not panics.
    for bad in ["bert_mask_prob", "bert_last_item_prob"] {
        let mut options = small_options(0.0);
        if bad == "bert_mask_prob" {
            options.bert_mask_prob = 0.0;
        } else {
            options.bert_last_item_prob = 1.5;
        }
        let error = Bert4Rec::new(50, 4, &options, 2).err().expect("an error");
        assert!(error.to_string().contains(bad), "{error}");
    }
    assert!(evaluation_input(&Ids::from_vec(&[2], vec![1, 2]).unwrap(), mask).is_err());
}

fn config(extra: &[&str]) -> Config {
    let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Config::from_toml_with_overrides("model = \"bert4rec\"\n", &sets).unwrap()
}

/// Test metrics of ranking every item by its count in the training sequences.
fn popularity(exp: &Experiment) -> EvalReport {
    let mut counts = vec![0f32; exp.num_items() + 1];
    for s in &exp.split.train {
        for &i in &s.items {
            counts[i as usize] += 1.0;
        }
    }
    counts[0] = f32::NEG_INFINITY;
    let users: Vec<EvalUser> = exp
        .split
        .test
        .iter()
        .map(|c| EvalUser {
            history: c.known_items.clone(),
            targets: c.targets.clone(),
        })
        .collect();
    let eval_config = EvalConfig {
        ks: exp.config.eval.ks.clone(),
        exclude_history: exp.config.eval.exclude_history,
        ..EvalConfig::default()
    };
    evaluate(exp.num_items(), &users, &eval_config, |rows: &[usize]| {
        Ok(rows
            .iter()
            .flat_map(|_| counts.clone())
            .collect::<Vec<f32>>())
    })
    .unwrap()
}

fn train_and_compare(data: &Dataset, config: &Config, name: &str) -> (TrainReport, EvalReport) {
    let exp = Experiment::prepare(data, config).unwrap();
    let mut model = exp.build_model().unwrap();
    let dir = std::env::temp_dir().join(format!("seqrec-bert4rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = train(&exp, model.as_mut(), &dir, &TrainOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (report, popularity(&exp))
}

#[test]
fn learns_the_synthetic_walk_better_than_popularity() {
    let data = synthetic(150, 4);
    for loss in ["ce", "bce"] {
        let config = config(&[
            "data.max_len=12",
            "model_options.dim=32",
            "model_options.ffn_dim=64",
            "model_options.heads=2",
            "model_options.dropout=0.1",
            "train.batch_size=32",
            "train.lr=0.005",
            "train.epochs=30",
            "train.patience=0",
            "train.negatives=4",
            &format!("train.loss={loss}"),
        ]);
        let (report, pop) = train_and_compare(&data, &config, &format!("synthetic-{loss}"));
        let test = report.test.as_ref().unwrap().at(10).unwrap();
        let pop10 = pop.at(10).unwrap();
        let (first, last) = (report.log[0].loss, report.log.last().unwrap().loss);
        println!(
            "synthetic/{loss}: loss {first:.3} → {last:.3}; test NDCG@10 {:.3} HR@10 {:.3}; \
             popularity NDCG@10 {:.3} HR@10 {:.3}",
            test.ndcg, test.hit_rate, pop10.ndcg, pop10.hit_rate
        );
        assert!(last < 0.8 * first, "{loss}: loss {first} → {last}");
        assert!(
            test.ndcg > pop10.ndcg + 0.2 && test.hit_rate > 0.6,
            "{loss}: NDCG@10 {:.3} (popularity {:.3}), HR@10 {:.3}",
            test.ndcg,
            pop10.ndcg,
            test.hit_rate
        );
    }
}

#[test]
fn movielens100k_beats_popularity() {
    let Some(root) = std::env::var_os("SEQREC_DATA").map(|r| PathBuf::from(r).join("ml-100k"))
    else {
        eprintln!("SEQREC_DATA is not set: the ml-100k check of BERT4Rec was skipped");
        return;
    };
    if !root.exists() {
        eprintln!(
            "{} does not exist: the ml-100k check of BERT4Rec was skipped",
            root.display()
        );
        return;
    }
    let data = seqrec::data::load::load(&root).unwrap();
    // A short run (BERT4Rec needs hundreds of epochs to converge): it only has to beat
    // popularity. About 16 CPU-seconds.
    let config = config(&[
        "data.max_len=50",
        "model_options.dim=32",
        "model_options.ffn_dim=64",
        "model_options.heads=2",
        "model_options.dropout=0.1",
        "train.batch_size=32",
        "train.lr=0.003",
        "train.epochs=30",
        "train.eval_every=10",
        "train.patience=0",
    ]);
    let (report, pop) = train_and_compare(&data, &config, "ml100k");
    let test = report.test.as_ref().unwrap().at(10).unwrap();
    let pop10 = pop.at(10).unwrap();
    println!(
        "ml-100k: test NDCG@10 {:.4} HR@10 {:.4}; popularity NDCG@10 {:.4} HR@10 {:.4}",
        test.ndcg, test.hit_rate, pop10.ndcg, pop10.hit_rate
    );
    assert!(
        test.ndcg > pop10.ndcg,
        "NDCG@10 {:.4} does not beat popularity {:.4}",
        test.ndcg,
        pop10.ndcg
    );
}
