//! Pop, ItemKNN and UserKNN: similarities computed by hand on a tiny data set (shrinkage,
//! the top-k cut, ties), Pop's order, scores of a sequence and of an anonymous one, both kNN
//! models beating Pop on generated data and on ml-100k (when `SEQREC_DATA` has it), a
//! checkpoint that reopens with the same scores, and bad options as errors.

use std::path::PathBuf;

mod common;

use common::synthetic::{synthetic, write_movielens_folder};
use seqrec::Tape;
use seqrec::config::{Config, ModelConfig};
use seqrec::data::Dataset;
use seqrec::data::split::TrainSequence;
use seqrec::models::Model;
use seqrec::models::itemknn::ItemKnn;
use seqrec::models::pop::Pop;
use seqrec::models::userknn::UserKnn;
use seqrec::train::{
    Experiment, TrainOptions, evaluate_cases, open_run, score_rows, sequence_input, train,
};

/// Three users over four items; user 1 sees item 1 twice (counted once by the kNN models).
///   U_1 = {1, 2}  U_2 = {1, 2, 3}  U_3 = {1}  U_4 = {3}        (users of each item)
///   I_1 = {1, 2, 3}  I_2 = {1, 2}  I_3 = {2, 4}                (items of each user)
fn tiny() -> Vec<TrainSequence> {
    let sequence = |user: u32, items: &[u32]| TrainSequence {
        user,
        items: items.to_vec(),
        behaviours: vec![0; items.len()],
    };
    vec![
        sequence(1, &[1, 2, 3, 1]),
        sequence(2, &[1, 2]),
        sequence(3, &[2, 4]),
    ]
}

fn options(k: usize, shrinkage: f32, decay: f32) -> ModelConfig {
    ModelConfig {
        knn_neighbours: k,
        knn_shrinkage: shrinkage,
        knn_decay: decay,
        knn_history: 0,
        ..ModelConfig::default()
    }
}

fn assert_neighbours(what: &str, got: &[(u32, f32)], expected: &[(u32, f64)]) {
    let ids: Vec<u32> = got.iter().map(|n| n.0).collect();
    let expected_ids: Vec<u32> = expected.iter().map(|n| n.0).collect();
    assert_eq!(ids, expected_ids, "{what}: neighbour ids {got:?}");
    for (&(_, sim), &(_, want)) in got.iter().zip(expected) {
        assert!(
            (sim as f64 - want).abs() < 1e-6,
            "{what}: {got:?} vs {expected:?}"
        );
    }
}

/// Scores of one (user, history) row, `[items + 1]`.
fn score(model: &dyn Model, user: u32, history: &[u32], max_len: usize) -> Vec<f32> {
    let behaviours = vec![0; history.len()];
    let input = sequence_input(&[(user, history, &behaviours)], max_len).unwrap();
    let mut tape = Tape::inference();
    let scores = model.scores(&mut tape, &input).unwrap();
    tape.value(scores).to_vec()
}

/// Kept below 1e-6 by the popularity tie-break, so scores match the formulas to 2e-6.
fn assert_scores(what: &str, got: &[f32], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{what}");
    for (j, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!((g as f64 - e).abs() < 2e-6, "{what}: item {j}: {g} vs {e}");
    }
}

