//! The cold-start study (`data::cold`): nothing of a cold user or item reaches training, the
//! groups hold what they should, AMSRM's id dropout and feature-only cold items behave as
//! specified, a model trained on data whose signal lies in the features ranks cold items and
//! new users above chance, Pop scores no cold item, and bad settings are errors.

use std::collections::HashSet;
use std::path::PathBuf;

mod common;

use common::first_batch;
use common::synthetic::synthetic;
use seqrec::autograd::Tape;
use seqrec::config::Config;
use seqrec::data::batch::Batcher;
use seqrec::data::split::{EvalCase, leave_one_out};
use seqrec::data::{Dataset, FeatureTable, Field, FieldKind, FieldValues, Interaction, Vocab};
use seqrec::models::{Model, SequenceInput, TrainingBatch};
use seqrec::rng::Rng;
use seqrec::tensor::{Ids, Tensor};
use seqrec::train::{Experiment, TrainOptions, evaluate_cases, train};

fn config(model: &str, extra: &[&str]) -> Config {
    let mut sets: Vec<String> = [
        "data.max_len=10",
        "model_options.dim=16",
        "model_options.ffn_dim=16",
        "train.batch_size=32",
        "train.lr=0.01",
        "train.patience=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets).unwrap()
}

const COLD: [&str; 2] = ["data.cold_users=0.2", "data.cold_items=0.1"];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqrec-cold-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const TASTE_ITEMS: u32 = 200;
const CATEGORIES: u32 = 5;

/// Data whose only signal is in the features: item i has category (i − 1) mod 5, user u has
/// taste u mod 5 and interacts, in random order, with 12–16 distinct items of that category.
fn taste_data(users: u32, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut d = Dataset::empty("taste");
    for i in 1..=TASTE_ITEMS {
        d.items.intern(&i.to_string());
    }
    for u in 1..=users {
        let user = d.users.intern(&format!("u{u}"));
        let mut liked: Vec<u32> = (1..=TASTE_ITEMS)
            .filter(|i| (i - 1) % CATEGORIES == u % CATEGORIES)
            .collect();
        rng.shuffle(&mut liked);
        let length = 12 + rng.below(5) as usize;
        for (t, &item) in liked[..length].iter().enumerate() {
            d.interactions.push(Interaction {
                user,
                item,
                timestamp: Some(t as i64),
                rating: None,
                behaviour: 0,
            });
        }
    }
    let token_field = |name: &str, count: u32, of: &dyn Fn(u32) -> u32| {
        let mut vocab = Vocab::new();
        let values = (0..=count)
            .map(|e| {
                if e == 0 {
                    0
                } else {
                    vocab.intern(&format!("{name}{}", of(e)))
                }
            })
            .collect();
        Field {
            name: name.into(),
            kind: FieldKind::Token,
            vocab,
            values: FieldValues::Token(values),
        }
    };
    d.item_features
        .fields
        .push(token_field("category", TASTE_ITEMS, &|i| {
            (i - 1) % CATEGORIES
        }));
    d.user_features
        .fields
        .push(token_field("taste", users, &|u| u % CATEGORIES));
    d
}

/// Every item a case shows a model or asks it for.
fn case_items(case: &EvalCase) -> impl Iterator<Item = u32> + '_ {
    case.history.iter().chain(&case.targets).copied()
}

/// The exact leakage check: the cold split's training and validation equal leave-one-out's
/// with every cold user and every cold item taken out, and hold none of them.
fn assert_no_leak(exp: &Experiment) {
    let cold = exp.cold.as_ref().expect("a cold-start split");
    let cold_users: HashSet<u32> = cold.users.iter().copied().collect();
    let cold_items: HashSet<u32> = cold.items.iter().copied().collect();
    let expected: Vec<(u32, Vec<u32>)> = leave_one_out(&exp.sequences)
        .train
        .into_iter()
        .filter(|s| !cold_users.contains(&s.user))
        .map(|s| {
            let items: Vec<u32> = s
                .items
                .into_iter()
                .filter(|i| !cold_items.contains(i))
                .collect();
            (s.user, items)
        })
        .filter(|(_, items)| !items.is_empty())
        .collect();
    let got: Vec<(u32, Vec<u32>)> = exp
        .split
        .train
        .iter()
        .map(|s| (s.user, s.items.clone()))
        .collect();
    assert_eq!(
        got, expected,
        "training = leave-one-out minus cold users and items"
    );
    for s in &exp.split.train {
        assert!(!cold_users.contains(&s.user), "cold user {} trains", s.user);
        assert!(s.items.iter().all(|i| !cold_items.contains(i)));
        assert_eq!(s.items.len(), s.behaviours.len());
    }
    for c in exp.split.valid.iter().chain(&exp.split.test) {
        assert!(
            !cold_users.contains(&c.user),
            "cold user {} validates",
            c.user
        );
        assert!(case_items(c).all(|i| !cold_items.contains(&i)));
    }
}

