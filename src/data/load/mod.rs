//! Loaders: one module per file format, each a pure parser over in-memory bytes
//! (`parse_*(bytes, path_for_errors)`, fuzzed in `fuzz/`) plus a thin wrapper that reads the
//! files. `load` detects the format of a file or folder; `load_with` lets the caller choose.
//!
//! Every malformed input is an `Error::Parse` naming the file, the 1-based line and the
//! field; no input makes a loader panic.

pub mod build;
pub mod lines;
pub mod movielens100k;
pub mod recbole;

use std::path::{Path, PathBuf};

use crate::data::Dataset;
use crate::error::{Error, Result};

/// The file formats the loaders understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// GroupLens MovieLens-100K folder (`u.data`, `u.user`, `u.item`, ...).
    MovieLens100k,
    /// RecBole atomic files (`NAME.inter` + optional `.user`, `.item`).
    RecBole,
}

/// How to load: everything optional; the default detects the format.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The format; `None` = detect it from the file or folder.
    pub format: Option<Format>,
    /// The data set's name; `None` = derived from the path.
    pub name: Option<String>,
}

/// Loads a data set from a file or folder, detecting its format.
pub fn load(path: &Path) -> Result<Dataset> {
    load_with(path, &LoadOptions::default())
}

/// Loads a data set with explicit options.
pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Dataset> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    let (format, path) = match options.format {
        Some(format) => (format, path.to_path_buf()),
        None => detect(path)?,
    };
    let mut dataset = match format {
        Format::MovieLens100k => movielens100k::load_movielens100k(&path)?,
        Format::RecBole => recbole::load_recbole(&path)?,
    };
    dataset.name = match &options.name {
        Some(name) => name.clone(),
        None => default_name(&path),
    };
    Ok(dataset)
}

/// The format of a file or folder, and the exact file or folder to give its loader.
pub fn detect(path: &Path) -> Result<(Format, PathBuf)> {
    if path.is_dir() && path.join("u.data").is_file() {
        return Ok((Format::MovieLens100k, path.to_path_buf()));
    }
    if path.is_file() && has_extension(path, "inter") {
        return Ok((Format::RecBole, path.to_path_buf()));
    }
    if path.is_dir() && files_with_extension(path, "inter").len() == 1 {
        return Ok((Format::RecBole, path.to_path_buf()));
    }
    if path.is_dir() {
        // A data set folder whose versions sit in subfolders (ml-100k/grouplens, ...):
        // take the first loadable one in this order of preference.
        for sub in PREFERRED_SUBFOLDERS {
            let candidate = path.join(sub);
            if candidate.is_dir()
                && let Ok(found) = detect(&candidate)
            {
                return Ok(found);
            }
        }
    }
    Err(Error::Invalid(format!(
        "cannot tell the format of {}: expected a MovieLens-100K folder (u.data), a RecBole \
         folder (*.inter), MovieLens-1M (users.dat / ratings.dat / implicit-resn/), a YOOCHOOSE \
         folder (*_train_full.txt), a DIGINETICA CSV, or a sequence file (.txt); \
         or choose the format with LoadOptions",
        path.display()
    )))
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|e| e == extension)
}

/// The files directly in `folder` with this extension, sorted.
fn files_with_extension(folder: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_extension(p, extension))
        .collect();
    found.sort();
    found
}

/// Subfolders tried, in order, when a data set folder holds several versions: the richest
/// in side information first.
const PREFERRED_SUBFOLDERS: [&str; 4] = ["grouplens", "recbole", "s3rec", "bert4rec"];

/// A name for the data set: the folder name, skipping version folders such as `grouplens`.
fn default_name(path: &Path) -> String {
    let mut named = path;
    loop {
        let stem = named
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let generic = PREFERRED_SUBFOLDERS.contains(&stem.as_str()) || stem == "implicit-resn";
        match named.parent() {
            Some(parent) if generic && parent.file_name().is_some() => named = parent,
            _ => return stem,
        }
    }
}