#[test]
fn item_similarities_by_hand_with_shrinkage_and_top_k() {
    let (r2, r3, r6) = (2f64.sqrt(), 3f64.sqrt(), 6f64.sqrt());
    // λ = 0: the plain cosine; k = 3 keeps every neighbour.
    let mut model = ItemKnn::new(4, &options(3, 0.0, 1.0)).unwrap();
    model.fit(&tiny(), 4).unwrap();
    assert_neighbours(
        "λ=0 N(1)",
        &model.neighbours(1).unwrap(),
        &[(2, 2.0 / r6), (3, 1.0 / r2)],
    );
    // sim(2, 3) = sim(2, 4) = 1/√3: the tie goes to the lower id.
    assert_neighbours(
        "λ=0 N(2)",
        &model.neighbours(2).unwrap(),
        &[(1, 2.0 / r6), (3, 1.0 / r3), (4, 1.0 / r3)],
    );
    assert_neighbours("λ=0 N(4)", &model.neighbours(4).unwrap(), &[(2, 1.0 / r3)]);
    assert!(model.neighbours(0).unwrap().is_empty());

    // λ = 1 shrinks every similarity: dot / (‖a‖‖b‖ + 1). k = 2 cuts N(2) to its two best,
    // dropping item 4 (tied with item 3, the higher id).
    let mut model = ItemKnn::new(4, &options(2, 1.0, 1.0)).unwrap();
    model.fit(&tiny(), 4).unwrap();
    assert_neighbours(
        "λ=1 N(1)",
        &model.neighbours(1).unwrap(),
        &[(2, 2.0 / (r6 + 1.0)), (3, 1.0 / (r2 + 1.0))],
    );
    assert_neighbours(
        "λ=1 N(2)",
        &model.neighbours(2).unwrap(),
        &[(1, 2.0 / (r6 + 1.0)), (3, 1.0 / (r3 + 1.0))],
    );
    assert_neighbours(
        "λ=1 N(3)",
        &model.neighbours(3).unwrap(),
        &[(1, 1.0 / (r2 + 1.0)), (2, 1.0 / (r3 + 1.0))],
    );
    // k = 1.
    let mut model = ItemKnn::new(4, &options(1, 1.0, 1.0)).unwrap();
    model.fit(&tiny(), 4).unwrap();
    assert_neighbours(
        "k=1 N(2)",
        &model.neighbours(2).unwrap(),
        &[(1, 2.0 / (r6 + 1.0))],
    );
}

#[test]
fn item_scores_sum_the_neighbours_of_the_history_with_recency_decay() {
    let (r2, r3, r6) = (2f64.sqrt(), 3f64.sqrt(), 6f64.sqrt());
    let decay = 0.5;
    let mut model = ItemKnn::new(4, &options(3, 1.0, decay as f32)).unwrap();
    model.fit(&tiny(), 4).unwrap();
    let s12 = 2.0 / (r6 + 1.0);
    let s13 = 1.0 / (r2 + 1.0);
    let (s23, s24) = (1.0 / (r3 + 1.0), 1.0 / (r3 + 1.0));
    // History 1 then 2 (2 is the latest): score(j) = sim(2, j) + decay · sim(1, j).
    let got = score(&model, 0, &[1, 2], 5);
    let expected = [0.0, s12, decay * s12, s23 + decay * s13, s24];
    assert_scores("history [1, 2]", &got, &expected);
    // Item 1 seen again at the end counts once, at its latest position: sim(1, j) + decay · sim(2, j).
    let got = score(&model, 0, &[1, 2, 1], 5);
    let expected = [0.0, decay * s12, s12, s13 + decay * s23, decay * s24];
    assert_scores("history [1, 2, 1]", &got, &expected);
    // knn_history = 1: only the latest item.
    let mut latest_only = ItemKnn::new(
        4,
        &ModelConfig {
            knn_history: 1,
            ..options(3, 1.0, decay as f32)
        },
    )
    .unwrap();
    latest_only.fit(&tiny(), 4).unwrap();
    let got = score(&latest_only, 0, &[1, 2], 5);
    assert_scores("latest only", &got, &[0.0, s12, 0.0, s23, s24]);
    // No known item: the popularity order (item counts 3, 3, 1, 1; ties by the tie-break's
    // equal values), every score below 1e-6.
    let cold = score(&model, 0, &[], 5);
    assert!(
        cold[1] > cold[3] && cold[2] > cold[4] && cold[1] <= 1e-6,
        "{cold:?}"
    );
    assert_eq!(cold[0], 0.0);
}

