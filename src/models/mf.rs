//! MF for implicit feedback — Hu, Koren & Volinsky, "Collaborative Filtering for Implicit
//! Feedback Datasets", ICDM 2008, fitted by alternating least squares.
//!
//! From the raw observations r_ui (here: how often user u interacted with item i in her
//! training sequence) the paper derives
//!   preference  p_ui = 1 if r_ui > 0, else 0                                     (eq. 1)
//!   confidence  c_ui = 1 + α·r_ui                                                (eq. 2)
//! and minimises over user factors x_u and item factors y_i (f each)
//!   L = Σ_{u,i} c_ui (p_ui − x_uᵀy_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)            (eq. 3)
//! where the sum runs over *all* user-item pairs. With Y fixed, each x_u has the closed form
//!   x_u = (YᵀCᵘY + λI)⁻¹ YᵀCᵘ p(u)                                               (eq. 4)
//! and the paper's speed-up writes YᵀCᵘY = YᵀY + Yᵀ(Cᵘ − I)Y: YᵀY is computed once per
//! half-step, and Cᵘ − I and Cᵘp(u) are non-zero only at u's observed items, so each user costs
//! O(f²·n_u + f³). Items are updated symmetrically (eq. 5) with XᵀX. Every half-step is an
//! exact minimisation over one block of factors, so L never increases.
//!
//! Choices the paper leaves open:
//! - r_ui counts repeated interactions (a sequence may revisit an item); α (`als_alpha`),
//!   λ (`als_lambda`), f (`dim`) and the number of sweeps (`als_iterations`) are options.
//!   Defaults α = 1, λ = 10 were the best of α ∈ {1, 10, 40} × λ ∈ {0.1, 1, 10, 30} on
//!   ml-100k's validation split (the paper's α = 40 ranked worst there).
//! - Initialisation: both factor matrices N(0, 0.01²) from the seed; users are solved first.
//! - Each f×f system is symmetric positive definite (λ > 0); it is solved with our own
//!   Cholesky factorisation in f64. Users (then items) are solved in parallel with rayon.
//! - Ranking uses the score x̂_ui = x_uᵀy_i (section 4). An unknown user (id 0, an anonymous
//!   sequence) is folded in: her factor is solved from eq. 4 with the input items as r_u·.
//! - `fit` returns the final L (eq. 3, including the regularisation term).
//!
//! The model ignores order: it recommends what fits the user's whole history.

use rayon::prelude::*;

use super::{LossKind, Model, SequenceInput, TrainingBatch};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::data::split::TrainSequence;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Solves A x = b for a symmetric positive definite A (`k`×`k`, row-major; only the lower
/// triangle is read) by Cholesky factorisation A = L Lᵀ, then forward and back substitution.
/// `a` is overwritten by L, `b` by x. Errs if A is not positive definite.
pub fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> Result<()> {
    if a.len() != k * k || b.len() != k {
        return Err(Error::Invalid(format!(
            "cholesky_solve: a has {} values and b {}, expected {} and {k}",
            a.len(),
            b.len(),
            k * k
        )));
    }
    // L, column by column: L_jj = √(A_jj − Σ_{p<j} L_jp²), L_ij = (A_ij − Σ_{p<j} L_ip L_jp) / L_jj.
    for j in 0..k {
        let diagonal = a[j * k + j] - dot(&a[j * k..j * k + j], &a[j * k..j * k + j]);
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return Err(Error::Invalid(format!(
                "cholesky_solve: the matrix is not positive definite (pivot {j} is {diagonal})"
            )));
        }
        let l_jj = diagonal.sqrt();
        a[j * k + j] = l_jj;
        let (up_to_j, below) = a.split_at_mut((j + 1) * k);
        let row_j = &up_to_j[j * k..j * k + j];
        for row_i in below.chunks_exact_mut(k) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) / l_jj;
        }
    }
    // L z = b.
    for i in 0..k {
        let dot: f64 = a[i * k..i * k + i]
            .iter()
            .zip(&b[..i])
            .map(|(l, z)| l * z)
            .sum();
        b[i] = (b[i] - dot) / a[i * k + i];
    }
    // Lᵀ x = z.
    for i in (0..k).rev() {
        let dot: f64 = (i + 1..k).map(|p| a[p * k + i] * b[p]).sum();
        b[i] = (b[i] - dot) / a[i * k + i];
    }
    Ok(())
}

