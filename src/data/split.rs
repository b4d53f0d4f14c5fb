//! Leakage-free splits of preprocessed sequences into training sequences and evaluation cases.
//!
//! Three protocols:
//! - `leave_one_out`: per user, last item → test target, second-to-last → validation target,
//!   the rest → training sequence (SASRec, BERT4Rec, RecBole "LS", the PyTorch peer).
//! - `temporal`: one global time cut; interactions after it are test targets, predicted from
//!   the user's interactions before it. Validation holds out the last pre-cut interaction.
//! - `last_day_sessions`: sessions that end in the last day of the data are test sessions
//!   (or the publisher's own test file when the data set ships one); the last day of the
//!   remaining sessions is the validation part (session-rec's and GRU4Rec's protocol).
//!
//! Every evaluation case carries the history the model may see, its target(s), and the items
//! that evaluation excludes from ranking by default: the distinct items of the history, minus
//! the targets (a repeated item stays rankable as its own target).
//!
//! A training sequence never contains a validation or test interaction, and a validation
//! history never contains the test interaction. Item-level guarantees (a test *item* is absent
//! from the user's training data) additionally need unique (user, item) pairs, i.e.
//! `PreprocessConfig::dedup` on data with repeats.

use std::collections::HashSet;

use crate::data::preprocess::{Sequences, Step};
use crate::error::{Error, Result};

/// Seconds in a day: the "last day" of `last_day_sessions` when timestamps are in seconds.
pub const DAY_SECONDS: i64 = 86_400;

/// One user's (or session's) training sequence, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainSequence {
    pub user: u32,
    pub items: Vec<u32>,
    /// Behaviour ids aligned with `items`.
    pub behaviours: Vec<u32>,
}

/// One evaluation case: rank all items for `user` given `history`; `targets` are the right
/// answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalCase {
    pub user: u32,
    /// What the model may see, oldest first.
    pub history: Vec<u32>,
    /// Behaviour ids aligned with `history`.
    pub history_behaviours: Vec<u32>,
    /// One target (leave-one-out, session prefixes) or all post-cut items (temporal).
    pub targets: Vec<u32>,
    /// Sorted distinct items of the history that are not targets: excluded from ranking by
    /// default.
    pub known_items: Vec<u32>,
}

/// The result of a split. Item ids are 1..=num_items as in the `Sequences`.
#[derive(Clone, Debug, Default)]
pub struct Split {
    pub train: Vec<TrainSequence>,
    pub valid: Vec<EvalCase>,
    pub test: Vec<EvalCase>,
    pub num_items: usize,
    /// The time cut of a temporal split: no training interaction is later than this.
    pub cut: Option<i64>,
}

/// Where a temporal split cuts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeCut {
    /// At this fraction (0..=1) of the time range from the first to the last interaction.
    Fraction(f64),
    /// At this timestamp: interactions strictly after it are test.
    At(i64),
}

fn train_sequence(user: u32, steps: &[Step]) -> TrainSequence {
    TrainSequence {
        user,
        items: steps.iter().map(|s| s.item).collect(),
        behaviours: steps.iter().map(|s| s.behaviour).collect(),
    }
}

fn eval_case(user: u32, history: &[Step], targets: &[Step]) -> EvalCase {
    let targets: Vec<u32> = targets.iter().map(|s| s.item).collect();
    let mut known_items: Vec<u32> = history
        .iter()
        .map(|s| s.item)
        .filter(|item| !targets.contains(item))
        .collect();
    known_items.sort_unstable();
    known_items.dedup();
    EvalCase {
        user,
        history: history.iter().map(|s| s.item).collect(),
        history_behaviours: history.iter().map(|s| s.behaviour).collect(),
        targets,
        known_items,
    }
}

/// Leave-one-out. Users with fewer than 3 items have no validation and test case: their whole
/// sequence goes to training (so they still teach the model; they are simply not evaluated).
pub fn leave_one_out(sequences: &Sequences) -> Split {
    let mut split = Split {
        num_items: sequences.num_items(),
        ..Split::default()
    };
    for (user, steps) in sequences.iter() {
        let n = steps.len();
        if n < 3 {
            split.train.push(train_sequence(user, steps));
            continue;
        }
        split.train.push(train_sequence(user, &steps[..n - 2]));
        split
            .valid
            .push(eval_case(user, &steps[..n - 2], &steps[n - 2..n - 1]));
        split
            .test
            .push(eval_case(user, &steps[..n - 1], &steps[n - 1..]));
    }
    split
}

