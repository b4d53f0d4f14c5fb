//! Tests of the data pipeline: preprocessing (order, dedup, k-core, implicit threshold, id
//! maps, buckets), splits (every leakage property), and batches (layout, negatives,
//! reproducibility, thread-count independence, popularity frequencies).
//!
//! Everything runs on small data sets built in code. When `SEQREC_DATA` is set, one more test
//! reads ml-100k's `u.data` and checks the counts the PyTorch peer reports.

use std::collections::{HashMap, HashSet};

use seqrec::data::batch::{AliasTable, Batch, BatchConfig, Batcher, Examples, Sampling};
use seqrec::data::preprocess::{
    IdMap, Implicit, PreprocessConfig, Sequences, bucket_of, bucketize, left_pad, sequences,
};
use seqrec::data::split::{
    DAY_SECONDS, Split, TimeCut, last_day_sessions, leave_one_out, temporal,
};
use seqrec::data::{Dataset, Interaction, Vocab};
use seqrec::rng::Rng;

/// One row of a hand-made file: user name, item name, timestamp, rating.
type Row<'a> = (&'a str, &'a str, Option<i64>, Option<f32>);

fn dataset(rows: &[Row]) -> Dataset {
    let mut users = Vocab::new();
    let mut items = Vocab::new();
    let interactions = rows
        .iter()
        .map(|&(user, item, timestamp, rating)| Interaction {
            user: users.intern(user),
            item: items.intern(item),
            timestamp,
            rating,
            behaviour: 0,
        })
        .collect();
    Dataset {
        source: "memory".into(),
        users,
        items,
        interactions,
        ..Dataset::empty("hand-made")
    }
}

/// The item names of user `user`'s sequence.
fn names(seqs: &Sequences, data: &Dataset, user: &str) -> Vec<String> {
    let dataset_user = data.users.get(user).expect("user in dataset");
    let user = seqs.users.from_dataset(dataset_user).expect("user kept");
    seqs.items_of(user)
        .iter()
        .map(|&i| seqs.items.name(i, &data.items).unwrap().to_string())
        .collect()
}

/// Random interactions with many equal timestamps and repeated (user, item) pairs, in a
/// shuffled file order, and behaviour ids 1..=3.
fn generated(users: usize, items: usize, mean_len: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut rows = Vec::new();
    for u in 0..users {
        let len = 1 + rng.below(2 * mean_len as u64) as usize;
        for _ in 0..len {
            // Skewed item popularity: the square of a uniform favours low ids.
            let item = ((rng.uniform() * rng.uniform()) * items as f32) as usize;
            let time = 1_000_000 + rng.below(40) as i64 * 3_600 * 6;
            rows.push((format!("u{u}"), format!("i{item}"), time));
        }
    }
    rng.shuffle(&mut rows);
    let mut data = dataset(&[]);
    let mut behaviours = Vocab::new();
    for name in ["click", "cart", "buy"] {
        behaviours.intern(name);
    }
    data.behaviours = behaviours;
    for (user, item, time) in rows {
        let behaviour = 1 + rng.below(3) as u32;
        data.interactions.push(Interaction {
            user: data.users.intern(&user),
            item: data.items.intern(&item),
            timestamp: Some(time),
            rating: Some(1.0 + rng.below(5) as f32),
            behaviour,
        });
    }
    data
}

fn config(max_len: usize, batch_size: usize, examples: Examples, negatives: usize) -> BatchConfig {
    BatchConfig {
        max_len,
        batch_size,
        examples,
        negatives,
        sampling: Sampling::Uniform,
        exclude_user_items: false,
        seed: 17,
    }
}

/// Per row of every batch: (user, inputs, positives, negatives, weights).
type BatchRow = (u32, Vec<u32>, Vec<u32>, Vec<u32>, Vec<f32>);

fn rows_of(batches: &[Batch]) -> Vec<BatchRow> {
    let mut rows = Vec::new();
    for b in batches {
        let n = b.inputs.shape()[1];
        let k = b.negatives.shape()[2];
        let weights = b.weights.to_vec();
        for r in 0..b.users.len() {
            rows.push((
                b.users.values()[r],
                b.inputs.values()[r * n..(r + 1) * n].to_vec(),
                b.positives.values()[r * n..(r + 1) * n].to_vec(),
                b.negatives.values()[r * n * k..(r + 1) * n * k].to_vec(),
                weights[r * n..(r + 1) * n].to_vec(),
            ));
        }
    }
    rows
}

