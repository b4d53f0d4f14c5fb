//! Training and evaluation of a model on a data set, with checkpoints.
//!
//! `Experiment::prepare` turns a loaded `Dataset` into sequences, a split (`data.split`:
//! leave-one-out, or by the last day for session data) and side information; `train` runs
//! epochs of Adam steps, evaluates validation NDCG@10, keeps the best weights, stops early,
//! and writes a checkpoint after every epoch (and when Ctrl-C arrives, after finishing the
//! current step). Everything random is derived from the seed, the epoch and the step, so
//! `--resume` continues exactly where an uninterrupted run would be.
//!
//! A run folder holds:
//!   config.json             the resolved configuration
//!   data.json               the data set and the id maps (model id → original id)
//!   weights.safetensors     the latest weights      optimizer.safetensors  Adam's moments
//!   best.safetensors        the best weights so far  state.json            progress
//!   report.json             the final test evaluation

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::autograd::Tape;
use crate::checkpoint::{
    load_json, load_params, save_json, save_params, tensors_from_safetensors,
    tensors_to_safetensors, write_atomic,
};
use crate::config::Config;
use crate::data::Dataset;
use crate::data::batch::{Batch, BatchConfig, Batcher, Examples, Sampling};
use crate::data::cold::{ColdStart, ColdStartConfig, cold_start};
use crate::data::preprocess::{Implicit, PreprocessConfig, Sequences, sequences};
use crate::data::split::{DAY_SECONDS, EvalCase, Split, last_day_sessions, leave_one_out};
use crate::error::{Error, Result};
use crate::eval::noise::insert_noise;
use crate::eval::{EvalConfig, EvalReport, EvalUser, Protocol, evaluate};
use crate::models::side_info::SideInfo;
use crate::models::{
    LossKind, Model, SequenceInput, TrainingBatch, amsrm::Amsrm, attrec::AttRec, bprmf::BprMf,
    caser::Caser, gru4rec::Gru4Rec, sasrec::SasRec,
};
use crate::optim::{Adam, AdamState, ParamStore};
use crate::tensor::{Ids, Tensor};

/// The models `train` knows, as the CLI spells them.
pub const MODELS: &[&str] = &[
    "amsrm",
    "sasrec",
    "caser",
    "bprmf",
    "attrec",
    "fpmc",
    "fossil",
    "pop",
    "featpop",
    "itemknn",
    "userknn",
    "nextitnet",
    "stamp",
    "gru4rec",
    "bert4rec",
    "mf",
    "hmm",
];

/// A data set prepared for training: sequences, the split (`data.split`), side information.
pub struct Experiment {
    pub config: Config,
    pub dataset_name: String,
    pub dataset_source: PathBuf,
    pub sequences: Sequences,
    pub split: Split,
    /// The cold-start study's held-out users and items and their groups (`data.cold_users`,
    /// `data.cold_items`); None when both are 0.
    pub cold: Option<ColdStart>,
    pub side: SideInfo,
    /// Original names of model item ids (index 0 = padding).
    pub item_names: Vec<String>,
    /// Original names of model user ids (index 0 = unknown user).
    pub user_names: Vec<String>,
}

/// What `data.json` stores: enough to map ids back and to check a checkpoint against data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataInfo {
    pub dataset: String,
    pub source: PathBuf,
    pub item_names: Vec<String>,
    pub user_names: Vec<String>,
}

