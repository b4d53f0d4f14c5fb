//! A small generated data set on which every model can learn: users walk the items in order.

use std::path::{Path, PathBuf};

use seqrec::data::{Dataset, Field, FieldKind, FieldValues, Interaction, Vocab};
use seqrec::rng::Rng;

pub const ITEMS: u32 = 100;

/// Users walk the items in order (i → i+1, wrapping) from a random start, with a little noise;
/// items carry a "block" token (id / 5), users a "group" token.
pub fn synthetic(users: u32, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut d = Dataset::empty("synthetic");
    for i in 1..=ITEMS {
        d.items.intern(&i.to_string());
    }
    for b in ["click", "buy"] {
        d.behaviours.intern(b);
    }
    for u in 1..=users {
        let user = d.users.intern(&format!("u{u}"));
        let mut item = 1 + rng.below(ITEMS as u64) as u32;
        let length = 12 + rng.below(10) as i64;
        for t in 0..length {
            let noisy = rng.uniform() < 0.1;
            let shown = if noisy {
                1 + rng.below(ITEMS as u64) as u32
            } else {
                item
            };
            d.interactions.push(Interaction {
                user,
                item: shown,
                timestamp: Some(t),
                rating: None,
                behaviour: 1 + (shown % 2),
            });
            item = item % ITEMS + 1;
        }
    }
    let mut block_vocab = Vocab::new();
    let blocks: Vec<u32> = (0..=ITEMS)
        .map(|i| {
            if i == 0 {
                0
            } else {
                block_vocab.intern(&format!("b{}", (i - 1) / 5))
            }
        })
        .collect();
    d.item_features.fields.push(Field {
        name: "block".into(),
        kind: FieldKind::Token,
        vocab: block_vocab,
        values: FieldValues::Token(blocks),
    });
    let mut group_vocab = Vocab::new();
    let groups: Vec<u32> = (0..=users)
        .map(|u| {
            if u == 0 {
                0
            } else {
                group_vocab.intern(&format!("g{}", u % 3))
            }
        })
        .collect();
    d.user_features.fields.push(Field {
        name: "group".into(),
        kind: FieldKind::Token,
        vocab: group_vocab,
        values: FieldValues::Token(groups),
    });
    d
}

/// Writes interactions as a MovieLens `u.data` (user, item, rating, time) in `dir`, so that the
/// loaders and `open_run` can read them back.
pub fn write_movielens_folder(data: &Dataset, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text: String = data
        .interactions
        .iter()
        .map(|i| {
            format!(
                "{}\t{}\t{}\t{}\n",
                data.users.name(i.user).trim_start_matches('u'),
                data.items.name(i.item),
                1 + i.behaviour,
                i.timestamp.unwrap()
            )
        })
        .collect();
    std::fs::write(dir.join("u.data"), text).unwrap();
    dir.to_path_buf()
}