// ---------------------------------------------------------------- preprocessing

#[test]
fn equal_timestamps_keep_file_order() {
    let rows: Vec<Row> = vec![
        ("u", "a", Some(10), None),
        ("u", "b", Some(5), None),
        ("v", "x", Some(1), None),
        ("u", "c", Some(10), None),
        ("u", "d", Some(5), None),
        ("u", "e", Some(7), None),
    ];
    let data = dataset(&rows);
    let seqs = sequences(&data, &PreprocessConfig::default()).unwrap();
    assert_eq!(names(&seqs, &data, "u"), ["b", "d", "e", "a", "c"]);

    // Order-only files keep the file order.
    let untimed: Vec<Row> = rows.iter().map(|&(u, i, _, r)| (u, i, None, r)).collect();
    let data = dataset(&untimed);
    let seqs = sequences(&data, &PreprocessConfig::default()).unwrap();
    assert_eq!(names(&seqs, &data, "u"), ["a", "b", "c", "d", "e"]);
}

#[test]
fn mixed_timed_and_untimed_rows_are_an_error() {
    let data = dataset(&[("u", "a", Some(1), None), ("u", "b", None, None)]);
    assert!(sequences(&data, &PreprocessConfig::default()).is_err());
}

#[test]
fn interaction_outside_the_vocabularies_is_an_error() {
    let mut data = dataset(&[("u", "a", Some(1), None)]);
    data.interactions[0].item = 7;
    assert!(sequences(&data, &PreprocessConfig::default()).is_err());
}

#[test]
fn dedup_keeps_the_first_chronological_occurrence() {
    let data = dataset(&[
        ("u", "a", Some(20), None),
        ("u", "b", Some(10), None),
        ("u", "a", Some(5), None),
        ("u", "c", Some(30), None),
        ("u", "b", Some(40), None),
    ]);
    let all = sequences(&data, &PreprocessConfig::default()).unwrap();
    assert_eq!(names(&all, &data, "u"), ["a", "b", "a", "c", "b"]);
    let config = PreprocessConfig {
        dedup: true,
        ..Default::default()
    };
    let deduped = sequences(&data, &config).unwrap();
    assert_eq!(names(&deduped, &data, "u"), ["a", "b", "c"]);
    // The kept "a" is the file's third row (timestamp 5), not its first.
    assert_eq!(deduped.by_user[1][0].position, 2);
    assert_eq!(deduped.by_user[1][0].timestamp, Some(5));
}

#[test]
fn k_core_is_iterated_until_stable() {
    // Counts: i1 3, i2 2, i3 2, i4 1; u4 has one item. 2-core by hand:
    // drop u4 → i1 2; drop i4 → u3 = [i3]; drop u3 → i3 1; drop i3 → u1 = [i1, i2]; stable.
    let data = dataset(&[
        ("u1", "i1", Some(1), None),
        ("u1", "i2", Some(2), None),
        ("u1", "i3", Some(3), None),
        ("u2", "i1", Some(1), None),
        ("u2", "i2", Some(2), None),
        ("u3", "i3", Some(1), None),
        ("u3", "i4", Some(2), None),
        ("u4", "i1", Some(1), None),
    ]);
    let config = PreprocessConfig {
        k_core: Some((2, 2)),
        ..Default::default()
    };
    let seqs = sequences(&data, &config).unwrap();
    assert_eq!(seqs.num_users(), 2);
    assert_eq!(seqs.num_items(), 2);
    assert_eq!(names(&seqs, &data, "u1"), ["i1", "i2"]);
    assert_eq!(names(&seqs, &data, "u2"), ["i1", "i2"]);
    for gone in ["u3", "u4"] {
        assert_eq!(seqs.users.from_dataset(data.users.get(gone).unwrap()), None);
    }
    for gone in ["i3", "i4"] {
        assert_eq!(seqs.items.from_dataset(data.items.get(gone).unwrap()), None);
    }

    // Without the k-core, min_sequence_len alone drops only the short users, once.
    let config = PreprocessConfig {
        min_sequence_len: 2,
        ..Default::default()
    };
    let seqs = sequences(&data, &config).unwrap();
    assert_eq!(seqs.num_users(), 3);
    assert_eq!(seqs.num_items(), 4);
}

