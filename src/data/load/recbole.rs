//! RecBole atomic files: `NAME.inter` (+ optional `NAME.user`, `NAME.item`), TAB-separated (⇥)
//! with a typed header such as `user_id:token ⇥ item_id:token ⇥ rating:float ⇥ timestamp:float`.
//!
//! - `.inter` must have `user_id` and `item_id` columns; `rating` and `timestamp` (floats)
//!   are used when present (behaviour "rating=R"), other columns are checked and ignored.
//! - `.user` / `.item` are keyed by `user_id` / `item_id`; every other column becomes a
//!   field by its declared kind: token → Token, token_seq (space-separated) → TokenSet,
//!   float → Number (empty = NaN). float_seq columns are checked but not kept (no field kind
//!   holds a vector of numbers). Title and URL columns are skipped: they identify an item
//!   rather than describe it, so as features they would only let a model memorise items.
//!
//! Users and items are those of `.inter`; an unknown id in a side file is an error.

use std::path::{Path, PathBuf};

use super::build::{DatasetBuilder, FieldBuilder, side_row};
use super::lines::{Encoding, Line, LineReader, parse_error, read_file};
use crate::data::{Dataset, Field, FieldKind, Vocab};
use crate::error::{Error, Result};

/// A column type declared in a RecBole header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Token,
    TokenSeq,
    Float,
    FloatSeq,
}

/// One header column: `name:kind`.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

/// Column names skipped as features (identifiers, not descriptions).
const IDENTIFIER_COLUMNS: [&str; 3] = ["movie_title", "title", "url"];

/// The files of one RecBole data set, in memory.
pub struct RecBoleFiles<'a> {
    pub inter: &'a [u8],
    pub user: Option<&'a [u8]>,
    pub item: Option<&'a [u8]>,
}

/// Loads a folder holding exactly one `*.inter` file (or that file itself).
pub fn load_recbole(path: &Path) -> Result<Dataset> {
    let inter_path = if path.is_dir() {
        find_inter_file(path)?
    } else {
        path.to_path_buf()
    };
    let inter = read_file(&inter_path)?;
    let side = |extension: &str| -> Result<Option<Vec<u8>>> {
        let side_path = inter_path.with_extension(extension);
        if side_path.is_file() {
            read_file(&side_path).map(Some)
        } else {
            Ok(None)
        }
    };
    let (user, item) = (side("user")?, side("item")?);
    let files = RecBoleFiles {
        inter: &inter,
        user: user.as_deref(),
        item: item.as_deref(),
    };
    parse_recbole(&files, &inter_path)
}

fn find_inter_file(folder: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "inter"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Invalid(format!(
            "no RecBole .inter file in {}",
            folder.display()
        ))),
        _ => Err(Error::Invalid(format!(
            "several .inter files in {}: pass one of them",
            folder.display()
        ))),
    }
}

/// Parses RecBole files; `inter_path` names the files in errors (`.user`/`.item` beside it).
pub fn parse_recbole(files: &RecBoleFiles<'_>, inter_path: &Path) -> Result<Dataset> {
    let mut builder = DatasetBuilder::new();
    parse_inter(files.inter, inter_path, &mut builder)?;
    let name = inter_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut dataset = builder.finish(&name, inter_path.to_path_buf());
    if let Some(user) = files.user {
        let path = inter_path.with_extension("user");
        dataset.user_features.fields = parse_side(user, &path, "user_id", &dataset.users)?;
    }
    if let Some(item) = files.item {
        let path = inter_path.with_extension("item");
        dataset.item_features.fields = parse_side(item, &path, "item_id", &dataset.items)?;
    }
    Ok(dataset)
}

/// Parses a header line `name:kind<TAB>name:kind...`.
pub fn parse_header(line: &Line<'_>) -> Result<Vec<Column>> {
    let mut columns: Vec<Column> = Vec::new();
    for declared in line.text.split('\t') {
        let Some((name, kind)) = declared.trim().split_once(':') else {
            return Err(line.error("header", format!("column {declared:?} is not `name:kind`")));
        };
        let kind = match kind {
            "token" => ColumnKind::Token,
            "token_seq" => ColumnKind::TokenSeq,
            "float" => ColumnKind::Float,
            "float_seq" => ColumnKind::FloatSeq,
            other => {
                return Err(line.error(
                    name,
                    format!(
                        "unknown column kind {other:?} (expected token, token_seq, float, float_seq)"
                    ),
                ));
            }
        };
        if name.is_empty() || columns.iter().any(|c| c.name == name) {
            return Err(line.error("header", format!("empty or repeated column name {name:?}")));
        }
        columns.push(Column {
            name: name.to_string(),
            kind,
        });
    }
    Ok(columns)
}

fn position(columns: &[Column], name: &str, kind: ColumnKind, header: &Line<'_>) -> Result<usize> {
    let index = columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| header.error(name, format!("the header has no `{name}` column")))?;
    if columns[index].kind != kind {
        return Err(header.error(
            name,
            format!("expected kind {kind:?}, found {:?}", columns[index].kind),
        ));
    }
    Ok(index)
}

