//! Data: loading interaction logs with their side information, preprocessing them into
//! per-user sequences, leakage-free splits and training batches.
//!
//! The types here are the contract between the loaders (which produce a `Dataset`) and the
//! pipeline (which turns it into sequences, splits and batches). Ids are internal and
//! contiguous; id 0 is reserved for padding (and for "unknown" in side-information fields).

pub mod batch;
pub mod cold;
pub mod fetch;
pub mod find;
pub mod load;
pub mod preprocess;
pub mod split;

pub mod stats;

use std::collections::HashMap;
use std::path::PathBuf;

/// Maps external ids (as written in the files) to contiguous internal ids 1..=len.
/// Internal id 0 is the padding id and has the name "<pad>".
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Vocab {
    names: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Default for Vocab {
    fn default() -> Self {
        Vocab {
            names: vec!["<pad>".to_string()],
            index: HashMap::new(),
        }
    }
}

impl Vocab {
    pub fn new() -> Self {
        Self::default()
    }

    /// The internal id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), id);
        id
    }

    /// The internal id of `name`, if known.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The external name of internal id `id` (id 0 is "<pad>").
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Number of real entries (not counting padding).
    pub fn len(&self) -> usize {
        self.names.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rebuilds the name → id index after deserialisation.
    pub fn rebuild_index(&mut self) {
        self.index = self
            .names
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
    }
}

/// One event as loaded: a user (or session) interacted with an item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interaction {
    /// Internal user (or session) id, ≥ 1.
    pub user: u32,
    /// Internal item id, ≥ 1.
    pub item: u32,
    /// Seconds (or any monotone clock) when the file has time; `None` for order-only files,
    /// whose order in `Dataset::interactions` is then the chronological order.
    pub timestamp: Option<i64>,
    /// Explicit rating when the file has one.
    pub rating: Option<f32>,
    /// Behaviour type (seed 002's o_i): an id into `Dataset::behaviours`, 0 when unknown.
    pub behaviour: u32,
}

/// How a side-information field is embedded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FieldKind {
    /// One categorical value per entity (gender, occupation, category).
    Token,
    /// A set of categorical values per entity (genres, attributes), pooled when embedded.
    TokenSet,
    /// A number (age, year), bucketized or scaled before it is embedded.
    Number,
}

/// Values of one field for every entity, indexed by internal id (row 0 = padding).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum FieldValues {
    /// Token id per entity; 0 = missing.
    Token(Vec<u32>),
    /// Token ids per entity; empty = missing.
    TokenSet(Vec<Vec<u32>>),
    /// Number per entity; NaN = missing.
    Number(Vec<f32>),
}

/// One side-information field of users or items.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
    /// The token vocabulary (empty for numbers).
    pub vocab: Vocab,
    pub values: FieldValues,
}

/// The side information of one entity type (users or items).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FeatureTable {
    pub fields: Vec<Field>,
}

/// A loaded data set: interactions in file order plus side information.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    /// The file or folder it was loaded from.
    pub source: PathBuf,
    pub users: Vocab,
    pub items: Vocab,
    /// Behaviour types (e.g. "rating=4", "click"); empty when the data has none.
    pub behaviours: Vocab,
    pub interactions: Vec<Interaction>,
    pub user_features: FeatureTable,
    pub item_features: FeatureTable,
    /// True when "users" are anonymous sessions (YOOCHOOSE, DIGINETICA).
    pub sessions: bool,
    /// When the publisher ships its own train/test split (YOOCHOOSE's `_test.txt`, ml-1m's
    /// `implicit-resn/test.txt`): the loader appends the test file after the training file
    /// and this is the index in `interactions` where the test part starts.
    pub published_test_start: Option<usize>,
}

impl Dataset {
    /// A data set named `name` (its source too) with no users, items, interactions or
    /// features yet: what generated and hand-made data start from.
    pub fn empty(name: &str) -> Dataset {
        Dataset {
            name: name.into(),
            source: PathBuf::from(name),
            users: Vocab::new(),
            items: Vocab::new(),
            behaviours: Vocab::new(),
            interactions: Vec::new(),
            user_features: FeatureTable::default(),
            item_features: FeatureTable::default(),
            sessions: false,
            published_test_start: None,
        }
    }
}
