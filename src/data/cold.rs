//! The cold-start split: users and items held out of training entirely, evaluated as groups.
//!
//! Applied on top of an ordinary split (`data::split`):
//! - Cold users: a random fraction of the users (`data.cold_users`). Their sequences leave
//!   training and validation. At test time each is a new user, evaluated at every history
//!   length k of `data.cold_user_prefixes`: history = their first k items, target = item k+1
//!   (k = 0: nothing but the user's features). Only users with more items than the longest
//!   prefix are evaluated, so every prefix group holds the same users.
//! - Cold items: a random fraction of the items (`data.cold_items`). Every interaction with
//!   them leaves training and validation (as input and as target) and every evaluated
//!   history: they exist only as targets. The cold-item group holds, for each warm user who
//!   interacted with a cold item, the last such interaction as target, predicted from the
//!   user's warm items before it.
//! - Warm group: the ordinary test cases of warm users whose target is warm, histories
//!   without cold items (this is `Split::test` after the cold split).
//!
//! Every group is ranked against the whole catalogue, cold items included. Nothing of a
//! cold user or a cold item reaches `Split::train` or `Split::valid` (`tests/cold_start.rs`
//! checks it exactly). Both fractions are drawn with `train.seed`.

use crate::data::preprocess::Sequences;
use crate::data::split::{EvalCase, Split, TrainSequence};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// What to hold out.
#[derive(Clone, Debug)]
pub struct ColdStartConfig {
    /// Fraction of users held out, in [0, 1).
    pub users: f64,
    /// Fraction of items held out, in [0, 1).
    pub items: f64,
    /// History lengths new users are evaluated at.
    pub user_prefixes: Vec<usize>,
    pub seed: u64,
}

/// One evaluation group of the cold-start study.
#[derive(Clone, Debug)]
pub struct ColdGroup {
    /// E.g. "cold users, history 3" or "cold items".
    pub name: String,
    pub cases: Vec<EvalCase>,
}

/// The held-out users and items and their evaluation groups.
#[derive(Clone, Debug, Default)]
pub struct ColdStart {
    /// Sorted ids of the cold users.
    pub users: Vec<u32>,
    /// Sorted ids of the cold items.
    pub items: Vec<u32>,
    /// The cold-user groups (one per prefix length), then the cold-item group.
    pub groups: Vec<ColdGroup>,
}

/// `round(fraction · n)` distinct ids from 1..=n, sorted; a membership mask `[n + 1]`.
fn pick(n: usize, fraction: f64, rng: &mut Rng) -> (Vec<u32>, Vec<bool>) {
    let mut ids: Vec<u32> = (1..=n as u32).collect();
    rng.shuffle(&mut ids);
    let mut chosen = ids[..(fraction * n as f64).round() as usize].to_vec();
    chosen.sort_unstable();
    let mut mask = vec![false; n + 1];
    for &id in &chosen {
        mask[id as usize] = true;
    }
    (chosen, mask)
}

/// A case with its excluded items: the distinct history items that are not targets.
fn case(user: u32, history: Vec<u32>, behaviours: Vec<u32>, targets: Vec<u32>) -> EvalCase {
    let mut known_items: Vec<u32> = history
        .iter()
        .copied()
        .filter(|item| !targets.contains(item))
        .collect();
    known_items.sort_unstable();
    known_items.dedup();
    EvalCase {
        user,
        history,
        history_behaviours: behaviours,
        targets,
        known_items,
    }
}

/// `items` and their aligned `behaviours` without the cold items.
fn without_cold(items: &[u32], behaviours: &[u32], cold: &[bool]) -> (Vec<u32>, Vec<u32>) {
    items
        .iter()
        .zip(behaviours)
        .filter(|(item, _)| !cold[**item as usize])
        .map(|(&item, &behaviour)| (item, behaviour))
        .unzip()
}

