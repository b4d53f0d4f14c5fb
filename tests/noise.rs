//! Evaluation-time input noise (`eval.noise`, `seqrec evaluate --noise`): ⌈fraction·len⌉
//! random catalogue items inserted at random positions of each evaluated history. The count,
//! reproducibility, the real items' order, untouched targets, the identity at noise 0, bad
//! values as errors, and that a model which learned the synthetic walk is hurt by the noise.

mod common;

use common::synthetic::synthetic;
use seqrec::config::Config;
use seqrec::eval::noise::{insert_noise, noise_count};
use seqrec::train::{Experiment, TrainOptions, evaluate_cases, train};

fn config(model: &str, extra: &[&str]) -> Config {
    common::small_config(model, extra)
}

/// A history of items 1001..=1000+len (outside a catalogue of 100, so noise is recognisable).
fn marked_history(len: usize) -> (Vec<u32>, Vec<u32>) {
    let items: Vec<u32> = (1..=len as u32).map(|i| 1000 + i).collect();
    let behaviours: Vec<u32> = (0..len as u32).map(|i| 1 + i % 2).collect();
    (items, behaviours)
}

#[test]
fn count_is_the_ceiling_of_fraction_times_length() {
    assert_eq!(noise_count(10, 0.1), 1);
    assert_eq!(noise_count(10, 0.2), 2);
    assert_eq!(noise_count(30, 0.1), 3);
    assert_eq!(noise_count(11, 0.1), 2);
    assert_eq!(noise_count(1, 0.05), 1);
    assert_eq!(noise_count(0, 0.5), 0);
    assert_eq!(noise_count(25, 0.0), 0);
    for len in [1, 5, 17, 50, 200] {
        for fraction in [0.1, 0.2, 0.5] {
            let (history, behaviours) = marked_history(len);
            let (noisy, kinds) = insert_noise(&history, &behaviours, fraction, 100, 7, 3);
            let k = (fraction * len as f64 - 1e-9).ceil() as usize;
            assert_eq!(noisy.len(), len + k, "len {len}, fraction {fraction}");
            assert_eq!(kinds.len(), noisy.len());
            let inserted = noisy.iter().filter(|&&i| i <= 100).count();
            assert_eq!(inserted, k, "len {len}, fraction {fraction}");
            assert!(noisy.iter().all(|&i| i >= 1), "padding inserted");
            assert!(kinds.iter().all(|&b| b == 1 || b == 2), "invalid behaviour");
        }
    }
}

#[test]
fn real_items_keep_their_order_and_noise_lands_anywhere() {
    let (history, behaviours) = marked_history(20);
    let mut first_slot_noise = 0;
    let mut last_slot_noise = 0;
    for case in 0..400 {
        let (noisy, kinds) = insert_noise(&history, &behaviours, 0.2, 100, 1, case);
        let real: Vec<u32> = noisy.iter().copied().filter(|&i| i > 100).collect();
        assert_eq!(real, history, "case {case}: real items reordered or lost");
        // Each real item keeps its behaviour.
        for (item, kind) in noisy.iter().zip(&kinds) {
            if *item > 100 {
                assert_eq!(*kind, behaviours[(*item - 1001) as usize]);
            }
        }
        first_slot_noise += (noisy[0] <= 100) as usize;
        last_slot_noise += (*noisy.last().unwrap() <= 100) as usize;
    }
    // 4 noise slots among 24 positions: each end is noise with probability 1/6 (≈ 67 of 400).
    assert!((35..110).contains(&first_slot_noise), "{first_slot_noise}");
    assert!((35..110).contains(&last_slot_noise), "{last_slot_noise}");
    // The noise items are spread over the catalogue.
    let mut seen = [false; 101];
    for case in 0..400 {
        for i in insert_noise(&history, &behaviours, 0.2, 100, 1, case).0 {
            if i <= 100 {
                seen[i as usize] = true;
            }
        }
    }
    assert!(seen[1..].iter().filter(|&&s| s).count() > 90);
}