#[test]
fn implicit_threshold_keeps_high_ratings_only() {
    let data = dataset(&[
        ("u", "a", Some(1), Some(5.0)),
        ("u", "b", Some(2), Some(3.0)),
        ("u", "c", Some(3), Some(4.0)),
        ("u", "d", Some(4), Some(1.0)),
        ("v", "b", Some(4), Some(2.0)),
    ]);
    let config = PreprocessConfig {
        implicit: Implicit::RatingAtLeast(4.0),
        ..Default::default()
    };
    let seqs = sequences(&data, &config).unwrap();
    assert_eq!(names(&seqs, &data, "u"), ["a", "c"]);
    assert_eq!(seqs.num_users(), 1, "v has no rating ≥ 4");
    assert_eq!(seqs.num_items(), 2);

    let unrated = dataset(&[("u", "a", Some(1), None)]);
    assert!(sequences(&unrated, &config).is_err());
}

#[test]
fn id_maps_round_trip_and_serialise() {
    let data = generated(40, 60, 8, 3);
    let config = PreprocessConfig {
        k_core: Some((5, 3)),
        ..Default::default()
    };
    let seqs = sequences(&data, &config).unwrap();
    assert!(
        seqs.num_items() < data.items.len(),
        "the k-core must drop some items"
    );
    for map in [&seqs.items, &seqs.users] {
        for id in 1..=map.len() as u32 {
            let dataset_id = map.to_dataset(id).unwrap();
            assert_eq!(map.from_dataset(dataset_id), Some(id));
        }
        assert_eq!(map.to_dataset(0), None);
        assert_eq!(map.to_dataset(map.len() as u32 + 1), None);
        let json = serde_json::to_string(map).unwrap();
        let back: IdMap = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, map);
    }
    // Every kept interaction maps back to an interaction of the file.
    for (user, steps) in seqs.iter() {
        for s in steps {
            let original = data.interactions[s.position];
            assert_eq!(seqs.users.to_dataset(user), Some(original.user));
            assert_eq!(seqs.items.to_dataset(s.item), Some(original.item));
        }
    }
    // New ids are contiguous and in ascending dataset-id order.
    let to_dataset: Vec<u32> = (1..=seqs.num_items() as u32)
        .map(|i| seqs.items.to_dataset(i).unwrap())
        .collect();
    assert!(to_dataset.windows(2).all(|w| w[0] < w[1]));
    // Side-information rows follow the new ids.
    let rows: Vec<u32> = (0..=data.items.len() as u32).map(|d| d * 10).collect();
    let reindexed = seqs.items.reindex_rows(&rows).unwrap();
    assert_eq!(reindexed[0], 0);
    for (id, &row) in reindexed.iter().enumerate().skip(1) {
        assert_eq!(row, seqs.items.to_dataset(id as u32).unwrap() * 10);
    }
    assert!(seqs.items.reindex_rows(&rows[..2]).is_err());
}

#[test]
fn left_pad_keeps_the_latest_items() {
    assert_eq!(left_pad(&[1, 2, 3], 5), [0, 0, 1, 2, 3]);
    assert_eq!(left_pad(&[1, 2, 3], 2), [2, 3]);
    assert_eq!(left_pad(&[1, 2, 3], 3), [1, 2, 3]);
    assert_eq!(left_pad(&[], 2), [0, 0]);
    assert!(left_pad(&[4], 0).is_empty());
}

#[test]
fn bucketize_by_quantiles() {
    let values = [5.0, f32::NAN, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0];
    let (tokens, edges) = bucketize(&values, 4);
    // Sorted 1..=8: edges at indices 2, 4, 6 → 3, 5, 7.
    assert_eq!(edges, [3.0, 5.0, 7.0]);
    assert_eq!(tokens, [3, 0, 1, 4, 1, 4, 2, 3, 2]);
    assert_eq!(bucket_of(100.0, &edges), 4);
    assert_eq!(bucket_of(-100.0, &edges), 1);
    assert_eq!(bucket_of(f32::NAN, &edges), 0);
    let (tokens, edges) = bucketize(&[f32::NAN, f32::NAN], 3);
    assert_eq!((tokens, edges.len()), (vec![0, 0], 0));
}

// ---------------------------------------------------------------- splits

/// Every (input, positive) a training batch can contain, per user, for both example kinds.
fn training_items_in_batches(split: &Split) -> HashMap<u32, (HashSet<u32>, HashSet<u32>)> {
    let mut seen: HashMap<u32, (HashSet<u32>, HashSet<u32>)> = HashMap::new();
    for examples in [Examples::EveryPosition, Examples::PerPrefix] {
        let batcher =
            Batcher::new(&split.train, split.num_items, config(4, 7, examples, 2)).unwrap();
        for (user, inputs, positives, _, _) in rows_of(&batcher.epoch(0).unwrap()) {
            let entry = seen.entry(user).or_default();
            entry.0.extend(inputs.into_iter().filter(|&i| i != 0));
            entry.1.extend(positives.into_iter().filter(|&i| i != 0));
        }
    }
    seen
}

