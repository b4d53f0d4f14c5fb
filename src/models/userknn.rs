//! UserKNN — user-based neighbourhood collaborative filtering (GroupLens: Resnick et al.,
//! CSCW 1994; the user-based scheme Sarwar et al., WWW 2001, compare against), for implicit
//! feedback.
//!
//! User profile: I_u, the latest `knn_user_items` distinct items of u's training sequence
//! (a cap, so the profiles fit a fixed-shape tensor; it also keeps a long history to what
//! the user did lately).
//! User similarity, the cosine of binary profiles with shrinkage λ (`knn_shrinkage`):
//!   sim(u, v) = |I_u ∩ I_v| / (√|I_u| · √|I_v| + λ)
//! and N_k(u), the k (`knn_neighbours`) most similar other users, computed sparsely and in
//! parallel at fit time (`neighbours::all_top_k_similar`).
//! Prediction, the weighted vote of the neighbours:
//!   score(u, j) = Σ_{v ∈ N_k(u)} sim(u, v) · [j ∈ I_v].
//! An unknown user (id 0, an anonymous sequence), or a user with no neighbour, gets a
//! neighbourhood built from the input sequence itself: the sequence is a vector a over items,
//! a_i = decay^{t_i} for its latest m items (m = `knn_history`, 0 = all; t_i = steps before
//! the last; `knn_decay` = 1 gives the binary profile), and
//!   sim(s, v) = Σ_{i ∈ I_v} a_i / (‖a‖ · √|I_v| + λ)
//! (with decay < 1 this is the sequence-aware session kNN of Ludewig & Jannach 2018).
//! Items no neighbour holds, and every item for a sequence with no known item, are ranked by
//! popularity (`pop::tie_break`).
//!
//! Fitted state, in the ParamStore so checkpoints restore it: `user_items`
//! `[users + 1, knn_user_items]` (I_u as item ids, padded with 0), `neighbour_ids` and
//! `neighbour_weights` `[users + 1, k]` (N_k(u) and sim(u, ·), padded with id 0, weight 0),
//! `popularity` `[items + 1]`.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::neighbours::{
    Incidence, Scratch, all_top_k_similar, check_id_range, check_options, ids_from_tensor,
    neighbour_tensors, recency_weights, top_k_similar,
};
use super::pop::{check_item, interaction_counts, no_gradient_training, tie_break};
use super::{LossKind, Model, SequenceInput, TrainingBatch};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::data::split::TrainSequence;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::tensor::Tensor;

pub struct UserKnn {
    store: ParamStore,
    user_items: ParamId,
    neighbour_ids: ParamId,
    neighbour_weights: ParamId,
    popularity: ParamId,
    items: usize,
    users: usize,
    k: usize,
    profile_len: usize,
    shrinkage: f32,
    history: usize,
    decay: f32,
    /// The fitted tables read back from the store once; reset whenever the store may change.
    tables: OnceLock<Tables>,
}

/// The fitted state in the form scoring reads it.
struct Tables {
    /// I_u per user (row 0 empty), and its transpose: the users holding each item.
    profiles: Incidence,
    users_of_item: Incidence,
    profile_norms: Vec<f32>,
    neighbour_ids: Vec<u32>,
    neighbour_weights: Vec<f32>,
    tie_break: Vec<f32>,
}

impl UserKnn {
    pub fn new(items: usize, users: usize, config: &ModelConfig) -> Result<UserKnn> {
        let k = config.knn_neighbours;
        check_options("userknn", k, config.knn_shrinkage, config.knn_decay)?;
        if config.knn_user_items == 0 {
            return Err(Error::Invalid(
                "config: model_options.knn_user_items must be at least 1 for userknn".into(),
            ));
        }
        check_id_range("items", items)?;
        check_id_range("users", users)?;
        let mut store = ParamStore::new();
        let user_items = store.add(
            "user_items",
            Tensor::zeros(&[users + 1, config.knn_user_items]),
        )?;
        let neighbour_ids = store.add("neighbour_ids", Tensor::zeros(&[users + 1, k]))?;
        let neighbour_weights = store.add("neighbour_weights", Tensor::zeros(&[users + 1, k]))?;
        let popularity = store.add("popularity", Tensor::zeros(&[items + 1]))?;
        Ok(UserKnn {
            store,
            user_items,
            neighbour_ids,
            neighbour_weights,
            popularity,
            items,
            users,
            k,
            profile_len: config.knn_user_items,
            shrinkage: config.knn_shrinkage,
            history: config.knn_history,
            decay: config.knn_decay,
            tables: OnceLock::new(),
        })
    }

    /// N_k(u) of user u: (v, sim(u, v)), best first. For tests and inspection.
    pub fn neighbours(&self, user: u32) -> Result<Vec<(u32, f32)>> {
        self.check_user(user)?;
        let tables = self.tables()?;
        Ok(self.stored_neighbours(tables, user))
    }

    fn check_user(&self, user: u32) -> Result<()> {
        if user as usize > self.users {
            return Err(Error::Invalid(format!(
                "user {user} is beyond the {} users userknn was built for",
                self.users
            )));
        }
        Ok(())
    }

    fn stored_neighbours(&self, tables: &Tables, user: u32) -> Vec<(u32, f32)> {
        let row = user as usize;
        (row * self.k..(row + 1) * self.k)
            .filter(|&s| tables.neighbour_ids[s] != 0)
            .map(|s| (tables.neighbour_ids[s], tables.neighbour_weights[s]))
            .collect()
    }

