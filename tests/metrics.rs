//! Evaluation and metrics: hand-computed values on a tiny catalogue, the tie convention,
//! history exclusion, several targets, chunking and threads, the sampled protocol, top_k,
//! malformed inputs, and a sort-based reference on random data (and on ml-100k when
//! `SEQREC_DATA` is set).

use seqrec::Tensor;
use seqrec::eval::{
    EvalConfig, EvalReport, EvalUser, MetricsAtK, Protocol, evaluate, metrics_at_k,
    sample_negatives, target_ranks, top_k, users_per_chunk,
};
use seqrec::rng::Rng;

const TOL: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL
}

fn assert_metrics(got: &MetricsAtK, want: &MetricsAtK) {
    let pairs = [
        ("hit_rate", got.hit_rate, want.hit_rate),
        ("precision", got.precision, want.precision),
        ("recall", got.recall, want.recall),
        ("ndcg", got.ndcg, want.ndcg),
        ("mrr", got.mrr, want.mrr),
        ("map", got.map, want.map),
    ];
    assert_eq!(got.k, want.k);
    for (name, g, w) in pairs {
        assert!(close(g, w), "K={}: {name} = {g}, expected {w}", want.k);
    }
}

fn at(
    k: usize,
    hit_rate: f64,
    precision: f64,
    recall: f64,
    ndcg: f64,
    mrr: f64,
    map: f64,
) -> MetricsAtK {
    MetricsAtK {
        k,
        hit_rate,
        precision,
        recall,
        ndcg,
        mrr,
        map,
    }
}

/// The tiny catalogue: items 1..=6, two users (row 0 of each score row is padding).
///
/// User A: history {1, 3}, target 4.
///   scores: 1:0.9  2:0.1  3:0.8  4:0.6  5:0.7  6:0.2
///   history excluded: candidates 2, 5, 6 beside the target; only item 5 (0.7) > 0.6 → rank 1.
///   history kept: items 1, 3, 5 > 0.6 → rank 3.
/// User B: history {2}, targets {5, 1}.
///   scores: 1:0.4  2:0.95  3:0.5  4:0.4  5:0.9  6:0.1
///   history excluded: order 5 (0.9), 3 (0.5), 1 (0.4, a target: before item 4 at 0.4), 4, 6
///   → ranks [0, 2].  History kept: item 2 (0.95) first → ranks [1, 3].
fn tiny() -> (usize, Vec<EvalUser>, Vec<f32>) {
    let users = vec![
        EvalUser {
            history: vec![1, 3],
            targets: vec![4],
        },
        EvalUser {
            history: vec![2],
            targets: vec![5, 1],
        },
    ];
    let scores = vec![
        0.0, 0.9, 0.1, 0.8, 0.6, 0.7, 0.2, //
        0.0, 0.4, 0.95, 0.5, 0.4, 0.9, 0.1,
    ];
    (6, users, scores)
}

fn config(ks: &[usize]) -> EvalConfig {
    EvalConfig {
        ks: ks.to_vec(),
        ..EvalConfig::default()
    }
}

/// Scores users from a full precomputed matrix, as a model's scorer would.
fn matrix_scorer(
    scores: &[f32],
    columns: usize,
) -> impl FnMut(&[usize]) -> seqrec::Result<Vec<f32>> + '_ {
    move |positions: &[usize]| {
        Ok(positions
            .iter()
            .flat_map(|&p| scores[p * columns..(p + 1) * columns].iter().copied())
            .collect())
    }
}