fn deduped_sequences(seed: u64) -> Sequences {
    let data = generated(60, 80, 12, seed);
    let config = PreprocessConfig {
        dedup: true,
        ..Default::default()
    };
    sequences(&data, &config).unwrap()
}

#[test]
fn leave_one_out_has_no_leakage() {
    let seqs = deduped_sequences(5);
    let split = leave_one_out(&seqs);
    let in_batches = training_items_in_batches(&split);
    let short_users = seqs.iter().filter(|(_, s)| s.len() < 3).count();
    assert!(short_users > 0, "the generated data must have short users");
    assert_eq!(split.train.len(), seqs.num_users());
    assert_eq!(split.test.len(), seqs.num_users() - short_users);
    assert_eq!(split.valid.len(), split.test.len());

    for (valid, test) in split.valid.iter().zip(&split.test) {
        assert_eq!(valid.user, test.user);
        let full = seqs.items_of(test.user);
        let n = full.len();
        assert_eq!(test.targets, [full[n - 1]]);
        assert_eq!(valid.targets, [full[n - 2]]);
        assert_eq!(test.history, full[..n - 1]);
        assert_eq!(valid.history, full[..n - 2]);
        let (test_item, valid_item) = (test.targets[0], valid.targets[0]);

        // No test item in any training input or target of this user.
        let train = split.train.iter().find(|t| t.user == test.user).unwrap();
        assert!(!train.items.contains(&test_item));
        let nothing = Default::default();
        let (inputs, positives) = in_batches.get(&test.user).unwrap_or(&nothing);
        assert!(!inputs.contains(&test_item) && !positives.contains(&test_item));
        // Validation inputs never contain the test item.
        assert!(!valid.history.contains(&test_item));
        // The validation target is not a training target (nor a training input).
        assert!(!positives.contains(&valid_item) && !inputs.contains(&valid_item));
        // Known items: the history, never the target.
        assert!(!test.known_items.contains(&test_item));
        assert!(test.known_items.contains(&valid_item));
        assert!(test.known_items.windows(2).all(|w| w[0] < w[1]));
    }
    // Short users are trained on, never evaluated.
    for (user, steps) in seqs.iter().filter(|(_, s)| s.len() < 3) {
        let train = split.train.iter().find(|t| t.user == user).unwrap();
        assert_eq!(train.items.len(), steps.len());
        assert!(split.test.iter().all(|c| c.user != user));
    }
}

#[test]
fn temporal_split_trains_only_before_the_cut() {
    let seqs = deduped_sequences(6);
    let split = temporal(&seqs, TimeCut::Fraction(0.7)).unwrap();
    let cut = split.cut.unwrap();
    let in_batches = training_items_in_batches(&split);
    assert!(!split.test.is_empty() && !split.valid.is_empty());
    for (user, steps) in seqs.iter() {
        let before: Vec<u32> = steps
            .iter()
            .filter(|s| s.timestamp.unwrap() <= cut)
            .map(|s| s.item)
            .collect();
        let after: Vec<u32> = steps
            .iter()
            .filter(|s| s.timestamp.unwrap() > cut)
            .map(|s| s.item)
            .collect();
        let train = split.train.iter().find(|t| t.user == user);
        let valid = split.valid.iter().find(|c| c.user == user);
        let test = split.test.iter().find(|c| c.user == user);
        if before.is_empty() {
            assert!(train.is_none() && test.is_none(), "user {user}");
            continue;
        }
        // Training (+ the held-out validation item) is exactly the pre-cut part.
        let mut trained = train.unwrap().items.clone();
        if let Some(valid) = valid {
            assert_eq!(valid.history, trained);
            trained.extend(&valid.targets);
        }
        assert_eq!(trained, before, "user {user}");
        if let Some((inputs, positives)) = in_batches.get(&user) {
            assert!(inputs.iter().chain(positives).all(|i| before.contains(i)));
        }
        match test {
            Some(test) => {
                assert_eq!(test.targets, after);
                assert_eq!(test.history, before);
                for target in &test.targets {
                    assert!(!train.unwrap().items.contains(target));
                }
            }
            None => assert!(after.is_empty()),
        }
    }
    // The cut at a timestamp, and malformed cuts.
    let at = temporal(&seqs, TimeCut::At(cut)).unwrap();
    assert_eq!(at.test, split.test);
    assert!(temporal(&seqs, TimeCut::Fraction(1.5)).is_err());
    let untimed = dataset(&[("u", "a", None, None)]);
    let untimed = sequences(&untimed, &PreprocessConfig::default()).unwrap();
    assert!(temporal(&untimed, TimeCut::Fraction(0.5)).is_err());
}

