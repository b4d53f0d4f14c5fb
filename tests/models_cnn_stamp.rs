//! NextItNet and STAMP: NextItNet is causal and sees exactly its receptive field; STAMP's
//! scores equal a hand computation of the paper's equations; both models' every-position
//! training (one pass for all prefixes) equals scoring each prefix on its own; gradients
//! against finite differences; both beat a popularity ranking on generated data and, when
//! `SEQREC_DATA` has it, on ml-100k.

use std::path::PathBuf;

mod common;

use common::synthetic::synthetic;
use seqrec::config::{Config, ModelConfig};
use seqrec::data::Dataset;
use seqrec::models::nextitnet::{Dilations, NextItNet};
use seqrec::models::stamp::Stamp;
use seqrec::models::{LossKind, Model, SequenceInput, TrainingBatch};
use seqrec::optim::ParamStore;
use seqrec::rng::Rng;
use seqrec::train::{Experiment, TrainOptions, evaluate_cases, train};
use seqrec::{Ids, Result, Tape, Tensor, Var};

fn input(items: &[u32]) -> SequenceInput {
    let n = items.len();
    SequenceInput {
        users: Ids::from_vec(&[1], vec![1]).unwrap(),
        items: Ids::from_vec(&[1, n], items.to_vec()).unwrap(),
        behaviours: Ids::from_vec(&[1, n], vec![0; n]).unwrap(),
    }
}

fn random_items(n: usize, items: u32, rng: &mut Rng) -> Vec<u32> {
    (0..n).map(|_| 1 + rng.below(items as u64) as u32).collect()
}

fn nextitnet(items: usize, dilations: Vec<usize>, seed: u64) -> NextItNet {
    let config = ModelConfig {
        dim: 8,
        nextitnet_dilations: Dilations::List(dilations),
        ..ModelConfig::default()
    };
    NextItNet::new(items, &config, seed).unwrap()
}

/// Scores at every position `[n, items + 1]` of one sequence, as rows.
fn every_position(model: &NextItNet, items: &[u32]) -> Vec<Vec<f32>> {
    let mut tape = Tape::inference();
    let scores = model
        .scores_at_every_position(&mut tape, &input(items))
        .unwrap();
    let width = tape.shape(scores)[2];
    tape.value(scores)
        .to_vec()
        .chunks(width)
        .map(|r| r.to_vec())
        .collect()
}

#[test]
fn nextitnet_is_causal() {
    let model = nextitnet(30, vec![1, 2], 3);
    let mut rng = Rng::new(4);
    let items = random_items(12, 30, &mut rng);
    let before = every_position(&model, &items);
    for changed in [0, 5, 11] {
        let mut other = items.clone();
        other[changed] = other[changed] % 30 + 1;
        let after = every_position(&model, &other);
        for t in 0..items.len() {
            if t < changed {
                assert_eq!(before[t], after[t], "item {changed} changed position {t}");
            } else if t == changed {
                assert_ne!(before[t], after[t], "item {changed} did not change itself");
            }
        }
    }
}

#[test]
fn nextitnet_sees_exactly_its_receptive_field() {
    // k = 3, dilations {1, 2}: 1 + 2·2·1 + 2·2·2 = 13 items.
    let model = nextitnet(30, vec![1, 2], 5);
    assert_eq!(model.receptive_field(), 13);
    let mut rng = Rng::new(6);
    let items = random_items(20, 30, &mut rng);
    let last = items.len() - 1;
    let before = every_position(&model, &items);
    let change = |at: usize| {
        let mut other = items.clone();
        other[at] = other[at] % 30 + 1;
        every_position(&model, &other)[last].clone()
    };
    // The oldest item inside the field moves the last output; the one just outside does not.
    assert_ne!(change(last - 12), before[last]);
    assert_eq!(change(last - 13), before[last]);
    // The default stack: {1, 2, 4, 8} twice.
    let default = NextItNet::new(30, &ModelConfig::default(), 1).unwrap();
    assert_eq!(default.receptive_field(), 121);
}

