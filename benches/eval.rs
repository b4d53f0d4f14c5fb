//! Full-ranking evaluation speed: the ranking cost only. Scores are random and precomputed
//! (one chunk-sized buffer handed out for every chunk), so the model's scoring cost, which
//! belongs to the model, is not measured.
//!
//! Shapes: ml-100k (943 users × 1,682 items, long histories) and amazon-beauty S3-Rec
//! (22,363 users × 12,101 items, short histories), one leave-one-out target per user.
//! `cargo bench --bench eval`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use seqrec::eval::{EvalConfig, EvalUser, Protocol, evaluate, top_k, users_per_chunk};
use seqrec::rng::Rng;

struct Shape {
    name: &'static str,
    n_users: usize,
    n_items: usize,
    /// History lengths are uniform in this range.
    history: (usize, usize),
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "ml100k_943x1682",
        n_users: 943,
        n_items: 1682,
        history: (20, 200),
    },
    Shape {
        name: "beauty_22363x12101",
        n_users: 22_363,
        n_items: 12_101,
        history: (3, 15),
    },
];

fn users(shape: &Shape, rng: &mut Rng) -> Vec<EvalUser> {
    (0..shape.n_users)
        .map(|_| {
            let len =
                shape.history.0 + rng.below((shape.history.1 - shape.history.0) as u64) as usize;
            let mut item = || 1 + rng.below(shape.n_items as u64) as u32;
            EvalUser {
                history: (0..len).map(|_| item()).collect(),
                targets: vec![item()],
            }
        })
        .collect()
}

fn bench_evaluate(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate");
    group.sample_size(10);
    for shape in &SHAPES {
        let mut rng = Rng::new(1);
        let users = users(shape, &mut rng);
        let columns = shape.n_items + 1;
        let default = EvalConfig::default();
        let chunk = users_per_chunk(shape.n_items, default.max_chunk_bytes).min(shape.n_users);
        let scores: Vec<f32> = (0..chunk * columns).map(|_| rng.normal()).collect();
        let configs = [
            ("full_history_excluded", default.clone()),
            (
                "full_history_kept",
                EvalConfig {
                    exclude_history: false,
                    ..default.clone()
                },
            ),
            (
                "sampled_100",
                EvalConfig {
                    protocol: Protocol::Sampled {
                        negatives: 100,
                        seed: 1,
                    },
                    ..default.clone()
                },
            ),
            (
                "full_history_excluded_1thread",
                EvalConfig {
                    parallel: false,
                    ..default.clone()
                },
            ),
        ];
        // The floor: one vectorized pass (count of scores above 0, the ranking's own inner
        // loop) over every score the evaluation reads, same chunks, same buffer.
        group.bench_function(
            BenchmarkId::new("baseline_read_all_scores", shape.name),
            |b| {
                b.iter(|| {
                    let mut total = 0usize;
                    for start in (0..shape.n_users).step_by(chunk) {
                        let rows = chunk.min(shape.n_users - start);
                        total += scores[..rows * columns]
                            .iter()
                            .map(|&s| (s > 0.0) as usize)
                            .sum::<usize>();
                    }
                    total
                })
            },
        );
        for (label, config) in &configs {
            group.bench_function(BenchmarkId::new(*label, shape.name), |b| {
                b.iter(|| {
                    evaluate(shape.n_items, &users, config, |positions: &[usize]| {
                        Ok(&scores[..positions.len() * columns])
                    })
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn bench_top_k(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    let scores: Vec<f32> = (0..=12_101).map(|_| rng.normal()).collect();
    let exclude: Vec<u32> = (0..10).map(|_| 1 + rng.below(12_101) as u32).collect();
    c.bench_function("top_k/20_of_12101", |b| {
        b.iter(|| top_k(&scores, 20, &exclude))
    });
}

criterion_group!(benches, bench_evaluate, bench_top_k);
criterion_main!(benches);