#[test]
fn no_cold_user_or_item_reaches_training_or_validation() {
    let data = synthetic(200, 3);
    let exp = Experiment::prepare(&data, &config("amsrm", &COLD)).unwrap();
    let cold = exp.cold.as_ref().unwrap();
    assert_eq!(cold.users.len(), 40, "round(0.2 · 200) users");
    assert_eq!(cold.items.len(), 10, "round(0.1 · 100) items");
    assert_no_leak(&exp);

    // The same seed draws the same users and items, another seed others.
    let again = Experiment::prepare(&data, &config("amsrm", &COLD)).unwrap();
    assert_eq!(again.cold.as_ref().unwrap().users, cold.users);
    assert_eq!(again.cold.as_ref().unwrap().items, cold.items);
    let mut sets = COLD.to_vec();
    sets.push("train.seed=2");
    let other = Experiment::prepare(&data, &config("amsrm", &sets)).unwrap();
    assert_ne!(other.cold.as_ref().unwrap().users, cold.users);
    assert_ne!(other.cold.as_ref().unwrap().items, cold.items);

    // Off by default: the ordinary split, no groups.
    let plain = Experiment::prepare(&data, &config("amsrm", &[])).unwrap();
    assert!(plain.cold.is_none());
    assert_eq!(plain.split.train, leave_one_out(&plain.sequences).train);
}

#[test]
fn groups_hold_what_they_say() {
    let data = synthetic(200, 4);
    let exp = Experiment::prepare(&data, &config("amsrm", &COLD)).unwrap();
    let cold = exp.cold.as_ref().unwrap();
    let cold_users: HashSet<u32> = cold.users.iter().copied().collect();
    let cold_items: HashSet<u32> = cold.items.iter().copied().collect();
    let names: Vec<&str> = cold.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cold users, history 0",
            "cold users, history 1",
            "cold users, history 3",
            "cold users, history 5",
            "cold items"
        ]
    );
    // New users: their first k warm items, then the next one; the same users at every k.
    let users_at_0: Vec<u32> = cold.groups[0].cases.iter().map(|c| c.user).collect();
    assert!(!users_at_0.is_empty());
    for (group, k) in cold.groups[..4].iter().zip([0usize, 1, 3, 5]) {
        assert_eq!(
            group.cases.iter().map(|c| c.user).collect::<Vec<_>>(),
            users_at_0
        );
        for c in &group.cases {
            assert!(cold_users.contains(&c.user));
            let warm: Vec<u32> = exp
                .sequences
                .items_of(c.user)
                .into_iter()
                .filter(|i| !cold_items.contains(i))
                .collect();
            assert_eq!(c.history, warm[..k]);
            assert_eq!(c.targets, [warm[k]]);
        }
    }
    // Cold items: a warm user's last cold item, predicted from the warm items before it.
    let cold_item_cases = &cold.groups[4].cases;
    assert!(!cold_item_cases.is_empty());
    for c in cold_item_cases {
        assert!(!cold_users.contains(&c.user));
        let items = exp.sequences.items_of(c.user);
        let last_cold = items.iter().rposition(|i| cold_items.contains(i)).unwrap();
        assert_eq!(c.targets, [items[last_cold]]);
        let before: Vec<u32> = items[..last_cold]
            .iter()
            .copied()
            .filter(|i| !cold_items.contains(i))
            .collect();
        assert_eq!(c.history, before);
    }
    // Every warm user with a warm test target is in the warm group, nobody else.
    let warm_users: Vec<u32> = exp.split.test.iter().map(|c| c.user).collect();
    let expected: Vec<u32> = leave_one_out(&exp.sequences)
        .test
        .iter()
        .filter(|c| !cold_users.contains(&c.user) && !cold_items.contains(&c.targets[0]))
        .map(|c| c.user)
        .collect();
    assert_eq!(warm_users, expected);
}