/// Sessions with events at the given hours.
fn sessions(events: &[(&str, &str, i64)]) -> (Dataset, Sequences) {
    let rows: Vec<Row> = events
        .iter()
        .map(|&(s, item, hour)| (s, item, Some(hour * 3_600), None))
        .collect();
    let mut data = dataset(&rows);
    data.sessions = true;
    let seqs = sequences(&data, &PreprocessConfig::default()).unwrap();
    (data, seqs)
}

fn session_users(cases: &[seqrec::data::split::EvalCase]) -> HashSet<u32> {
    cases.iter().map(|c| c.user).collect()
}

#[test]
fn last_day_session_split_is_disjoint_and_hand_checked() {
    // Data ends at hour 100: test = sessions ending at or after hour 76. Of the rest (ending
    // at hour 50 at most), validation = sessions ending at or after hour 26.
    let (data, seqs) = sessions(&[
        ("s1", "a", 1),
        ("s1", "b", 2),
        ("s1", "c", 3),
        ("s2", "b", 10),
        ("s2", "c", 11),
        ("s3", "a", 30),
        ("s3", "c", 31),
        ("s4", "a", 49),
        ("s4", "b", 50),
        ("s5", "c", 70),
        ("s5", "a", 77),
        ("s5", "z", 78), // never seen in training: removed from the test session
        ("s5", "b", 79),
        ("s6", "z", 99),
        ("s6", "a", 100), // one warm item left: dropped
    ]);
    let split = last_day_sessions(&seqs, DAY_SECONDS).unwrap();
    let train: HashSet<u32> = split.train.iter().map(|t| t.user).collect();
    let (valid, test) = (session_users(&split.valid), session_users(&split.test));
    assert_eq!(train, HashSet::from([1, 2]));
    assert_eq!(valid, HashSet::from([3, 4]));
    assert_eq!(test, HashSet::from([5]));
    assert!(train.is_disjoint(&valid) && train.is_disjoint(&test) && valid.is_disjoint(&test));
    // s5 = c a z b; z dropped → prefixes [c] → a, [c a] → b.
    let item = |name: &str| {
        let dataset_id = data.items.get(name).unwrap();
        seqs.items.from_dataset(dataset_id).unwrap()
    };
    let (a, b, c) = (item("a"), item("b"), item("c"));
    assert_eq!(split.test.len(), 2);
    assert_eq!(split.test[0].history, [c]);
    assert_eq!(split.test[0].targets, [a]);
    assert_eq!(split.test[1].history, [c, a]);
    assert_eq!(split.test[1].targets, [b]);
    let mut known = vec![a, c];
    known.sort_unstable();
    assert_eq!(split.test[1].known_items, known);
}

#[test]
fn published_test_sessions_are_respected() {
    let rows: Vec<Row> = vec![
        ("s1", "a", Some(1), None),
        ("s1", "b", Some(2), None),
        ("s2", "b", Some(500_000), None),
        ("s2", "a", Some(500_001), None),
        // the publisher's test file starts here, with a session older than s2
        ("s3", "a", Some(3), None),
        ("s3", "b", Some(4), None),
    ];
    let mut data = dataset(&rows);
    data.sessions = true;
    data.published_test_start = Some(4);
    let seqs = sequences(&data, &PreprocessConfig::default()).unwrap();
    let split = last_day_sessions(&seqs, DAY_SECONDS).unwrap();
    assert_eq!(session_users(&split.test), HashSet::from([3]));
    assert_eq!(session_users(&split.valid), HashSet::from([2]));
    assert_eq!(split.train.len(), 1);
    assert_eq!(split.train[0].user, 1);

    // A session in both files is an error.
    data.interactions[5].user = data.users.get("s1").unwrap();
    let seqs = sequences(&data, &PreprocessConfig::default()).unwrap();
    assert!(last_day_sessions(&seqs, DAY_SECONDS).is_err());
}

// ---------------------------------------------------------------- batches

