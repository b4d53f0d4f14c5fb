//! MF by ALS (Hu, Koren & Volinsky 2008) and the HMM recommender (Hosseinzadeh Aghdam et al.
//! 2015): the Cholesky solve against a system solved by hand; every ALS half-step lowers the
//! objective, which matches a brute-force sum over all pairs; the HMM's forward-backward against
//! brute-force enumeration of the hidden paths; EM never lowers the (penalised)
//! log-likelihood; both beat popularity on generated data and, when `SEQREC_DATA` is set, on
//! ml-100k; a fitted run reopens from its checkpoint with the same test metrics.

use std::path::PathBuf;

mod common;

use common::synthetic::{synthetic, write_movielens_folder};
use seqrec::autograd::{Tape, Var};
use seqrec::config::Config;
use seqrec::data::Dataset;
use seqrec::data::split::TrainSequence;
use seqrec::models::hmm::{
    HmmParams, em_step, forward_backward, log_likelihood, log_prior, next_item_scores,
};
use seqrec::models::mf::{Als, cholesky_solve};
use seqrec::models::{LossKind, Model, SequenceInput, TrainingBatch};
use seqrec::optim::ParamStore;
use seqrec::rng::Rng;
use seqrec::tensor::Tensor;
use seqrec::train::{Experiment, TrainOptions, evaluate_cases, open_run, train};

