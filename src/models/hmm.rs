//! HMM recommender — after Hosseinzadeh Aghdam, Hariri, Mobasher & Burke, "Adapting
//! Recommendations to Contextual Changes Using Hierarchical Hidden Markov Models",
//! RecSys 2015, simplified as the survey describes it: the user's current context is a hidden
//! state that drifts as a Markov chain, and each interaction is an item emitted by the context
//! she is in. (The paper's hierarchy — a context level above a per-context item level — is
//! flattened into a single level of S states.)
//!
//! Model, for a sequence o_1..o_T of items:
//!   P(z_1 = s) = π_s,  P(z_{t+1} = s' | z_t = s) = A_{ss'},  P(o_t = i | z_t = s) = B_s(i).
//! Fitting is Baum-Welch (EM) over all training sequences, with the scaled forward-backward
//! recursions of Rabiner (1989):
//!   α̂_1(s) = π_s B_s(o_1) / c_1,    α̂_t(s') = Σ_s α̂_{t−1}(s) A_{ss'} B_{s'}(o_t) / c_t,
//!   c_t normalises α̂_t to sum 1, so  log P(o_1..o_T) = Σ_t log c_t;
//!   β̂_T(s) = 1,  β̂_t(s) = Σ_{s'} A_{ss'} B_{s'}(o_{t+1}) β̂_{t+1}(s') / c_{t+1};
//!   γ_t(s) = α̂_t(s) β̂_t(s) = P(z_t = s | o),
//!   ξ_t(s, s') = α̂_t(s) A_{ss'} B_{s'}(o_{t+1}) β̂_{t+1}(s') / c_{t+1} = P(z_t = s, z_{t+1} = s' | o).
//! M-step (expected counts plus additive smoothing, so that no probability is ever 0 and an
//! unseen item or transition never zeroes a sequence's likelihood):
//!   π_s ∝ Σ_seq γ_1(s) + ε_z,   A_{ss'} ∝ Σ_seq Σ_t ξ_t(s, s') + ε_z,
//!   B_s(i) ∝ Σ_seq Σ_{t: o_t = i} γ_t(s) + ε_o.
//! This is EM for the MAP estimate under symmetric Dirichlet(1 + ε) priors, so each iteration
//! never decreases log-likelihood + log-prior (`log_prior`); the likelihood itself rises with it
//! as long as the data outweigh the small pseudo-counts.
//!
//! Recommendation: the filtered posterior α̂_T of the input sequence gives the next context,
//! P(z_{T+1} = s | o_1..o_T) = Σ_{s'} α̂_T(s') A_{s's}, and item i scores
//!   P(o_{T+1} = i | o_1..o_T) = Σ_s P(z_{T+1} = s | o_1..o_T) B_s(i).
//! An empty history scores by π.
//!
//! Choices the paper leaves open: S (`hmm_states`) and the EM iterations (`hmm_iterations`)
//! are options; ε_z = 0.1 and ε_o = 0.01 pseudo-counts. Initialisation matters: an HMM over
//! items has a saddle where every state emits the popularity distribution and the transitions
//! carry nothing, and EM started near it (random emissions, uniform A) crawls there for tens of
//! iterations on ml-100k and stays at popularity on ml-1m. So each state starts around a seed
//! item drawn by popularity, its emissions the items seen within `SEED_WINDOW` positions of that
//! seed mixed half and half with popularity, and A starts sticky (`STAY` = 0.5 on the diagonal,
//! the rest uniform with noise; contexts persist), π uniform with noise. On ml-1m this lifted
//! test NDCG@10 from 0.042 (= popularity) to 0.075. Each training sequence is one chain from its
//! first item (no cap on length); E-steps of sequences run in parallel with rayon. `fit`
//! returns the final log-likelihood per interaction.

use rayon::prelude::*;

use super::{LossKind, Model, SequenceInput, TrainingBatch};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::data::split::TrainSequence;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// ε_z: pseudo-count added to every initial-state and transition count.
pub const STATE_SMOOTHING: f64 = 0.1;
/// ε_o: pseudo-count added to every (state, item) emission count.
pub const EMISSION_SMOOTHING: f64 = 0.01;
/// The initial probability of staying in the same state, P(z_{t+1} = s | z_t = s) at the start of EM.
pub const STAY: f64 = 0.5;
/// How far (in positions, either side) an item may be from a state's seed item to count
/// towards that state's initial emissions.
pub const SEED_WINDOW: usize = 5;