fn hand_sequence() -> Vec<seqrec::data::split::TrainSequence> {
    vec![
        seqrec::data::split::TrainSequence {
            user: 7,
            items: vec![1, 2, 3, 4],
            behaviours: vec![11, 12, 13, 14],
        },
        seqrec::data::split::TrainSequence {
            user: 8,
            items: vec![5],
            behaviours: vec![15],
        },
    ]
}

#[test]
fn every_position_examples_are_aligned_and_padded() {
    let train = hand_sequence();
    for (n, inputs, positives) in [
        (5, vec![0, 0, 1, 2, 3], vec![0, 0, 2, 3, 4]),
        (2, vec![2, 3], vec![3, 4]),
    ] {
        let batcher = Batcher::new(&train, 5, config(n, 4, Examples::EveryPosition, 0)).unwrap();
        assert_eq!(
            batcher.num_examples(),
            1,
            "a length-1 sequence gives no example"
        );
        let batches = batcher.epoch(0).unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.inputs.values(), inputs);
        assert_eq!(b.positives.values(), positives);
        let behaviours: Vec<u32> = inputs
            .iter()
            .map(|&i| if i == 0 { 0 } else { 10 + i })
            .collect();
        assert_eq!(b.behaviours.values(), behaviours);
        assert_eq!(b.users.values(), [7]);
        assert_eq!(b.negatives.shape(), [1, n, 0]);
        let weights: Vec<f32> = positives.iter().map(|&p| (p != 0) as u8 as f32).collect();
        assert_eq!(b.weights.to_vec(), weights);
    }
}

#[test]
fn per_prefix_examples_put_the_target_last() {
    let batcher = Batcher::new(&hand_sequence(), 5, config(2, 2, Examples::PerPrefix, 1)).unwrap();
    assert_eq!(batcher.num_examples(), 3);
    assert_eq!(batcher.num_batches(), 2);
    let mut rows = rows_of(&batcher.epoch(3).unwrap());
    rows.sort_by_key(|r| r.2.clone());
    let expected = [
        (vec![0, 1], vec![0, 2]),
        (vec![1, 2], vec![0, 3]),
        (vec![2, 3], vec![0, 4]),
    ];
    for (row, (inputs, positives)) in rows.iter().zip(expected) {
        assert_eq!(row.1, inputs);
        assert_eq!(row.2, positives);
        assert_eq!(row.4, [0.0, 1.0]);
        assert_eq!(row.3[0], 0, "no negative where there is no target");
        assert!(row.3[1] != 0 && row.3[1] != positives[1]);
    }
}

#[test]
fn negatives_avoid_the_positive_and_the_users_items() {
    // Few items, so that collisions would be frequent if they were not rejected.
    let split = leave_one_out(&deduped_sequences_with(150, 12, 4, 9));
    for exclude in [false, true] {
        for sampling in [Sampling::Uniform, Sampling::Popularity] {
            for examples in [Examples::EveryPosition, Examples::PerPrefix] {
                let mut cfg = config(6, 8, examples, 5);
                cfg.sampling = sampling;
                cfg.exclude_user_items = exclude;
                let batcher = Batcher::new(&split.train, split.num_items, cfg).unwrap();
                let user_items: HashMap<u32, &Vec<u32>> =
                    split.train.iter().map(|t| (t.user, &t.items)).collect();
                let mut checked = 0;
                for (user, _, positives, negatives, weights) in rows_of(&batcher.epoch(1).unwrap())
                {
                    for (p, &positive) in positives.iter().enumerate() {
                        let drawn = &negatives[p * 5..(p + 1) * 5];
                        if positive == 0 {
                            assert_eq!(weights[p], 0.0);
                            assert!(drawn.iter().all(|&x| x == 0));
                            continue;
                        }
                        assert_eq!(weights[p], 1.0);
                        for &x in drawn {
                            assert!(x >= 1 && x as usize <= split.num_items);
                            assert_ne!(x, positive);
                            if exclude {
                                assert!(!user_items[&user].contains(&x), "user {user} item {x}");
                            }
                            checked += 1;
                        }
                    }
                }
                assert!(checked > 500, "{checked}");
            }
        }
    }
}

fn deduped_sequences_with(users: usize, items: usize, mean_len: usize, seed: u64) -> Sequences {
    let data = generated(users, items, mean_len, seed);
    let config = PreprocessConfig {
        dedup: true,
        ..Default::default()
    };
    sequences(&data, &config).unwrap()
}