/// The gradient of `param` after one training-mode loss with dropout seed `seed`.
fn gradient(model: &mut dyn Model, batch: &TrainingBatch, param: &str, seed: u32) -> Vec<f32> {
    let mut tape = Tape::new();
    tape.set_seed(seed);
    let loss = model
        .loss(&mut tape, batch, seqrec::models::LossKind::FullSoftmax)
        .unwrap();
    let grads = tape.backward(loss).unwrap();
    let store = model.params_mut();
    store.zero_grad();
    grads.accumulate_into(store);
    let id = store.find(param).unwrap();
    store.grad(id).unwrap().to_vec()
}

/// Items (ids ≥ 1) whose row of a `[items + 1, d]` gradient is exactly zero.
fn zero_rows(grad: &[f32], dim: usize) -> Vec<usize> {
    grad.chunks(dim)
        .enumerate()
        .skip(1)
        .filter(|(_, row)| row.iter().all(|&g| g == 0.0))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn id_dropout_zeroes_a_random_share_of_id_rows_in_training_only() {
    let data = synthetic(100, 5);
    let dim = 16;
    let plain = Experiment::prepare(&data, &config("amsrm", &[])).unwrap();
    let batch = first_batch(&plain, 64, 1, 1);
    let mut model = plain.build_model().unwrap();
    assert!(
        zero_rows(&gradient(model.as_mut(), &batch, "item_embedding", 1), dim).is_empty(),
        "without id dropout every item's id row learns (full softmax)"
    );

    let exp = Experiment::prepare(
        &data,
        &config("amsrm", &["model_options.item_id_dropout=0.5"]),
    )
    .unwrap();
    let mut dropping = exp.build_model().unwrap();
    let first = zero_rows(
        &gradient(dropping.as_mut(), &batch, "item_embedding", 1),
        dim,
    );
    let second = zero_rows(
        &gradient(dropping.as_mut(), &batch, "item_embedding", 2),
        dim,
    );
    for dropped in [&first, &second] {
        let share = dropped.len() as f64 / 100.0;
        assert!(
            (0.35..=0.65).contains(&share),
            "p = 0.5 zeroes {share} of the id rows"
        );
    }
    assert_ne!(first, second, "each step draws its own items");
    assert_eq!(
        zero_rows(
            &gradient(dropping.as_mut(), &batch, "item_embedding", 1),
            dim
        ),
        first,
        "a step's draw is fixed by its seed"
    );
    // The features still learn for dropped items; inference uses every id embedding.
    let field = gradient(dropping.as_mut(), &batch, "side.item.block", 1);
    assert!(field.iter().any(|&g| g != 0.0));
    let input = &batch.input;
    let scores = |m: &dyn Model| {
        let mut tape = Tape::inference();
        let s = m.scores(&mut tape, input).unwrap();
        tape.value(s).to_vec()
    };
    assert_eq!(scores(dropping.as_ref()), scores(model.as_ref()));
}

#[test]
fn cold_items_are_scored_from_features_and_never_trained() {
    // 120 users for 100 items, so that no user table has the shape of an item table.
    let data = synthetic(120, 6);
    let trained_by_gradient = [
        "amsrm",
        "sasrec",
        "gru4rec",
        "stamp",
        "nextitnet",
        "caser",
        "bprmf",
        "attrec",
        "fpmc",
        "fossil",
        "bert4rec",
    ];
    for model_name in trained_by_gradient {
        let exp = Experiment::prepare(&data, &config(model_name, &COLD)).unwrap();
        let cold = exp.cold.as_ref().unwrap().items.clone();
        let batch = first_batch(&exp, 64, 1, 1);
        let mut model = exp.build_model().unwrap();
        let dim = 16;
        let cold_rows: Vec<usize> = cold.iter().map(|&i| i as usize).collect();
        // Every per-item table (input and output embeddings, item biases; BERT4Rec's has one
        // more row, [MASK]) gets no gradient in a cold item's row: nothing pushes a held-out
        // item down during training.
        let tables: Vec<(String, usize)> = model
            .params()
            .ids()
            .filter_map(|id| {
                let shape = model.params().value(id).shape().to_vec();
                let rows = shape[0];
                let per_item = rows == exp.num_items() + 1
                    || (model_name == "bert4rec" && rows == exp.num_items() + 2);
                (per_item && shape.len() <= 2).then(|| {
                    let width = shape.get(1).copied().unwrap_or(1);
                    (model.params().name(id).to_string(), width)
                })
            })
            .collect();
        assert!(!tables.is_empty(), "{model_name} has an item table");
        for (table, width) in &tables {
            let grad = gradient(model.as_mut(), &batch, table, 1);
            let zero = zero_rows(&grad, *width);
            assert!(
                cold_rows.iter().all(|i| zero.contains(i)),
                "{model_name}: cold items get gradient in {table}"
            );
            assert!(zero.len() < exp.num_items(), "{model_name}: {table} learns");
        }
        if model_name != "amsrm" {
            continue;
        }
        // AMSRM: a cold item's id row (untrained noise) changes no score.
        let input = SequenceInput {
            users: Ids::from_vec(&[2], vec![1, 2]).unwrap(),
            items: Ids::from_vec(&[2, 10], (0..20).map(|i| 1 + i % 7).collect()).unwrap(),
            behaviours: Ids::from_vec(&[2, 10], vec![1; 20]).unwrap(),
        };
        let scores = |m: &dyn Model| {
            let mut tape = Tape::inference();
            let s = m.scores(&mut tape, &input).unwrap();
            tape.value(s).to_vec()
        };
        let before = scores(model.as_ref());
        let store = model.params_mut();
        let id = store.find("item_embedding").unwrap();
        let mut table = store.value(id).to_vec();
        for &item in &cold_rows {
            table[item * dim..(item + 1) * dim].fill(7.0);
        }
        store
            .set_value(id, Tensor::from_vec(&[101, dim], table).unwrap())
            .unwrap();
        assert_eq!(scores(model.as_ref()), before);
    }
}

#[test]
fn features_rank_cold_items_and_new_users_above_chance_and_pop_scores_no_cold_item() {
    let data = taste_data(300, 7);
    let mut sets = COLD.to_vec();
    sets.extend([
        "train.epochs=15",
        "model_options.item_id_dropout=0.3",
        "model_options.first_item_from_user=true",
        "eval.ks=[10,20]",
    ]);
    let exp = Experiment::prepare(&data, &config("amsrm", &sets)).unwrap();
    assert_no_leak(&exp);
    let mut model = exp.build_model().unwrap();
    let dir = temp_dir("taste");
    let report = train(&exp, model.as_mut(), &dir, &TrainOptions::default()).unwrap();
    let groups: Vec<&str> = report.cold_start.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(groups.len(), 5, "one report per group: {groups:?}");
    let saved = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(saved.contains("\"cold items\""));
    let _ = std::fs::remove_dir_all(&dir);

    let cold = exp.cold.as_ref().unwrap();
    let cold_items = &cold.groups[4].cases;
    let new_users = &cold.groups[0].cases;
    assert!(cold_items.len() >= 50 && new_users.len() >= 50);
    let pop = common::fitted_pop(&exp);
    // Chance: 20 of the ~185 candidates. A cold item shares its score with the other cold
    // items of its category (same features), and lands in the middle of the ~28 unseen items
    // of the category: the warm ones carry their id embedding's extra evidence.
    let amsrm_cold = common::hit_rate(model.as_ref(), &exp, cold_items, 20);
    assert!(
        amsrm_cold > 0.35,
        "AMSRM HR@20 on cold items {amsrm_cold} (chance ≈ 0.11)"
    );
    let pop_cold = evaluate_cases(pop.as_ref(), cold_items, exp.num_items(), &exp.config).unwrap();
    assert_eq!(
        pop_cold.at(20).unwrap().hit_rate,
        0.0,
        "Pop never ranks a cold item"
    );
    // A new user, from the taste feature alone: 10 of the ~36 warm items of the category.
    let amsrm_new = common::hit_rate(model.as_ref(), &exp, new_users, 10);
    let pop_new = common::hit_rate(pop.as_ref(), &exp, new_users, 10);
    assert!(
        amsrm_new > 0.15 && amsrm_new > 2.0 * pop_new,
        "new users at history 0: AMSRM HR@10 {amsrm_new}, Pop {pop_new}"
    );
}

#[test]
fn bad_cold_start_settings_are_errors() {
    for (setting, key) in [
        ("data.cold_users=1.0", "data.cold_users"),
        ("data.cold_users=-0.1", "data.cold_users"),
        ("data.cold_items=1.5", "data.cold_items"),
        ("model_options.item_id_dropout=1.0", "item_id_dropout"),
    ] {
        let error = Config::from_toml_with_overrides("", &[setting.to_string()])
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{setting}: {error}");
    }
    let bce = [
        "data.cold_items=0.1".to_string(),
        "train.loss=bce".to_string(),
    ];
    assert!(Config::from_toml_with_overrides("", &bce).is_err());
    let no_prefix = [
        "data.cold_users=0.1".to_string(),
        "data.cold_user_prefixes=[]".to_string(),
    ];
    assert!(Config::from_toml_with_overrides("", &no_prefix).is_err());
    // A group no case can fill is an error before training, not after it.
    let long_prefix = config(
        "pop",
        &["data.cold_users=0.2", "data.cold_user_prefixes=[40]"],
    );
    let error = Experiment::prepare(&synthetic(50, 8), &long_prefix)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("history 40"), "{error}");
    // The start position needs user features.
    let mut data = synthetic(50, 8);
    data.user_features = FeatureTable::default();
    let exp = Experiment::prepare(
        &data,
        &config("amsrm", &["model_options.first_item_from_user=true"]),
    )
    .unwrap();
    let error = exp.build_model().err().unwrap().to_string();
    assert!(error.contains("first_item_from_user"), "{error}");
}

