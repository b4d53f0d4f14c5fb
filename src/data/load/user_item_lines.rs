//! "user item" per line (BERT4Rec's `beauty.txt`, SASRec's `Video.txt`): two integer ids
//! separated by whitespace, each user's lines in chronological order, no timestamps.
//! The interactions keep the file order, which is then the time order.

use std::path::Path;

use super::build::DatasetBuilder;
use super::lines::{Encoding, LineReader, read_file};
use crate::data::Dataset;
use crate::error::Result;

/// Loads a "user item" per-line file.
pub fn load_user_item_lines(path: &Path) -> Result<Dataset> {
    parse_user_item_lines(&read_file(path)?, path)
}

/// Parses a "user item" per-line file from memory; `path` names it in errors.
pub fn parse_user_item_lines(bytes: &[u8], path: &Path) -> Result<Dataset> {
    let mut builder = DatasetBuilder::new();
    for line in LineReader::non_empty(bytes, path, Encoding::Utf8)? {
        let line = line?;
        let columns = line.whitespace_columns(&["user_id", "item_id"])?;
        let user = line.id(columns[0], "user_id")?;
        let item = line.id(columns[1], "item_id")?;
        builder.push(user, item, None, None, None);
    }
    let name = super::file_stem(path);
    Ok(builder.finish(&name, path.to_path_buf()))
}