#[test]
fn tiny_catalogue_by_hand_with_history_excluded() {
    let (n, users, scores) = tiny();
    let report = evaluate(
        n,
        &users,
        &config(&[1, 3, 10]),
        matrix_scorer(&scores, n + 1),
    )
    .unwrap();
    let l3 = 1.0 / 3f64.log2(); // discount of rank 1
    // User A, rank [1]:
    //   K=1: no hit → all 0.
    //   K=3: HR 1, P 1/3, R 1, NDCG l3 / 1, MRR@3 1/2, MAP (1/1)·(1/2).
    //   K=10 (> 6 items): HR 1, P 1/10, R 1, NDCG l3, MRR 1/2, MAP 1/2.   MRR 1/2.
    // User B, ranks [0, 2], 2 targets:
    //   K=1: 1 hit; P 1, R 1/2, DCG 1, IDCG over min(2,1)=1 → 1; MRR@1 1; MAP (1/1)·(1/1) = 1.
    //   K=3: 2 hits; P 2/3, R 1, DCG 1 + 1/log2(4) = 1.5, IDCG 1 + l3; MRR 1;
    //        MAP (1/2)·(1/1 + 2/3) = 5/6.
    //   K=10: P 2/10, the rest as K=3.   MRR 1.
    let ndcg_b = 1.5 / (1.0 + l3);
    assert_eq!(report.n_users, 2);
    assert_eq!(report.n_targets, 3);
    assert!(close(report.mrr, (0.5 + 1.0) / 2.0));
    assert_metrics(&report.at_k[0], &at(1, 0.5, 0.5, 0.25, 0.5, 0.5, 0.5));
    assert_metrics(
        &report.at_k[1],
        &at(
            3,
            1.0,
            0.5,
            1.0,
            (l3 + ndcg_b) / 2.0,
            0.75,
            (0.5 + 5.0 / 6.0) / 2.0,
        ),
    );
    assert_metrics(
        &report.at_k[2],
        &at(
            10,
            1.0,
            0.15,
            1.0,
            (l3 + ndcg_b) / 2.0,
            0.75,
            (0.5 + 5.0 / 6.0) / 2.0,
        ),
    );
    assert!(report.protocol.exclude_history);
    assert_eq!(report.protocol.protocol, Protocol::Full);
}

#[test]
fn tiny_catalogue_by_hand_with_history_kept() {
    let (n, users, scores) = tiny();
    let cfg = EvalConfig {
        exclude_history: false,
        ..config(&[1, 2, 4])
    };
    let report = evaluate(n, &users, &cfg, matrix_scorer(&scores, n + 1)).unwrap();
    // User A rank [3]; user B ranks [1, 3].
    //   K=1: no hits for either → all 0.
    //   K=2: A none; B one hit at rank 1: HR 1, P 1/2, R 1/2, NDCG l3 / (1 + l3),
    //        MRR@2 1/2, MAP (1/min(2,2))·(1/2) = 1/4.
    //   K=4: A hit at 3: P 1/4, R 1, NDCG 1/log2(5) = l5, MRR 1/4, MAP 1/4.
    //        B hits at 1, 3: P 2/4, R 1, NDCG (l3 + l5) / (1 + l3), MRR 1/2,
    //        MAP (1/2)·(1/2 + 2/4) = 1/2.
    //   MRR: (1/4 + 1/2) / 2.
    let l3 = 1.0 / 3f64.log2();
    let l5 = 1.0 / 5f64.log2();
    assert!(close(report.mrr, 0.375));
    assert_metrics(&report.at_k[0], &at(1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0));
    assert_metrics(
        &report.at_k[1],
        &at(2, 0.5, 0.25, 0.25, l3 / (1.0 + l3) / 2.0, 0.25, 0.125),
    );
    assert_metrics(
        &report.at_k[2],
        &at(
            4,
            1.0,
            (0.25 + 0.5) / 2.0,
            1.0,
            (l5 + (l3 + l5) / (1.0 + l3)) / 2.0,
            (0.25 + 0.5) / 2.0,
            (0.25 + 0.5) / 2.0,
        ),
    );
    assert!(!report.protocol.exclude_history);
    assert!(report.protocol.description.contains("NOT excluded"));
}

