//! A model trains on the GPU with no code change: every model's first training steps on the
//! GPU follow the CPU's losses (same initialisation, batches and dropout masks), and
//! full-ranking scores agree after training. Both losses where the model has a code path of
//! its own for each (Caser, BPR-MF and AttRec skip padding rows, BPR-MF takes its softmax once
//! per user).

mod common;

use common::{assert_gpu_follows_cpu, gpu_or_skip};
use seqrec::config::Config;

fn config(model: &str, loss: &str) -> Config {
    let sets: Vec<String> = [
        "data.max_len=10",
        "model_options.dim=16",
        "model_options.ffn_dim=16",
        "model_options.window=3",
        "train.batch_size=16",
        "train.negatives=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("train.loss=\"{loss}\"")])
    .collect();
    Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets).unwrap()
}

fn follows_the_cpu(model: &str, loss: &str) {
    let Some(_) = gpu_or_skip(&format!("{model} {loss} on the GPU")) else {
        return;
    };
    assert_gpu_follows_cpu(&config(model, loss), &format!("{model} {loss}"));
}

#[test]
fn sasrec_full_softmax() {
    follows_the_cpu("sasrec", "ce");
}

#[test]
fn sasrec_sampled_bce() {
    follows_the_cpu("sasrec", "bce");
}

#[test]
fn amsrm_full_softmax() {
    follows_the_cpu("amsrm", "ce");
}

#[test]
fn caser_sampled_bce() {
    follows_the_cpu("caser", "bce");
}

#[test]
fn bprmf_sampled_bce() {
    follows_the_cpu("bprmf", "bce");
}

#[test]
fn attrec_sampled_bce() {
    follows_the_cpu("attrec", "bce");
}

#[test]
fn caser_full_softmax() {
    follows_the_cpu("caser", "ce");
}

#[test]
fn bprmf_full_softmax() {
    follows_the_cpu("bprmf", "ce");
}

#[test]
fn attrec_full_softmax() {
    follows_the_cpu("attrec", "ce");
}
