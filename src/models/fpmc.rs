//! FPMC — Rendle, Freudenthaler & Schmidt-Thieme, "Factorizing Personalized Markov Chains for
//! Next-Basket Recommendation", WWW 2010.
//!
//! The personalised transition cube a_{u,l,i} (user u, last item l, next item i) is factorised
//! pairwise (section 4): of the three pairwise interactions, the user–last-item one cancels in
//! any ranking of next items i, so the paper drops it, leaving
//!   x̂(u, l, i) = ⟨V^{U,I}_u, V^{I,U}_i⟩ + ⟨V^{I,L}_i, V^{L,I}_l⟩,
//! a user–item MF term plus a factorised first-order Markov chain. The paper's baskets become
//! single items here: the basket B_{t−1} is the previous item l, so the mean over l ∈ B_{t−1}
//! has one term.
//!
//! Both terms are one inner product: the query q_{u,l} = [V^{U,I}_u ; V^{L,I}_l] against the
//! target t_i = [V^{I,U}_i ; V^{I,L}_i] (both 2d wide), so every item scores in one matmul.
//!
//! Training (section 5, S-BPR): maximise Σ ln σ(x̂(u,l,i) − x̂(u,l,j)) over every position of
//! every training sequence (previous item l → next item i) against the batch's sampled
//! negatives j; `train.loss = "bce"` (the sampled-negative recipe) selects S-BPR for this
//! model. The paper's λ‖Θ‖² is the optimiser's weight decay. `train.loss = "ce"` is the option:
//! full-softmax cross-entropy over x̂(u, l, ·).
//!
//! Choices the paper leaves open (or that differ from it):
//! - LearnSBPR draws single (u, t, i, j) quadruples for SGD; here mini-batches of whole
//!   sequences with Adam, every position a training example.
//! - An unknown user (id 0, an anonymous sequence) has no V^{U,I}_u: the MF term is dropped and
//!   the Markov term alone ranks (there is no learned anonymous-user row).
//! - The widths of the two factorisations (the paper's k_{U,I} and k_{I,L}) are both
//!   `model_options.dim`; initialisation is Xavier-uniform (the paper: N(0, σ²)).

use super::{
    LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets, next_item_loss_excluding,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

pub struct Fpmc {
    store: ParamStore,
    /// V^{U,I} `[users + 1, d]`: the user's side of the user–item term.
    user_item: ParamId,
    /// V^{I,U} `[items + 1, d]`: the next item's side of the user–item term.
    item_user: ParamId,
    /// V^{I,L} `[items + 1, d]`: the next item's side of the Markov term.
    item_last: ParamId,
    /// V^{L,I} `[items + 1, d]`: the last item's side of the Markov term.
    last_item: ParamId,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
}

impl Fpmc {
    pub fn new(items: usize, users: usize, config: &ModelConfig, seed: u64) -> Result<Fpmc> {
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let user_item = store.add_xavier("user_item", &[users + 1, d], &mut rng)?;
        let item_user = store.add_xavier("item_user", &[items + 1, d], &mut rng)?;
        let item_last = store.add_xavier("item_last", &[items + 1, d], &mut rng)?;
        let last_item = store.add_xavier("last_item", &[items + 1, d], &mut rng)?;
        Ok(Fpmc {
            store,
            user_item,
            item_user,
            item_last,
            last_item,
            cold_offsets: None,
        })
    }

    /// q_{u,l} = [V^{U,I}_u ; V^{L,I}_l] for every last item l of `last` `[B, m]`: `[B, m, 2d]`.
    fn queries(&self, tape: &mut Tape, users: &Ids, last: &Ids) -> Result<Var> {
        let (b, m) = (last.shape()[0], last.shape()[1]);
        let user_ids: Vec<u32> = users
            .values()
            .iter()
            .flat_map(|&u| std::iter::repeat_n(u, m))
            .collect();
        let user_table = tape.param(&self.store, self.user_item);
        let mut v_u = tape.embedding(user_table, &Ids::from_vec(&[b, m], user_ids)?)?;
        if users.values().contains(&0) {
            // Unknown users: no MF term, the Markov term alone.
            let known: Vec<f32> = users
                .values()
                .iter()
                .flat_map(|&u| std::iter::repeat_n(if u == 0 { 0.0 } else { 1.0 }, m))
                .collect();
            let known = tape.constant(Tensor::from_vec(&[b, m, 1], known)?);
            v_u = tape.mul(v_u, known)?;
        }
        let last_table = tape.param(&self.store, self.last_item);
        let v_l = tape.embedding(last_table, last)?;
        tape.concat(&[v_u, v_l], 2)
    }

    /// t_i = [V^{I,U}_i ; V^{I,L}_i] for every item: `[items + 1, 2d]`.
    fn targets(&self, tape: &mut Tape) -> Result<Var> {
        let item_user = tape.param(&self.store, self.item_user);
        let item_last = tape.param(&self.store, self.item_last);
        tape.concat(&[item_user, item_last], 1)
    }
}

impl Model for Fpmc {
    fn name(&self) -> &'static str {
        "fpmc"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        // The item at position t is the last item l for the target at t (the next item).
        let queries = self.queries(tape, &batch.input.users, &batch.input.items)?;
        let targets = self.targets(tape)?;
        let offsets = self.cold_offsets.as_ref();
        markov_loss(tape, queries, targets, batch, kind, offsets)
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        let catalogue = self.store.value(self.item_user).shape()[0] - 1;
        self.cold_offsets = excluded_items_offsets(catalogue, items)?;
        Ok(())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let (b, n) = (input.items.shape()[0], input.items.shape()[1]);
        let last: Vec<u32> = input.items.values().chunks(n).map(|r| r[n - 1]).collect();
        let queries = self.queries(tape, &input.users, &Ids::from_vec(&[b, 1], last)?)?;
        let width = tape.shape(queries)[2];
        let queries = tape.reshape(queries, &[b, width])?;
        let targets = self.targets(tape)?;
        tape.matmul_t(queries, targets, false, true)
    }
}