/// The parameters of an HMM over items 1..=`items` with `states` hidden states, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct HmmParams {
    pub states: usize,
    pub items: usize,
    /// π_s, `[S]`.
    pub initial: Vec<f64>,
    /// A_{ss'} at `s·S + s'`, `[S, S]`.
    pub transitions: Vec<f64>,
    /// B_s(i) at `i·S + s`, `[items + 1, S]` (item-major, so one item's column over the states
    /// is contiguous in the recursions); row 0 (padding) is 0.
    pub emissions: Vec<f64>,
}

/// What the E-step learns from one sequence.
#[derive(Clone, Debug)]
pub struct Posteriors {
    /// log P(o_1..o_T).
    pub log_likelihood: f64,
    /// γ_t(s) at `t·S + s`, `[T, S]`.
    pub gamma: Vec<f64>,
    /// Σ_t ξ_t(s, s') at `s·S + s'`, `[S, S]`.
    pub xi: Vec<f64>,
}

impl HmmParams {
    /// The starting point of EM (see the header): each state s starts around a seed item
    /// drawn by popularity, B_s(i) ∝ n_s(i) + |n_s|·pop(i), where n_s(i) counts how often i
    /// occurs within `SEED_WINDOW` positions of the seed and pop(i) is i's smoothed share of
    /// all interactions; π and A are uniform with ±50% noise.
    pub fn initial_guess(
        states: usize,
        items: usize,
        sequences: &[&[u32]],
        rng: &mut Rng,
    ) -> HmmParams {
        let mut noisy = |len: usize| -> Vec<f64> {
            (0..len)
                .map(|_| 0.5 + rng.uniform() as f64)
                .collect::<Vec<f64>>()
        };
        let mut initial = noisy(states);
        // Contexts persist: half of each state's mass stays, the rest spreads with noise.
        let mut transitions = noisy(states * states);
        for (s, row) in transitions.chunks_exact_mut(states).enumerate() {
            normalise(row);
            row.iter_mut().for_each(|a| *a *= 1.0 - STAY);
            row[s] += STAY;
        }
        normalise(&mut initial);

        let all: Vec<u32> = sequences.iter().flat_map(|q| q.iter().copied()).collect();
        let mut popularity = vec![1.0; items + 1];
        all.iter().for_each(|&i| popularity[i as usize] += 1.0);
        popularity[0] = 0.0;
        normalise(&mut popularity);
        // Distinct seeds, each drawn as the item of a random interaction (so by popularity).
        let mut seed_state = vec![usize::MAX; items + 1];
        let mut seeds = 0;
        for _ in 0..100 * states {
            if seeds == states || all.is_empty() {
                break;
            }
            let item = all[rng.below(all.len() as u64) as usize] as usize;
            if seed_state[item] == usize::MAX {
                seed_state[item] = seeds;
                seeds += 1;
            }
        }
        let mut near = vec![0.0; (items + 1) * states];
        for q in sequences {
            for (t, &item) in q.iter().enumerate() {
                let s = seed_state[item as usize];
                if s == usize::MAX {
                    continue;
                }
                let window = t.saturating_sub(SEED_WINDOW)..(t + SEED_WINDOW + 1).min(q.len());
                for u in window.filter(|&u| u != t) {
                    near[q[u] as usize * states + s] += 1.0;
                }
            }
        }
        let mut totals = vec![0.0f64; states];
        for row in near.chunks_exact(states) {
            totals.iter_mut().zip(row).for_each(|(t, n)| *t += n);
        }
        let mut emissions = vec![0.0; (items + 1) * states];
        for i in 1..=items {
            for s in 0..states {
                let background = totals[s].max(1.0) * popularity[i];
                emissions[i * states + s] = near[i * states + s] + background;
            }
        }
        normalise_emissions(&mut emissions, states);
        HmmParams {
            states,
            items,
            initial,
            transitions,
            emissions,
        }
    }

    /// B(o) over the states, `[S]`.
    fn emission(&self, item: u32) -> &[f64] {
        let s = self.states;
        &self.emissions[item as usize * s..(item as usize + 1) * s]
    }

    /// Errs unless every item of `sequence` is in 1..=items.
    pub fn check(&self, sequence: &[u32]) -> Result<()> {
        match sequence
            .iter()
            .find(|&&i| i == 0 || i as usize > self.items)
        {
            Some(i) => Err(Error::Invalid(format!(
                "hmm: item {i} is outside the catalogue 1..={}",
                self.items
            ))),
            None => Ok(()),
        }
    }
}