fn config(model: &str, extra: &[&str]) -> Config {
    let mut sets: Vec<String> = ["data.max_len=20", "model_options.dim=16"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqrec-alshmm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

// ---------------------------------------------------------------- popularity baseline

/// Ranks every item by its number of training interactions, whoever asks.
struct Popularity {
    store: ParamStore,
    counts: Vec<f32>,
}

impl Popularity {
    fn new(train: &[TrainSequence], num_items: usize) -> Popularity {
        let mut counts = vec![0.0; num_items + 1];
        for q in train {
            for &i in &q.items {
                counts[i as usize] += 1.0;
            }
        }
        Popularity {
            store: ParamStore::new(),
            counts,
        }
    }
}

impl Model for Popularity {
    fn name(&self) -> &'static str {
        "popularity"
    }
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn loss(&self, _: &mut Tape, _: &TrainingBatch, _: LossKind) -> seqrec::Result<Var> {
        unreachable!("the baseline is never trained")
    }
    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> seqrec::Result<Var> {
        let b = input.users.shape()[0];
        let values = self.counts.repeat(b);
        Ok(tape.constant(Tensor::from_vec(&[b, self.counts.len()], values)?))
    }
}

/// (model, popularity) test NDCG@10 and HR@10 of `model` fitted through `train`.
fn fit_and_compare(exp: &Experiment, name: &str) -> ((f64, f64), (f64, f64)) {
    let mut model = exp.build_model().unwrap();
    let dir = temp_dir(&format!("fit-{name}-{}", exp.dataset_name));
    let report = train(exp, model.as_mut(), &dir, &TrainOptions::default()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let test = report.test.as_ref().unwrap().at(10).unwrap();
    let pop = Popularity::new(&exp.split.train, exp.num_items());
    let baseline = evaluate_cases(&pop, &exp.split.test, exp.num_items(), &exp.config).unwrap();
    let baseline = baseline.at(10).unwrap();
    println!(
        "{name} on {}: objective {:.4}, test NDCG@10 {:.4} HR@10 {:.4}; popularity NDCG@10 {:.4} HR@10 {:.4}",
        exp.dataset_name,
        report.log[0].loss,
        test.ndcg,
        test.hit_rate,
        baseline.ndcg,
        baseline.hit_rate
    );
    (
        (test.ndcg, test.hit_rate),
        (baseline.ndcg, baseline.hit_rate),
    )
}

fn ml100k() -> Option<Dataset> {
    match std::env::var_os("SEQREC_DATA") {
        None => {
            eprintln!("SEQREC_DATA is not set: the ml-100k check was skipped (synthetic data ran)");
            None
        }
        Some(root) => {
            let path = PathBuf::from(root).join("ml-100k");
            if !path.exists() {
                eprintln!(
                    "{} does not exist: the ml-100k check was skipped",
                    path.display()
                );
                return None;
            }
            Some(seqrec::data::load::load(&path).unwrap())
        }
    }
}

// ---------------------------------------------------------------- ALS

#[test]
fn cholesky_solves_a_system_solved_by_hand() {
    // A = L Lᵀ with L = [[2, 0, 0], [1, 2, 0], [1, 1, 2]]; x = (1, −1, 2) gives b = A x.
    let mut a = vec![4.0, 2.0, 2.0, 2.0, 5.0, 3.0, 2.0, 3.0, 6.0];
    let mut b = vec![6.0, 3.0, 11.0];
    cholesky_solve(&mut a, &mut b, 3).unwrap();
    for (got, want) in b.iter().zip([1.0, -1.0, 2.0]) {
        assert!((got - want).abs() < 1e-12, "x = {b:?}");
    }
    let lower = [a[0], a[3], a[4], a[6], a[7], a[8]];
    assert_eq!(lower, [2.0, 1.0, 2.0, 1.0, 1.0, 2.0], "L = {a:?}");

    // Only the lower triangle is read: garbage above the diagonal changes nothing.
    let mut a = vec![4.0, 99.0, -7.0, 2.0, 5.0, 1e9, 2.0, 3.0, 6.0];
    let mut b = vec![6.0, 3.0, 11.0];
    cholesky_solve(&mut a, &mut b, 3).unwrap();
    assert!((b[2] - 2.0).abs() < 1e-12);

    // Not positive definite, or the wrong sizes: an error, not a panic or NaN.
    let mut a = vec![1.0, 2.0, 2.0, 1.0];
    assert!(cholesky_solve(&mut a, &mut [1.0, 1.0], 2).is_err());
    assert!(cholesky_solve(&mut [1.0; 3], &mut [1.0; 2], 2).is_err());
}

/// L of eq. 3 summed over every user-item pair, the slow way.
fn brute_force_objective(
    als: &Als,
    train: &[TrainSequence],
    f: usize,
    alpha: f64,
    lambda: f64,
) -> f64 {
    let users = als.users.len() / f;
    let items = als.items.len() / f;
    let mut r = vec![0.0; users * items];
    for q in train {
        for &i in &q.items {
            r[q.user as usize * items + i as usize] += 1.0;
        }
    }
    let mut total = 0.0;
    for u in 0..users {
        for i in 0..items {
            let s: f64 = (0..f)
                .map(|d| als.users[u * f + d] * als.items[i * f + d])
                .sum();
            let r_ui = r[u * items + i];
            let p = if r_ui > 0.0 { 1.0 } else { 0.0 };
            total += (1.0 + alpha * r_ui) * (p - s) * (p - s);
        }
    }
    total
        + lambda
            * als
                .users
                .iter()
                .chain(&als.items)
                .map(|v| v * v)
                .sum::<f64>()
}

#[test]
fn every_als_half_step_lowers_the_objective() {
    let data = synthetic(60, 5);
    let exp = Experiment::prepare(&data, &config("mf", &[])).unwrap();
    let (f, alpha, lambda) = (8, 5.0, 0.5);
    let train = &exp.split.train;
    let mut als = Als::new(train, exp.num_users(), exp.num_items(), f, alpha, lambda, 3).unwrap();
    let mut previous = als.objective();
    let brute = brute_force_objective(&als, train, f, alpha, lambda);
    assert!(
        (previous - brute).abs() < 1e-9 * brute,
        "{previous} vs {brute}"
    );
    for sweep in 0..6 {
        for half in ["users", "items"] {
            if half == "users" {
                als.update_users().unwrap();
            } else {
                als.update_items().unwrap();
            }
            let now = als.objective();
            let brute = brute_force_objective(&als, train, f, alpha, lambda);
            assert!((now - brute).abs() < 1e-9 * brute, "{now} vs {brute}");
            println!("sweep {sweep} {half}: L = {now:.6}");
            assert!(
                now <= previous * (1.0 + 1e-12),
                "sweep {sweep}, {half} half-step raised L: {previous} → {now}"
            );
            previous = now;
        }
    }
    // An exact half-step: moving any one user factor away from its solution raises L.
    als.update_users().unwrap();
    let solved = als.objective();
    for d in 0..f {
        als.users[7 * f + d] += 0.01;
        assert!(als.objective() > solved, "user 7, coordinate {d}");
        als.users[7 * f + d] -= 0.01;
    }
}

#[test]
fn mf_beats_popularity_on_generated_data() {
    let data = synthetic(80, 1);
    let exp = Experiment::prepare(&data, &config("mf", &[])).unwrap();
    let ((ndcg, hr), (pop_ndcg, pop_hr)) = fit_and_compare(&exp, "mf");
    assert!(
        ndcg > 1.5 * pop_ndcg && hr > pop_hr,
        "{ndcg} vs popularity {pop_ndcg}"
    );
}

#[test]
fn mf_folds_in_an_anonymous_sequence() {
    let data = synthetic(80, 1);
    let exp = Experiment::prepare(&data, &config("mf", &[])).unwrap();
    let mut model = exp.build_model().unwrap();
    model.fit(&exp.split.train, exp.num_items()).unwrap();
    // A user's own factor and her history folded in as an anonymous user (id 0) rank her
    // items alike: the fold-in solves the same normal equations.
    let q = &exp.split.train[3];
    let n = q.items.len();
    let input = |user: u32| SequenceInput {
        users: seqrec::tensor::Ids::from_vec(&[1], vec![user]).unwrap(),
        items: seqrec::tensor::Ids::from_vec(&[1, n], q.items.clone()).unwrap(),
        behaviours: seqrec::tensor::Ids::from_vec(&[1, n], vec![0; n]).unwrap(),
    };
    let score = |user: u32| {
        let mut tape = Tape::inference();
        let s = model.scores(&mut tape, &input(user)).unwrap();
        tape.value(s).to_vec()
    };
    let (known, folded) = (score(q.user), score(0));
    let top = |s: &[f32]| {
        let mut order: Vec<usize> = (1..s.len()).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        order.truncate(10);
        order
    };
    let (a, b) = (top(&known), top(&folded));
    let shared = a.iter().filter(|i| b.contains(i)).count();
    assert!(shared >= 7, "top 10 known {a:?} vs folded in {b:?}");
}

// ---------------------------------------------------------------- HMM

/// P(o, z) for every hidden path z of `o`, by enumeration.
fn joint_by_path(p: &HmmParams, o: &[u32]) -> Vec<(Vec<usize>, f64)> {
    let s = p.states;
    let paths = s.pow(o.len() as u32);
    (0..paths)
        .map(|mut code| {
            let z: Vec<usize> = (0..o.len())
                .map(|_| {
                    let state = code % s;
                    code /= s;
                    state
                })
                .collect();
            let mut prob = p.initial[z[0]] * p.emissions[o[0] as usize * s + z[0]];
            for t in 1..o.len() {
                prob *= p.transitions[z[t - 1] * s + z[t]] * p.emissions[o[t] as usize * s + z[t]];
            }
            (z, prob)
        })
        .collect()
}

#[test]
fn forward_backward_matches_enumeration_of_the_hidden_paths() {
    // 2 states, 3 items; deliberately lopsided numbers so that a transposed A or B shows.
    let p = HmmParams {
        states: 2,
        items: 3,
        initial: vec![0.7, 0.3],
        transitions: vec![0.9, 0.1, 0.25, 0.75],
        // Row i = item i: B_0(i), B_1(i). B_0 = (0.6, 0.3, 0.1), B_1 = (0.05, 0.15, 0.8).
        emissions: vec![0.0, 0.0, 0.6, 0.05, 0.3, 0.15, 0.1, 0.8],
    };
    for o in [[1u32, 3, 2], [3, 3, 1], [2, 1, 3]] {
        let joint = joint_by_path(&p, &o);
        let evidence: f64 = joint.iter().map(|(_, pr)| pr).sum();
        let posteriors = forward_backward(&p, &o);
        assert!(
            (posteriors.log_likelihood - evidence.ln()).abs() < 1e-12,
            "{o:?}: log P {} vs {}",
            posteriors.log_likelihood,
            evidence.ln()
        );
        for t in 0..3 {
            for s in 0..2 {
                let want: f64 = joint
                    .iter()
                    .filter(|(z, _)| z[t] == s)
                    .map(|(_, pr)| pr / evidence)
                    .sum();
                let got = posteriors.gamma[t * 2 + s];
                assert!(
                    (got - want).abs() < 1e-12,
                    "{o:?}: γ_{t}({s}) {got} vs {want}"
                );
            }
        }
        for a in 0..2 {
            for b in 0..2 {
                let want: f64 = joint
                    .iter()
                    .map(|(z, pr)| {
                        let hits = (0..2).filter(|&t| z[t] == a && z[t + 1] == b).count();
                        hits as f64 * pr / evidence
                    })
                    .sum();
                let got = posteriors.xi[a * 2 + b];
                assert!(
                    (got - want).abs() < 1e-12,
                    "{o:?}: Σξ({a},{b}) {got} vs {want}"
                );
            }
        }
        // The next-item prediction: Σ_z P(z | o) Σ_s A_{z_T s} B_s(i).
        let scores = next_item_scores(&p, &o);
        assert_eq!(scores[0], 0.0);
        for (i, &score) in scores.iter().enumerate().skip(1) {
            let want: f64 = joint
                .iter()
                .map(|(z, pr)| {
                    let last = z[2];
                    let next: f64 = (0..2)
                        .map(|s| p.transitions[last * 2 + s] * p.emissions[i * 2 + s])
                        .sum();
                    pr / evidence * next
                })
                .sum();
            assert!((score - want).abs() < 1e-12, "{o:?}: P(next = {i})");
        }
        // Left padding is skipped.
        assert_eq!(next_item_scores(&p, &[0, 0, o[0], o[1], o[2]]), scores);
    }
}

#[test]
fn em_never_lowers_the_log_likelihood() {
    let data = synthetic(60, 4);
    let exp = Experiment::prepare(&data, &config("hmm", &[])).unwrap();
    let sequences: Vec<&[u32]> = exp.split.train.iter().map(|q| q.items.as_slice()).collect();
    let mut p = HmmParams::initial_guess(8, exp.num_items(), &sequences, &mut Rng::new(2));
    let mut previous = log_likelihood(&p, &sequences);
    let mut previous_map = previous + log_prior(&p);
    let first = previous;
    for iteration in 0..25 {
        let (next, of_p) = em_step(&p, &sequences);
        assert!((of_p - previous).abs() < 1e-9 * previous.abs());
        p = next;
        let now = log_likelihood(&p, &sequences);
        let map = now + log_prior(&p);
        // EM with the smoothed M-step is MAP-EM: likelihood + log-prior cannot fall.
        assert!(
            map >= previous_map - 1e-9 * previous_map.abs(),
            "iteration {iteration}: penalised log-likelihood {previous_map} → {map}"
        );
        // The pseudo-counts are small, so the likelihood itself does not fall either.
        assert!(
            now >= previous - 1e-9 * previous.abs(),
            "iteration {iteration}: log-likelihood {previous} → {now}"
        );
        previous = now;
        previous_map = map;
    }
    assert!(
        previous > first + 0.1 * first.abs(),
        "EM barely moved: {first} → {previous}"
    );
    // Every probability stays positive and every distribution sums to 1.
    assert!(p.initial.iter().chain(&p.transitions).all(|&v| v > 0.0));
    assert!(p.emissions[p.states..].iter().all(|&v| v > 0.0));
    for s in 0..p.states {
        let total: f64 = (1..=p.items).map(|i| p.emissions[i * p.states + s]).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let row: f64 = p.transitions[s * p.states..(s + 1) * p.states].iter().sum();
        assert!((row - 1.0).abs() < 1e-9);
    }
}

#[test]
fn hmm_beats_popularity_on_a_walk() {
    // The next item depends on the previous one (i → i + 1): the state must carry it.
    let data = synthetic(80, 1);
    let exp = Experiment::prepare(
        &data,
        &config(
            "hmm",
            &[
                "model_options.hmm_states=24",
                "model_options.hmm_iterations=40",
            ],
        ),
    )
    .unwrap();
    let ((ndcg, hr), (pop_ndcg, pop_hr)) = fit_and_compare(&exp, "hmm");
    assert!(
        ndcg > 2.0 * pop_ndcg && hr > pop_hr,
        "{ndcg} vs popularity {pop_ndcg}"
    );
}

// ---------------------------------------------------------------- both

#[test]
fn bad_options_are_errors() {
    let data = synthetic(10, 1);
    for (model, set) in [
        ("mf", "model_options.als_lambda=0.0"),
        ("mf", "model_options.als_alpha=-1.0"),
        ("mf", "model_options.als_iterations=0"),
        ("hmm", "model_options.hmm_states=0"),
        ("hmm", "model_options.hmm_iterations=0"),
    ] {
        let exp = Experiment::prepare(&data, &config(model, &[set])).unwrap();
        let err = exp.build_model().err().expect(set).to_string();
        let option = set.split('=').next().unwrap();
        let option = option.trim_start_matches("model_options.");
        assert!(err.contains(option), "{set}: {err}");
    }
}

#[test]
fn fitted_runs_reopen_from_their_checkpoints() {
    let dir = temp_dir("reopen");
    let data_dir = write_movielens_folder(&synthetic(40, 3), &dir.join("data"));
    let dataset = seqrec::data::load::load(&data_dir).unwrap();
    for model in ["mf", "hmm"] {
        let config = config(model, &["model_options.hmm_states=8"]);
        let exp = Experiment::prepare(&dataset, &config).unwrap();
        let mut fitted = exp.build_model().unwrap();
        let run = dir.join(model);
        let report = train(&exp, fitted.as_mut(), &run, &TrainOptions::default()).unwrap();
        let (exp2, reopened) = open_run(&run, None).unwrap();
        for (id, _) in fitted.params().ids().zip(0..) {
            assert_eq!(
                fitted.params().value(id).to_vec(),
                reopened.params().value(id).to_vec(),
                "{model}: {}",
                fitted.params().name(id)
            );
        }
        let again = evaluate_cases(
            reopened.as_ref(),
            &exp2.split.test,
            exp2.num_items(),
            &exp2.config,
        )
        .unwrap();
        assert_eq!(&again, report.test.as_ref().unwrap(), "{model}");
        // A fresh, unfitted model ranks differently: the checkpoint carried the fit.
        let fresh = exp2.build_model().unwrap();
        let unfitted = evaluate_cases(
            fresh.as_ref(),
            &exp2.split.test,
            exp2.num_items(),
            &exp2.config,
        )
        .unwrap();
        assert_ne!(&unfitted, report.test.as_ref().unwrap(), "{model}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn both_beat_popularity_on_ml100k() {
    let Some(data) = ml100k() else {
        return;
    };
    for (model, sets) in [
        (
            "mf",
            vec!["model_options.dim=32", "model_options.als_iterations=8"],
        ),
        (
            "hmm",
            vec![
                "model_options.hmm_states=16",
                "model_options.hmm_iterations=20",
            ],
        ),
    ] {
        let exp = Experiment::prepare(&data, &config(model, &sets)).unwrap();
        let ((ndcg, hr), (pop_ndcg, pop_hr)) = fit_and_compare(&exp, model);
        assert!(
            ndcg > 1.4 * pop_ndcg && hr > pop_hr,
            "{model}: NDCG@10 {ndcg} vs popularity {pop_ndcg}"
        );
    }
}