#[test]
fn noise_is_reproducible_and_depends_on_seed_and_case() {
    let (history, behaviours) = marked_history(30);
    let a = insert_noise(&history, &behaviours, 0.2, 100, 5, 11);
    assert_eq!(a, insert_noise(&history, &behaviours, 0.2, 100, 5, 11));
    assert_ne!(a.0, insert_noise(&history, &behaviours, 0.2, 100, 6, 11).0);
    assert_ne!(a.0, insert_noise(&history, &behaviours, 0.2, 100, 5, 12).0);
    // Without behaviours the items are the same and no behaviours are invented.
    let (items, kinds) = insert_noise(&history, &[], 0.2, 100, 5, 11);
    assert_eq!(items, a.0);
    assert!(kinds.is_empty());
    // Noise 0 is the identity.
    assert_eq!(
        insert_noise(&history, &behaviours, 0.0, 100, 5, 11),
        (history.clone(), behaviours.clone())
    );
}

#[test]
fn bad_noise_values_are_errors() {
    for value in ["1.0", "1.5", "-0.1", "nan", "inf"] {
        let err = Config::from_toml_with_overrides(
            "model = \"sasrec\"\n",
            &[format!("eval.noise={value}")],
        );
        assert!(err.is_err(), "eval.noise={value} accepted");
    }
    assert!(
        Config::from_toml_with_overrides("model = \"sasrec\"\n", &["eval.noise=0.2".into()])
            .is_ok()
    );
    // evaluate_cases refuses a bad value set directly, too.
    let data = synthetic(20, 3);
    let mut config = config("sasrec", &[]);
    let exp = Experiment::prepare(&data, &config).unwrap();
    let model = exp.build_model().unwrap();
    config.eval.noise = 1.0;
    assert!(evaluate_cases(model.as_ref(), &exp.split.test, exp.num_items(), &config).is_err());
}

#[test]
fn a_trained_model_degrades_with_noise_and_noise_zero_changes_nothing() {
    let data = synthetic(80, 1);
    let config = config("sasrec", &[]);
    let exp = Experiment::prepare(&data, &config).unwrap();
    let mut model = exp.build_model().unwrap();
    let dir = std::env::temp_dir().join(format!("seqrec-test-noise-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = train(&exp, model.as_mut(), &dir, &TrainOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let cases_before = exp.split.test.clone();
    let at = |noise: f64| {
        let mut c = config.clone();
        c.eval.noise = noise;
        evaluate_cases(model.as_ref(), &exp.split.test, exp.num_items(), &c).unwrap()
    };
    let clean = at(0.0);
    // Noise 0 is exactly the default evaluation (the one train() reported).
    assert_eq!(&clean, report.test.as_ref().unwrap());
    let light = at(0.1);
    let heavy = at(0.2);
    // Reproducible, and independent of the number of threads.
    assert_eq!(heavy, at(0.2));
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| at(0.2));
    assert_eq!(heavy, one_thread);
    // The targets (and the excluded history) are untouched: same users and targets, and the
    // cases themselves are unchanged.
    for r in [&light, &heavy] {
        assert_eq!(r.n_users, clean.n_users);
        assert_eq!(r.n_targets, clean.n_targets);
    }
    for (a, b) in exp.split.test.iter().zip(&cases_before) {
        assert_eq!(a.history, b.history);
        assert_eq!(a.targets, b.targets);
        assert_eq!(a.known_items, b.known_items);
    }
    let hr = |r: &seqrec::eval::EvalReport| r.at(10).unwrap().hit_rate;
    println!(
        "sasrec on the synthetic walk, test HR@10: noise 0 {:.3}, 0.1 {:.3}, 0.2 {:.3}",
        hr(&clean),
        hr(&light),
        hr(&heavy)
    );
    assert!(hr(&clean) > 0.6, "the model did not learn: {}", hr(&clean));
    assert!(hr(&heavy) < hr(&clean), "noise 0.2 did not hurt");
}