#[test]
fn user_similarities_and_scores_by_hand() {
    let r6 = 6f64.sqrt();
    let lambda = 1.0;
    let mut model = UserKnn::new(4, 3, &options(2, lambda as f32, 1.0)).unwrap();
    model.fit(&tiny(), 4).unwrap();
    // sim(1, 2) = 2/(√3√2 + λ), sim(1, 3) = 1/(√6 + λ), sim(2, 3) = 1/(√2√2 + λ).
    let (s12, s13, s23) = (
        2.0 / (r6 + lambda),
        1.0 / (r6 + lambda),
        1.0 / (2.0 + lambda),
    );
    assert_neighbours(
        "N(u1)",
        &model.neighbours(1).unwrap(),
        &[(2, s12), (3, s13)],
    );
    assert_neighbours(
        "N(u2)",
        &model.neighbours(2).unwrap(),
        &[(1, s12), (3, s23)],
    );
    assert_neighbours(
        "N(u3)",
        &model.neighbours(3).unwrap(),
        &[(2, s23), (1, s13)],
    );
    // score(u3, j) = sim(3, 2)·[j ∈ I_2] + sim(3, 1)·[j ∈ I_1], whatever the input.
    let got = score(&model, 3, &[4], 5);
    assert_scores("u3", &got, &[0.0, s23 + s13, s23 + s13, s13, 0.0]);

    // An anonymous sequence [1, 2]: a = (1, 1), ‖a‖ = √2;
    // sim(s, u1) = 2/(√2√3 + λ), sim(s, u2) = 2/(√2√2 + λ), sim(s, u3) = 1/(√2√2 + λ); k = 2.
    let (a1, a2) = (2.0 / (r6 + lambda), 2.0 / (2.0 + lambda));
    let got = score(&model, 0, &[1, 2], 5);
    assert_scores("anonymous", &got, &[0.0, a1 + a2, a1 + a2, a1, 0.0]);

    // A profile cap of 2 keeps u1's latest distinct items {1, 3} (from 1, 2, 3, 1):
    // sim(1, 2) = 1/(√2√2 + λ), and u3 (I_3 = {2, 4}) no longer shares an item with u1.
    let mut capped = UserKnn::new(
        4,
        3,
        &ModelConfig {
            knn_user_items: 2,
            ..options(2, lambda as f32, 1.0)
        },
    )
    .unwrap();
    capped.fit(&tiny(), 4).unwrap();
    assert_neighbours(
        "capped N(u1)",
        &capped.neighbours(1).unwrap(),
        &[(2, 1.0 / (2.0 + lambda))],
    );
}

#[test]
fn pop_ranks_by_training_interactions() {
    let mut model = Pop::new(4).unwrap();
    model.fit(&tiny(), 4).unwrap();
    // Item 1: 3 interactions (twice by user 1), item 2: 3, items 3 and 4: 1.
    let got = score(&model, 2, &[1], 5);
    assert_eq!(got, vec![0.0, 3.0, 3.0, 1.0, 1.0]);
    assert_eq!(
        score(&model, 0, &[], 5),
        got,
        "every sequence gets the same ranking"
    );
    let train = vec![TrainSequence {
        user: 1,
        items: vec![4, 4, 4, 2, 2, 3],
        behaviours: vec![0; 6],
    }];
    model.fit(&train, 4).unwrap();
    assert_eq!(score(&model, 1, &[], 5), vec![0.0, 0.0, 2.0, 1.0, 3.0]);
    // An item beyond the catalogue is an error, not a panic.
    let bad = vec![TrainSequence {
        user: 1,
        items: vec![5],
        behaviours: vec![0],
    }];
    assert!(model.fit(&bad, 4).is_err());
}