#[test]
fn impossible_negatives_and_bad_configs_are_errors() {
    let train = hand_sequence();
    // With 4 items, user 7 has them all: no negative outside the user's items.
    let mut cfg = config(3, 2, Examples::EveryPosition, 1);
    cfg.exclude_user_items = true;
    assert!(Batcher::new(&train[..1], 5, cfg.clone()).is_ok());
    assert!(Batcher::new(&train[..1], 4, cfg.clone()).is_err());
    // A single item can never differ from the positive.
    let mut single = hand_sequence();
    single.truncate(1);
    single[0].items = vec![1, 1];
    single[0].behaviours = vec![0, 0];
    assert!(Batcher::new(&single, 1, config(3, 2, Examples::EveryPosition, 1)).is_err());
    assert!(Batcher::new(&single, 1, config(3, 2, Examples::EveryPosition, 0)).is_ok());
    // Items outside the catalogue, zero sizes, misaligned behaviours.
    assert!(Batcher::new(&train, 4, config(3, 2, Examples::EveryPosition, 0)).is_err());
    assert!(Batcher::new(&train, 5, config(0, 2, Examples::EveryPosition, 1)).is_err());
    assert!(Batcher::new(&train, 5, config(3, 0, Examples::EveryPosition, 1)).is_err());
    let mut bad = hand_sequence();
    bad[0].behaviours.pop();
    assert!(Batcher::new(&bad, 5, config(3, 2, Examples::EveryPosition, 1)).is_err());
    assert!(AliasTable::new(&[0.0, 0.0]).is_err());
    assert!(AliasTable::new(&[1.0, -1.0, 3.0]).is_err());
    assert!(AliasTable::new(&[]).is_err());
}

fn big_batcher(seed: u64, sampling: Sampling, exclude: bool) -> Batcher {
    // Large enough (≥ 2^15 ids per epoch) to take the parallel path.
    let split = leave_one_out(&deduped_sequences_with(400, 300, 30, 21));
    let mut cfg = config(20, 32, Examples::EveryPosition, 4);
    cfg.seed = seed;
    cfg.sampling = sampling;
    cfg.exclude_user_items = exclude;
    Batcher::new(&split.train, split.num_items, cfg).unwrap()
}

fn same_batches(a: &[Batch], b: &[Batch]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.inputs == y.inputs
                && x.behaviours == y.behaviours
                && x.positives == y.positives
                && x.negatives == y.negatives
                && x.users == y.users
                && x.weights.to_vec() == y.weights.to_vec()
        })
}

#[test]
fn batches_are_reproducible_for_a_seed() {
    let batcher = big_batcher(1, Sampling::Uniform, true);
    let epoch0 = batcher.epoch(0).unwrap();
    assert!(same_batches(&epoch0, &batcher.epoch(0).unwrap()));
    assert!(same_batches(
        &epoch0,
        &big_batcher(1, Sampling::Uniform, true).epoch(0).unwrap()
    ));
    // Another epoch reshuffles; another seed changes everything.
    let epoch1 = batcher.epoch(1).unwrap();
    assert_ne!(epoch0[0].users, epoch1[0].users);
    assert!(!same_batches(
        &epoch0,
        &big_batcher(2, Sampling::Uniform, true).epoch(0).unwrap()
    ));
    // Every example appears exactly once per epoch.
    let mut users: Vec<u32> = epoch1
        .iter()
        .flat_map(|b| b.users.values().to_vec())
        .collect();
    users.sort_unstable();
    let before = users.len();
    users.dedup();
    assert_eq!(users.len(), before);
    assert_eq!(before, batcher.num_examples());
}

#[test]
fn batches_do_not_depend_on_the_thread_count() {
    for sampling in [Sampling::Uniform, Sampling::Popularity] {
        let batcher = big_batcher(5, sampling, sampling == Sampling::Uniform);
        let in_pool = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| batcher.epoch(4).unwrap())
        };
        let (one, two) = (in_pool(1), in_pool(2));
        assert!(one.len() > 4);
        assert!(same_batches(&one, &two), "{sampling:?}");
    }
}

#[test]
fn alias_table_frequencies_follow_the_weights() {
    let weights = [0.0, 1.0, 2.0, 3.0, 0.0, 10.0, 4.0];
    let table = AliasTable::new(&weights).unwrap();
    let draws = 400_000;
    let mut counts = [0usize; 7];
    let mut rng = Rng::new(99);
    for _ in 0..draws {
        counts[table.sample(&mut rng)] += 1;
    }
    let total: f64 = weights.iter().sum();
    for (i, (&w, &c)) in weights.iter().zip(&counts).enumerate() {
        let expected = w / total;
        let observed = c as f64 / draws as f64;
        // 5 standard errors of a proportion at most 0.5 over 400k draws ≈ 0.004.
        assert!(
            (observed - expected).abs() < 0.004,
            "item {i}: {observed} vs {expected}"
        );
        if w == 0.0 {
            assert_eq!(c, 0);
        }
    }
}