impl Experiment {
    pub fn prepare(dataset: &Dataset, config: &Config) -> Result<Experiment> {
        config.validate()?;
        // `data.split`: "auto" splits session data (anonymous sessions) by the last day, as
        // the session papers do, and user data leave-one-out.
        let by_last_day = match config.data.split.as_str() {
            "last-day" => true,
            "leave-one-out" => false,
            _ => dataset.sessions,
        };
        // Session papers keep every session of 2 or more events (one prefix → next item);
        // leave-one-out needs 3 (training, validation and test items).
        let min_sequence_len = if by_last_day { 2 } else { 3 };
        let preprocess = PreprocessConfig {
            implicit: match config.data.min_rating {
                Some(r) => Implicit::RatingAtLeast(r),
                None => Implicit::All,
            },
            dedup: config.data.dedup,
            k_core: config.data.k_core,
            min_sequence_len,
        };
        let sequences = sequences(dataset, &preprocess)?;
        if sequences.num_users() == 0 || sequences.num_items() == 0 {
            return Err(Error::Invalid(format!(
                "{}: no user has {min_sequence_len} or more interactions after preprocessing",
                dataset.source.display()
            )));
        }
        let split = if by_last_day {
            last_day_sessions(&sequences, i64::from(config.data.split_days) * DAY_SECONDS)?
        } else {
            leave_one_out(&sequences)
        };
        let (split, cold) = if config.data.cold_users > 0.0 || config.data.cold_items > 0.0 {
            let cold_config = ColdStartConfig {
                users: config.data.cold_users,
                items: config.data.cold_items,
                user_prefixes: config.data.cold_user_prefixes.clone(),
                seed: config.train.seed,
            };
            let (split, cold) = cold_start(&sequences, split, &cold_config)?;
            (split, Some(cold))
        } else {
            (split, None)
        };
        let item_ids: Vec<u32> = (0..=sequences.num_items() as u32)
            .map(|i| {
                if i == 0 {
                    0
                } else {
                    sequences.items.to_dataset(i).unwrap_or(0)
                }
            })
            .collect();
        let user_ids: Vec<u32> = (0..=sequences.num_users() as u32)
            .map(|u| {
                if u == 0 {
                    0
                } else {
                    sequences.users.to_dataset(u).unwrap_or(0)
                }
            })
            .collect();
        let side = SideInfo::new(dataset, &item_ids, &user_ids, config.data.numeric_buckets);
        let item_names = item_ids
            .iter()
            .map(|&i| dataset.items.name(i).to_string())
            .collect();
        let user_names = user_ids
            .iter()
            .map(|&u| dataset.users.name(u).to_string())
            .collect();
        Ok(Experiment {
            config: config.clone(),
            dataset_name: dataset.name.clone(),
            dataset_source: dataset.source.clone(),
            sequences,
            split,
            cold,
            side,
            item_names,
            user_names,
        })
    }

    pub fn num_items(&self) -> usize {
        self.sequences.num_items()
    }

    pub fn num_users(&self) -> usize {
        self.sequences.num_users()
    }

    pub fn data_info(&self) -> DataInfo {
        DataInfo {
            dataset: self.dataset_name.clone(),
            source: self.dataset_source.clone(),
            item_names: self.item_names.clone(),
            user_names: self.user_names.clone(),
        }
    }

    /// A fresh model of the configured kind, initialised from the seed, told which items are
    /// cold.
    pub fn build_model(&self) -> Result<Box<dyn Model>> {
        let mut model = build_model(
            &self.config,
            self.num_items(),
            self.num_users(),
            self.side.clone(),
        )?;
        if let Some(cold) = &self.cold {
            model.set_cold_items(&cold.items)?;
        }
        Ok(model)
    }

    /// The cold-start groups evaluated with `model` (empty without a cold-start split).
    pub fn evaluate_cold_groups(&self, model: &dyn Model) -> Result<Vec<GroupReport>> {
        let Some(cold) = &self.cold else {
            return Ok(Vec::new());
        };
        cold.groups
            .iter()
            .map(|g| {
                Ok(GroupReport {
                    group: g.name.clone(),
                    cases: g.cases.len(),
                    test: evaluate_cases(model, &g.cases, self.num_items(), &self.config)?,
                })
            })
            .collect()
    }
}