#[test]
fn ml100k_split_is_leak_free() {
    let Some(root) = std::env::var_os("SEQREC_DATA") else {
        println!(
            "SEQREC_DATA is not set: the ml-100k check did not run (the generated-data tests did)"
        );
        return;
    };
    let path = PathBuf::from(root).join("ml-100k");
    if !path.exists() {
        println!(
            "{} does not exist: the ml-100k check did not run",
            path.display()
        );
        return;
    }
    let data = seqrec::data::load::load(&path).unwrap();
    let exp = Experiment::prepare(&data, &config("amsrm", &COLD)).unwrap();
    assert_no_leak(&exp);
    let cold = exp.cold.as_ref().unwrap();
    assert_eq!(cold.users.len(), 189, "round(0.2 · 943)");
    assert_eq!(cold.items.len(), 168, "round(0.1 · 1682)");
    for group in &cold.groups {
        assert!(!group.cases.is_empty(), "{} is empty", group.name);
    }
}

#[test]
fn the_command_line_reports_every_group() {
    let dir = temp_dir("cli");
    let folder = common::synthetic::write_movielens_folder(&synthetic(60, 9), &dir.join("data"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_seqrec"))
        .args(["train", "--model", "pop", "--json", "--data"])
        .arg(&folder)
        .args([
            "--set",
            "data.cold_users=0.2",
            "--set",
            "data.cold_items=0.1",
        ])
        .arg("--out")
        .arg(dir.join("run"))
        .env_remove("SEQREC_DATA")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let groups: Vec<&str> = report["cold_start"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups.len(), 5, "{groups:?}");
    assert_eq!(groups[4], "cold items");
    let cold_items = &report["cold_start"][4]["test"];
    assert_eq!(cold_items["at_k"][0]["hit_rate"].as_f64(), Some(0.0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn feature_popularity_gives_an_unseen_item_the_mean_count_of_its_tokens() {
    use seqrec::models::featpop::feature_popularity;
    use seqrec::models::side_info::FieldIds;
    // Items 1-3 warm (3, 1, 2 interactions), 4-6 cold. Field "genre": 1 {a}, 2 {a, b},
    // 3 {b}, 4 {a}, 5 {b}, 6 {}. Field "brand": 1 x, 2 y, 3 x, 4 x, 5 z (no warm item), 6 y.
    // pop(a) = (3+1)/2 = 2, pop(b) = (1+2)/2 = 1.5; pop(x) = (3+2)/2 = 2.5, pop(y) = 1, pop(z) = 0.
    let genre = FieldIds {
        name: "genre".into(),
        vocab: 3, // 0 missing, 1 a, 2 b
        ids: Ids::from_vec(&[7, 2], vec![0, 0, 1, 0, 1, 2, 2, 0, 1, 0, 2, 0, 0, 0]).unwrap(),
        counts: Tensor::full(&[7, 1], 1.0),
    };
    let brand = FieldIds {
        name: "brand".into(),
        vocab: 4, // 0 missing, 1 x, 2 y, 3 z
        ids: Ids::from_vec(&[7, 1], vec![0, 1, 2, 1, 1, 3, 2]).unwrap(),
        counts: Tensor::full(&[7, 1], 1.0),
    };
    let counts = [0.0, 3.0, 1.0, 2.0, 0.0, 0.0, 0.0];
    let scores = feature_popularity(&counts, &[genre, brand]);
    // Item 4: tokens a, x → (2 + 2.5) / 2; item 5: b, z → (1.5 + 0) / 2; item 6: y → 1.
    let want = [0.0, 3.0, 1.0, 2.0, 2.25, 0.75, 1.0];
    for (i, (got, want)) in scores.iter().zip(want).enumerate() {
        assert!((got - want).abs() < 1e-6, "item {i}: {got} vs {want}");
    }
    // Without item features a cold item scores 0, as in Pop.
    assert_eq!(feature_popularity(&counts, &[]), counts.to_vec());
}

#[test]
fn featpop_scores_cold_items_by_their_category_through_the_model_ids() {
    // The model sees re-indexed item ids; the expected scores come from the data set's own
    // rule (category of item name i = (i − 1) mod 5) and the training counts.
    let data = taste_data(300, 7);
    let exp = Experiment::prepare(&data, &config("featpop", &COLD)).unwrap();
    let mut model = exp.build_model().unwrap();
    model.fit(&exp.split.train, exp.num_items()).unwrap();
    let scores = model
        .params()
        .value(model.params().find("popularity").unwrap())
        .to_vec();
    let counts = common::fitted_pop(&exp)
        .params()
        .value(
            common::fitted_pop(&exp)
                .params()
                .find("popularity")
                .unwrap(),
        )
        .to_vec();
    let category = |i: usize| (exp.item_names[i].parse::<u32>().unwrap() - 1) % CATEGORIES;
    let mut cold_seen = 0;
    for i in 1..=exp.num_items() {
        if counts[i] > 0.0 {
            assert_eq!(scores[i], counts[i], "a warm item keeps its count");
            continue;
        }
        let warm_same: Vec<f32> = (1..=exp.num_items())
            .filter(|&j| counts[j] > 0.0 && category(j) == category(i))
            .map(|j| counts[j])
            .collect();
        let want = warm_same.iter().sum::<f32>() / warm_same.len() as f32;
        assert!(
            (scores[i] - want).abs() < 1e-3 * want,
            "cold item {i}: {} vs {want}",
            scores[i]
        );
        cold_seen += 1;
    }
    assert!(cold_seen >= 15, "only {cold_seen} cold items");
}

#[test]
fn excluded_items_are_never_sampled_as_negatives() {
    let data = synthetic(100, 6);
    let exp = Experiment::prepare(&data, &config("sasrec", &COLD)).unwrap();
    let cold = exp.cold.as_ref().unwrap().items.clone();
    let batch_config = |negatives| seqrec::data::batch::BatchConfig {
        max_len: exp.config.data.max_len,
        batch_size: 64,
        examples: seqrec::data::batch::Examples::EveryPosition,
        negatives,
        sampling: seqrec::data::batch::Sampling::Uniform,
        exclude_user_items: true,
        seed: 1,
    };
    let batcher = Batcher::new(&exp.split.train, exp.num_items(), batch_config(20))
        .unwrap()
        .exclude_from_negatives(&cold)
        .unwrap();
    let mut drawn = 0;
    for batch in batcher.epoch(0).unwrap() {
        for &item in batch.negatives.values().iter().filter(|&&i| i != 0) {
            assert!(
                !cold.contains(&item),
                "cold item {item} drawn as a negative"
            );
            drawn += 1;
        }
    }
    // 20 negatives per position over ~90 items: a cold item would show up thousands of times.
    assert!(drawn > 10_000, "only {drawn} negatives");
    // Bad requests are errors: an item outside the catalogue, or nothing left to draw.
    let plain = || Batcher::new(&exp.split.train, exp.num_items(), batch_config(1)).unwrap();
    assert!(plain().exclude_from_negatives(&[0]).is_err());
    assert!(
        plain()
            .exclude_from_negatives(&[exp.num_items() as u32 + 1])
            .is_err()
    );
    let everything: Vec<u32> = (1..=exp.num_items() as u32).collect();
    let error = plain().exclude_from_negatives(&everything).err().unwrap();
    assert!(
        error.to_string().contains("no item can be a negative"),
        "{error}"
    );
}
