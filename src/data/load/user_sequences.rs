//! One user per line, `user item1 item2 ...` in chronological order (the S3-Rec files
//! `Beauty.txt`, `Sports_and_Outdoors.txt`, `LastFM.txt`), with an optional
//! `NAME_item2attributes.json` beside it: `{"item": [attribute ids]}` → the item field
//! "attributes" (TokenSet; repeated ids in a list are kept once, so a set has fewer
//! entries on average than the raw lists).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::build::{DatasetBuilder, FieldBuilder};
use super::lines::{Encoding, LineReader, parse_error, read_file};
use crate::data::{Dataset, Field, FieldKind, Vocab};
use crate::error::Result;

/// The attribute file that belongs to a sequence file: `X.txt` → `X_item2attributes.json`.
pub fn attributes_path(sequences: &Path) -> PathBuf {
    let stem = super::file_stem(sequences);
    sequences.with_file_name(format!("{stem}_item2attributes.json"))
}

/// Loads a one-user-per-line file and, when it exists, its `_item2attributes.json`.
pub fn load_user_sequences(path: &Path) -> Result<Dataset> {
    let mut builder = DatasetBuilder::new();
    parse_user_sequences(&read_file(path)?, path, &mut builder)?;
    let mut dataset = builder.finish(&super::file_stem(path), path.to_path_buf());
    let json_path = attributes_path(path);
    if json_path.is_file() {
        let field = parse_item_attributes(&read_file(&json_path)?, &json_path, &dataset.items)?;
        dataset.item_features.fields.push(field);
    }
    Ok(dataset)
}

/// Parses `user item1 item2 ...` lines from memory into `builder`.
pub fn parse_user_sequences(bytes: &[u8], path: &Path, builder: &mut DatasetBuilder) -> Result<()> {
    for line in LineReader::non_empty(bytes, path, Encoding::Utf8)? {
        let line = line?;
        let mut columns = line.text.split_ascii_whitespace();
        let user = line.id(columns.next().unwrap_or(""), "user_id")?;
        let mut count = 0;
        for item in columns {
            builder.push(user, line.id(item, "item_id")?, None, None, None);
            count += 1;
        }
        if count == 0 {
            return Err(line.error("item_id", format!("user {user} has no items")));
        }
    }
    Ok(())
}

/// Parses `{"item": [attribute ids]}`; every item must occur in the sequences.
pub fn parse_item_attributes(bytes: &[u8], path: &Path, items: &Vocab) -> Result<Field> {
    let table: BTreeMap<String, Vec<u64>> = serde_json::from_slice(bytes).map_err(|e| {
        let field = if e.is_syntax() || e.is_eof() {
            "json"
        } else {
            "attributes"
        };
        parse_error(path, e.line().max(1), field, e.to_string())
    })?;
    let mut attributes = FieldBuilder::new("attributes", FieldKind::TokenSet, items.len());
    let mut names = Vec::new();
    for (item, ids) in &table {
        let Some(row) = items.get(item) else {
            // serde_json does not tell where a key sits; search the bytes for it.
            let line = line_of(bytes, &format!("\"{item}\""));
            return Err(parse_error(
                path,
                line,
                "item_id",
                format!("item {item:?} does not occur in the sequence file"),
            ));
        };
        names.clear();
        names.extend(ids.iter().map(|id| id.to_string()));
        attributes.set_tokens(row, names.iter().map(String::as_str));
    }
    Ok(attributes.finish())
}

/// The 1-based line where `needle` first occurs (1 when absent).
fn line_of(bytes: &[u8], needle: &str) -> usize {
    let needle = needle.as_bytes();
    let at = bytes
        .windows(needle.len().max(1))
        .position(|w| w == needle)
        .unwrap_or(0);
    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count()
}
