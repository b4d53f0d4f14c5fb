//! `seqrec data stats`: the numbers a user checks first about a data set.

use serde::Serialize;

use super::{Dataset, FieldKind, FieldValues};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetStats {
    pub name: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// interactions / (users · items).
    pub density: f64,
    pub sparsity: f64,
    pub sequence_length: LengthStats,
    /// (first, last) timestamp when the data has time.
    pub time_range: Option<(i64, i64)>,
    pub behaviour_types: usize,
    pub sessions: bool,
    pub user_fields: Vec<FieldStats>,
    pub item_fields: Vec<FieldStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LengthStats {
    pub min: usize,
    pub median: usize,
    pub mean: f64,
    pub p90: usize,
    pub max: usize,
    /// (upper bound of the bucket, number of sequences): lengths ≤ 5, ≤ 10, ≤ 20, ...
    pub histogram: Vec<(usize, usize)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldStats {
    pub name: String,
    pub kind: FieldKind,
    /// Distinct tokens (0 for numbers).
    pub vocabulary: usize,
    /// Fraction of entities with a value.
    pub coverage: f64,
}

pub fn stats(dataset: &Dataset) -> DatasetStats {
    let mut lengths = vec![0usize; dataset.users.len() + 1];
    let mut time_range: Option<(i64, i64)> = None;
    for i in &dataset.interactions {
        lengths[i.user as usize] += 1;
        if let Some(t) = i.timestamp {
            time_range = Some(time_range.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        }
    }
    let mut lengths: Vec<usize> = lengths.into_iter().skip(1).filter(|&l| l > 0).collect();
    lengths.sort_unstable();
    let (users, items, interactions) = (
        lengths.len(),
        dataset.items.len(),
        dataset.interactions.len(),
    );
    let density = if users * items == 0 {
        0.0
    } else {
        interactions as f64 / (users as f64 * items as f64)
    };
    let pick = |q: f64| {
        lengths
            .get(((q * lengths.len() as f64) as usize).min(lengths.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let mut histogram = Vec::new();
    let mut bound = 5;
    let mut counted = 0;
    while counted < lengths.len() {
        let n = lengths.iter().filter(|&&l| l <= bound).count();
        histogram.push((bound, n - counted));
        counted = n;
        bound *= 2;
    }
    DatasetStats {
        name: dataset.name.clone(),
        users,
        items,
        interactions,
        density,
        sparsity: 1.0 - density,
        sequence_length: LengthStats {
            min: lengths.first().copied().unwrap_or(0),
            median: pick(0.5),
            mean: if users == 0 {
                0.0
            } else {
                interactions as f64 / users as f64
            },
            p90: pick(0.9),
            max: lengths.last().copied().unwrap_or(0),
            histogram,
        },
        time_range,
        behaviour_types: dataset.behaviours.len(),
        sessions: dataset.sessions,
        user_fields: field_stats(&dataset.user_features.fields, dataset.users.len()),
        item_fields: field_stats(&dataset.item_features.fields, dataset.items.len()),
    }
}

fn field_stats(fields: &[super::Field], entities: usize) -> Vec<FieldStats> {
    fields
        .iter()
        .map(|f| {
            let present = match &f.values {
                FieldValues::Token(v) => v.iter().skip(1).filter(|&&t| t != 0).count(),
                FieldValues::TokenSet(v) => v.iter().skip(1).filter(|s| !s.is_empty()).count(),
                FieldValues::Number(v) => v.iter().skip(1).filter(|x| !x.is_nan()).count(),
            };
            FieldStats {
                name: f.name.clone(),
                kind: f.kind,
                vocabulary: f.vocab.len(),
                coverage: if entities == 0 {
                    0.0
                } else {
                    present as f64 / entities as f64
                },
            }
        })
        .collect()
}

impl DatasetStats {
    /// A human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let kind = if self.sessions { "sessions" } else { "users" };
        let _ = writeln!(s, "data set      {}", self.name);
        let _ = writeln!(s, "{kind:<13} {}", self.users);
        let _ = writeln!(s, "items         {}", self.items);
        let _ = writeln!(s, "interactions  {}", self.interactions);
        let _ = writeln!(
            s,
            "density       {:.4}%  (sparsity {:.4}%)",
            100.0 * self.density,
            100.0 * self.sparsity
        );
        let l = &self.sequence_length;
        let _ = writeln!(
            s,
            "length        min {}  median {}  mean {:.2}  p90 {}  max {}",
            l.min, l.median, l.mean, l.p90, l.max
        );
        for (bound, n) in &l.histogram {
            let _ = writeln!(s, "  ≤ {bound:<6} {n}");
        }
        if let Some((a, b)) = self.time_range {
            let _ = writeln!(s, "time          {a} .. {b}");
        }
        let _ = writeln!(s, "behaviours    {}", self.behaviour_types);
        for (who, fields) in [("user", &self.user_fields), ("item", &self.item_fields)] {
            for f in fields {
                let _ = writeln!(
                    s,
                    "{who} field    {} ({:?}, {} tokens, {:.1}% covered)",
                    f.name,
                    f.kind,
                    f.vocabulary,
                    100.0 * f.coverage
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Field, Interaction, Vocab};

    #[test]
    fn hand_computed_statistics() {
        let mut d = Dataset::empty("tiny");
        for u in ["a", "b"] {
            d.users.intern(u);
        }
        for i in ["x", "y", "z", "w"] {
            d.items.intern(i);
        }
        // a: 3 interactions, b: 1.
        for (user, item, t) in [(1, 1, 10), (1, 2, 20), (1, 3, 5), (2, 4, 30)] {
            d.interactions.push(Interaction {
                user,
                item,
                timestamp: Some(t),
                rating: None,
                behaviour: 0,
            });
        }
        let mut genres = Vocab::new();
        genres.intern("g");
        d.item_features.fields.push(Field {
            name: "genres".into(),
            kind: FieldKind::TokenSet,
            vocab: genres,
            values: FieldValues::TokenSet(vec![vec![], vec![1], vec![], vec![1], vec![]]),
        });
        let s = stats(&d);
        assert_eq!((s.users, s.items, s.interactions), (2, 4, 4));
        assert!((s.density - 0.5).abs() < 1e-12);
        assert_eq!(
            (
                s.sequence_length.min,
                s.sequence_length.max,
                s.sequence_length.median
            ),
            (1, 3, 3)
        );
        assert_eq!(s.sequence_length.histogram, vec![(5, 2)]);
        assert_eq!(s.time_range, Some((5, 30)));
        assert_eq!(s.item_fields[0].coverage, 0.5);
        assert!(s.render().contains("interactions  4"));
    }
}