    fn tables(&self) -> Result<&Tables> {
        if let Some(tables) = self.tables.get() {
            return Ok(tables);
        }
        let items = ids_from_tensor(self.store.value(self.user_items), self.items, "user_items")?;
        let lists: Vec<Vec<u32>> = items
            .chunks(self.profile_len)
            .map(|row| row.iter().copied().filter(|&i| i != 0).collect())
            .collect();
        let profiles = Incidence::from_rows(&lists);
        let tables = Tables {
            users_of_item: profiles.transpose(self.items + 1),
            profile_norms: profiles.norms(),
            profiles,
            neighbour_ids: ids_from_tensor(
                self.store.value(self.neighbour_ids),
                self.users,
                "neighbour_ids",
            )?,
            neighbour_weights: self.store.value(self.neighbour_weights).to_vec(),
            tie_break: tie_break(&self.store.value(self.popularity).to_vec()),
        };
        Ok(self.tables.get_or_init(|| tables))
    }

    /// score(u, j) for one user and its left-padded input row, plus the popularity tie-break.
    fn score_row(
        &self,
        tables: &Tables,
        user: u32,
        row: &[u32],
        scratch: &mut Scratch,
    ) -> Vec<f32> {
        let mut neighbours = if user == 0 {
            Vec::new()
        } else {
            self.stored_neighbours(tables, user)
        };
        if neighbours.is_empty() {
            let query = recency_weights(row, self.history, self.decay);
            neighbours = top_k_similar(
                &query,
                &tables.users_of_item,
                &tables.profile_norms,
                self.k,
                self.shrinkage,
                None,
                scratch,
            );
        }
        let mut scores = tables.tie_break.clone();
        for (v, sim) in neighbours {
            for &j in tables.profiles.row(v as usize) {
                scores[j as usize] += sim;
            }
        }
        scores[0] = 0.0;
        scores
    }
}

impl Model for UserKnn {
    fn name(&self) -> &'static str {
        "userknn"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        // The caller may load new values (a checkpoint): read them again on the next score.
        self.tables = OnceLock::new();
        &mut self.store
    }

    fn loss(&self, _tape: &mut Tape, _batch: &TrainingBatch, _kind: LossKind) -> Result<Var> {
        Err(no_gradient_training(self.name()))
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let (b, n) = (input.items.shape()[0], input.items.shape()[1]);
        super::check_input_items(input, self.items)?;
        for &user in input.users.values() {
            self.check_user(user)?;
        }
        let tables = self.tables()?;
        let rows: Vec<Vec<f32>> = input
            .items
            .values()
            .par_chunks(n.max(1))
            .zip(input.users.values().par_iter())
            .map_init(
                || Scratch::new(self.users + 1),
                |scratch, (row, &user)| self.score_row(tables, user, row, scratch),
            )
            .collect();
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        Ok(tape.constant(Tensor::from_vec(&[b, self.items + 1], flat)?))
    }

    fn fits_directly(&self) -> bool {
        true
    }

    fn fit(&mut self, train: &[TrainSequence], num_items: usize) -> Result<f64> {
        if num_items != self.items {
            return Err(Error::Invalid(format!(
                "userknn was built for {} items, fit was given {num_items}",
                self.items
            )));
        }
        // Each user's whole training history (a user may come in several sequences).
        let mut histories: Vec<Vec<u32>> = vec![Vec::new(); self.users + 1];
        for sequence in train {
            if sequence.user == 0 {
                return Err(Error::Invalid(
                    "userknn needs a user id on every training sequence; got user 0".into(),
                ));
            }
            self.check_user(sequence.user)?;
            for &item in &sequence.items {
                check_item(item, self.items)?;
            }
            histories[sequence.user as usize].extend_from_slice(&sequence.items);
        }
        // I_u: the latest `profile_len` distinct items, most recent first.
        let profiles: Vec<Vec<u32>> = histories
            .iter()
            .map(|history| {
                let mut profile: Vec<u32> = Vec::new();
                for &item in history.iter().rev().filter(|&&i| i != 0) {
                    if profile.len() == self.profile_len {
                        break;
                    }
                    if !profile.contains(&item) {
                        profile.push(item);
                    }
                }
                profile
            })
            .collect();
        let incidence = Incidence::from_rows(&profiles);
        let lists = all_top_k_similar(&incidence, self.items + 1, self.k, self.shrinkage);
        let (ids, weights) = neighbour_tensors(&lists, self.k)?;
        let mut stored = vec![0.0f32; (self.users + 1) * self.profile_len];
        for (u, profile) in profiles.iter().enumerate() {
            for (slot, &item) in profile.iter().enumerate() {
                stored[u * self.profile_len + slot] = item as f32;
            }
        }
        let counts = interaction_counts(train, self.items)?;
        self.store.set_value(
            self.user_items,
            Tensor::from_vec(&[self.users + 1, self.profile_len], stored)?,
        )?;
        self.store.set_value(self.neighbour_ids, ids)?;
        self.store.set_value(self.neighbour_weights, weights)?;
        self.store.set_value(
            self.popularity,
            Tensor::from_vec(&[self.items + 1], counts)?,
        )?;
        self.tables = OnceLock::new();
        Ok(0.0)
    }
}
