//! The Markov-chain models FPMC and Fossil: forward scores against hand-computed examples on
//! tiny embeddings; the loss's gradients against finite differences; no look-ahead at
//! training time (a position's loss is that of its prefix scored alone, and later items do not
//! change it); both beat popularity on generated data and, when `SEQREC_DATA` is set, on
//! ml-100k.

mod common;

use common::synthetic::synthetic;
use seqrec::config::{Config, ModelConfig};
use seqrec::data::Dataset;
use seqrec::models::fossil::Fossil;
use seqrec::models::fpmc::Fpmc;
use seqrec::models::{LossKind, Model, SequenceInput, TrainingBatch};
use seqrec::optim::ParamStore;
use seqrec::train::{Experiment, TrainOptions, evaluate_cases, train};
use seqrec::{Ids, Tape, Tensor, Var};

fn set(model: &mut dyn Model, name: &str, shape: &[usize], values: &[f32]) {
    let store = model.params_mut();
    let id = store
        .find(name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    store
        .set_value(id, Tensor::from_vec(shape, values.to_vec()).unwrap())
        .unwrap();
}

fn input(users: &[u32], items: &[u32], n: usize) -> SequenceInput {
    let b = users.len();
    SequenceInput {
        users: Ids::from_vec(&[b], users.to_vec()).unwrap(),
        items: Ids::from_vec(&[b, n], items.to_vec()).unwrap(),
        behaviours: Ids::from_vec(&[b, n], vec![0; b * n]).unwrap(),
    }
}

fn scores(model: &dyn Model, input: &SequenceInput) -> Vec<f32> {
    let mut tape = Tape::inference();
    let s = model.scores(&mut tape, input).unwrap();
    tape.value(s).to_vec()
}

fn assert_close(what: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths differ");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() < 1e-5, "{what}[{i}]: got {g}, expected {e}");
    }
}

/// 3 items, 2 users, d = 2, every table set by hand.
fn tiny_fpmc() -> Fpmc {
    let config = ModelConfig {
        dim: 2,
        ..ModelConfig::default()
    };
    let mut m = Fpmc::new(3, 2, &config, 1).unwrap();
    set(
        &mut m,
        "user_item",
        &[3, 2],
        &[9.0, 9.0, 1.0, 2.0, -1.0, 0.5],
    );
    set(
        &mut m,
        "item_user",
        &[4, 2],
        &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
    );
    set(
        &mut m,
        "item_last",
        &[4, 2],
        &[0.0, 0.0, 2.0, 1.0, -1.0, 0.0, 0.5, 0.5],
    );
    set(
        &mut m,
        "last_item",
        &[4, 2],
        &[7.0, 7.0, 1.0, 1.0, 0.0, 3.0, -2.0, 1.0],
    );
    m
}

#[test]
fn fpmc_scores_match_a_hand_computed_example() {
    let m = tiny_fpmc();
    // User 1 (V^{U,I} = (1, 2)), last item 2 (V^{L,I} = (0, 3)):
    // item 1: ⟨(1,2),(1,0)⟩ + ⟨(2,1),(0,3)⟩ = 1 + 3 = 4
    // item 2: ⟨(1,2),(0,1)⟩ + ⟨(−1,0),(0,3)⟩ = 2 + 0 = 2
    // item 3: ⟨(1,2),(1,1)⟩ + ⟨(.5,.5),(0,3)⟩ = 3 + 1.5 = 4.5
    // User 2 (V^{U,I} = (−1, .5)), last item 3 (V^{L,I} = (−2, 1)):
    // item 1: −1 + (−4 + 1) = −4;  item 2: .5 + 2 = 2.5;  item 3: −.5 + (−1 + .5) = −1
    // Unknown user 0, last item 1 (V^{L,I} = (1, 1)): the Markov term alone:
    // item 1: 3;  item 2: −1;  item 3: 1
    let s = scores(&m, &input(&[1, 2, 0], &[1, 2, 0, 3, 2, 1], 2));
    let expected = [
        [0.0, 4.0, 2.0, 4.5],
        [0.0, -4.0, 2.5, -1.0],
        [0.0, 3.0, -1.0, 1.0],
    ];
    for (row, e) in expected.iter().enumerate() {
        assert_close(
            &format!("row {row}"),
            &s[row * 4 + 1..(row + 1) * 4],
            &e[1..],
        );
    }
}