#[test]
fn left_padding_does_not_change_the_scores() {
    let nextit: Box<dyn Model> = Box::new(nextitnet(30, vec![1, 2, 4], 7));
    let config = ModelConfig {
        dim: 8,
        ..ModelConfig::default()
    };
    let stamp: Box<dyn Model> = Box::new(Stamp::new(30, &config, 7).unwrap());
    for model in [nextit, stamp] {
        let items = [4, 9, 9, 17, 2];
        let padded = [0, 0, 0, 4, 9, 9, 17, 2];
        let mut tape = Tape::inference();
        let a = model.scores(&mut tape, &input(&items)).unwrap();
        let b = model.scores(&mut tape, &input(&padded)).unwrap();
        let (a, b) = (tape.value(a).to_vec(), tape.value(b).to_vec());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{}: {x} vs {y}", model.name());
        }
    }
}

/// A batch of one sequence whose only target is `target` after position `at`.
fn one_target_batch(items: &[u32], at: usize, target: u32) -> TrainingBatch {
    let n = items.len();
    let mut positives = vec![0; n];
    positives[at] = target;
    let mut weights = vec![0.0; n];
    weights[at] = 1.0;
    TrainingBatch {
        input: input(items),
        positives: Ids::from_vec(&[1, n], positives).unwrap(),
        negatives: Ids::from_vec(&[1, n, 1], vec![1; n]).unwrap(),
        weights: Tensor::from_vec(&[1, n], weights).unwrap(),
    }
}

/// The every-position CE loss at position t equals −log softmax of the scores of the prefix
/// ending at t, scored on its own: training sees each prefix exactly as evaluation does.
#[test]
fn every_position_training_equals_scoring_each_prefix() {
    let config = ModelConfig {
        dim: 8,
        ..ModelConfig::default()
    };
    let nextit: Box<dyn Model> = Box::new(nextitnet(20, vec![1, 2], 8));
    let stamp: Box<dyn Model> = Box::new(Stamp::new(20, &config, 8).unwrap());
    let items = [0, 0, 3, 7, 7, 12, 1, 19];
    for model in [nextit, stamp] {
        for at in 2..items.len() {
            let target = 5 + at as u32;
            let mut tape = Tape::inference();
            let loss = model
                .loss(
                    &mut tape,
                    &one_target_batch(&items, at, target),
                    LossKind::FullSoftmax,
                )
                .unwrap();
            let loss = tape.value(loss).item() as f64;
            let scores = model.scores(&mut tape, &input(&items[..=at])).unwrap();
            let scores: Vec<f64> = tape
                .value(scores)
                .to_vec()
                .iter()
                .map(|&s| s as f64)
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let log_sum = max + scores.iter().map(|s| (s - max).exp()).sum::<f64>().ln();
            let expected = log_sum - scores[target as usize];
            assert!(
                (loss - expected).abs() < 1e-4 * (1.0 + expected.abs()),
                "{} at {at}: loss {loss} vs prefix scores {expected}",
                model.name()
            );
        }
    }
}