/// Global temporal split. Per user, the interactions at or before the cut form a prefix (the
/// sequences are chronological); of it, the last one is the validation target when the prefix
/// has at least 3 items (as in `leave_one_out`), the rest trains. The interactions after the
/// cut are the test targets, predicted from the whole prefix; users with no interaction before
/// the cut have nothing to predict from and are not evaluated (nor trained on).
pub fn temporal(sequences: &Sequences, cut: TimeCut) -> Result<Split> {
    let time_of = |s: &Step| {
        s.timestamp.ok_or_else(|| {
            Error::Invalid("temporal split: the data set has no timestamps".to_string())
        })
    };
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    for (_, steps) in sequences.iter() {
        for s in steps {
            let t = time_of(s)?;
            first = first.min(t);
            last = last.max(t);
        }
    }
    if first > last {
        return Err(Error::Invalid(
            "temporal split: no interactions".to_string(),
        ));
    }
    let cut = match cut {
        TimeCut::At(t) => t,
        TimeCut::Fraction(f) if (0.0..=1.0).contains(&f) => {
            first + ((last - first) as f64 * f).floor() as i64
        }
        TimeCut::Fraction(f) => {
            return Err(Error::Invalid(format!(
                "temporal split: fraction {f} outside 0..=1"
            )));
        }
    };
    let mut split = Split {
        num_items: sequences.num_items(),
        cut: Some(cut),
        ..Split::default()
    };
    for (user, steps) in sequences.iter() {
        let before = steps.partition_point(|s| s.timestamp.is_some_and(|t| t <= cut));
        let (prefix, after) = steps.split_at(before);
        if prefix.is_empty() {
            continue;
        }
        if prefix.len() >= 3 {
            let n = prefix.len();
            split.train.push(train_sequence(user, &prefix[..n - 1]));
            split
                .valid
                .push(eval_case(user, &prefix[..n - 1], &prefix[n - 1..]));
        } else {
            split.train.push(train_sequence(user, prefix));
        }
        if !after.is_empty() {
            split.test.push(eval_case(user, prefix, after));
        }
    }
    Ok(split)
}

/// Which part a session goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Train,
    Valid,
    Test,
}

/// The session's last timestamp.
fn last_time(steps: &[Step]) -> Result<i64> {
    steps
        .iter()
        .map(|s| s.timestamp)
        .max()
        .flatten()
        .ok_or_else(|| Error::Invalid("last_day_sessions: sessions need timestamps".to_string()))
}

/// Session split by time. Test: the sessions of the publisher's test file when the data set
/// has one (`published_test_start`; a session with events in both files is an error), else the
/// sessions whose last event is within `day_length` of the data's last event. Validation: the
/// same last-day rule applied to the remaining sessions (empty when they have no timestamps).
/// Training: the rest. Validation and test sessions lose the items never seen in training
/// (nothing could rank them) and are dropped when fewer than 2 items remain; each remaining
/// session gives one case per prefix: history `s[..i]` → target `s[i]`, for i in 1..len.
pub fn last_day_sessions(sequences: &Sequences, day_length: i64) -> Result<Split> {
    let sessions: Vec<(u32, &[Step])> = sequences.iter().collect();
    let mut parts = vec![Part::Train; sessions.len()];

    if let Some(start) = sequences.published_test_start {
        for (part, (user, steps)) in parts.iter_mut().zip(&sessions) {
            let in_test = steps.iter().filter(|s| s.position >= start).count();
            if in_test == steps.len() {
                *part = Part::Test;
            } else if in_test > 0 {
                return Err(Error::Invalid(format!(
                    "last_day_sessions: session {user} has events in both the published \
                     training and test files"
                )));
            }
        }
    } else {
        mark_last_day(&sessions, &mut parts, Part::Test, day_length)?;
    }
    let timed = sessions
        .iter()
        .all(|(_, steps)| steps.iter().all(|s| s.timestamp.is_some()));
    if timed {
        mark_last_day(&sessions, &mut parts, Part::Valid, day_length)?;
    }

    let mut split = Split {
        num_items: sequences.num_items(),
        ..Split::default()
    };
    let mut train_items = HashSet::new();
    for ((user, steps), part) in sessions.iter().zip(&parts) {
        if *part == Part::Train {
            split.train.push(train_sequence(*user, steps));
            train_items.extend(steps.iter().map(|s| s.item));
        }
    }
    for ((user, steps), part) in sessions.iter().zip(&parts) {
        let cases = match part {
            Part::Train => continue,
            Part::Valid => &mut split.valid,
            Part::Test => &mut split.test,
        };
        let warm: Vec<Step> = steps
            .iter()
            .copied()
            .filter(|s| train_items.contains(&s.item))
            .collect();
        for i in 1..warm.len() {
            cases.push(eval_case(*user, &warm[..i], &warm[i..=i]));
        }
    }
    Ok(split)
}

/// Marks as `part` the sessions still in training whose last event is within `day_length` of
/// the last event among them.
fn mark_last_day(
    sessions: &[(u32, &[Step])],
    parts: &mut [Part],
    part: Part,
    day_length: i64,
) -> Result<()> {
    let mut last_times = Vec::with_capacity(sessions.len());
    for ((_, steps), p) in sessions.iter().zip(parts.iter()) {
        last_times.push(if *p == Part::Train {
            Some(last_time(steps)?)
        } else {
            None
        });
    }
    let Some(end) = last_times.iter().flatten().max().copied() else {
        return Ok(());
    };
    for (p, t) in parts.iter_mut().zip(&last_times) {
        if t.is_some_and(|t| t >= end - day_length) {
            *p = part;
        }
    }
    Ok(())
}