/// A fresh model by name, for a catalogue of `items` items and `users` users.
pub fn build_model(
    config: &Config,
    items: usize,
    users: usize,
    side: SideInfo,
) -> Result<Box<dyn Model>> {
    let m = &config.model_options;
    let seed = config.train.seed;
    Ok(match config.model.as_str() {
        "amsrm" => Box::new(Amsrm::new(items, config.data.max_len, side, m, seed)?),
        "sasrec" => Box::new(SasRec::new(items, config.data.max_len, m, seed)?),
        "caser" => Box::new(Caser::new(items, users, m, seed)?),
        "bprmf" => Box::new(BprMf::new(items, users, m, seed)?),
        "attrec" => Box::new(AttRec::new(items, users, m, seed)?),
        "fpmc" => Box::new(crate::models::fpmc::Fpmc::new(items, users, m, seed)?),
        "fossil" => Box::new(crate::models::fossil::Fossil::new(items, users, m, seed)?),
        "pop" => Box::new(crate::models::pop::Pop::new(items)?),
        "featpop" => Box::new(crate::models::pop::Pop::with_item_features(
            items, side.items,
        )?),
        "itemknn" => Box::new(crate::models::itemknn::ItemKnn::new(items, m)?),
        "userknn" => Box::new(crate::models::userknn::UserKnn::new(items, users, m)?),
        "nextitnet" => Box::new(crate::models::nextitnet::NextItNet::new(items, m, seed)?),
        "stamp" => Box::new(crate::models::stamp::Stamp::new(items, m, seed)?),
        "gru4rec" => Box::new(Gru4Rec::new(items, m, seed)?),
        "bert4rec" => Box::new(crate::models::bert4rec::Bert4Rec::new(
            items,
            config.data.max_len,
            m,
            seed,
        )?),
        "mf" => Box::new(crate::models::mf::Mf::new(items, users, m, seed)?),
        "hmm" => Box::new(crate::models::hmm::Hmm::new(items, m, seed)?),
        other => {
            return Err(Error::Invalid(format!(
                "unknown model {other:?}; known models: {}",
                MODELS.join(", ")
            )));
        }
    })
}

impl From<Batch> for TrainingBatch {
    fn from(b: Batch) -> Self {
        TrainingBatch {
            input: SequenceInput {
                users: b.users,
                items: b.inputs,
                behaviours: b.behaviours,
            },
            positives: b.positives,
            negatives: b.negatives,
            weights: b.weights,
        }
    }
}

/// The latest `n` of `values`, left-padded with 0 to length n.
pub fn left_pad(values: &[u32], n: usize) -> Vec<u32> {
    let kept = &values[values.len().saturating_sub(n)..];
    let mut out = vec![0; n - kept.len()];
    out.extend_from_slice(kept);
    out
}

/// A model input for a list of (user, history, behaviours).
pub fn sequence_input(rows: &[(u32, &[u32], &[u32])], max_len: usize) -> Result<SequenceInput> {
    let b = rows.len();
    let users = rows.iter().map(|r| r.0).collect();
    let items = rows.iter().flat_map(|r| left_pad(r.1, max_len)).collect();
    let behaviours = rows.iter().flat_map(|r| left_pad(r.2, max_len)).collect();
    Ok(SequenceInput {
        users: Ids::from_vec(&[b], users)?,
        items: Ids::from_vec(&[b, max_len], items)?,
        behaviours: Ids::from_vec(&[b, max_len], behaviours)?,
    })
}

/// Scores of every item for each row, `[rows, items + 1]`, computed in inference mode in
/// batches of at most 256 sequences.
pub fn score_rows(
    model: &dyn Model,
    rows: &[(u32, &[u32], &[u32])],
    max_len: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for chunk in rows.chunks(256) {
        let input = sequence_input(chunk, max_len)?;
        let mut tape = Tape::inference().on(model.params().device());
        let scores = model.scores(&mut tape, &input)?;
        out.extend(tape.value(scores).to_vec());
    }
    Ok(out)
}