fn normalise(values: &mut [f64]) {
    let total: f64 = values.iter().sum();
    values.iter_mut().for_each(|v| *v /= total);
}

/// Makes each state's B_s(·) (a column of the item-major matrix) sum to 1 over items 1..
fn normalise_emissions(emissions: &mut [f64], states: usize) {
    let mut totals = vec![0.0; states];
    for row in emissions.chunks_exact(states).skip(1) {
        totals.iter_mut().zip(row).for_each(|(t, v)| *t += v);
    }
    for row in emissions.chunks_exact_mut(states).skip(1) {
        row.iter_mut().zip(&totals).for_each(|(v, t)| *v /= t);
    }
}

/// The scaled forward pass: α̂ `[T, S]` and the log-likelihood Σ log c_t; also the scales c_t.
fn forward(p: &HmmParams, sequence: &[u32]) -> (Vec<f64>, Vec<f64>, f64) {
    let s = p.states;
    let mut alpha = vec![0.0; sequence.len() * s];
    let mut scales = vec![0.0; sequence.len()];
    let mut log_likelihood = 0.0;
    for (t, &item) in sequence.iter().enumerate() {
        let (previous, current) = alpha.split_at_mut(t * s);
        let current = &mut current[..s];
        if t == 0 {
            current.copy_from_slice(&p.initial);
        } else {
            // Σ_s α̂_{t−1}(s) A_{ss'}, row by row so the inner loop is contiguous.
            for (&a, row) in previous[(t - 1) * s..]
                .iter()
                .zip(p.transitions.chunks_exact(s))
            {
                current.iter_mut().zip(row).for_each(|(c, &r)| *c += a * r);
            }
        }
        current
            .iter_mut()
            .zip(p.emission(item))
            .for_each(|(c, &b)| *c *= b);
        let c_t: f64 = current.iter().sum();
        current.iter_mut().for_each(|v| *v /= c_t);
        scales[t] = c_t;
        log_likelihood += c_t.ln();
    }
    (alpha, scales, log_likelihood)
}

/// The E-step for one non-empty sequence of items in 1..=items: γ, Σ_t ξ_t and log P(o).
pub fn forward_backward(p: &HmmParams, sequence: &[u32]) -> Posteriors {
    let s = p.states;
    let (alpha, scales, log_likelihood) = forward(p, sequence);
    let mut gamma = alpha;
    let mut xi = vec![0.0; s * s];
    let mut beta = vec![1.0; s];
    let mut next_beta = vec![0.0; s];
    let mut weighted = vec![0.0; s];
    for t in (0..sequence.len()).rev() {
        // γ_t = α̂_t β̂_t (α̂_t is still in `gamma`'s row t).
        gamma[t * s..(t + 1) * s]
            .iter_mut()
            .zip(&beta)
            .for_each(|(g, b)| *g *= b);
        if t == 0 {
            break;
        }
        // w_{s'} = B_{s'}(o_t) β̂_t(s') / c_t, then β̂_{t−1}(s) = Σ_{s'} A_{ss'} w_{s'} and
        // ξ_{t−1}(s, s') = α̂_{t−1}(s) A_{ss'} w_{s'}.
        let emission = p.emission(sequence[t]);
        for j in 0..s {
            weighted[j] = emission[j] * beta[j] / scales[t];
        }
        let alpha_previous = &gamma[(t - 1) * s..t * s];
        for i in 0..s {
            let row = &p.transitions[i * s..(i + 1) * s];
            let xi_row = &mut xi[i * s..(i + 1) * s];
            let a = alpha_previous[i];
            let mut total = 0.0;
            for ((x, &r), &w) in xi_row.iter_mut().zip(row).zip(&weighted) {
                let term = r * w;
                total += term;
                *x += a * term;
            }
            next_beta[i] = total;
        }
        std::mem::swap(&mut beta, &mut next_beta);
    }
    Posteriors {
        log_likelihood,
        gamma,
        xi,
    }
}

/// log P of every sequence under `p`, summed.
pub fn log_likelihood(p: &HmmParams, sequences: &[&[u32]]) -> f64 {
    sequences
        .par_iter()
        .filter(|q| !q.is_empty())
        .map(|q| forward(p, q).2)
        .sum()
}