/// The loss of FPMC and Fossil: S-BPR with the sampled negatives (`bce`, the papers'
/// recipe) or full-softmax cross-entropy without the `offsets`-excluded items (`ce`).
pub(crate) fn markov_loss(
    tape: &mut Tape,
    queries: Var,
    targets: Var,
    batch: &TrainingBatch,
    kind: LossKind,
    offsets: Option<&Tensor>,
) -> Result<Var> {
    match kind {
        LossKind::SampledBce => sampled_bpr_loss(tape, queries, targets, batch),
        LossKind::FullSoftmax => {
            next_item_loss_excluding(tape, queries, targets, batch, kind, offsets)
        }
    }
}

/// S-BPR at every position: the mean over real positions and their sampled negatives j of
/// −ln σ(x̂_i − x̂_j), x̂ the inner product of `queries` `[B, n, D]` with `targets`
/// `[items + 1, D]` (the positive i from `batch.positives`, the j from `batch.negatives`).
pub(crate) fn sampled_bpr_loss(
    tape: &mut Tape,
    queries: Var,
    targets: Var,
    batch: &TrainingBatch,
) -> Result<Var> {
    let shape = tape.shape(queries).to_vec();
    let (b, n, d) = (shape[0], shape[1], shape[2]);
    let k = batch.negatives.shape()[2];
    if k == 0 {
        return Err(Error::Invalid(
            "S-BPR needs sampled negatives: set train.negatives to 1 or more".into(),
        ));
    }
    let positive = tape.embedding(targets, &batch.positives)?; // [B, n, D]
    let product = tape.mul(queries, positive)?;
    let x_i = tape.sum(product, &[2], true)?; // [B, n, 1]
    let negative = tape.embedding(targets, &batch.negatives)?; // [B, n, k, D]
    let queries = tape.reshape(queries, &[b, n, 1, d])?;
    let product = tape.mul(queries, negative)?;
    let x_j = tape.sum(product, &[3], false)?; // [B, n, k]
    let weights: Vec<f32> = batch
        .weights
        .to_vec()
        .iter()
        .flat_map(|&w| std::iter::repeat_n(w, k))
        .collect();
    let weights = Tensor::from_vec(&[b, n, k], weights)?;
    tape.bpr_loss(x_i, x_j, Some(&weights))
}
