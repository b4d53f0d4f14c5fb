//! Time to build one epoch of training batches for ml-100k-sized data, generated here so that
//! the benchmark runs without the data files: 943 users, 1,682 items, sequence lengths
//! uniform in 20..=192 (mean ≈ 106), leave-one-out, n = 50, batch 128 (8 batches per epoch).
//! Divide the epoch time by 8 for the per-batch time.

use criterion::{Criterion, criterion_group, criterion_main};

use seqrec::data::batch::{BatchConfig, Batcher, Examples, Sampling};
use seqrec::data::split::TrainSequence;
use seqrec::rng::Rng;

const USERS: usize = 943;
const ITEMS: usize = 1_682;

/// Training sequences as leave-one-out leaves them (the last two items held out), distinct
/// items per user drawn with a popularity skew.
fn training_sequences() -> Vec<TrainSequence> {
    let mut rng = Rng::new(2024);
    (1..=USERS as u32)
        .map(|user| {
            let len = 20 + rng.below(173) as usize;
            let mut seen = vec![false; ITEMS + 1];
            let mut items = Vec::with_capacity(len);
            while items.len() < len {
                let item = 1 + ((rng.uniform() * rng.uniform()) * ITEMS as f32) as usize;
                if !std::mem::replace(&mut seen[item], true) {
                    items.push(item as u32);
                }
            }
            items.truncate(len - 2);
            let behaviours = vec![0; items.len()];
            TrainSequence {
                user,
                items,
                behaviours,
            }
        })
        .collect()
}

fn epoch(c: &mut Criterion) {
    let train = training_sequences();
    let mut group = c.benchmark_group("batching_epoch_ml100k_n50_b128");
    for (examples, name) in [
        (Examples::EveryPosition, "every_position"),
        (Examples::PerPrefix, "per_prefix"),
    ] {
        for negatives in [1, 100] {
            for (sampling, exclude, label) in [
                (Sampling::Uniform, true, "uniform_excl_user"),
                (Sampling::Popularity, false, "popularity"),
            ] {
                // Per-prefix epochs are ~100x bigger; 100 negatives there is out of scope.
                if examples == Examples::PerPrefix && negatives == 100 {
                    continue;
                }
                let config = BatchConfig {
                    max_len: 50,
                    batch_size: 128,
                    examples,
                    negatives,
                    sampling,
                    exclude_user_items: exclude,
                    seed: 1,
                };
                let batcher = Batcher::new(&train, ITEMS, config).unwrap();
                let id = format!(
                    "{name}/k{negatives}/{label}/{}batches",
                    batcher.num_batches()
                );
                let mut e = 0;
                group.bench_function(id, |b| {
                    b.iter(|| {
                        e += 1;
                        batcher.epoch(e).unwrap()
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = epoch
}
criterion_main!(benches);