#[test]
fn target_in_history_is_never_excluded() {
    // User A's scores, history {4, 1} holding the target 4: only item 1 leaves the candidates.
    // Items 3 (0.8) and 5 (0.7) score above 0.6 → rank 2 → MRR 1/3, HR@2 0, HR@3 1.
    let (n, _, scores) = tiny();
    let users = vec![EvalUser {
        history: vec![4, 1, 4],
        targets: vec![4],
    }];
    let report = evaluate(
        n,
        &users,
        &config(&[2, 3]),
        matrix_scorer(&scores[..7], n + 1),
    )
    .unwrap();
    assert!(close(report.mrr, 1.0 / 3.0));
    assert_eq!(report.at(2).unwrap().hit_rate, 0.0);
    assert_eq!(report.at(3).unwrap().hit_rate, 1.0);
}

#[test]
fn tied_target_counts_only_strictly_higher_items() {
    // Every item scores 0.5 except item 6 (0.9); target 3 ties with items 1, 2, 4, 5 but only
    // item 6 is strictly higher → rank 1, MRR 1/2, HR@1 0, HR@2 1.
    let scores = vec![0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9];
    let users = vec![EvalUser {
        history: vec![],
        targets: vec![3],
    }];
    let report = evaluate(6, &users, &config(&[1, 2]), matrix_scorer(&scores, 7)).unwrap();
    assert!(close(report.mrr, 0.5));
    assert_eq!(report.at(1).unwrap().hit_rate, 0.0);
    assert_eq!(report.at(2).unwrap().hit_rate, 1.0);
    // The padding column never competes, however high it scores.
    let padded_high = vec![9.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9];
    let again = evaluate(6, &users, &config(&[1, 2]), matrix_scorer(&padded_high, 7)).unwrap();
    assert_eq!(again, report);
}

#[test]
fn target_ranks_ties_among_targets_by_item_id() {
    // Targets 7 and 3 both at 0.5, non-targets at 0.6 and 0.5:
    // order 0.6 (other), target 3, target 7, 0.5 (other) → ranks [1, 2].
    let ranks = target_ranks(&[(7, 0.5), (3, 0.5)], &[0.5, 0.6]).unwrap();
    assert_eq!(ranks, vec![1, 2]);
    // NaN and −∞ among the others never count; three targets in mixed order.
    let ranks = target_ranks(
        &[(2, 0.1), (9, 0.8), (4, 0.3)],
        &[f32::NAN, 0.9, 0.3, 0.2, f32::NEG_INFINITY, 0.85],
    )
    .unwrap();
    // Order: 0.9, 0.85, t9 (0.8), t4 (0.3), 0.3, 0.2, t2 (0.1) → ranks [2, 3, 6].
    assert_eq!(ranks, vec![2, 3, 6]);
    assert!(target_ranks(&[(1, f32::NAN)], &[0.0]).is_err());
    assert!(target_ranks(&[(1, 0.3), (1, 0.3)], &[0.0]).is_err());
    assert!(target_ranks(&[], &[0.0]).is_err());
}

#[test]
fn metrics_at_k_by_hand_with_three_targets() {
    // Ranks [0, 4, 7], three targets.
    // K=5: hits at 0 and 4: P 2/5, R 2/3, DCG 1 + 1/log2(6), IDCG over min(3,5)=3 positions:
    //      1 + 1/log2(3) + 1/log2(4); MRR@5 1; MAP (1/3)·(1/1 + 2/5).
    // K=2: one hit: P 1/2, R 1/3, DCG 1, IDCG 1 + 1/log2(3); MAP (1/2)·1.
    let ranks = [0, 4, 7];
    let idcg3 = 1.0 + 1.0 / 3f64.log2() + 0.5;
    let m5 = metrics_at_k(&ranks, 5).unwrap();
    assert_metrics(
        &m5,
        &at(
            5,
            1.0,
            0.4,
            2.0 / 3.0,
            (1.0 + 1.0 / 6f64.log2()) / idcg3,
            1.0,
            1.4 / 3.0,
        ),
    );
    let m2 = metrics_at_k(&ranks, 2).unwrap();
    assert_metrics(
        &m2,
        &at(
            2,
            1.0,
            0.5,
            1.0 / 3.0,
            1.0 / (1.0 + 1.0 / 3f64.log2()),
            1.0,
            0.5,
        ),
    );
    assert!(metrics_at_k(&ranks, 0).is_err());
    assert!(metrics_at_k(&[], 5).is_err());
}