#[test]
fn fpmc_sbpr_loss_matches_a_hand_computed_example() {
    let m = tiny_fpmc();
    // User 1 walks 2 → 1 → 3: positions (l = 2, i = 1) and (l = 1, i = 3), one negative each.
    let batch = TrainingBatch {
        input: input(&[1], &[0, 2, 1], 3),
        positives: Ids::from_vec(&[1, 3], vec![2, 1, 3]).unwrap(),
        negatives: Ids::from_vec(&[1, 3, 1], vec![1, 2, 2]).unwrap(),
        weights: Tensor::from_vec(&[1, 3], vec![0.0, 1.0, 1.0]).unwrap(),
    };
    // x̂(1, 2, 1) = 4, x̂(1, 2, 2) = 2 (above). With l = 1 (V^{L,I} = (1, 1)):
    // x̂(1, 1, 3) = 3 + 1 = 4, x̂(1, 1, 2) = 2 − 1 = 1.
    let softplus = |x: f32| (1.0 + (-x).exp()).ln();
    let expected = (softplus(4.0 - 2.0) + softplus(4.0 - 1.0)) / 2.0;
    let mut tape = Tape::new();
    let loss = m.loss(&mut tape, &batch, LossKind::SampledBce).unwrap();
    let got = tape.value(loss).item();
    assert!((got - expected).abs() < 1e-5, "S-BPR {got} vs {expected}");
}