/// Full-ranking (or, if configured, sampled) evaluation of `cases`.
pub fn evaluate_cases(
    model: &dyn Model,
    cases: &[EvalCase],
    items: usize,
    config: &Config,
) -> Result<EvalReport> {
    let eval_config = EvalConfig {
        ks: config.eval.ks.clone(),
        protocol: match config.eval.sampled_negatives {
            Some(negatives) => Protocol::Sampled {
                negatives,
                seed: config.train.seed,
            },
            None => Protocol::Full,
        },
        exclude_history: config.eval.exclude_history,
        ..EvalConfig::default()
    };
    let users: Vec<EvalUser> = cases
        .iter()
        .map(|c| EvalUser {
            history: c.known_items.clone(),
            targets: c.targets.clone(),
        })
        .collect();
    let noise = config.eval.noise;
    if !(0.0..1.0).contains(&noise) {
        return Err(Error::Invalid(format!(
            "eval.noise must be in [0, 1), got {noise}"
        )));
    }
    evaluate(items, &users, &eval_config, |positions: &[usize]| {
        // With noise, each case's input gets its own reproducible random insertions.
        let noisy: Vec<(Vec<u32>, Vec<u32>)> = if noise > 0.0 {
            positions
                .iter()
                .map(|&p| {
                    let c = &cases[p];
                    insert_noise(
                        &c.history,
                        &c.history_behaviours,
                        noise,
                        items,
                        config.train.seed,
                        p,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let rows: Vec<(u32, &[u32], &[u32])> = positions
            .iter()
            .enumerate()
            .map(|(i, &p)| match noisy.get(i) {
                Some((history, behaviours)) => {
                    (cases[p].user, history.as_slice(), behaviours.as_slice())
                }
                None => (
                    cases[p].user,
                    cases[p].history.as_slice(),
                    cases[p].history_behaviours.as_slice(),
                ),
            })
            .collect();
        score_rows(model, &rows, config.data.max_len)
    })
    .map(|mut report| {
        if noise > 0.0 {
            // Label the report: its figures are not the clean protocol's.
            report.protocol.description.push_str(&format!(
                "; INPUT NOISE: ⌈{noise}·len⌉ uniform random items inserted at random positions \
                 of each history (seed {}), targets and excluded items unchanged",
                config.train.seed
            ));
        }
        report
    })
}

/// One line of the training log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub seconds: f64,
    pub valid_ndcg10: Option<f64>,
}

/// Progress of a run, saved after every epoch (and on interruption).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps of epoch `epoch` already done (non-zero only after an interruption).
    pub step_in_epoch: usize,
    /// Sum of the losses of those steps.
    pub partial_loss: f64,
    pub partial_seconds: f64,
    pub best_valid_ndcg10: f64,
    pub best_epoch: usize,
    pub evals_without_improvement: usize,
    pub finished: bool,
    pub log: Vec<EpochLog>,
}

/// How `train` was asked to run.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub resume: bool,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Stop after this many steps in total (for tests of interruption); None = no limit.
    pub max_steps: Option<usize>,
}

/// What `train` returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub model: String,
    pub dataset: String,
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_valid_ndcg10: f64,
    pub seconds_per_epoch: f64,
    pub parameters: usize,
    /// False when interrupted (Ctrl-C or `max_steps`): the checkpoint allows `--resume`.
    pub finished: bool,
    pub test: Option<EvalReport>,
    /// The cold-start study's groups (`test` is then the warm group); empty without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cold_start: Vec<GroupReport>,
    pub log: Vec<EpochLog>,
}

/// The test metrics of one cold-start group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupReport {
    pub group: String,
    pub cases: usize,
    pub test: EvalReport,
}

/// Set by the Ctrl-C handler; `train` finishes its step, writes a checkpoint and returns.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn batch_config(config: &Config) -> BatchConfig {
    // Every model trains on a target at every position: Caser and AttRec cut the windows of
    // their short-term part from the positions themselves (`models::windows`).
    BatchConfig {
        max_len: config.data.max_len,
        batch_size: config.train.batch_size,
        examples: Examples::EveryPosition,
        negatives: config.train.negatives.max(1),
        sampling: Sampling::Uniform,
        exclude_user_items: true,
        seed: config.train.seed,
    }
}

/// The dropout seed of a step: a hash of the run seed, the epoch and the step.
fn step_seed(seed: u64, epoch: usize, step: usize) -> u32 {
    use crate::rng::hash32;
    hash32(seed as u32 ^ hash32(epoch as u32 ^ hash32(step as u32 ^ 0x5eed)))
}