/// Sparse rows: for each row (user or item), its observed columns and their counts r.
struct SparseRows {
    starts: Vec<usize>,
    columns: Vec<u32>,
    counts: Vec<f64>,
}

impl SparseRows {
    fn from_pairs(rows: usize, mut pairs: Vec<(u32, u32)>) -> SparseRows {
        pairs.sort_unstable();
        let mut starts = vec![0; rows + 1];
        let mut columns = Vec::new();
        let mut counts: Vec<f64> = Vec::new();
        let mut last = None;
        for (row, column) in pairs {
            if last == Some((row, column)) {
                *counts.last_mut().expect("a previous pair") += 1.0;
            } else {
                columns.push(column);
                counts.push(1.0);
                starts[row as usize + 1] += 1;
                last = Some((row, column));
            }
        }
        for r in 0..rows {
            starts[r + 1] += starts[r];
        }
        SparseRows {
            starts,
            columns,
            counts,
        }
    }

    fn row(&self, r: usize) -> (&[u32], &[f64]) {
        let range = self.starts[r]..self.starts[r + 1];
        (&self.columns[range.clone()], &self.counts[range])
    }
}

/// The ALS problem of eq. 3 and its factors, in f64: `users` is (U+1)×f, `items` (I+1)×f,
/// row-major; row 0 of each (unknown user, padding item) has no observations and stays 0.
pub struct Als {
    pub users: Vec<f64>,
    pub items: Vec<f64>,
    factors: usize,
    alpha: f64,
    lambda: f64,
    by_user: SparseRows,
    by_item: SparseRows,
}

impl Als {
    /// Counts r_ui from the training sequences and draws the initial factors from the seed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        train: &[TrainSequence],
        num_users: usize,
        num_items: usize,
        factors: usize,
        alpha: f64,
        lambda: f64,
        seed: u64,
    ) -> Result<Als> {
        let mut pairs = Vec::new();
        for sequence in train {
            if sequence.user as usize > num_users {
                return Err(Error::Invalid(format!(
                    "mf: user {} is outside the {num_users} users the model was built for",
                    sequence.user
                )));
            }
            for &item in &sequence.items {
                if item == 0 || item as usize > num_items {
                    return Err(Error::Invalid(format!(
                        "mf: item {item} is outside 1..={num_items}"
                    )));
                }
                pairs.push((sequence.user, item));
            }
        }
        let flipped = pairs.iter().map(|&(u, i)| (i, u)).collect();
        let by_user = SparseRows::from_pairs(num_users + 1, pairs);
        let by_item = SparseRows::from_pairs(num_items + 1, flipped);
        let mut rng = Rng::new(seed);
        let mut draw = |rows: usize| -> Vec<f64> {
            let mut v: Vec<f64> = (0..rows * factors)
                .map(|_| 0.01 * rng.normal() as f64)
                .collect();
            v[..factors].fill(0.0);
            v
        };
        let users = draw(num_users + 1);
        let items = draw(num_items + 1);
        Ok(Als {
            users,
            items,
            factors,
            alpha,
            lambda,
            by_user,
            by_item,
        })
    }

    /// Eq. 4: every x_u exactly minimises L with the item factors fixed.
    pub fn update_users(&mut self) -> Result<()> {
        solve_side(
            &mut self.users,
            &self.items,
            &self.by_user,
            self.factors,
            self.alpha,
            self.lambda,
        )
    }

    /// Eq. 5: every y_i exactly minimises L with the user factors fixed.
    pub fn update_items(&mut self) -> Result<()> {
        solve_side(
            &mut self.items,
            &self.users,
            &self.by_item,
            self.factors,
            self.alpha,
            self.lambda,
        )
    }

    /// L of eq. 3 over all user-item pairs. The sum over unobserved pairs is
    /// Σ_{u,i} (x_uᵀy_i)² = Σ_u x_uᵀ(YᵀY)x_u, corrected at the observed pairs.
    pub fn objective(&self) -> f64 {
        let f = self.factors;
        let gram = gram(&self.items, f);
        let all_pairs: f64 = self
            .users
            .par_chunks_exact(f)
            .enumerate()
            .map(|(u, x)| {
                let mut total = quadratic_form(&gram, x, f);
                let (items, counts) = self.by_user.row(u);
                for (&i, &r) in items.iter().zip(counts) {
                    let s = dot(x, &self.items[i as usize * f..(i as usize + 1) * f]);
                    let c = 1.0 + self.alpha * r;
                    total += c * (1.0 - s) * (1.0 - s) - s * s;
                }
                total
            })
            .sum();
        let norms: f64 = self.users.iter().chain(&self.items).map(|v| v * v).sum();
        all_pairs + self.lambda * norms
    }
}