/// log of the Dirichlet(1 + ε) priors (up to a constant) that the smoothed M-step maximises
/// together with the likelihood.
pub fn log_prior(p: &HmmParams) -> f64 {
    let sum_log = |v: &[f64]| v.iter().map(|x| x.ln()).sum::<f64>();
    STATE_SMOOTHING * (sum_log(&p.initial) + sum_log(&p.transitions))
        + EMISSION_SMOOTHING * sum_log(&p.emissions[p.states..])
}

/// Expected counts of one EM iteration.
struct Counts {
    initial: Vec<f64>,
    transitions: Vec<f64>,
    emissions: Vec<f64>,
    log_likelihood: f64,
}

impl Counts {
    fn zeros(p: &HmmParams) -> Counts {
        Counts {
            initial: vec![0.0; p.states],
            transitions: vec![0.0; p.states * p.states],
            emissions: vec![0.0; p.emissions.len()],
            log_likelihood: 0.0,
        }
    }

    fn add(mut self, other: Counts) -> Counts {
        let add = |a: &mut Vec<f64>, b: &[f64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.initial, &other.initial);
        add(&mut self.transitions, &other.transitions);
        add(&mut self.emissions, &other.emissions);
        self.log_likelihood += other.log_likelihood;
        self
    }
}

/// One Baum-Welch iteration: the E-step over all sequences (in parallel) and the smoothed
/// M-step. Returns the new parameters and the log-likelihood of the data under `p`.
pub fn em_step(p: &HmmParams, sequences: &[&[u32]]) -> (HmmParams, f64) {
    let s = p.states;
    let counts = sequences
        .par_iter()
        .filter(|q| !q.is_empty())
        .fold(
            || Counts::zeros(p),
            |mut counts, q| {
                let posteriors = forward_backward(p, q);
                counts
                    .initial
                    .iter_mut()
                    .zip(&posteriors.gamma[..s])
                    .for_each(|(c, g)| *c += g);
                counts
                    .transitions
                    .iter_mut()
                    .zip(&posteriors.xi)
                    .for_each(|(c, x)| *c += x);
                for (&item, gamma) in q.iter().zip(posteriors.gamma.chunks_exact(s)) {
                    counts.emissions[item as usize * s..(item as usize + 1) * s]
                        .iter_mut()
                        .zip(gamma)
                        .for_each(|(c, g)| *c += g);
                }
                counts.log_likelihood += posteriors.log_likelihood;
                counts
            },
        )
        .reduce(|| Counts::zeros(p), Counts::add);
    let mut initial = counts.initial;
    initial.iter_mut().for_each(|v| *v += STATE_SMOOTHING);
    normalise(&mut initial);
    let mut transitions = counts.transitions;
    transitions.iter_mut().for_each(|v| *v += STATE_SMOOTHING);
    transitions.chunks_exact_mut(s).for_each(normalise);
    let mut emissions = counts.emissions;
    emissions[s..]
        .iter_mut()
        .for_each(|v| *v += EMISSION_SMOOTHING);
    normalise_emissions(&mut emissions, s);
    let next = HmmParams {
        states: s,
        items: p.items,
        initial,
        transitions,
        emissions,
    };
    (next, counts.log_likelihood)
}

/// P(o_{T+1} = i | o_1..o_T) for every item, `[items + 1]` (index 0 = padding = 0). Padding
/// (0) in `history` is skipped.
pub fn next_item_scores(p: &HmmParams, history: &[u32]) -> Vec<f64> {
    let s = p.states;
    let items: Vec<u32> = history.iter().copied().filter(|&i| i != 0).collect();
    let next_state = if items.is_empty() {
        p.initial.clone()
    } else {
        let (alpha, _, _) = forward(p, &items);
        let last = &alpha[(items.len() - 1) * s..];
        let mut next = vec![0.0; s];
        for (&a, row) in last.iter().zip(p.transitions.chunks_exact(s)) {
            next.iter_mut().zip(row).for_each(|(n, &r)| *n += a * r);
        }
        next
    };
    let mut scores: Vec<f64> = p
        .emissions
        .chunks_exact(s)
        .map(|b| b.iter().zip(&next_state).map(|(b, z)| b * z).sum())
        .collect();
    scores[0] = 0.0;
    scores
}

pub struct Hmm {
    store: ParamStore,
    initial: ParamId,
    transitions: ParamId,
    emissions: ParamId,
    states: usize,
    items: usize,
    iterations: usize,
    seed: u64,
}

