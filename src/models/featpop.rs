//! FeaturePop — popularity that reaches items nobody has interacted with yet, through their
//! features. The non-learned reference for cold items (issue 6: "new items: an embedding
//! built from their features … against Pop"): Pop ranks a cold item last by construction,
//! which says nothing about how hard the item is to rank.
//!
//!   count(i)       = training interactions of item i (as in Pop)
//!   pop(f, t)      = mean of count(i) over the warm items (count > 0) whose field f holds token t
//!   score(i)       = count(i)                                        if i is warm
//!                  = mean over the tokens t of i, all fields, of pop(f, t)   otherwise
//!
//! So a cold item gets the popularity a warm item with its features has on average: the same
//! scale as the warm items' counts, which it is ranked against. A cold item with no known
//! token (or a data set without item features) scores 0, as in Pop. Every user gets the same
//! ranking. The model is `Pop::with_item_features` (CLI name `featpop`); this file holds its
//! scoring rule.

use super::side_info::FieldIds;

/// The tokens of `item` in `field` (0 = missing is not a token).
fn tokens(field: &FieldIds, item: usize) -> impl Iterator<Item = usize> + '_ {
    let width = field.ids.shape()[1];
    field.ids.values()[item * width..(item + 1) * width]
        .iter()
        .filter(|&&t| t != 0)
        .map(|&t| t as usize)
}

/// `score(i)` of the header, from the interaction counts.
pub fn feature_popularity(counts: &[f32], fields: &[FieldIds]) -> Vec<f32> {
    // pop(f, t): sums and numbers of warm items per token, per field.
    let token_pop: Vec<Vec<f32>> = fields
        .iter()
        .map(|field| {
            let mut sum = vec![0.0f64; field.vocab];
            let mut warm = vec![0u32; field.vocab];
            for (item, &count) in counts.iter().enumerate().skip(1) {
                if count > 0.0 {
                    for t in tokens(field, item).filter(|&t| t < field.vocab) {
                        sum[t] += count as f64;
                        warm[t] += 1;
                    }
                }
            }
            sum.iter()
                .zip(&warm)
                .map(|(&s, &n)| if n > 0 { (s / n as f64) as f32 } else { 0.0 })
                .collect()
        })
        .collect();
    let mut scores = counts.to_vec();
    for (item, score) in scores.iter_mut().enumerate().skip(1) {
        if *score > 0.0 {
            continue;
        }
        let (mut sum, mut n) = (0.0f64, 0usize);
        for (field, pop) in fields.iter().zip(&token_pop) {
            for t in tokens(field, item).filter(|&t| t < field.vocab) {
                sum += pop[t] as f64;
                n += 1;
            }
        }
        *score = if n > 0 { (sum / n as f64) as f32 } else { 0.0 };
    }
    if let Some(padding) = scores.first_mut() {
        *padding = 0.0;
    }
    scores
}