fn config(model: &str, extra: &[&str]) -> Config {
    let mut sets: Vec<String> = ["data.max_len=20", "train.patience=0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqrec-knn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Trains `model` through `train()` and returns (test NDCG@10, test HR@10).
fn test_ndcg_hr(dataset: &Dataset, model: &str, extra: &[&str]) -> (f64, f64) {
    let config = config(model, extra);
    let exp = Experiment::prepare(dataset, &config).unwrap();
    let mut m = exp.build_model().unwrap();
    assert!(m.fits_directly(), "{model}");
    let dir = temp_dir(&format!("fit-{model}"));
    let report = train(&exp, m.as_mut(), &dir, &TrainOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(report.finished);
    let at10 = report.test.as_ref().unwrap().at(10).unwrap();
    (at10.ndcg, at10.hit_rate)
}

#[test]
fn knn_models_beat_pop_on_generated_data() {
    let data = synthetic(200, 7);
    let (pop, pop_hr) = test_ndcg_hr(&data, "pop", &[]);
    let (item, item_hr) = test_ndcg_hr(&data, "itemknn", &[]);
    let (user, user_hr) = test_ndcg_hr(&data, "userknn", &[]);
    println!(
        "synthetic test NDCG@10 / HR@10: pop {pop:.4} / {pop_hr:.3}, itemknn {item:.4} / \
         {item_hr:.3}, userknn {user:.4} / {user_hr:.3}"
    );
    // Users walk the items in order: the next item is the latest item's neighbour.
    assert!(
        item > 3.0 * pop && item_hr > 0.6,
        "itemknn {item} vs pop {pop}"
    );
    // Neighbours overlap the user's stretch of the walk, and its continuation.
    assert!(user > 1.5 * pop, "userknn {user} vs pop {pop}");
    // Without the recency decay ItemKNN sees the whole history alike and does worse.
    let (flat, _) = test_ndcg_hr(&data, "itemknn", &["model_options.knn_decay=1.0"]);
    println!("itemknn without decay: {flat:.4}");
    assert!(flat < item, "decay 1.0 {flat} vs 0.6 {item}");
}

#[test]
fn checkpoint_reopens_with_the_same_scores() {
    let dir = temp_dir("reopen");
    let data_dir = write_movielens_folder(&synthetic(60, 3), &dir.join("data"));
    let dataset = seqrec::data::load::load(&data_dir).unwrap();
    for model in ["pop", "itemknn", "userknn"] {
        let config = config(model, &["model_options.knn_neighbours=7"]);
        let exp = Experiment::prepare(&dataset, &config).unwrap();
        let mut fitted = exp.build_model().unwrap();
        let run = dir.join(model);
        let report = train(&exp, fitted.as_mut(), &run, &TrainOptions::default()).unwrap();

        let (exp2, reopened) = open_run(&run, None).unwrap();
        let again = evaluate_cases(
            reopened.as_ref(),
            &exp2.split.test,
            exp2.num_items(),
            &exp2.config,
        )
        .unwrap();
        assert_eq!(&again, report.test.as_ref().unwrap(), "{model}");
        // The same scores, bit for bit, for known users and for an anonymous sequence.
        let rows: Vec<(u32, &[u32], &[u32])> = exp
            .split
            .test
            .iter()
            .take(5)
            .map(|c| {
                (
                    c.user,
                    c.history.as_slice(),
                    c.history_behaviours.as_slice(),
                )
            })
            .chain(std::iter::once((
                0,
                exp.split.test[0].history.as_slice(),
                exp.split.test[0].history_behaviours.as_slice(),
            )))
            .collect();
        let before = score_rows(fitted.as_ref(), &rows, config.data.max_len).unwrap();
        let after = score_rows(reopened.as_ref(), &rows, config.data.max_len).unwrap();
        assert_eq!(before, after, "{model}");
        // A fresh, unfitted model scores differently: the checkpoint carried the fit.
        let fresh = exp.build_model().unwrap();
        let unfitted = score_rows(fresh.as_ref(), &rows, config.data.max_len).unwrap();
        assert_ne!(before, unfitted, "{model}");

        // Another k does not fit this checkpoint: a clear error.
        if model != "pop" {
            let config_path = run.join("config.json");
            let text = std::fs::read_to_string(&config_path)
                .unwrap()
                .replace("\"knn_neighbours\": 7", "\"knn_neighbours\": 8");
            std::fs::write(&config_path, text).unwrap();
            let err = open_run(&run, None)
                .err()
                .expect("mismatched checkpoint must fail")
                .to_string();
            assert!(err.contains("does not match"), "{model}: {err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_options_and_gradient_training_are_errors() {
    let data = synthetic(20, 5);
    for (model, set, field) in [
        (
            "itemknn",
            "model_options.knn_neighbours=0",
            "knn_neighbours",
        ),
        (
            "userknn",
            "model_options.knn_neighbours=0",
            "knn_neighbours",
        ),
        (
            "itemknn",
            "model_options.knn_shrinkage=-1.0",
            "knn_shrinkage",
        ),
        ("itemknn", "model_options.knn_decay=0.0", "knn_decay"),
        ("userknn", "model_options.knn_decay=1.5", "knn_decay"),
        (
            "userknn",
            "model_options.knn_user_items=0",
            "knn_user_items",
        ),
    ] {
        let exp = Experiment::prepare(&data, &config(model, &[set])).unwrap();
        let err = exp.build_model().err().expect(set).to_string();
        assert!(err.contains(field), "{set}: {err}");
    }
    // Scoring an item beyond the catalogue, or a user beyond the users, is an error.
    let mut model = UserKnn::new(4, 3, &options(2, 1.0, 1.0)).unwrap();
    model.fit(&tiny(), 4).unwrap();
    let input = sequence_input(&[(0, &[9][..], &[0][..])], 3).unwrap();
    assert!(model.scores(&mut Tape::inference(), &input).is_err());
    let input = sequence_input(&[(7, &[1][..], &[0][..])], 3).unwrap();
    assert!(model.scores(&mut Tape::inference(), &input).is_err());
    assert!(model.fit(&tiny(), 5).is_err(), "wrong catalogue size");
    // The training loop's gradient path refuses, with the reason.
    let exp = Experiment::prepare(&data, &config("itemknn", &[])).unwrap();
    let m = exp.build_model().unwrap();
    let batcher = seqrec::data::batch::Batcher::new(
        &exp.split.train,
        exp.num_items(),
        seqrec::data::batch::BatchConfig {
            max_len: 5,
            batch_size: 4,
            examples: seqrec::data::batch::Examples::EveryPosition,
            negatives: 1,
            sampling: seqrec::data::batch::Sampling::Uniform,
            exclude_user_items: true,
            seed: 1,
        },
    )
    .unwrap();
    let batch = batcher.epoch(0).unwrap().into_iter().next().unwrap();
    let err = m
        .loss(
            &mut Tape::new(),
            &batch.into(),
            seqrec::models::LossKind::FullSoftmax,
        )
        .expect_err("no loss")
        .to_string();
    assert!(err.contains("fitted directly"), "{err}");
}

#[test]
fn knn_models_beat_pop_on_movielens_100k() {
    let Some(root) = std::env::var_os("SEQREC_DATA") else {
        eprintln!(
            "SEQREC_DATA is not set: the ml-100k check was skipped (the generated-data tests ran)"
        );
        return;
    };
    let path = PathBuf::from(root).join("ml-100k");
    if !path.exists() {
        eprintln!(
            "{} does not exist: the ml-100k check was skipped",
            path.display()
        );
        return;
    }
    let dataset = seqrec::data::load::load(&path).unwrap();
    let extra = ["data.max_len=50"];
    let (pop, pop_hr) = test_ndcg_hr(&dataset, "pop", &extra);
    let (item, item_hr) = test_ndcg_hr(&dataset, "itemknn", &extra);
    let (user, user_hr) = test_ndcg_hr(&dataset, "userknn", &extra);
    println!(
        "ml-100k test NDCG@10 / HR@10 (full ranking, history excluded): pop {pop:.4} / \
         {pop_hr:.4}, itemknn {item:.4} / {item_hr:.4}, userknn {user:.4} / {user_hr:.4}"
    );
    assert!(item > 1.5 * pop, "itemknn {item} vs pop {pop}");
    assert!(user > 1.1 * pop, "userknn {user} vs pop {pop}");
}
