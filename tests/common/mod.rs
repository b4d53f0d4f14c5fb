//! Shared test helpers: random data and the finite-difference gradient check.
//!
//! `check_op` checks one op three ways: the engine's f32 forward against a plain f64
//! reference; the engine's backward against central finite differences of that reference
//! (in f64, so the differences are exact to ~1e-9); and, through a loss sum(w * y) with random
//! w, so that constant outputs (sum of a softmax) cannot hide a wrong gradient.
#![allow(dead_code)]

pub mod synthetic;

use seqrec::rng::Rng;
use seqrec::{Result, Tape, Tensor, Var};

/// Values drawn uniformly from [-1, 1).
pub fn random_values(n: usize, rng: &mut Rng) -> Vec<f64> {
    (0..n).map(|_| 2.0 * rng.uniform() as f64 - 1.0).collect()
}

/// A reference forward: f64 inputs (flat, row-major) → f64 output (flat).
pub type Reference<'a> = dyn Fn(&[Vec<f64>]) -> Vec<f64> + 'a;

pub struct Check {
    /// Tolerance on |engine - reference| / (1 + |reference|) for the forward values.
    pub forward_tol: f64,
    /// Tolerance on |analytic - numeric| / (1 + |numeric|) for gradients.
    pub grad_tol: f64,
    /// Step of the central difference.
    pub h: f64,
    pub seed: u64,
}

impl Default for Check {
    fn default() -> Self {
        Check {
            forward_tol: 1e-4,
            grad_tol: 2e-3,
            h: 1e-5,
            seed: 1,
        }
    }
}

/// Checks an op's forward values and gradients. `inputs` are (shape, values); `differentiable`
/// says which inputs get a gradient check (e.g. not a mask). `engine` records the op on the
/// tape from the input vars; `reference` computes the same output in f64.
pub fn check_op(
    name: &str,
    inputs: &[(Vec<usize>, Vec<f64>)],
    differentiable: &[bool],
    engine: impl Fn(&mut Tape, &[Var]) -> Result<Var>,
    reference: &Reference<'_>,
    check: &Check,
) {
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs
        .iter()
        .zip(differentiable)
        .map(|((shape, values), &diff)| {
            let t = Tensor::from_vec(shape, values.iter().map(|&v| v as f32).collect()).unwrap();
            if diff { tape.leaf(t) } else { tape.constant(t) }
        })
        .collect();
    let y = engine(&mut tape, &vars).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let engine_y = tape.value(y).to_vec();

    // The reference sees the f32-rounded inputs, the same values the engine saw.
    let rounded: Vec<Vec<f64>> = inputs
        .iter()
        .map(|(_, v)| v.iter().map(|&x| x as f32 as f64).collect())
        .collect();
    let ref_y = reference(&rounded);
    assert_eq!(engine_y.len(), ref_y.len(), "{name}: output sizes differ");
    for (i, (&e, &r)) in engine_y.iter().zip(&ref_y).enumerate() {
        let err = (e as f64 - r).abs() / (1.0 + r.abs());
        assert!(
            err <= check.forward_tol,
            "{name}: forward[{i}] engine {e} vs reference {r}"
        );
    }

    let mut rng = Rng::new(check.seed ^ 0xabcdef);
    let w = random_values(ref_y.len(), &mut rng);
    let seed = Tensor::from_vec(tape.shape(y), w.iter().map(|&v| v as f32).collect()).unwrap();
    let grads = tape
        .backward_with(y, seed)
        .unwrap_or_else(|e| panic!("{name}: backward failed: {e}"));
    let loss = |xs: &[Vec<f64>]| -> f64 { reference(xs).iter().zip(&w).map(|(y, w)| y * w).sum() };

    for (k, (var, &diff)) in vars.iter().zip(differentiable).enumerate() {
        if !diff {
            continue;
        }
        let analytic = grads
            .get(*var)
            .map(|g| g.to_vec())
            .unwrap_or_else(|| vec![0.0; rounded[k].len()]);
        let mut xs = rounded.clone();
        for i in 0..xs[k].len() {
            let x0 = xs[k][i];
            xs[k][i] = x0 + check.h;
            let up = loss(&xs);
            xs[k][i] = x0 - check.h;
            let down = loss(&xs);
            xs[k][i] = x0;
            let numeric = (up - down) / (2.0 * check.h);
            let err = (analytic[i] as f64 - numeric).abs() / (1.0 + numeric.abs());
            assert!(
                err <= check.grad_tol,
                "{name}: d/d input{k}[{i}]: analytic {} vs numeric {numeric} (err {err:.2e})",
                analytic[i]
            );
        }
    }
}

/// Asserts two f32 slices agree to a relative tolerance.
pub fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Reference matmul in f64: [batch, m, k] · [batch or 1, k, n] (row-major, no transposes).
pub fn ref_matmul(
    a: &[f64],
    b: &[f64],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    b_shared: bool,
) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for t in 0..batch {
        let bo = if b_shared { 0 } else { t * k * n };
        for i in 0..m {
            for j in 0..n {
                c[t * m * n + i * n + j] = (0..k)
                    .map(|p| a[t * m * k + i * k + p] * b[bo + p * n + j])
                    .sum();
            }
        }
    }
    c
}

/// Transposes the last two axes of a [batch, rows, cols] array.
pub fn ref_transpose(x: &[f64], batch: usize, rows: usize, cols: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for t in 0..batch {
        for i in 0..rows {
            for j in 0..cols {
                y[t * rows * cols + j * rows + i] = x[t * rows * cols + i * cols + j];
            }
        }
    }
    y
}