/// Random users over `n_items` with 0..max_history history items, 1..=max_targets targets
/// (possibly overlapping the history) and scores quantised to a few levels so that ties abound.
fn random_case(
    n_items: usize,
    n_users: usize,
    max_targets: usize,
    seed: u64,
) -> (Vec<EvalUser>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let users = (0..n_users)
        .map(|_| {
            let history_len = rng.below(12) as usize;
            let n_targets = 1 + rng.below(max_targets as u64) as usize;
            EvalUser {
                history: (0..history_len)
                    .map(|_| rng.below(n_items as u64 + 1) as u32)
                    .collect(),
                targets: (0..n_targets)
                    .map(|_| 1 + rng.below(n_items as u64) as u32)
                    .collect(),
            }
        })
        .collect();
    let scores = (0..n_users * (n_items + 1))
        .map(|_| (rng.below(7) as f32) * 0.25 - 0.5)
        .collect();
    (users, scores)
}

/// The reference: per user, sort every candidate by (score desc, targets first, id asc), read
/// the targets' positions, and average the metrics in f64.
fn reference_report(
    n_items: usize,
    users: &[EvalUser],
    scores: &[f32],
    cfg: &EvalConfig,
) -> (f64, Vec<MetricsAtK>) {
    let mut mrr = 0.0;
    let mut sums = vec![[0.0f64; 6]; cfg.ks.len()];
    for (u, user) in users.iter().enumerate() {
        let row = &scores[u * (n_items + 1)..(u + 1) * (n_items + 1)];
        let is_target = |i: u32| user.targets.contains(&i);
        let mut candidates: Vec<u32> = (1..=n_items as u32)
            .filter(|&i| is_target(i) || !(cfg.exclude_history && user.history.contains(&i)))
            .collect();
        candidates.sort_by(|&a, &b| {
            row[b as usize]
                .partial_cmp(&row[a as usize])
                .unwrap()
                .then(is_target(b).cmp(&is_target(a)))
                .then(a.cmp(&b))
        });
        let ranks: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, i)| is_target(**i))
            .map(|(r, _)| r)
            .collect();
        mrr += 1.0 / (ranks[0] + 1) as f64;
        for (sum, &k) in sums.iter_mut().zip(&cfg.ks) {
            let m = ranks.len();
            let hits: Vec<usize> = ranks.iter().copied().filter(|&r| r < k).collect();
            let dcg: f64 = hits.iter().map(|&r| 1.0 / ((r + 2) as f64).log2()).sum();
            let idcg: f64 = (0..m.min(k)).map(|j| 1.0 / ((j + 2) as f64).log2()).sum();
            let ap: f64 = hits
                .iter()
                .enumerate()
                .map(|(j, &r)| (j + 1) as f64 / (r + 1) as f64)
                .sum::<f64>()
                / m.min(k) as f64;
            let first = if ranks[0] < k {
                1.0 / (ranks[0] + 1) as f64
            } else {
                0.0
            };
            let values = [
                (!hits.is_empty()) as u8 as f64,
                hits.len() as f64 / k as f64,
                hits.len() as f64 / m as f64,
                dcg / idcg,
                first,
                ap,
            ];
            for (s, v) in sum.iter_mut().zip(values) {
                *s += v;
            }
        }
    }
    let n = users.len() as f64;
    let means = sums
        .iter()
        .zip(&cfg.ks)
        .map(|(s, &k)| {
            at(
                k,
                s[0] / n,
                s[1] / n,
                s[2] / n,
                s[3] / n,
                s[4] / n,
                s[5] / n,
            )
        })
        .collect();
    (mrr / n, means)
}

