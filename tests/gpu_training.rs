//! A model trains on the GPU with no code change: every model's first training steps on the
//! GPU follow the CPU's losses (same initialisation, batches and dropout masks), and
//! full-ranking scores agree after training.

mod common;

use common::{assert_close, gpu_or_skip, synthetic::synthetic};
use seqrec::Tape;
use seqrec::config::Config;
use seqrec::data::batch::{BatchConfig, Batcher, Examples, Sampling};
use seqrec::models::{LossKind, TrainingBatch};
use seqrec::optim::Adam;
use seqrec::train::{Experiment, score_rows};
use seqrec::{Device, Result};

const STEPS: usize = 4;

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

/// The losses of the first `STEPS` Adam steps on `device`, and afterwards the scores of a
/// few users' histories over the whole catalogue.
fn run(model_name: &str, loss: &str, device: Device) -> Result<(Vec<f32>, Vec<f32>)> {
    let data = synthetic(80, 7);
    let config = config(model_name, loss);
    let exp = Experiment::prepare(&data, &config)?;
    let mut model = exp.build_model()?;
    model.params_mut().to_device(device);
    let kind = LossKind::parse(&config.train.loss)?;
    let batcher = Batcher::new(
        &exp.split.train,
        exp.num_items(),
        BatchConfig {
            max_len: config.data.max_len,
            batch_size: config.train.batch_size,
            examples: Examples::EveryPosition,
            negatives: config.train.negatives,
            sampling: Sampling::Uniform,
            exclude_user_items: true,
            seed: 3,
        },
    )?;
    let mut adam = Adam::new(0.01);
    let mut losses = Vec::new();
    for (step, batch) in batcher.epoch(0)?.into_iter().take(STEPS).enumerate() {
        let batch = TrainingBatch::from(batch);
        let mut tape = Tape::new().on(device);
        tape.set_seed(step as u32 + 11);
        let loss = model.loss(&mut tape, &batch, kind)?;
        let loss_value = tape.value(loss).clone();
        let grads = tape.backward(loss)?;
        drop(tape);
        let store = model.params_mut();
        store.zero_grad();
        grads.accumulate_into(store);
        adam.step(store);
        losses.push(loss_value.item());
    }
    let rows: Vec<(u32, &[u32], &[u32])> = exp
        .split
        .test
        .iter()
        .take(5)
        .map(|case| {
            (
                case.user,
                case.history.as_slice(),
                case.history_behaviours.as_slice(),
            )
        })
        .collect();
    let scores = score_rows(model.as_ref(), &rows, config.data.max_len)?;
    Ok((losses, scores))
}

fn follows_the_cpu(model: &str, loss: &str) {
    let Some(_) = gpu_or_skip(&format!("{model} {loss} on the GPU")) else {
        return;
    };
    let (cpu_losses, cpu_scores) = run(model, loss, Device::Cpu).unwrap();
    let fallbacks = seqrec::backend::gpu::fallback_count();
    let (gpu_losses, gpu_scores) = run(model, loss, Device::Gpu).unwrap();
    // Every kernel of a training step and of scoring ran in WGSL: nothing went through the
    // host fallback (other tests in this binary run GPU work too, but none falls back).
    assert_eq!(
        seqrec::backend::gpu::fallback_count(),
        fallbacks,
        "{model}: a kernel fell back to the host"
    );
    assert_eq!(gpu_losses.len(), STEPS);
    assert_close(
        &format!("{model} {loss} losses"),
        &gpu_losses,
        &cpu_losses,
        1e-3,
    );
    // Parameters that drifted apart would show in every score; Adam's sign-like steps on
    // near-zero gradients allow small differences.
    assert_close(
        &format!("{model} {loss} scores"),
        &gpu_scores,
        &cpu_scores,
        2e-2,
    );
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