fn save_optimizer(path: &Path, store: &ParamStore, adam: &Adam) -> Result<()> {
    let mut named = Vec::new();
    let st = &adam.state;
    for (i, id) in store.ids().enumerate() {
        if i < st.m.len() {
            let shape = store.value(id).shape().to_vec();
            named.push((format!("m.{}", store.name(id)), st.m[i].reshaped(&shape)?));
            named.push((format!("v.{}", store.name(id)), st.v[i].reshaped(&shape)?));
        }
    }
    let refs: Vec<(String, &Tensor)> = named.iter().map(|(n, t)| (n.clone(), t)).collect();
    let meta = std::collections::HashMap::from([("step".to_string(), st.step.to_string())]);
    write_atomic(path, &tensors_to_safetensors(&refs, Some(meta))?)
}

fn load_optimizer(path: &Path, store: &ParamStore, adam: &mut Adam) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let step = safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, meta)| {
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("step").cloned())
        })
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Error::Invalid(format!("{}: missing optimizer step", path.display())))?;
    let tensors = tensors_from_safetensors(&bytes, path)?;
    let find = |name: String, shape: &[usize]| -> Result<Tensor> {
        let t = tensors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| Error::Invalid(format!("{}: missing `{name}`", path.display())))?;
        if t.shape() != shape {
            return Err(Error::Invalid(format!(
                "{}: `{name}` has shape {:?}, the model needs {shape:?}",
                path.display(),
                t.shape()
            )));
        }
        Ok(t)
    };
    let mut state = AdamState {
        step,
        m: Vec::new(),
        v: Vec::new(),
    };
    if step > 0 {
        for id in store.ids() {
            let shape = store.value(id).shape();
            state.m.push(find(format!("m.{}", store.name(id)), shape)?);
            state.v.push(find(format!("v.{}", store.name(id)), shape)?);
        }
    }
    adam.state = state;
    Ok(())
}