/// 3 items, 1 user, d = 2, L = 2, α = 0.5, every table set by hand.
fn tiny_fossil() -> Fossil {
    let config = ModelConfig {
        dim: 2,
        fossil_order: 2,
        fossil_alpha: 0.5,
        ..ModelConfig::default()
    };
    let mut m = Fossil::new(3, 1, &config, 1).unwrap();
    set(
        &mut m,
        "item_context",
        &[4, 2],
        &[5.0, 5.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
    );
    set(
        &mut m,
        "item_target",
        &[4, 2],
        &[0.0, 0.0, 1.0, 2.0, -1.0, 1.0, 0.0, 1.0],
    );
    set(&mut m, "item_bias", &[4, 1], &[0.0, 0.5, 0.0, -1.0]);
    set(&mut m, "order_weights", &[2], &[1.0, 0.5]);
    set(
        &mut m,
        "user_order_weights",
        &[2, 2],
        &[0.0, 0.0, 1.0, -1.0],
    );
    m
}

#[test]
fn fossil_scores_match_a_hand_computed_example() {
    let m = tiny_fossil();
    // User 1 with history 1, 2, 3 (P = (1,0), (0,1), (1,1)):
    // long-term: 3^{−1/2} (2, 2) = (1.1547, 1.1547)
    // short-term: (η_1 + η^u_1) P_3 + (η_2 + η^u_2) P_2 = 2 (1,1) + (−.5) (0,1) = (2, 1.5)
    // h = (3.1547, 2.6547); x̂_i = γ_i + ⟨h, Q_i⟩:
    let h = [2.0 / 3f32.sqrt() + 2.0, 2.0 / 3f32.sqrt() + 1.5];
    let expected_user = [
        0.5 + h[0] + 2.0 * h[1], // Q_1 = (1, 2)
        -h[0] + h[1],            // Q_2 = (−1, 1)
        -1.0 + h[1],             // Q_3 = (0, 1)
    ];
    // Unknown user 0 with history 2 only (left-padded): long-term 1 · P_2 = (0, 1);
    // short-term η_1 P_2 (slot 2 is before the start) = (0, 1); h = (0, 2).
    let expected_anonymous = [0.5 + 4.0, 2.0, -1.0 + 2.0];
    let s = scores(&m, &input(&[1, 0], &[0, 1, 2, 3, 0, 0, 0, 2], 4));
    assert_close("user 1", &s[1..4], &expected_user);
    assert_close("unknown user", &s[5..8], &expected_anonymous);
}

/// Every position's loss must be that of its prefix scored alone: later items (and later
/// targets) cannot reach it. Checked with the cross-entropy at one position at a time against
/// −log softmax of the prefix's scores, and with later items changed.
fn check_no_look_ahead(model: &dyn Model, name: &str, looks_back: usize) {
    let n = 6;
    let items = [0u32, 3, 1, 4, 2, 5];
    let positives = [3u32, 1, 4, 2, 5, 1];
    for t in 1..n - 1 {
        let loss_at = |items: &[u32]| -> f32 {
            let mut weights = vec![0.0; n];
            weights[t] = 1.0;
            let batch = TrainingBatch {
                input: input(&[1], items, n),
                positives: Ids::from_vec(&[1, n], positives.to_vec()).unwrap(),
                negatives: Ids::from_vec(&[1, n, 1], vec![1; n]).unwrap(),
                weights: Tensor::from_vec(&[1, n], weights).unwrap(),
            };
            let mut tape = Tape::new();
            let loss = model
                .loss(&mut tape, &batch, LossKind::FullSoftmax)
                .unwrap();
            tape.value(loss).item()
        };
        let original = loss_at(&items);

        // The prefix up to t, scored alone (left-padded to n).
        let mut prefix = vec![0u32; n - 1 - t];
        prefix.extend_from_slice(&items[..=t]);
        let s = scores(model, &input(&[1], &prefix, n));
        let max = s.iter().cloned().fold(f32::MIN, f32::max);
        let log_z = max + s.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        let expected = log_z - s[positives[t] as usize];
        assert!(
            (original - expected).abs() < 1e-4,
            "{name}: loss at position {t} {original} vs its prefix scored alone {expected}"
        );

        let mut later_changed = items;
        for item in &mut later_changed[t + 1..] {
            *item = *item % 5 + 1;
        }
        let changed = loss_at(&later_changed);
        assert_eq!(
            original, changed,
            "{name}: later items changed position {t}"
        );

        // And the check can fail: the item at t (FPMC's last item) and, for a model that
        // looks further back, an earlier one do change it.
        for back in 0..=looks_back.min(t) {
            let mut earlier_changed = items;
            earlier_changed[t - back] = items[t - back] % 5 + 1;
            assert_ne!(
                original,
                loss_at(&earlier_changed),
                "{name}: position {t} ignores the item {back} before it"
            );
        }
    }
}

#[test]
fn training_positions_see_no_later_items() {
    let config = ModelConfig {
        dim: 4,
        ..ModelConfig::default()
    };
    let mut fossil = Fossil::new(5, 1, &config, 3).unwrap();
    // Give the per-user chain weights and biases non-trivial values.
    set(
        &mut fossil,
        "user_order_weights",
        &[2, 3],
        &[0.0, 0.0, 0.0, 0.3, -0.2, 0.7],
    );
    set(
        &mut fossil,
        "item_bias",
        &[6, 1],
        &[0.0, 0.1, -0.2, 0.3, 0.0, 0.5],
    );
    check_no_look_ahead(&fossil, "fossil", 2);
    check_no_look_ahead(&Fpmc::new(5, 1, &config, 3).unwrap(), "fpmc", 0);
}

/// d loss / d θ against central differences for a few entries of every parameter.
fn check_gradients(model: &mut dyn Model, name: &str, kind: LossKind) {
    let n = 4;
    let batch = TrainingBatch {
        input: input(&[1, 2], &[0, 3, 1, 4, 2, 5, 1, 3], n),
        positives: Ids::from_vec(&[2, n], vec![3, 1, 4, 2, 5, 1, 3, 4]).unwrap(),
        negatives: Ids::from_vec(
            &[2, n, 2],
            vec![1, 2, 5, 2, 3, 5, 1, 1, 2, 4, 3, 2, 4, 2, 5, 1],
        )
        .unwrap(),
        weights: Tensor::from_vec(&[2, n], vec![0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]).unwrap(),
    };
    let loss_of = |model: &dyn Model| -> f64 {
        let mut tape = Tape::new();
        let loss = model.loss(&mut tape, &batch, kind).unwrap();
        tape.value(loss).item() as f64
    };
    let mut tape = Tape::new();
    let loss = model.loss(&mut tape, &batch, kind).unwrap();
    let grads = tape.backward(loss).unwrap();
    let ids: Vec<_> = model.params().ids().collect();
    for id in ids {
        let param: Var = tape.param(model.params(), id);
        let analytic = grads.get(param).map(|g| g.to_vec());
        let value = model.params().value(id).to_vec();
        let pname = model.params().name(id).to_string();
        for index in 0..value.len() {
            let h = 1e-2f32;
            let mut moved = value.clone();
            moved[index] = value[index] + h;
            set_all(model.params_mut(), id, &moved);
            let up = loss_of(model);
            moved[index] = value[index] - h;
            set_all(model.params_mut(), id, &moved);
            let down = loss_of(model);
            set_all(model.params_mut(), id, &value);
            let numeric = (up - down) / (2.0 * h as f64);
            let a = analytic.as_ref().map_or(0.0, |g| g[index] as f64);
            assert!(
                (a - numeric).abs() <= 2e-3 + 2e-2 * numeric.abs(),
                "{name}/{kind:?}: d loss / d {pname}[{index}]: analytic {a} vs numeric {numeric}"
            );
        }
    }
}

fn set_all(store: &mut ParamStore, id: seqrec::optim::ParamId, values: &[f32]) {
    let shape = store.value(id).shape().to_vec();
    store
        .set_value(id, Tensor::from_vec(&shape, values.to_vec()).unwrap())
        .unwrap();
}

#[test]
fn gradients_match_finite_differences() {
    let config = ModelConfig {
        dim: 3,
        fossil_order: 2,
        ..ModelConfig::default()
    };
    for kind in [LossKind::SampledBce, LossKind::FullSoftmax] {
        let mut fossil = Fossil::new(5, 2, &config, 5).unwrap();
        set(
            &mut fossil,
            "user_order_weights",
            &[3, 2],
            &[0.0, 0.0, 0.3, -0.2, 0.5, 0.1],
        );
        check_gradients(&mut fossil, "fossil", kind);
        check_gradients(&mut Fpmc::new(5, 2, &config, 5).unwrap(), "fpmc", kind);
    }
}

#[test]
fn bad_fossil_options_are_errors() {
    for (order, alpha) in [(0, 0.5), (3, -0.1), (3, 1.5), (3, f32::NAN)] {
        let config = ModelConfig {
            fossil_order: order,
            fossil_alpha: alpha,
            ..ModelConfig::default()
        };
        let err = Fossil::new(5, 2, &config, 1).err().expect("an error");
        assert!(err.to_string().contains("fossil_"), "{err}");
    }
}

fn config(model: &str, extra: &[&str]) -> Config {
    let mut sets: Vec<String> = [
        "data.max_len=10",
        "model_options.dim=16",
        "train.batch_size=16",
        "train.lr=0.01",
        "train.patience=0",
        "train.negatives=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets).unwrap()
}

/// Trains `model` and returns (test NDCG@10, HR@10) of the model and of popularity.
fn train_and_compare(data: &Dataset, config: &Config, label: &str) -> ((f64, f64), (f64, f64)) {
    let exp = Experiment::prepare(data, config).unwrap();
    let popularity = common::fitted_pop(&exp);
    let pop = evaluate_cases(
        popularity.as_ref(),
        &exp.split.test,
        exp.num_items(),
        config,
    )
    .unwrap();
    let pop = pop.at(10).unwrap();
    let mut m = exp.build_model().unwrap();
    let dir =
        std::env::temp_dir().join(format!("seqrec-test-markov-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = train(&exp, m.as_mut(), &dir, &TrainOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let test = report.test.unwrap();
    let test = test.at(10).unwrap();
    let first = report.log.first().unwrap().loss;
    let last = report.log.last().unwrap().loss;
    println!(
        "{label}: loss {first:.4} → {last:.4}; test NDCG@10 {:.4} HR@10 {:.4}; popularity \
         NDCG@10 {:.4} HR@10 {:.4}",
        test.ndcg, test.hit_rate, pop.ndcg, pop.hit_rate
    );
    assert!(last < first, "{label}: loss {first} → {last}");
    ((test.ndcg, test.hit_rate), (pop.ndcg, pop.hit_rate))
}

#[test]
fn both_beat_popularity_on_a_first_order_walk() {
    let data = synthetic(80, 1);
    for model in ["fpmc", "fossil"] {
        for loss in ["bce", "ce"] {
            let config = config(model, &["train.epochs=12", &format!("train.loss={loss}")]);
            let ((ndcg, hr), (pop_ndcg, _)) =
                train_and_compare(&data, &config, &format!("{model}-{loss}"));
            assert!(
                ndcg > pop_ndcg + 0.2,
                "{model}/{loss}: NDCG@10 {ndcg} vs {pop_ndcg}"
            );
            // "next = current + 1" is a first-order chain: the Markov term nails it.
            assert!(hr > 0.75, "{model}/{loss}: HR@10 {hr}");
        }
    }
}

#[test]
fn fpmc_ranks_an_anonymous_sequence_by_its_markov_term() {
    let data = synthetic(80, 1);
    let config = config("fpmc", &["train.epochs=12", "train.loss=ce"]);
    let exp = Experiment::prepare(&data, &config).unwrap();
    let mut m = exp.build_model().unwrap();
    let dir = std::env::temp_dir().join(format!("seqrec-test-markov-anon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    train(&exp, m.as_mut(), &dir, &TrainOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // Model ids follow the data set's first appearances; map item names "1".."100".
    let id = |name: u32| -> u32 {
        exp.item_names
            .iter()
            .position(|n| n == &name.to_string())
            .unwrap() as u32
    };
    let mut hits = 0;
    for start in 1..=20u32 {
        let history: Vec<u32> = (start..start + 3).map(id).collect();
        let mut items = vec![0; 10 - 3];
        items.extend(&history);
        let s = scores(m.as_ref(), &input(&[0], &items, 10));
        let target = id(start + 3);
        let better = s[1..].iter().filter(|&&x| x > s[target as usize]).count();
        hits += (better < 10) as usize;
    }
    assert!(
        hits >= 16,
        "anonymous next item in the top 10 for {hits}/20 sequences"
    );
}

#[test]
fn both_beat_popularity_on_ml100k() {
    let Ok(root) = std::env::var("SEQREC_DATA") else {
        eprintln!("SEQREC_DATA is not set: the ml-100k check of fpmc and fossil was skipped");
        return;
    };
    let path = std::path::Path::new(&root).join("ml-100k");
    if !path.exists() {
        eprintln!(
            "{} is missing: the ml-100k check was skipped",
            path.display()
        );
        return;
    }
    let data = seqrec::data::load::load(&path).unwrap();
    for model in ["fpmc", "fossil"] {
        let config = config(
            model,
            &[
                "data.max_len=50",
                "model_options.dim=32",
                "train.batch_size=128",
                "train.lr=0.005",
                "train.epochs=6",
                "train.loss=ce",
            ],
        );
        let ((ndcg, _), (pop_ndcg, _)) =
            train_and_compare(&data, &config, &format!("{model}-ml100k"));
        assert!(
            ndcg > pop_ndcg,
            "{model}: ml-100k NDCG@10 {ndcg} vs popularity {pop_ndcg}"
        );
    }
}

#[test]
fn trains_on_the_gpu_like_on_the_cpu() {
    if common::gpu_or_skip("fpmc and fossil on the GPU").is_none() {
        return;
    }
    for model in ["fpmc", "fossil"] {
        for loss in ["bce", "ce"] {
            let config = config(model, &[&format!("train.loss={loss}")]);
            common::assert_gpu_follows_cpu(&config, &format!("{model}/{loss}"));
        }
    }
}