fn optional_float(columns: &[Column], name: &str, header: &Line<'_>) -> Result<Option<usize>> {
    if columns.iter().any(|c| c.name == name) {
        position(columns, name, ColumnKind::Float, header).map(Some)
    } else {
        Ok(None)
    }
}

/// Splits a data line into exactly as many columns as the header declares.
fn split_row<'l>(line: &'l Line<'_>, columns: &[Column]) -> Result<Vec<&'l str>> {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    line.columns("\t", &names)
}

/// Checks a value against its declared kind (numbers must parse).
fn check_value(line: &Line<'_>, column: &Column, value: &str) -> Result<()> {
    match column.kind {
        ColumnKind::Float if !value.trim().is_empty() => {
            line.number(value, &column.name)?;
        }
        ColumnKind::FloatSeq => {
            for number in value.split_ascii_whitespace() {
                line.number(number, &column.name)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn token<'t>(line: &Line<'_>, value: &'t str, field: &str) -> Result<&'t str> {
    let value = value.trim();
    if value.is_empty() {
        return Err(line.error(field, "empty id"));
    }
    Ok(value)
}

/// The `.inter` file.
pub fn parse_inter(bytes: &[u8], path: &Path, builder: &mut DatasetBuilder) -> Result<()> {
    let mut reader = LineReader::non_empty(bytes, path, Encoding::Utf8)?;
    let header = reader.first_line()?;
    let columns = parse_header(&header)?;
    let user_column = position(&columns, "user_id", ColumnKind::Token, &header)?;
    let item_column = position(&columns, "item_id", ColumnKind::Token, &header)?;
    let rating_column = optional_float(&columns, "rating", &header)?;
    let time_column = optional_float(&columns, "timestamp", &header)?;
    let mut rows = 0;
    let mut behaviour = String::new();
    for line in reader {
        let line = line?;
        let values = split_row(&line, &columns)?;
        for (column, value) in columns.iter().zip(&values) {
            check_value(&line, column, value)?;
        }
        let user = token(&line, values[user_column], "user_id")?;
        let item = token(&line, values[item_column], "item_id")?;
        let rating = match rating_column {
            Some(c) => Some(line.number(values[c], "rating")? as f32),
            None => None,
        };
        let timestamp = match time_column {
            Some(c) => Some(line.seconds(values[c], "timestamp")?),
            None => None,
        };
        if let Some(rating) = rating {
            behaviour.clear();
            use std::fmt::Write;
            let _ = write!(behaviour, "rating={rating}");
        }
        let behaviour = rating.map(|_| behaviour.as_str());
        builder.push(user, item, timestamp, rating, behaviour);
        rows += 1;
    }
    if rows == 0 {
        return Err(parse_error(
            path,
            2,
            "file",
            "no interactions after the header",
        ));
    }
    Ok(())
}

/// A `.user` or `.item` file keyed by `key` (user_id / item_id).
pub fn parse_side(bytes: &[u8], path: &Path, key: &str, entities: &Vocab) -> Result<Vec<Field>> {
    let mut reader = LineReader::non_empty(bytes, path, Encoding::Utf8)?;
    let header = reader.first_line()?;
    let columns = parse_header(&header)?;
    let key_column = position(&columns, key, ColumnKind::Token, &header)?;
    // (column index, builder) for every column kept as a feature.
    let mut fields: Vec<(usize, FieldBuilder)> = Vec::new();
    for (index, column) in columns.iter().enumerate() {
        let kind = match column.kind {
            ColumnKind::Token => FieldKind::Token,
            ColumnKind::TokenSeq => FieldKind::TokenSet,
            ColumnKind::Float => FieldKind::Number,
            ColumnKind::FloatSeq => continue,
        };
        if index == key_column || IDENTIFIER_COLUMNS.contains(&column.name.as_str()) {
            continue;
        }
        fields.push((index, FieldBuilder::new(&column.name, kind, entities.len())));
    }
    let mut seen = vec![false; entities.len() + 1];
    let inter_name = path.with_extension("inter");
    let inter_name = inter_name
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for line in reader {
        let line = line?;
        let values = split_row(&line, &columns)?;
        for (column, value) in columns.iter().zip(&values) {
            check_value(&line, column, value)?;
        }
        let id = token(&line, values[key_column], key)?;
        let row = side_row(&line, id, key, entities, &mut seen, &inter_name)?;
        for (index, field) in &mut fields {
            let value = values[*index];
            match columns[*index].kind {
                ColumnKind::Token => field.set_token(row, value),
                ColumnKind::TokenSeq => field.set_tokens(row, value.split_ascii_whitespace()),
                ColumnKind::Float if value.trim().is_empty() => field.set_number(row, f32::NAN),
                ColumnKind::Float => {
                    let number = line.number(value, &columns[*index].name)?;
                    field.set_number(row, number as f32)
                }
                ColumnKind::FloatSeq => {}
            }
        }
    }
    Ok(fields
        .into_iter()
        .map(|(_, field)| field.finish())
        .collect())
}