impl Hmm {
    pub fn new(items: usize, config: &ModelConfig, seed: u64) -> Result<Hmm> {
        if config.hmm_states == 0 {
            return Err(Error::Invalid(
                "config: model_options.hmm_states must be at least 1".into(),
            ));
        }
        if config.hmm_iterations == 0 {
            return Err(Error::Invalid(
                "config: model_options.hmm_iterations must be at least 1".into(),
            ));
        }
        let s = config.hmm_states;
        let mut store = ParamStore::new();
        // Until `fit`, a uniform model: every item equally likely.
        let initial = store.add("initial", Tensor::full(&[s], 1.0 / s as f32))?;
        let transitions = store.add("transitions", Tensor::full(&[s, s], 1.0 / s as f32))?;
        let mut uniform = vec![1.0 / items.max(1) as f32; (items + 1) * s];
        uniform[..s].fill(0.0);
        let emissions = store.add("emissions", Tensor::from_vec(&[items + 1, s], uniform)?)?;
        Ok(Hmm {
            store,
            initial,
            transitions,
            emissions,
            states: s,
            items,
            iterations: config.hmm_iterations,
            seed,
        })
    }

    /// The fitted parameters, read back from the store (so a loaded checkpoint is used).
    pub fn hmm_params(&self) -> HmmParams {
        let read = |id: ParamId| -> Vec<f64> {
            self.store
                .value(id)
                .to_vec()
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
        HmmParams {
            states: self.states,
            items: self.items,
            initial: read(self.initial),
            transitions: read(self.transitions),
            emissions: read(self.emissions),
        }
    }

    fn store_params(&mut self, p: &HmmParams) -> Result<()> {
        let tensor = |shape: &[usize], v: &[f64]| {
            Tensor::from_vec(shape, v.iter().map(|&x| x as f32).collect())
        };
        let s = self.states;
        self.store
            .set_value(self.initial, tensor(&[s], &p.initial)?)?;
        self.store
            .set_value(self.transitions, tensor(&[s, s], &p.transitions)?)?;
        self.store
            .set_value(self.emissions, tensor(&[self.items + 1, s], &p.emissions)?)?;
        Ok(())
    }
}

impl Model for Hmm {
    fn name(&self) -> &'static str {
        "hmm"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, _tape: &mut Tape, _batch: &TrainingBatch, _kind: LossKind) -> Result<Var> {
        Err(Error::Invalid(
            "hmm is fitted by Baum-Welch (fit), not by gradient steps".into(),
        ))
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let (b, n) = (input.items.shape()[0], input.items.shape()[1]);
        let p = self.hmm_params();
        let histories = input.items.values();
        if let Some(&bad) = histories.iter().find(|&&i| i as usize > self.items) {
            return Err(Error::Invalid(format!(
                "hmm: item {bad} is outside the catalogue 1..={}",
                self.items
            )));
        }
        let mut scores = vec![0.0f32; b * (self.items + 1)];
        scores
            .par_chunks_exact_mut(self.items + 1)
            .zip(histories.par_chunks_exact(n))
            .for_each(|(out, history)| {
                for (o, v) in out.iter_mut().zip(next_item_scores(&p, history)) {
                    *o = v as f32;
                }
            });
        Ok(tape.constant(Tensor::from_vec(&[b, self.items + 1], scores)?))
    }

    fn fits_directly(&self) -> bool {
        true
    }

    fn fit(&mut self, train: &[TrainSequence], num_items: usize) -> Result<f64> {
        if num_items != self.items {
            return Err(Error::Invalid(format!(
                "hmm: fit got {num_items} items, the model was built for {}",
                self.items
            )));
        }
        let sequences: Vec<&[u32]> = train
            .iter()
            .map(|q| q.items.as_slice())
            .filter(|q| !q.is_empty())
            .collect();
        let mut item_counts = vec![0.0; num_items + 1];
        for q in &sequences {
            for &i in q.iter() {
                if i == 0 || i as usize > num_items {
                    return Err(Error::Invalid(format!(
                        "hmm: item {i} is outside the catalogue 1..={num_items}"
                    )));
                }
                item_counts[i as usize] += 1.0;
            }
        }
        let interactions: f64 = item_counts.iter().sum();
        if interactions == 0.0 {
            return Err(Error::Invalid(
                "hmm: no training interactions to fit".into(),
            ));
        }
        let mut rng = Rng::new(self.seed);
        let mut p = HmmParams::initial_guess(self.states, num_items, &sequences, &mut rng);
        for _ in 0..self.iterations {
            p = em_step(&p, &sequences).0;
        }
        let objective = log_likelihood(&p, &sequences) / interactions;
        self.store_params(&p)?;
        Ok(objective)
    }
}