#[test]
fn popularity_negatives_follow_training_counts() {
    let split = leave_one_out(&deduped_sequences_with(200, 30, 10, 13));
    let mut cfg = config(8, 16, Examples::EveryPosition, 20);
    cfg.sampling = Sampling::Popularity;
    let batcher = Batcher::new(&split.train, split.num_items, cfg).unwrap();
    let mut popularity = vec![0.0f64; split.num_items + 1];
    for t in &split.train {
        for &i in &t.items {
            popularity[i as usize] += 1.0;
        }
    }
    let total: f64 = popularity.iter().sum();
    let share: Vec<f64> = popularity.iter().map(|c| c / total).collect();
    // Expected count of each item: at a position with positive p, each negative is item i ≠ p
    // with probability share[i] / (1 - share[p]).
    let mut expected = vec![0.0f64; split.num_items + 1];
    let mut observed = vec![0.0f64; split.num_items + 1];
    for epoch in 0..5 {
        for (_, _, positives, negatives, _) in rows_of(&batcher.epoch(epoch).unwrap()) {
            for (p, &positive) in positives.iter().enumerate() {
                if positive == 0 {
                    continue;
                }
                for (i, e) in expected.iter_mut().enumerate() {
                    if i != positive as usize {
                        *e += 20.0 * share[i] / (1.0 - share[positive as usize]);
                    }
                }
                for &x in &negatives[p * 20..(p + 1) * 20] {
                    observed[x as usize] += 1.0;
                }
            }
        }
    }
    for i in 1..=split.num_items {
        // Loose: 6 Poisson standard deviations plus 2 %.
        let bound = 6.0 * expected[i].sqrt() + 0.02 * expected[i] + 1.0;
        assert!(
            (observed[i] - expected[i]).abs() < bound,
            "item {i}: observed {} expected {:.1}",
            observed[i],
            expected[i]
        );
        if popularity[i] == 0.0 {
            assert_eq!(observed[i], 0.0);
        }
    }
}

// ---------------------------------------------------------------- real data

/// ml-100k's `u.data` (user, item, rating, timestamp; TAB-separated) as a `Dataset`.
fn read_ml100k(path: &std::path::Path) -> Dataset {
    let text = std::fs::read_to_string(path).expect("read u.data");
    let mut data = dataset(&[]);
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        data.interactions.push(Interaction {
            user: data.users.intern(fields[0]),
            item: data.items.intern(fields[1]),
            rating: Some(fields[2].parse().unwrap()),
            timestamp: Some(fields[3].parse().unwrap()),
            behaviour: 0,
        });
    }
    data
}

#[test]
fn ml100k_matches_the_peer_counts() {
    let Ok(root) = std::env::var("SEQREC_DATA") else {
        println!(
            "SEQREC_DATA is not set: the ml-100k check did not run (the other tests ran on \
             generated data)"
        );
        return;
    };
    let path = std::path::Path::new(&root).join("ml-100k/grouplens/u.data");
    let data = read_ml100k(&path);
    let seqs = sequences(&data, &PreprocessConfig::default()).unwrap();
    assert_eq!((seqs.num_users(), seqs.num_items()), (943, 1682));
    assert_eq!(seqs.num_interactions(), 100_000);
    let split = leave_one_out(&seqs);
    assert_eq!(split.test.len(), 943);
    // The peer's target tokens per epoch: 38,762 at L = 50 and 83,290 at L = 200.
    for (n, tokens) in [(50, 38_762.0), (200, 83_290.0)] {
        let batcher = Batcher::new(
            &split.train,
            split.num_items,
            config(n, 128, Examples::EveryPosition, 1),
        )
        .unwrap();
        let batches = batcher.epoch(0).unwrap();
        assert_eq!(batches.len(), 8);
        let real: f32 = batches
            .iter()
            .map(|b| b.weights.to_vec().iter().sum::<f32>())
            .sum();
        assert_eq!(real, tokens, "L = {n}");
    }
    println!("ml-100k: 943 users, 1682 items, peer token counts reproduced");
}