/// Solves every row of `solved` (users or items) against the fixed `other` side.
fn solve_side(
    solved: &mut [f64],
    other: &[f64],
    observed: &SparseRows,
    f: usize,
    alpha: f64,
    lambda: f64,
) -> Result<()> {
    let base = gram(other, f);
    solved
        .par_chunks_exact_mut(f)
        .enumerate()
        .try_for_each_init(
            || (vec![0.0; f * f], vec![0.0; f]),
            |(a, b), (row, x)| {
                let (columns, counts) = observed.row(row);
                // A = YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ (lower triangle), b = Σ_i c_i y_i.
                a.copy_from_slice(&base);
                for d in 0..f {
                    a[d * f + d] += lambda;
                }
                b.fill(0.0);
                for (&column, &r) in columns.iter().zip(counts) {
                    let y = &other[column as usize * f..(column as usize + 1) * f];
                    let extra = alpha * r;
                    for p in 0..f {
                        let w = extra * y[p];
                        let row_p = &mut a[p * f..p * f + p + 1];
                        for (entry, &yq) in row_p.iter_mut().zip(&y[..=p]) {
                            *entry += w * yq;
                        }
                    }
                    let c = 1.0 + extra;
                    for (bp, &yp) in b.iter_mut().zip(y) {
                        *bp += c * yp;
                    }
                }
                cholesky_solve(a, b, f)?;
                x.copy_from_slice(b);
                Ok(())
            },
        )
}