/// Warm users' cases with cold items removed from histories and targets; cases left without
/// a target are dropped.
fn warm_cases(cases: Vec<EvalCase>, cold_user: &[bool], cold_item: &[bool]) -> Vec<EvalCase> {
    cases
        .into_iter()
        .filter(|c| !cold_user[c.user as usize])
        .filter_map(|c| {
            let targets: Vec<u32> = c
                .targets
                .iter()
                .copied()
                .filter(|&t| !cold_item[t as usize])
                .collect();
            if targets.is_empty() {
                return None;
            }
            let (history, behaviours) = without_cold(&c.history, &c.history_behaviours, cold_item);
            Some(case(c.user, history, behaviours, targets))
        })
        .collect()
}

/// Holds out cold users and items from `split` (made from `sequences`) as the module says.
pub fn cold_start(
    sequences: &Sequences,
    split: Split,
    config: &ColdStartConfig,
) -> Result<(Split, ColdStart)> {
    for (what, fraction) in [("users", config.users), ("items", config.items)] {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::Invalid(format!(
                "cold start: the fraction of cold {what} must be in [0, 1), got {fraction}"
            )));
        }
    }
    let mut rng = Rng::new(config.seed ^ 0xc01d_57a7);
    let (users, cold_user) = pick(sequences.num_users(), config.users, &mut rng);
    let (items, cold_item) = pick(split.num_items, config.items, &mut rng);

    let train: Vec<TrainSequence> = split
        .train
        .into_iter()
        .filter(|s| !cold_user[s.user as usize])
        .filter_map(|s| {
            let (items, behaviours) = without_cold(&s.items, &s.behaviours, &cold_item);
            (!items.is_empty()).then_some(TrainSequence {
                user: s.user,
                items,
                behaviours,
            })
        })
        .collect();
    let warm = Split {
        train,
        valid: warm_cases(split.valid, &cold_user, &cold_item),
        test: warm_cases(split.test, &cold_user, &cold_item),
        num_items: split.num_items,
        cut: split.cut,
    };

    let mut groups = Vec::new();
    if !users.is_empty() {
        let longest = config.user_prefixes.iter().copied().max().unwrap_or(0);
        let new_users: Vec<(u32, Vec<u32>, Vec<u32>)> = users
            .iter()
            .map(|&u| {
                let steps = &sequences.by_user[u as usize];
                let items: Vec<u32> = steps.iter().map(|s| s.item).collect();
                let behaviours: Vec<u32> = steps.iter().map(|s| s.behaviour).collect();
                let (items, behaviours) = without_cold(&items, &behaviours, &cold_item);
                (u, items, behaviours)
            })
            .filter(|(_, items, _)| items.len() > longest)
            .collect();
        for &k in &config.user_prefixes {
            groups.push(ColdGroup {
                name: format!("cold users, history {k}"),
                cases: new_users
                    .iter()
                    .map(|(u, items, behaviours)| {
                        case(
                            *u,
                            items[..k].to_vec(),
                            behaviours[..k].to_vec(),
                            vec![items[k]],
                        )
                    })
                    .collect(),
            });
        }
    }
    if !items.is_empty() {
        let mut cases = Vec::new();
        for (user, steps) in sequences.iter() {
            if cold_user[user as usize] {
                continue;
            }
            let Some(last_cold) = steps.iter().rposition(|s| cold_item[s.item as usize]) else {
                continue;
            };
            let before: Vec<u32> = steps[..last_cold].iter().map(|s| s.item).collect();
            let behaviours: Vec<u32> = steps[..last_cold].iter().map(|s| s.behaviour).collect();
            let (history, behaviours) = without_cold(&before, &behaviours, &cold_item);
            if !history.is_empty() {
                cases.push(case(user, history, behaviours, vec![steps[last_cold].item]));
            }
        }
        groups.push(ColdGroup {
            name: "cold items".to_string(),
            cases,
        });
    }
    // An empty group would only fail at the end of training, in its evaluation.
    if let Some(empty) = groups.iter().find(|g| g.cases.is_empty()) {
        return Err(Error::Invalid(format!(
            "cold start: the group \"{}\" has no case (cold users need more warm items than \
             the longest of data.cold_user_prefixes; cold items need a warm user who \
             interacted with one): raise data.cold_users / data.cold_items or shorten the \
             prefixes",
            empty.name
        )));
    }
    Ok((
        warm,
        ColdStart {
            users,
            items,
            groups,
        },
    ))
}