fn assert_matches_reference(report: &EvalReport, reference: &(f64, Vec<MetricsAtK>)) {
    assert!(
        (report.mrr - reference.0).abs() < 1e-9,
        "mrr {} vs {}",
        report.mrr,
        reference.0
    );
    for (got, want) in report.at_k.iter().zip(&reference.1) {
        for (g, w) in [
            (got.hit_rate, want.hit_rate),
            (got.precision, want.precision),
            (got.recall, want.recall),
            (got.ndcg, want.ndcg),
            (got.mrr, want.mrr),
            (got.map, want.map),
        ] {
            assert!((g - w).abs() < 1e-9, "K={}: {got:?} vs {want:?}", got.k);
        }
    }
}

#[test]
fn random_data_matches_sort_reference_with_and_without_history() {
    // Targets are drawn independently of the history, so some targets sit in the history:
    // the reference keeps them, as the evaluator must.
    let n_items = 40;
    let (users, scores) = random_case(n_items, 60, 4, 11);
    for exclude_history in [true, false] {
        let cfg = EvalConfig {
            exclude_history,
            ks: vec![1, 5, 10, 20, 50],
            ..EvalConfig::default()
        };
        let report = evaluate(n_items, &users, &cfg, matrix_scorer(&scores, n_items + 1)).unwrap();
        // The reference dedups targets implicitly (contains); so does the evaluator.
        assert_matches_reference(&report, &reference_report(n_items, &users, &scores, &cfg));
    }
}

#[test]
fn chunked_equals_unchunked_and_chunks_respect_the_bound() {
    let n_items = 30;
    let (users, scores) = random_case(n_items, 47, 3, 5);
    let whole = evaluate(
        n_items,
        &users,
        &EvalConfig::default(),
        matrix_scorer(&scores, n_items + 1),
    )
    .unwrap();

    let row_bytes = (n_items + 1) * 4;
    let cfg = EvalConfig {
        max_chunk_bytes: 5 * row_bytes + 3,
        ..EvalConfig::default()
    };
    assert_eq!(users_per_chunk(n_items, cfg.max_chunk_bytes), 5);
    let mut seen = Vec::new();
    let mut inner = matrix_scorer(&scores, n_items + 1);
    let chunked = evaluate(n_items, &users, &cfg, |positions: &[usize]| {
        assert!(positions.len() * row_bytes <= cfg.max_chunk_bytes);
        seen.extend_from_slice(positions);
        inner(positions)
    })
    .unwrap();
    assert_eq!(
        seen,
        (0..users.len()).collect::<Vec<_>>(),
        "every user scored once, in order"
    );
    assert_eq!(chunked, whole);
    // A bound below one row still makes progress, one user at a time.
    let tiny_chunks = EvalConfig {
        max_chunk_bytes: 1,
        ..EvalConfig::default()
    };
    let one_by_one = evaluate(
        n_items,
        &users,
        &tiny_chunks,
        matrix_scorer(&scores, n_items + 1),
    )
    .unwrap();
    assert_eq!(one_by_one, whole);
}

#[test]
fn parallel_equals_sequential_on_a_large_chunk() {
    // 80 users × 1,000 columns = 80,000 scores: above the threshold where rayon is used.
    let n_items = 999;
    let (users, scores) = random_case(n_items, 80, 3, 9);
    let parallel = EvalConfig::default();
    let sequential = EvalConfig {
        parallel: false,
        ..EvalConfig::default()
    };
    let a = evaluate(
        n_items,
        &users,
        &parallel,
        matrix_scorer(&scores, n_items + 1),
    )
    .unwrap();
    let b = evaluate(
        n_items,
        &users,
        &sequential,
        matrix_scorer(&scores, n_items + 1),
    )
    .unwrap();
    assert_eq!(a, b, "bit-identical whatever the threads");
    assert_matches_reference(&a, &reference_report(n_items, &users, &scores, &parallel));
}

