//! BPR-MF — Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback",
//! UAI 2009.
//!
//! Matrix factorisation: x̂_ui = ⟨w_u, h_i⟩ (section 5, eq. for MF).
//! BPR-Opt (section 4.1): maximise Σ_{(u,i,j)} ln σ(x̂_ui − x̂_uj) − λ‖Θ‖², over triples of a
//! user, an item she interacted with and one she did not (sampled uniformly, LearnBPR).
//! Here every item of the user's training sequence is a positive with its sampled negatives;
//! λ is the optimiser's weight decay. Full-softmax cross-entropy over x̂_u· is the option.
//! The model ignores order. A user it has never seen (id 0, an anonymous sequence) is folded
//! in as the mean embedding of the items given.

use super::{
    LossKind, Model, SequenceInput, TrainingBatch, add_offsets, excluded_items_offsets,
    padding_mask,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::{Ids, Tensor};

pub struct BprMf {
    store: ParamStore,
    user_embedding: ParamId,
    item_embedding: ParamId,
    dim: usize,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
}

impl BprMf {
    pub fn new(items: usize, users: usize, config: &ModelConfig, seed: u64) -> Result<BprMf> {
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let user_embedding = store.add_xavier("user_embedding", &[users + 1, d], &mut rng)?;
        let item_embedding = store.add_xavier("item_embedding", &[items + 1, d], &mut rng)?;
        Ok(BprMf {
            store,
            user_embedding,
            item_embedding,
            dim: d,
            cold_offsets: None,
        })
    }

    /// w_u for each row `[B, d]`; unknown users (id 0) get the mean of their items' h_i.
    fn user_vectors(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let b = input.users.shape()[0];
        let users = tape.param(&self.store, self.user_embedding);
        let known = tape.embedding(users, &input.users)?;
        if input.users.values().iter().all(|&u| u != 0) {
            return Ok(known);
        }
        let items = tape.param(&self.store, self.item_embedding);
        let embedded = tape.embedding(items, &input.items)?; // [B, n, d]
        let summed = tape.sum(embedded, &[1], false)?;
        let mask = padding_mask(&input.items);
        let counts: Vec<f32> = mask
            .to_vec()
            .chunks(input.items.shape()[1])
            .map(|r| r.iter().sum::<f32>().max(1.0))
            .collect();
        let counts = tape.constant(Tensor::from_vec(&[b, 1], counts)?);
        let folded = tape.div(summed, counts)?;
        let unknown: Vec<f32> = input
            .users
            .values()
            .iter()
            .map(|&u| if u == 0 { 1.0 } else { 0.0 })
            .collect();
        let unknown = tape.constant(Tensor::from_vec(&[b, 1], unknown)?);
        let folded = tape.mul(folded, unknown)?;
        tape.add(known, folded)
    }
}

impl Model for BprMf {
    fn name(&self) -> &'static str {
        "bprmf"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let (b, n) = (batch.positives.shape()[0], batch.positives.shape()[1]);
        let d = self.dim;
        let users = tape.param(&self.store, self.user_embedding);
        let items = tape.param(&self.store, self.item_embedding);
        match kind {
            LossKind::SampledBce => {
                // BPR: every (u, i) with each sampled j.
                let k = batch.negatives.shape()[2];
                let w_u = tape.embedding(users, &batch.input.users)?;
                let w_u = tape.reshape(w_u, &[b, 1, 1, d])?;
                let h_i = tape.embedding(items, &batch.positives)?;
                let h_i = tape.reshape(h_i, &[b, n, 1, d])?;
                let h_j = tape.embedding(items, &batch.negatives)?; // [b, n, k, d]
                let x_ui = tape.mul(h_i, w_u)?;
                let x_ui = tape.sum(x_ui, &[3], false)?; // [b, n, 1]
                let x_uj = tape.mul(h_j, w_u)?;
                let x_uj = tape.sum(x_uj, &[3], false)?; // [b, n, k]
                let zeros = tape.constant(Tensor::zeros(&[b, n, k]));
                let x_ui = tape.add(x_ui, zeros)?;
                let weights: Vec<f32> = batch
                    .weights
                    .to_vec()
                    .iter()
                    .flat_map(|&w| std::iter::repeat_n(w, k))
                    .collect();
                let weights = Tensor::from_vec(&[b, n, k], weights)?;
                tape.bpr_loss(x_ui, x_uj, Some(&weights))
            }
            LossKind::FullSoftmax => {
                // Every position of a user has the same query w_u, so the softmax is taken
                // once per user, not once per position (n times less work):
                // −Σ_t w_t log p(i_t | u) / Σ_t w_t, log p from one [B, items + 1] row per user.
                let w_u = tape.embedding(users, &batch.input.users)?; // [b, d]
                let logits = tape.matmul_t(w_u, items, false, true)?;
                let logits = add_offsets(tape, logits, self.cold_offsets.as_ref())?;
                let log_p = tape.log_softmax(logits)?;
                let width = tape.shape(log_p)[1];
                let log_p = tape.reshape(log_p, &[b * width, 1])?;
                let picks: Vec<u32> = (0..b * n)
                    .map(|r| ((r / n) * width) as u32 + batch.positives.values()[r])
                    .collect();
                let picked = tape.index_select(log_p, 0, &Ids::from_vec(&[b * n], picks)?)?;
                let weights = batch.weights.to_vec();
                let total: f32 = weights.iter().sum();
                let scale = if total > 0.0 { -1.0 / total } else { 0.0 };
                let weights = tape.constant(Tensor::from_vec(&[b * n, 1], weights)?);
                let weighted = tape.mul(picked, weights)?;
                let sum = tape.sum_all(weighted)?;
                tape.scale(sum, scale)
            }
        }
    }

    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        let catalogue = self.store.value(self.item_embedding).shape()[0] - 1;
        self.cold_offsets = excluded_items_offsets(catalogue, items)?;
        Ok(())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let w_u = self.user_vectors(tape, input)?;
        let items = tape.param(&self.store, self.item_embedding);
        tape.matmul_t(w_u, items, false, true)
    }
}
