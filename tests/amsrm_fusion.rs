//! AMSRM's fusion options: `side_fusion = "add"` (E = S + M·W_M + b_M),
//! `side_fusion = "decoupled"` (M·W_M + b_M enters every block's attention logits only) and
//! `side_info_in_output = false` (score against the id embedding only). With id-only scores
//! the side information reaches them only through W_M: zero it and the side-information
//! tables no longer matter (with W_M kept, or with N_i = item + fields, they do); the
//! decoupled attention against finite differences of an f64 reference; every option learns
//! the generated walk; a bad `side_fusion` is an error.

mod common;

use common::synthetic::synthetic;
use common::{Check, check_op, random_values};
use seqrec::config::Config;
use seqrec::models::layers::decoupled_attention;
use seqrec::models::{Model, SequenceInput};
use seqrec::rng::Rng;
use seqrec::train::{Experiment, TrainOptions, train};
use seqrec::{Ids, Tape, Tensor};

fn config(extra: &[&str]) -> Config {
    let mut all = vec!["model_options.heads=2", "model_options.dropout=0.0"];
    all.extend_from_slice(extra);
    common::small_config("amsrm", &all)
}

fn scores(model: &dyn Model, exp: &Experiment) -> Vec<f32> {
    let users: Vec<u32> = (1..=8).collect();
    let items: Vec<u32> = (0..8 * 10).map(|i| 1 + (i * 7 % 30) as u32).collect();
    let input = SequenceInput {
        users: Ids::from_vec(&[8], users).unwrap(),
        items: Ids::from_vec(&[8, 10], items).unwrap(),
        behaviours: Ids::from_vec(&[8, 10], vec![0; 80]).unwrap(),
    };
    assert!(exp.num_items() >= 30);
    let mut tape = Tape::inference();
    let s = model.scores(&mut tape, &input).unwrap();
    tape.value(s).to_vec()
}

/// Scores before and after every side-information table is replaced by other values.
fn scores_with_other_side_tables(extra: &[&str], zero_fuse: bool) -> (Vec<f32>, Vec<f32>) {
    let data = synthetic(60, 3);
    let config = config(extra);
    let exp = Experiment::prepare(&data, &config).unwrap();
    let mut model = exp.build_model().unwrap();
    assert!(!exp.side.items.is_empty(), "the walk has item features");
    let store = model.params_mut();
    let ids: Vec<_> = store.ids().collect();
    if zero_fuse {
        for &id in &ids {
            if store.name(id).starts_with("fuse") {
                let shape = store.value(id).shape().to_vec();
                store.set_value(id, Tensor::zeros(&shape)).unwrap();
            }
        }
    }
    let before = scores(model.as_ref(), &exp);
    let store = model.params_mut();
    let mut changed = 0;
    for &id in &ids {
        if store.name(id).starts_with("side.") {
            let shape = store.value(id).shape().to_vec();
            let n: usize = shape.iter().product();
            let other = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
            store
                .set_value(id, Tensor::from_vec(&shape, other).unwrap())
                .unwrap();
            changed += 1;
        }
    }
    assert!(changed > 0, "no side-information table found");
    (before, scores(model.as_ref(), &exp))
}

#[test]
fn additive_side_information_enters_only_through_its_projection() {
    let both = [
        "model_options.side_fusion=add",
        "model_options.side_info_in_output=false",
    ];
    let (before, after) = scores_with_other_side_tables(&both, true);
    assert_eq!(before, after, "side tables leaked past a zero W_M");
    // Controls: with W_M kept, or with the side information folded into the output items,
    // the tables matter.
    let (before, after) = scores_with_other_side_tables(&both, false);
    assert_ne!(before, after, "W_M should carry the side information");
    let (before, after) = scores_with_other_side_tables(&both[..1], true);
    assert_ne!(before, after, "N_i should carry the side information");
}

#[test]
fn decoupled_side_information_enters_only_through_its_projection() {
    let decoupled = [
        "model_options.side_fusion=decoupled",
        "model_options.side_info_in_output=false",
    ];
    let (before, after) = scores_with_other_side_tables(&decoupled, true);
    assert_eq!(before, after, "side tables leaked past a zero W_M");
    let (before, after) = scores_with_other_side_tables(&decoupled, false);
    assert_ne!(before, after, "the side stream should change the attention");
}

