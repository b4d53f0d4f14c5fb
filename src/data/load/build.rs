//! Builders the loaders share: `DatasetBuilder` interns users, items and behaviours while
//! interactions are read; `FieldBuilder` fills one side-information column for entities
//! that already exist (ids are looked up, never added, by side files).

use std::path::PathBuf;

use crate::error::Result;

use super::lines::Line;
use crate::data::{Dataset, FeatureTable, Field, FieldKind, FieldValues, Interaction, Vocab};

/// Collects interactions and the vocabularies they need.
pub struct DatasetBuilder {
    pub users: Vocab,
    pub items: Vocab,
    pub behaviours: Vocab,
    pub interactions: Vec<Interaction>,
}

impl Default for DatasetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DatasetBuilder {
    pub fn new() -> Self {
        DatasetBuilder {
            users: Vocab::new(),
            items: Vocab::new(),
            behaviours: Vocab::new(),
            interactions: Vec::new(),
        }
    }

    /// Adds one event; `behaviour` is a name such as "rating=4" or "click".
    pub fn push(
        &mut self,
        user: &str,
        item: &str,
        timestamp: Option<i64>,
        rating: Option<f32>,
        behaviour: Option<&str>,
    ) {
        let user = self.users.intern(user);
        let item = self.items.intern(item);
        let behaviour = behaviour.map_or(0, |name| self.behaviours.intern(name));
        self.interactions.push(Interaction {
            user,
            item,
            timestamp,
            rating,
            behaviour,
        });
    }

    /// The finished data set, without side information (the caller adds it).
    pub fn finish(self, name: &str, source: PathBuf) -> Dataset {
        Dataset {
            name: name.to_string(),
            source,
            users: self.users,
            items: self.items,
            behaviours: self.behaviours,
            interactions: self.interactions,
            user_features: FeatureTable::default(),
            item_features: FeatureTable::default(),
            sessions: false,
            published_test_start: None,
        }
    }
}

/// Fills one field for `rows` entities (row 0 = padding, stays missing).
pub struct FieldBuilder {
    name: String,
    vocab: Vocab,
    values: FieldValues,
}

impl FieldBuilder {
    /// `entity_count` = number of real entities (the vocab's `len()`).
    pub fn new(name: &str, kind: FieldKind, entity_count: usize) -> Self {
        let rows = entity_count + 1;
        let values = match kind {
            FieldKind::Token => FieldValues::Token(vec![0; rows]),
            FieldKind::TokenSet => FieldValues::TokenSet(vec![Vec::new(); rows]),
            FieldKind::Number => FieldValues::Number(vec![f32::NAN; rows]),
        };
        FieldBuilder {
            name: name.to_string(),
            vocab: Vocab::new(),
            values,
        }
    }

    /// Adds `token` to the vocabulary up front, so that ids follow a published list.
    pub fn declare_token(&mut self, token: &str) {
        self.vocab.intern(token.trim());
    }

    /// Whether `token` is in the vocabulary.
    pub fn knows(&self, token: &str) -> bool {
        self.vocab.get(token.trim()).is_some()
    }

    /// Sets a Token field; an empty token means missing.
    pub fn set_token(&mut self, row: u32, token: &str) {
        let token = token.trim();
        if let FieldValues::Token(values) = &mut self.values {
            values[row as usize] = if token.is_empty() {
                0
            } else {
                self.vocab.intern(token)
            };
        }
    }

    /// Sets a TokenSet field; duplicates and empty tokens are dropped, first order kept.
    pub fn set_tokens<'t>(&mut self, row: u32, tokens: impl IntoIterator<Item = &'t str>) {
        if let FieldValues::TokenSet(values) = &mut self.values {
            let set = &mut values[row as usize];
            set.clear();
            for token in tokens {
                let token = token.trim();
                if token.is_empty() {
                    continue;
                }
                let id = self.vocab.intern(token);
                if !set.contains(&id) {
                    set.push(id);
                }
            }
        }
    }

    /// Sets a Number field (NaN = missing).
    pub fn set_number(&mut self, row: u32, value: f32) {
        if let FieldValues::Number(values) = &mut self.values {
            values[row as usize] = value;
        }
    }

    pub fn finish(self) -> Field {
        let kind = match self.values {
            FieldValues::Token(_) => FieldKind::Token,
            FieldValues::TokenSet(_) => FieldKind::TokenSet,
            FieldValues::Number(_) => FieldKind::Number,
        };
        Field {
            name: self.name,
            kind,
            vocab: self.vocab,
            values: self.values,
        }
    }
}

/// The internal id of the entity a side-file row describes: an id that the interactions
/// never mention, or one listed twice, is an error naming the line and field.
pub fn side_row(
    line: &Line<'_>,
    id: &str,
    field: &str,
    vocab: &Vocab,
    seen: &mut [bool],
    interactions_file: &str,
) -> Result<u32> {
    let Some(row) = vocab.get(id) else {
        return Err(line.error(
            field,
            format!("id {id} does not occur in {interactions_file}"),
        ));
    };
    if std::mem::replace(&mut seen[row as usize], true) {
        return Err(line.error(field, format!("id {id} is listed twice")));
    }
    Ok(row)
}