fn set(store: &mut ParamStore, name: &str, values: &[f64]) {
    let id = store
        .find(name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    let shape = store.value(id).shape().to_vec();
    let values = values.iter().map(|&v| v as f32).collect();
    store
        .set_value(id, Tensor::from_vec(&shape, values).unwrap())
        .unwrap();
}

/// STAMP's equations 1-5 by hand for d = 2, three items and the session [0, 2, 3, 1].
#[test]
fn stamp_scores_match_a_hand_computation() {
    let config = ModelConfig {
        dim: 2,
        ..ModelConfig::default()
    };
    for add_mean in [false, true] {
        let config = ModelConfig {
            stamp_add_mean: add_mean,
            ..config.clone()
        };
        let mut model = Stamp::new(3, &config, 1).unwrap();
        // Rows: padding, items 1..3.
        let x = [[0.0, 0.0], [0.5, -1.0], [1.0, 0.25], [-0.5, 0.75]];
        // Weights as stored: x W (row vector times [in, out]).
        let w1 = [[0.2, -0.1], [0.4, 0.3]];
        let w2 = [[-0.3, 0.5], [0.1, 0.2]];
        let w3 = [[0.6, 0.0], [-0.2, 0.1]];
        let w0 = [0.7, -0.4];
        let b_a = [0.05, -0.1];
        let w_s = [[0.9, -0.2], [0.3, 0.8]];
        let b_s = [0.1, 0.0];
        let w_t = [[-0.5, 0.4], [0.6, 0.7]];
        let b_t = [0.0, -0.2];
        let store = model.params_mut();
        set(store, "item_embedding", x.as_flattened());
        set(store, "attention.w1", w1.as_flattened());
        set(store, "attention.w2", w2.as_flattened());
        set(store, "attention.w3", w3.as_flattened());
        set(store, "attention.w0", &w0);
        set(store, "attention.bias", &b_a);
        set(store, "memory_cell.weight", w_s.as_flattened());
        set(store, "memory_cell.bias", &b_s);
        set(store, "last_cell.weight", w_t.as_flattened());
        set(store, "last_cell.bias", &b_t);

        let times = |v: [f64; 2], w: [[f64; 2]; 2]| {
            [
                v[0] * w[0][0] + v[1] * w[1][0],
                v[0] * w[0][1] + v[1] * w[1][1],
            ]
        };
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let session = [2usize, 3, 1];
        let m_s = [
            session.iter().map(|&i| x[i][0]).sum::<f64>() / 3.0,
            session.iter().map(|&i| x[i][1]).sum::<f64>() / 3.0,
        ];
        let m_t = x[1];
        let mut m_a = [0.0; 2];
        for &i in &session {
            let (a, b, c) = (times(x[i], w1), times(m_t, w2), times(m_s, w3));
            let alpha: f64 = (0..2)
                .map(|k| w0[k] * sigmoid(a[k] + b[k] + c[k] + b_a[k]))
                .sum();
            m_a[0] += alpha * x[i][0];
            m_a[1] += alpha * x[i][1];
        }
        if add_mean {
            m_a = [m_a[0] + m_s[0], m_a[1] + m_s[1]];
        }
        let h_s = times(m_a, w_s);
        let h_s = [(h_s[0] + b_s[0]).tanh(), (h_s[1] + b_s[1]).tanh()];
        let h_t = times(m_t, w_t);
        let h_t = [(h_t[0] + b_t[0]).tanh(), (h_t[1] + b_t[1]).tanh()];
        let expected: Vec<f64> = x
            .iter()
            .map(|x_i| h_s[0] * h_t[0] * x_i[0] + h_s[1] * h_t[1] * x_i[1])
            .collect();

        let mut tape = Tape::inference();
        let scores = model.scores(&mut tape, &input(&[0, 2, 3, 1])).unwrap();
        assert_eq!(tape.shape(scores), [1, 4]);
        let got = tape.value(scores).to_vec();
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                (*g as f64 - e).abs() < 1e-6,
                "add_mean {add_mean}: {got:?} vs {expected:?}"
            );
        }
    }
}