/// YᵀY (f×f, full) of row-major factors.
fn gram(factors: &[f64], f: usize) -> Vec<f64> {
    factors
        .par_chunks(f * 256)
        .map(|block| {
            let mut g = vec![0.0; f * f];
            for y in block.chunks_exact(f) {
                for p in 0..f {
                    let w = y[p];
                    for (entry, &yq) in g[p * f..(p + 1) * f].iter_mut().zip(y) {
                        *entry += w * yq;
                    }
                }
            }
            g
        })
        .reduce(
            || vec![0.0; f * f],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// xᵀ G x for a full f×f matrix G.
fn quadratic_form(g: &[f64], x: &[f64], f: usize) -> f64 {
    (0..f).map(|p| x[p] * dot(&g[p * f..(p + 1) * f], x)).sum()
}

pub struct Mf {
    store: ParamStore,
    user_factors: ParamId,
    item_factors: ParamId,
    factors: usize,
    users: usize,
    alpha: f64,
    lambda: f64,
    iterations: usize,
    seed: u64,
}

impl Mf {
    pub fn new(items: usize, users: usize, config: &ModelConfig, seed: u64) -> Result<Mf> {
        let bad = |what: String| Err(Error::Invalid(format!("config: model_options.{what}")));
        if config.dim == 0 {
            return bad("dim (the number of factors f) must be at least 1".into());
        }
        if !(config.als_alpha >= 0.0 && config.als_alpha.is_finite()) {
            return bad(format!(
                "als_alpha must be a finite number ≥ 0, got {}",
                config.als_alpha
            ));
        }
        if !(config.als_lambda > 0.0 && config.als_lambda.is_finite()) {
            return bad(format!(
                "als_lambda must be a finite number > 0 (it keeps each system positive definite), got {}",
                config.als_lambda
            ));
        }
        if config.als_iterations == 0 {
            return bad("als_iterations must be at least 1".into());
        }
        let f = config.dim;
        let mut store = ParamStore::new();
        let user_factors = store.add("user_factors", Tensor::zeros(&[users + 1, f]))?;
        let item_factors = store.add("item_factors", Tensor::zeros(&[items + 1, f]))?;
        Ok(Mf {
            store,
            user_factors,
            item_factors,
            factors: f,
            users,
            alpha: config.als_alpha as f64,
            lambda: config.als_lambda as f64,
            iterations: config.als_iterations,
            seed,
        })
    }

    /// Folds an anonymous sequence in: x = (YᵀY + Yᵀ(C − I)Y + λI)⁻¹ YᵀC p (eq. 4), with r_i
    /// the item's count in the sequence.
    fn fold_in(&self, items: &[f32], base: &[f64], sequence: &[u32]) -> Result<Vec<f32>> {
        let f = self.factors;
        let mut pairs: Vec<(u32, u32)> = sequence
            .iter()
            .filter(|&&i| i != 0)
            .map(|&i| (0, i))
            .collect();
        pairs.sort_unstable();
        let mut a = base.to_vec();
        for d in 0..f {
            a[d * f + d] += self.lambda;
        }
        let mut b = vec![0.0; f];
        for group in pairs.chunk_by(|x, y| x == y) {
            let item = group[0].1 as usize;
            let y: Vec<f64> = items[item * f..(item + 1) * f]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let extra = self.alpha * group.len() as f64;
            for p in 0..f {
                for q in 0..=p {
                    a[p * f + q] += extra * y[p] * y[q];
                }
                b[p] += (1.0 + extra) * y[p];
            }
        }
        cholesky_solve(&mut a, &mut b, f)?;
        Ok(b.iter().map(|&v| v as f32).collect())
    }
}

impl Model for Mf {
    fn name(&self) -> &'static str {
        "mf"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, _tape: &mut Tape, _batch: &TrainingBatch, _kind: LossKind) -> Result<Var> {
        Err(Error::Invalid(
            "mf is fitted by alternating least squares (fit), not by gradient steps".into(),
        ))
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let f = self.factors;
        let b = input.users.shape()[0];
        let n = input.items.shape()[1];
        let users = self.store.value(self.user_factors).to_vec();
        let items = self.store.value(self.item_factors).to_vec();
        let num_items = items.len() / f - 1;
        let needs_fold_in = input
            .users
            .values()
            .iter()
            .any(|&u| u == 0 || u as usize > self.users);
        let base = if needs_fold_in {
            let items64: Vec<f64> = items.iter().map(|&v| v as f64).collect();
            gram(&items64, f)
        } else {
            Vec::new()
        };
        let mut scores = vec![0.0f32; b * (num_items + 1)];
        scores
            .par_chunks_exact_mut(num_items + 1)
            .enumerate()
            .try_for_each(|(row, out)| -> Result<()> {
                let user = input.users.values()[row] as usize;
                let folded;
                let x = if user == 0 || user > self.users {
                    let sequence = &input.items.values()[row * n..(row + 1) * n];
                    folded = self.fold_in(&items, &base, sequence)?;
                    folded.as_slice()
                } else {
                    &users[user * f..(user + 1) * f]
                };
                for (score, y) in out.iter_mut().zip(items.chunks_exact(f)) {
                    *score = x.iter().zip(y).map(|(a, b)| a * b).sum();
                }
                Ok(())
            })?;
        Ok(tape.constant(Tensor::from_vec(&[b, num_items + 1], scores)?))
    }

    fn fits_directly(&self) -> bool {
        true
    }

    fn fit(&mut self, train: &[TrainSequence], num_items: usize) -> Result<f64> {
        let expected = self.store.value(self.item_factors).shape()[0] - 1;
        if num_items != expected {
            return Err(Error::Invalid(format!(
                "mf: fit got {num_items} items, the model was built for {expected}"
            )));
        }
        let mut als = Als::new(
            train,
            self.users,
            num_items,
            self.factors,
            self.alpha,
            self.lambda,
            self.seed,
        )?;
        for _ in 0..self.iterations {
            als.update_users()?;
            als.update_items()?;
        }
        let objective = als.objective();
        let to_tensor = |values: &[f64], rows: usize| {
            Tensor::from_vec(
                &[rows, self.factors],
                values.iter().map(|&v| v as f32).collect(),
            )
        };
        let users = to_tensor(&als.users, self.users + 1)?;
        let items = to_tensor(&als.items, num_items + 1)?;
        self.store.set_value(self.user_factors, users)?;
        self.store.set_value(self.item_factors, items)?;
        Ok(objective)
    }
}