/// The GPU backend for a GPU test, or `None` with the reason printed (no adapter here).
/// With `SEQREC_REQUIRE_GPU=1` (CI) a missing adapter fails the test instead.
pub fn gpu_or_skip(test: &str) -> Option<&'static seqrec::backend::gpu::GpuBackend> {
    match seqrec::backend::gpu::backend() {
        Ok(gpu) => Some(gpu),
        Err(why) if std::env::var("SEQREC_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("{test}: SEQREC_REQUIRE_GPU=1 but {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why} (set SEQREC_REQUIRE_GPU=1 to fail instead)");
            None
        }
    }
}

/// The project's `pop` model fitted on `exp`'s training sequences: the popularity ranking
/// the model tests measure themselves against.
pub fn fitted_pop(exp: &seqrec::train::Experiment) -> Box<dyn seqrec::models::Model> {
    use seqrec::models::Model;
    let mut pop = seqrec::models::pop::Pop::new(exp.num_items()).unwrap();
    pop.fit(&exp.split.train, exp.num_items()).unwrap();
    Box::new(pop)
}

/// HR@k of `model` on `cases` of `exp`, full ranking under `exp`'s evaluation settings.
pub fn hit_rate(
    model: &dyn seqrec::models::Model,
    exp: &seqrec::train::Experiment,
    cases: &[seqrec::data::split::EvalCase],
    k: usize,
) -> f64 {
    seqrec::train::evaluate_cases(model, cases, exp.num_items(), &exp.config)
        .unwrap()
        .at(k)
        .unwrap()
        .hit_rate
}

/// What the GPU-follows-CPU tests compare: the losses of the first 4 Adam steps (lr 0.01) of
/// `config`'s model on generated data (80 users, seed 7) on `device`, then the full-ranking
/// scores of five test users.
pub fn first_steps_and_scores(
    config: &seqrec::config::Config,
    device: seqrec::Device,
) -> Result<(Vec<f32>, Vec<f32>)> {
    use seqrec::data::batch::{BatchConfig, Batcher, Examples, Sampling};
    use seqrec::models::{LossKind, TrainingBatch};
    let exp = seqrec::train::Experiment::prepare(&synthetic::synthetic(80, 7), config)?;
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
    let mut adam = seqrec::optim::Adam::new(0.01);
    let mut losses = Vec::new();
    for (step, batch) in batcher.epoch(0)?.into_iter().take(4).enumerate() {
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
    let rows: Vec<(u32, &[u32], &[u32])> = exp.split.test[..5]
        .iter()
        .map(|c| {
            (
                c.user,
                c.history.as_slice(),
                c.history_behaviours.as_slice(),
            )
        })
        .collect();
    let scores = seqrec::train::score_rows(model.as_ref(), &rows, config.data.max_len)?;
    Ok((losses, scores))
}

/// Runs `first_steps_and_scores` on the CPU and on the GPU: the GPU's losses follow the CPU's
/// to 1e-3, its scores agree to 2e-2, and no kernel fell back to the host.
pub fn assert_gpu_follows_cpu(config: &seqrec::config::Config, label: &str) {
    let (cpu_losses, cpu_scores) = first_steps_and_scores(config, seqrec::Device::Cpu).unwrap();
    let fallbacks = seqrec::backend::gpu::fallback_count();
    let (gpu_losses, gpu_scores) = first_steps_and_scores(config, seqrec::Device::Gpu).unwrap();
    assert_eq!(
        seqrec::backend::gpu::fallback_count(),
        fallbacks,
        "{label}: a kernel fell back to the host"
    );
    assert_eq!(gpu_losses.len(), 4, "{label}: fewer than 4 batches");
    assert_close(&format!("{label} losses"), &gpu_losses, &cpu_losses, 1e-3);
    // Adam's sign-like steps on near-zero gradients allow small differences in the scores.
    assert_close(&format!("{label} scores"), &gpu_scores, &cpu_scores, 2e-2);
}

/// A small, fast configuration for `model` (n = 10, d = 16, batch 16, lr 0.01, 12 epochs, no
/// early stopping) with `extra` `key=value` overrides on top.
pub fn small_config(model: &str, extra: &[&str]) -> seqrec::config::Config {
    let mut sets: Vec<String> = [
        "data.max_len=10",
        "model_options.dim=16",
        "model_options.ffn_dim=16",
        "train.batch_size=16",
        "train.lr=0.01",
        "train.patience=0",
        "train.epochs=12",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    seqrec::config::Config::from_toml_with_overrides(&format!("model = \"{model}\"\n"), &sets)
        .unwrap()
}

/// The first training batch of `exp`'s training sequences: every position, `negatives`
/// uniformly sampled negatives (never the user's own items), the batcher seeded with `seed`.
pub fn first_batch(
    exp: &seqrec::train::Experiment,
    batch_size: usize,
    negatives: usize,
    seed: u64,
) -> seqrec::models::TrainingBatch {
    use seqrec::data::batch::{BatchConfig, Batcher, Examples, Sampling};
    let config = BatchConfig {
        max_len: exp.config.data.max_len,
        batch_size,
        examples: Examples::EveryPosition,
        negatives,
        sampling: Sampling::Uniform,
        exclude_user_items: true,
        seed,
    };
    let batcher = Batcher::new(&exp.split.train, exp.num_items(), config).unwrap();
    seqrec::models::TrainingBatch::from(batcher.epoch(0).unwrap().remove(0))
}