#[test]
fn tensor_scores_are_accepted_and_shapes_checked() {
    let (n, users, scores) = tiny();
    let from_vec = evaluate(
        n,
        &users,
        &EvalConfig::default(),
        matrix_scorer(&scores, n + 1),
    )
    .unwrap();
    let from_tensor = evaluate(
        n,
        &users,
        &EvalConfig::default(),
        |positions: &[usize]| {
            Tensor::from_vec(
                &[positions.len(), n + 1],
                scores[..positions.len() * (n + 1)].to_vec(),
            )
        },
    )
    .unwrap();
    assert_eq!(from_tensor, from_vec);
    let transposed = evaluate(
        n,
        &users,
        &EvalConfig::default(),
        |positions: &[usize]| Tensor::from_vec(&[n + 1, positions.len()], scores.clone()),
    );
    assert!(transposed.is_err());
    let short = evaluate(n, &users, &EvalConfig::default(), |_: &[usize]| {
        Ok(vec![0.0f32; 13])
    });
    assert!(short.is_err());
}

#[test]
fn malformed_inputs_are_errors() {
    let (n, users, scores) = tiny();
    let ok = |cfg: &EvalConfig, users: &[EvalUser]| {
        evaluate(n, users, cfg, matrix_scorer(&scores, n + 1))
    };
    let user = |history: Vec<u32>, targets: Vec<u32>| EvalUser { history, targets };
    let cfg = EvalConfig::default();
    assert!(ok(&cfg, &users).is_ok());
    assert!(ok(&cfg, &[]).is_err(), "no users");
    assert!(ok(&cfg, &[user(vec![1], vec![])]).is_err(), "no target");
    assert!(
        ok(&cfg, &[user(vec![1], vec![0])]).is_err(),
        "padding target"
    );
    assert!(
        ok(&cfg, &[user(vec![1], vec![7])]).is_err(),
        "target past the catalogue"
    );
    assert!(
        ok(&cfg, &[user(vec![9], vec![2])]).is_err(),
        "history past the catalogue"
    );
    assert!(ok(&config(&[5, 0]), &users).is_err(), "K = 0");
    assert!(ok(&config(&[]), &users).is_err(), "no K");
    let no_negatives = EvalConfig {
        protocol: Protocol::Sampled {
            negatives: 0,
            seed: 1,
        },
        ..EvalConfig::default()
    };
    assert!(ok(&no_negatives, &users).is_err());
    assert!(
        evaluate(0, &users, &cfg, matrix_scorer(&scores, 1)).is_err(),
        "empty catalogue"
    );
    let failing = evaluate(n, &users, &cfg, |_: &[usize]| -> seqrec::Result<Vec<f32>> {
        Err(seqrec::Error::Invalid("model failed".into()))
    });
    assert!(matches!(failing, Err(seqrec::Error::Invalid(m)) if m == "model failed"));
    let mut with_nan = scores.clone();
    with_nan[2] = f32::NAN;
    assert!(
        evaluate(n, &users, &cfg, matrix_scorer(&with_nan, n + 1)).is_err(),
        "NaN score"
    );
}

#[test]
fn sampled_negatives_avoid_the_users_items_and_are_reproducible() {
    let n_items = 200;
    let (users, _) = random_case(n_items, 30, 3, 21);
    for (position, user) in users.iter().enumerate() {
        let negatives = sample_negatives(n_items, user, position, 100, 7, true).unwrap();
        assert_eq!(negatives.len(), 100);
        let mut distinct = negatives.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 100, "without replacement");
        for item in &negatives {
            assert!((1..=n_items as u32).contains(item));
            assert!(!user.targets.contains(item), "sampled a target");
            assert!(!user.history.contains(item), "sampled a history item");
        }
        assert_eq!(
            negatives,
            sample_negatives(n_items, user, position, 100, 7, true).unwrap()
        );
        assert_ne!(
            negatives,
            sample_negatives(n_items, user, position, 100, 8, true).unwrap()
        );
    }
    // Without history exclusion the history may be drawn, the targets never: with 199 of
    // the 200 items asked and one target, every non-target is drawn.
    let user = EvalUser {
        history: vec![3, 4],
        targets: vec![5],
    };
    let all = sample_negatives(n_items, &user, 0, 199, 1, false).unwrap();
    assert!(all.contains(&3) && all.contains(&4) && !all.contains(&5));
    assert!(
        sample_negatives(n_items, &user, 0, 198, 1, true).is_err(),
        "only 197 items left"
    );
}