/// The analytic gradient of the loss against central differences, for a sample of entries of
/// every parameter.
fn check_gradients(model: &mut dyn Model, batch: &TrainingBatch, kind: LossKind) {
    let loss_of = |model: &dyn Model| -> f64 {
        let mut tape = Tape::new();
        let loss = model.loss(&mut tape, batch, kind).unwrap();
        tape.value(loss).item() as f64
    };
    let mut tape = Tape::new();
    let loss: Result<Var> = model.loss(&mut tape, batch, kind);
    let grads = tape.backward(loss.unwrap()).unwrap();
    model.params_mut().zero_grad();
    grads.accumulate_into(model.params_mut());
    let ids: Vec<_> = model.params().ids().collect();
    let mut rng = Rng::new(9);
    let h = 1e-3f32;
    for id in ids {
        let name = model.params().name(id).to_string();
        let analytic = model.params().grad(id).map(|g| g.to_vec());
        let len = model.params().value(id).len();
        for _ in 0..3 {
            let j = rng.below(len as u64) as usize;
            let original = model.params().value(id).to_vec()[j];
            let mut at = |v: f32| {
                model.params_mut().value_mut(id).cpu_mut()[j] = v;
                loss_of(&*model)
            };
            let numeric = (at(original + h) - at(original - h)) / (2.0 * h as f64);
            at(original);
            let a = analytic.as_ref().map_or(0.0, |g| g[j] as f64);
            assert!(
                (a - numeric).abs() < 5e-3 + 2e-2 * numeric.abs(),
                "{} {name}[{j}]: analytic {a} vs numeric {numeric}",
                model.name()
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(10);
    let (b, n, k, items) = (3, 7, 2, 15u32);
    let mut sequences = random_items(b * n, items, &mut rng);
    sequences[0] = 0; // one left-padded row
    sequences[1] = 0;
    let positives = random_items(b * n, items, &mut rng);
    let mut weights = vec![1.0; b * n];
    weights[0] = 0.0;
    weights[1] = 0.0;
    let batch = TrainingBatch {
        input: SequenceInput {
            users: Ids::from_vec(&[b], vec![1; b]).unwrap(),
            items: Ids::from_vec(&[b, n], sequences).unwrap(),
            behaviours: Ids::from_vec(&[b, n], vec![0; b * n]).unwrap(),
        },
        positives: Ids::from_vec(&[b, n], positives).unwrap(),
        negatives: Ids::from_vec(&[b, n, k], random_items(b * n * k, items, &mut rng)).unwrap(),
        weights: Tensor::from_vec(&[b, n], weights).unwrap(),
    };
    let config = ModelConfig {
        dim: 4,
        nextitnet_dilations: Dilations::List(vec![1, 2]),
        nextitnet_separate_output: true,
        ..ModelConfig::default()
    };
    for kind in [LossKind::FullSoftmax, LossKind::SampledBce] {
        check_gradients(
            &mut NextItNet::new(items as usize, &config, 11).unwrap(),
            &batch,
            kind,
        );
        for every_position in [true, false] {
            let config = ModelConfig {
                stamp_every_position: every_position,
                ..config.clone()
            };
            check_gradients(
                &mut Stamp::new(items as usize, &config, 12).unwrap(),
                &batch,
                kind,
            );
        }
    }
}

#[test]
fn bad_options_are_errors() {
    for sets in [
        "model_options.nextitnet_dilations=[]",
        "model_options.nextitnet_dilations=[1, 0]",
        "model_options.nextitnet_dilations=0",
        "model_options.nextitnet_kernel=0",
    ] {
        let config =
            Config::from_toml_with_overrides("model = \"nextitnet\"\n", &[sets.into()]).unwrap();
        let err = seqrec::train::build_model(&config, 10, 5, Default::default());
        assert!(err.is_err(), "{sets} was accepted");
    }
    assert!(
        Config::from_toml_with_overrides("", &["model_options.nextitnet_dilations=\"x\"".into()])
            .is_err()
    );
    let config =
        Config::from_toml_with_overrides("", &["model_options.nextitnet_dilations=[1, 4]".into()])
            .unwrap();
    assert_eq!(
        config.model_options.nextitnet_dilations,
        Dilations::List(vec![1, 4])
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqrec-cnn-stamp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Trains `model` on `data`; returns (validation NDCG@10, test NDCG@10, test HR@10) of the
/// model and of the popularity ranking.
fn train_against_popularity(data: &Dataset, model: &str, sets: &[&str]) -> ([f64; 3], [f64; 3]) {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config =
        Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets).unwrap();
    let exp = Experiment::prepare(data, &config).unwrap();
    let popularity = common::fitted_pop(&exp);
    let measure = |m: &dyn Model| {
        let valid = evaluate_cases(m, &exp.split.valid, exp.num_items(), &config).unwrap();
        let test = evaluate_cases(m, &exp.split.test, exp.num_items(), &config).unwrap();
        let (v, t) = (valid.at(10).unwrap(), test.at(10).unwrap());
        [v.ndcg, t.ndcg, t.hit_rate]
    };
    let mut m = exp.build_model().unwrap();
    let dir = temp_dir(&format!(
        "{model}-{}",
        sets.join("-").replace(['/', '[', ']', ' '], "")
    ));
    train(&exp, m.as_mut(), &dir, &TrainOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let (ours, pop) = (measure(m.as_ref()), measure(popularity.as_ref()));
    println!(
        "{} {model} {sets:?}: valid NDCG@10 {:.4}, test NDCG@10 {:.4}, HR@10 {:.4}; popularity \
         {:.4} / {:.4} / {:.4}",
        exp.dataset_name, ours[0], ours[1], ours[2], pop[0], pop[1], pop[2]
    );
    (ours, pop)
}

#[test]
fn both_models_beat_popularity_on_generated_data() {
    let data = synthetic(80, 1);
    let common = [
        "data.max_len=10",
        "model_options.dim=16",
        "train.batch_size=16",
        "train.lr=0.01",
        "train.patience=0",
        "train.epochs=12",
        "train.negatives=2",
        "model_options.nextitnet_dilations=[1, 2]",
    ];
    for model in ["nextitnet", "stamp"] {
        for loss in ["train.loss=ce", "train.loss=bce"] {
            let mut sets = common.to_vec();
            sets.push(loss);
            let (ours, pop) = train_against_popularity(&data, model, &sets);
            assert!(
                ours[0] > pop[0] + 0.1 && ours[1] > pop[1] + 0.1 && ours[2] > 0.6,
                "{model} {loss}: {ours:?} vs popularity {pop:?}"
            );
        }
    }
}

#[test]
fn both_models_beat_popularity_on_ml100k() {
    let Ok(path) = seqrec::data::find::resolve_data_path(Some("ml-100k")) else {
        eprintln!("ml-100k is not under SEQREC_DATA: the real-data check was skipped");
        return;
    };
    let data = seqrec::data::load::load(&path).unwrap();
    // Short sequences and few epochs keep this under 30 s on 2 cores.
    let common = [
        "data.max_len=20",
        "model_options.dim=32",
        "train.batch_size=128",
        "train.lr=0.01",
        "train.patience=0",
        "train.loss=ce",
    ];
    for (model, extra) in [
        (
            "nextitnet",
            [
                "train.epochs=8",
                "model_options.nextitnet_dilations=[1, 2, 4]",
            ],
        ),
        (
            "stamp",
            ["train.epochs=12", "model_options.stamp_every_position=true"],
        ),
    ] {
        let mut sets = common.to_vec();
        sets.extend(extra);
        let (ours, pop) = train_against_popularity(&data, model, &sets);
        assert!(
            ours[0] > pop[0] && ours[1] > pop[1],
            "{model} on ml-100k: {ours:?} vs popularity {pop:?}"
        );
    }
}

/// The first training steps on the GPU follow the CPU's losses, and the scores after them
/// agree, with no kernel falling back to the host (skipped without a GPU).
#[test]
fn gpu_training_follows_the_cpu() {
    let Some(_) = common::gpu_or_skip("nextitnet and stamp on the GPU") else {
        return;
    };
    for model in ["nextitnet", "stamp"] {
        for loss in ["ce", "bce"] {
            let sets: Vec<String> = [
                "data.max_len=10",
                "model_options.dim=16",
                "train.batch_size=16",
                "train.negatives=2",
                "model_options.nextitnet_dilations=[1, 2]",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("train.loss=\"{loss}\"")])
            .collect();
            let config =
                Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets).unwrap();
            common::assert_gpu_follows_cpu(&config, &format!("{model} {loss}"));
        }
    }
}