#[test]
fn decoupled_attention_gradients() {
    // softmax((q_h·k_h + q^M_h·k^M_h)/√d_h) v_h per head, causal, a left-padded sequence, two
    // heads, against an f64 reference: values and the gradients of all five inputs.
    let (b, n, d, heads) = (2, 4, 4, 2);
    let head_dim = d / heads;
    let ids = [0u32, 3, 5, 2, 1, 4, 2, 6];
    let key_mask: Vec<f32> = ids
        .iter()
        .map(|&i| if i == 0 { 0.0 } else { 1.0 })
        .collect();
    let key_mask = Tensor::from_vec(&[b, n], key_mask).unwrap();
    let mut rng = Rng::new(5);
    let inputs: Vec<(Vec<usize>, Vec<f64>)> = (0..5)
        .map(|_| (vec![b, n, d], random_values(b * n * d, &mut rng)))
        .collect();
    let reference = |x: &[Vec<f64>]| -> Vec<f64> {
        let (q, k, v, side_q, side_k) = (&x[0], &x[1], &x[2], &x[3], &x[4]);
        let mut out = vec![0.0; b * n * d];
        for s in 0..b {
            for t in 0..n {
                for h in 0..heads {
                    let cols = h * head_dim..(h + 1) * head_dim;
                    let dot = |a: &[f64], c: &[f64], j: usize| -> f64 {
                        cols.clone()
                            .map(|col| a[(s * n + t) * d + col] * c[(s * n + j) * d + col])
                            .sum()
                    };
                    let visible: Vec<usize> = (0..=t).filter(|&j| ids[s * n + j] != 0).collect();
                    let logits: Vec<f64> = visible
                        .iter()
                        .map(|&j| {
                            (dot(q, k, j) + dot(side_q, side_k, j)) / (head_dim as f64).sqrt()
                        })
                        .collect();
                    let max = logits.iter().cloned().fold(f64::MIN, f64::max);
                    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let total: f64 = exps.iter().sum();
                    for col in cols.clone() {
                        out[(s * n + t) * d + col] = visible
                            .iter()
                            .zip(&exps)
                            .map(|(&j, e)| e / total * v[(s * n + j) * d + col])
                            .sum();
                    }
                }
            }
        }
        out
    };
    check_op(
        "decoupled attention",
        &inputs,
        &[true; 5],
        |tape, x| {
            let streams = [x[0], x[1], x[2], x[3], x[4]];
            decoupled_attention(tape, streams, heads, &key_mask, 0.0, None)
        },
        &reference,
        &Check::default(),
    );
}

#[test]
fn every_option_learns_the_walk() {
    let data = synthetic(120, 5);
    for extra in [
        "model_options.side_fusion=add",
        "model_options.side_fusion=decoupled",
        "model_options.side_info_in_output=false",
        "model_options.attribute_loss=1",
    ] {
        let config = config(&[extra]);
        let exp = Experiment::prepare(&data, &config).unwrap();
        let mut model = exp.build_model().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "seqrec-amsrm-fusion-{}-{}",
            extra.replace(['.', '='], "-"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        train(&exp, model.as_mut(), &dir, &TrainOptions::default()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let pop = common::fitted_pop(&exp);
        let hr = |m: &dyn Model| common::hit_rate(m, &exp, &exp.split.test, 10);
        let (ours, popularity) = (hr(model.as_ref()), hr(pop.as_ref()));
        println!("{extra}: test HR@10 {ours:.3}, popularity {popularity:.3}");
        assert!(ours > popularity + 0.3, "{extra}: {ours} vs {popularity}");
    }
}

#[test]
fn an_unknown_side_fusion_is_an_error() {
    let config = Config::from_toml_with_overrides(
        "model = \"amsrm\"\n",
        &["model_options.side_fusion=sum".to_string()],
    );
    let error = config.and_then(|c| c.validate().map(|_| c)).unwrap_err();
    assert!(error.to_string().contains("side_fusion"), "{error}");
}