#[test]
fn sampled_protocol_is_labelled_reproducible_and_equals_full_when_it_samples_everything() {
    // User A of the tiny catalogue with history {1, 3} and target 4 leaves exactly 3 items
    // (2, 5, 6): sampling 3 negatives takes them all, so the rank is the full-ranking one (1).
    let (n, users, scores) = tiny();
    let only_a = &users[..1];
    let sampled = EvalConfig {
        protocol: Protocol::Sampled {
            negatives: 3,
            seed: 42,
        },
        ..config(&[1, 2])
    };
    let report = evaluate(n, only_a, &sampled, matrix_scorer(&scores, n + 1)).unwrap();
    let full = evaluate(n, only_a, &config(&[1, 2]), matrix_scorer(&scores, n + 1)).unwrap();
    assert_eq!(report.at_k, full.at_k);
    assert!(close(report.mrr, 0.5));
    assert!(report.protocol.description.starts_with("SAMPLED"));
    assert!(report.to_markdown_table().contains("SAMPLED"));
    assert!(!full.protocol.description.contains("SAMPLED"));

    // On random data: the same seed gives the same report, whatever the chunking or threads.
    let n_items = 500;
    let (users, scores) = random_case(n_items, 70, 2, 3);
    let cfg = EvalConfig {
        protocol: Protocol::Sampled {
            negatives: 100,
            seed: 9,
        },
        ..EvalConfig::default()
    };
    let a = evaluate(n_items, &users, &cfg, matrix_scorer(&scores, n_items + 1)).unwrap();
    let chunked = EvalConfig {
        max_chunk_bytes: 7 * (n_items + 1) * 4,
        parallel: false,
        ..cfg.clone()
    };
    let b = evaluate(
        n_items,
        &users,
        &chunked,
        matrix_scorer(&scores, n_items + 1),
    )
    .unwrap();
    assert_eq!(a, b);
    let other_seed = EvalConfig {
        protocol: Protocol::Sampled {
            negatives: 100,
            seed: 10,
        },
        ..EvalConfig::default()
    };
    let c = evaluate(
        n_items,
        &users,
        &other_seed,
        matrix_scorer(&scores, n_items + 1),
    )
    .unwrap();
    assert_ne!(a.at_k, c.at_k, "another seed draws other negatives");
}

#[test]
fn top_k_matches_a_full_sort() {
    let mut rng = Rng::new(4);
    for trial in 0..50 {
        let n = 1 + rng.below(300) as usize;
        // Few distinct levels → many ties, which must go to the lower id.
        let mut scores: Vec<f32> = (0..=n).map(|_| rng.below(9) as f32 - 4.0).collect();
        if trial % 5 == 0 {
            scores[n / 2] = f32::NAN;
        }
        let exclude: Vec<u32> = (0..rng.below(20))
            .map(|_| rng.below(n as u64 + 5) as u32)
            .collect();
        let k = rng.below(n as u64 + 10) as usize;
        let got = top_k(&scores, k, &exclude);

        let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
        let mut all: Vec<(u32, f32)> = (1..=n as u32)
            .filter(|i| !exclude.contains(i))
            .map(|i| (i, scores[i as usize]))
            .collect();
        all.sort_by(|a, b| key(b.1).partial_cmp(&key(a.1)).unwrap().then(a.0.cmp(&b.0)));
        all.truncate(k);
        assert_eq!(got.len(), all.len(), "trial {trial}");
        for (g, w) in got.iter().zip(&all) {
            assert_eq!(g.0, w.0, "trial {trial}");
            assert!(g.1 == w.1 || (g.1.is_nan() && w.1.is_nan()));
        }
    }
    // By hand: ties by lower id, padding and excluded ids never returned.
    let scores = [9.0, 0.5, 0.7, 0.7, 0.1, 0.7];
    assert_eq!(top_k(&scores, 3, &[3]), vec![(2, 0.7), (5, 0.7), (1, 0.5)]);
    assert_eq!(top_k(&scores, 10, &[1, 2, 3, 5]), vec![(4, 0.1)]);
    assert!(top_k(&scores, 0, &[]).is_empty());
    assert!(top_k(&[1.0], 3, &[]).is_empty());
}