/// Trains `model` on `exp`, checkpointing into `run_dir`.
pub fn train(
    exp: &Experiment,
    model: &mut dyn Model,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<TrainReport> {
    let config = &exp.config;
    let loss_kind = LossKind::parse(&config.train.loss)?;
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let (weights_path, best_path, optimizer_path, state_path) = (
        run_dir.join("weights.safetensors"),
        run_dir.join("best.safetensors"),
        run_dir.join("optimizer.safetensors"),
        run_dir.join("state.json"),
    );

    let mut adam = if config.train.weight_decay > 0.0 {
        Adam::adamw(config.train.lr, config.train.weight_decay)
    } else {
        Adam::new(config.train.lr)
    };
    let mut state = TrainState::default();
    if options.resume {
        let saved: Config = load_json(&run_dir.join("config.json"))?;
        if saved != *config {
            return Err(Error::Invalid(format!(
                "--resume: {} was trained with a different configuration",
                run_dir.display()
            )));
        }
        state = load_json(&state_path)?;
        load_params(&weights_path, model.params_mut())?;
        load_optimizer(&optimizer_path, model.params(), &mut adam)?;
    } else {
        save_json(&run_dir.join("config.json"), config)?;
        save_json(&run_dir.join("data.json"), &exp.data_info())?;
    }

    if model.fits_directly() {
        return fit_directly(exp, model, run_dir, options);
    }

    // Trimming a batch to its longest sequence changes nothing for a model that accepts it.
    let trim = model.accepts_trimmed_batches();
    let mut batcher = Batcher::new(&exp.split.train, exp.num_items(), batch_config(config))?
        .trim_padding(trim)
        .bucket_by_length(trim && config.train.bucket_by_length);
    if let Some(cold) = &exp.cold {
        // Held-out items are unknown at training time: never a sampled negative either.
        batcher = batcher.exclude_from_negatives(&cold.items)?;
    }
    let batches_per_epoch = batcher.num_batches();
    let bar = if options.progress {
        indicatif::ProgressBar::new(batches_per_epoch as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut steps_run = 0usize;
    let mut interrupted = false;

    while !state.finished && state.epoch < config.train.epochs {
        let epoch = state.epoch;
        bar.set_prefix(format!("epoch {:>3}", epoch + 1));
        bar.set_position(state.step_in_epoch as u64);
        let started = Instant::now();
        let batches = batcher.epoch(epoch as u64)?;
        let mut sequences_done = 0usize;
        for (step, batch) in batches.into_iter().enumerate().skip(state.step_in_epoch) {
            let mut batch = TrainingBatch::from(batch);
            if config.train.input_noise > 0.0 {
                let seed = u64::from(step_seed(config.train.seed ^ 0x6e01, epoch, step));
                batch.input.items = crate::eval::noise::replace_with_random_items(
                    &batch.input.items,
                    config.train.input_noise,
                    exp.num_items(),
                    seed,
                )?;
            }
            sequences_done += batch.positives.shape()[0];
            let mut tape = Tape::new().on(model.params().device());
            tape.set_seed(step_seed(config.train.seed, epoch, step));
            let loss = model.loss(&mut tape, &batch, loss_kind)?;
            let loss_tensor = tape.value(loss).clone();
            let grads = tape.backward(loss)?;
            drop(tape);
            let store = model.params_mut();
            store.zero_grad();
            grads.accumulate_into(store);
            if config.train.clip_norm > 0.0 {
                store.clip_grad_norm(config.train.clip_norm);
            }
            adam.step(store);
            // The step's one readback, after the whole step is recorded: on a GPU the host
            // does not wait between forward and backward.
            let loss_value = loss_tensor.item();
            if !loss_value.is_finite() {
                return Err(Error::Invalid(format!(
                    "the loss became {loss_value} at epoch {} step {step}: lower train.lr",
                    epoch + 1
                )));
            }
            state.partial_loss += loss_value as f64;
            state.step_in_epoch = step + 1;
            steps_run += 1;
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4}  {:.0} seq/s",
                state.partial_loss / state.step_in_epoch as f64,
                sequences_done as f64 / elapsed
            ));
            bar.inc(1);
            if INTERRUPTED.load(Ordering::SeqCst)
                || options.max_steps.is_some_and(|m| steps_run >= m)
            {
                interrupted = state.step_in_epoch < batches_per_epoch;
                if interrupted {
                    state.partial_seconds += started.elapsed().as_secs_f64();
                    break;
                }
            }
        }
        if interrupted {
            break;
        }
        let seconds = state.partial_seconds + started.elapsed().as_secs_f64();
        let loss = state.partial_loss / batches_per_epoch.max(1) as f64;
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.partial_loss = 0.0;
        state.partial_seconds = 0.0;

        let mut valid_ndcg10 = None;
        if state.epoch % config.train.eval_every == 0 || state.epoch == config.train.epochs {
            let report = evaluate_cases(model, &exp.split.valid, exp.num_items(), config)?;
            let ndcg = report
                .at(10)
                .or(report.at_k.first())
                .map(|m| m.ndcg)
                .unwrap_or(0.0);
            valid_ndcg10 = Some(ndcg);
            if ndcg > state.best_valid_ndcg10 || state.best_epoch == 0 {
                state.best_valid_ndcg10 = ndcg;
                state.best_epoch = state.epoch;
                state.evals_without_improvement = 0;
                save_params(&best_path, model.params())?;
            } else {
                state.evals_without_improvement += 1;
                if config.train.patience > 0
                    && state.evals_without_improvement >= config.train.patience
                {
                    state.finished = true;
                }
            }
        }
        state.log.push(EpochLog {
            epoch: state.epoch,
            loss,
            seconds,
            valid_ndcg10,
        });
        if options.progress {
            bar.println(format!(
                "epoch {:>3}  loss {loss:.4}  {seconds:.2}s{}",
                state.epoch,
                valid_ndcg10
                    .map(|n| format!(
                        "  valid NDCG@10 {n:.4} (best {:.4} @ {})",
                        state.best_valid_ndcg10, state.best_epoch
                    ))
                    .unwrap_or_default()
            ));
        }
        save_params(&weights_path, model.params())?;
        save_optimizer(&optimizer_path, model.params(), &adam)?;
        save_json(&state_path, &state)?;
        if INTERRUPTED.load(Ordering::SeqCst) || options.max_steps.is_some_and(|m| steps_run >= m) {
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();

    if interrupted {
        save_params(&weights_path, model.params())?;
        save_optimizer(&optimizer_path, model.params(), &adam)?;
        save_json(&state_path, &state)?;
        return Ok(report(exp, model, &state, false, None));
    }
    state.finished = true;
    save_json(&state_path, &state)?;
    // The best weights, then the final test evaluation.
    if best_path.exists() {
        load_params(&best_path, model.params_mut())?;
    }
    let test = evaluate_cases(model, &exp.split.test, exp.num_items(), config)?;
    let mut out = report(exp, model, &state, true, Some(test));
    out.cold_start = exp.evaluate_cold_groups(model)?;
    save_json(&run_dir.join("report.json"), &out)?;
    Ok(out)
}

/// `train` for models fitted without gradient steps: one fit, one validation, the test.
fn fit_directly(
    exp: &Experiment,
    model: &mut dyn Model,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<TrainReport> {
    let config = &exp.config;
    let started = Instant::now();
    if options.progress {
        eprintln!(
            "fitting {} on {} training sequences",
            model.name(),
            exp.split.train.len()
        );
    }
    let objective = model.fit(&exp.split.train, exp.num_items())?;
    let seconds = started.elapsed().as_secs_f64();
    let valid = evaluate_cases(model, &exp.split.valid, exp.num_items(), config)?;
    let ndcg = valid
        .at(10)
        .or(valid.at_k.first())
        .map(|m| m.ndcg)
        .unwrap_or(0.0);
    let state = TrainState {
        epoch: 1,
        best_valid_ndcg10: ndcg,
        best_epoch: 1,
        finished: true,
        log: vec![EpochLog {
            epoch: 1,
            loss: objective,
            seconds,
            valid_ndcg10: Some(ndcg),
        }],
        ..TrainState::default()
    };
    if options.progress {
        eprintln!("fitted in {seconds:.2}s  objective {objective:.4}  valid NDCG@10 {ndcg:.4}");
    }
    save_params(&run_dir.join("best.safetensors"), model.params())?;
    save_params(&run_dir.join("weights.safetensors"), model.params())?;
    save_json(&run_dir.join("state.json"), &state)?;
    let test = evaluate_cases(model, &exp.split.test, exp.num_items(), config)?;
    let mut out = report(exp, model, &state, true, Some(test));
    out.cold_start = exp.evaluate_cold_groups(model)?;
    save_json(&run_dir.join("report.json"), &out)?;
    Ok(out)
}

fn report(
    exp: &Experiment,
    model: &dyn Model,
    state: &TrainState,
    finished: bool,
    test: Option<EvalReport>,
) -> TrainReport {
    let epochs: Vec<f64> = state.log.iter().map(|l| l.seconds).collect();
    TrainReport {
        model: model.name().to_string(),
        dataset: exp.dataset_name.clone(),
        epochs: state.epoch,
        best_epoch: state.best_epoch,
        best_valid_ndcg10: state.best_valid_ndcg10,
        seconds_per_epoch: if epochs.is_empty() {
            0.0
        } else {
            epochs.iter().sum::<f64>() / epochs.len() as f64
        },
        parameters: model.params().num_scalars(),
        finished,
        test,
        cold_start: Vec::new(),
        log: state.log.clone(),
    }
}

/// A trained run opened again: the experiment rebuilt from its data and configuration, and
/// the model with its best weights.
pub fn open_run(
    run_dir: &Path,
    data_override: Option<&Path>,
) -> Result<(Experiment, Box<dyn Model>)> {
    let config: Config = load_json(&run_dir.join("config.json"))?;
    let data: DataInfo = load_json(&run_dir.join("data.json"))?;
    let source = data_override
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data.source.clone());
    let dataset = crate::data::load::load(&source)?;
    let exp = Experiment::prepare(&dataset, &config)?;
    if exp.item_names != data.item_names || exp.user_names != data.user_names {
        return Err(Error::Invalid(format!(
            "{}: the data at {} differs from the data this run was trained on (its item or user ids changed)",
            run_dir.display(),
            source.display()
        )));
    }
    let mut model = exp.build_model()?;
    let best = run_dir.join("best.safetensors");
    let weights = if best.exists() {
        best
    } else {
        run_dir.join("weights.safetensors")
    };
    load_params(&weights, model.params_mut())?;
    Ok((exp, model))
}
