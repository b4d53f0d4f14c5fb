//! Any delimited text file (CSV, TSV, ...) with a column mapping: which columns hold the
//! user, the item and, optionally, the timestamp (seconds, integer or fractional), the
//! rating and the behaviour type. Quoting is not supported: a field may not contain the
//! delimiter (the data sets here never need it).

use std::path::Path;

use super::build::DatasetBuilder;
use super::lines::{Encoding, Line, LineReader, read_file};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// A column, by its header name or by its 0-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Name(String),
    Index(usize),
}

/// How to read a delimited file.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvMapping {
    pub delimiter: char,
    /// Whether the first line names the columns (required for `Column::Name`).
    pub has_header: bool,
    pub user: Column,
    pub item: Column,
    pub timestamp: Option<Column>,
    pub rating: Option<Column>,
    pub behaviour: Option<Column>,
    /// Whether the user column holds anonymous sessions.
    pub sessions: bool,
}

impl Default for CsvMapping {
    /// A headerless `user,item` file.
    fn default() -> Self {
        CsvMapping {
            delimiter: ',',
            has_header: false,
            user: Column::Index(0),
            item: Column::Index(1),
            timestamp: None,
            rating: None,
            behaviour: None,
            sessions: false,
        }
    }
}

/// Loads a delimited file with `mapping`.
pub fn load_csv(path: &Path, mapping: &CsvMapping) -> Result<Dataset> {
    parse_csv(&read_file(path)?, path, mapping)
}

/// Parses a delimited file from memory; `path` names it in errors.
pub fn parse_csv(bytes: &[u8], path: &Path, mapping: &CsvMapping) -> Result<Dataset> {
    let delimiter = mapping.delimiter.to_string();
    let mut reader = LineReader::non_empty(bytes, path, Encoding::Utf8)?;
    // Column names: from the header, or "column0", "column1", ... from the first line.
    let mut first_data_line = None;
    let names: Vec<String> = if mapping.has_header {
        let header = reader.first_line()?;
        header
            .text
            .split(&delimiter)
            .map(|n| n.trim().to_string())
            .collect()
    } else {
        let first = reader.first_line()?;
        let count = first.text.split(&delimiter).count();
        first_data_line = Some(first);
        (0..count).map(|i| format!("column{i}")).collect()
    };
    let resolve = |column: &Column| -> Result<usize> {
        let index = match column {
            Column::Index(i) => Some(*i),
            Column::Name(name) if mapping.has_header => names.iter().position(|n| n == name),
            Column::Name(name) => {
                return Err(Error::Invalid(format!(
                    "column {name:?} is given by name but {} has no header",
                    path.display()
                )));
            }
        };
        index.filter(|&i| i < names.len()).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no column {column:?} (the columns are {names:?})",
                path.display()
            ))
        })
    };
    let optional = |column: &Option<Column>| column.as_ref().map(&resolve).transpose();
    let (user, item) = (resolve(&mapping.user)?, resolve(&mapping.item)?);
    let (time, rating, behaviour) = (
        optional(&mapping.timestamp)?,
        optional(&mapping.rating)?,
        optional(&mapping.behaviour)?,
    );
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut builder = DatasetBuilder::new();
    let mut add_line = |line: &Line<'_>| -> Result<()> {
        let values = line.columns(&delimiter, &name_refs)?;
        let token = |index: usize| -> Result<&str> {
            let value = values[index].trim();
            if value.is_empty() {
                return Err(line.error(&names[index], "empty value"));
            }
            Ok(value)
        };
        let timestamp = match time {
            Some(i) => Some(line.seconds(values[i], &names[i])?),
            None => None,
        };
        let rating_value = match rating {
            Some(i) => Some(line.number(values[i], &names[i])? as f32),
            None => None,
        };
        let behaviour_name = behaviour.map(&token).transpose()?;
        builder.push(
            token(user)?,
            token(item)?,
            timestamp,
            rating_value,
            behaviour_name,
        );
        Ok(())
    };
    if let Some(first) = &first_data_line {
        add_line(first)?;
    }
    for line in reader {
        add_line(&line?)?;
    }
    if builder.interactions.is_empty() {
        return Err(super::lines::parse_error(
            path,
            2,
            "file",
            "no data lines after the header",
        ));
    }
    let mut dataset = builder.finish(&super::file_stem(path), path.to_path_buf());
    dataset.sessions = mapping.sessions;
    Ok(dataset)
}