#[test]
fn report_renders_markdown_and_round_trips_json() {
    let (n, users, scores) = tiny();
    let report = evaluate(
        n,
        &users,
        &EvalConfig::default(),
        matrix_scorer(&scores, n + 1),
    )
    .unwrap();
    let table = report.to_markdown_table();
    assert!(table.contains(&report.protocol.description));
    assert!(table.contains("| K | HR@K | Precision@K | Recall@K | NDCG@K | MRR@K | MAP@K |"));
    for k in [5, 10, 15, 20] {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("| {k} |"))),
            "{table}"
        );
    }
    assert!(table.contains("MRR (untruncated): 0.7500"));
    let json = report.to_json().unwrap();
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert!(json.contains("\"exclude_history\": true"));
}

/// ml-100k leave-one-out with a most-popular scorer: the evaluator against the sort-based
/// reference at real scale (943 users × 1,682 items), both with and without the history.
#[test]
fn ml100k_popularity_matches_reference() {
    let Ok(root) = std::env::var("SEQREC_DATA") else {
        println!(
            "ml100k_popularity_matches_reference: SEQREC_DATA is not set, so the real-data \
             part did not run; the same check runs on generated data in \
             parallel_equals_sequential_on_a_large_chunk"
        );
        return;
    };
    let path = std::path::Path::new(&root).join("ml-100k/grouplens/u.data");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "SEQREC_DATA is set but {} is unreadable: {e}",
            path.display()
        )
    });
    // user, item, rating, timestamp; per user: stable sort by time (file order on ties).
    let mut events: Vec<(usize, u32, i64)> = text
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    events.sort_by_key(|&(user, _, time)| (user, time));
    let n_users = events.iter().map(|e| e.0).max().unwrap();
    let n_items = events.iter().map(|e| e.1).max().unwrap() as usize;
    let mut sequences = vec![Vec::new(); n_users];
    for (user, item, _) in events {
        sequences[user - 1].push(item);
    }
    let users: Vec<EvalUser> = sequences
        .iter()
        .map(|s| EvalUser {
            history: s[..s.len() - 1].to_vec(),
            targets: vec![s[s.len() - 1]],
        })
        .collect();
    let mut popularity = vec![0.0f32; n_items + 1];
    for user in &users {
        for &item in &user.history {
            popularity[item as usize] += 1.0;
        }
    }
    let scores: Vec<f32> = (0..users.len())
        .flat_map(|_| popularity.iter().copied())
        .collect();
    for exclude_history in [false, true] {
        let cfg = EvalConfig {
            exclude_history,
            max_chunk_bytes: 100 * (n_items + 1) * 4,
            ..EvalConfig::default()
        };
        let report = evaluate(n_items, &users, &cfg, matrix_scorer(&scores, n_items + 1)).unwrap();
        assert_eq!(report.n_users, 943);
        assert_matches_reference(&report, &reference_report(n_items, &users, &scores, &cfg));
        println!("{}", report.to_markdown_table());
    }
}
