//! Loaders: one module per file format, each a pure parser over in-memory bytes
//! (`parse_*(bytes, path_for_errors)`, fuzzed in `fuzz/`) plus a thin wrapper that reads the
//! files. `load` detects the format of a file or folder; `load_with` lets the caller choose.
//!
//! Every malformed input is an `Error::Parse` naming the file, the 1-based line and the
//! field; no input makes a loader panic.

pub mod build;
pub mod generic_csv;
pub mod lines;
pub mod movielens100k;
pub mod movielens1m;
pub mod recbole;
pub mod sessions;
pub mod user_item_lines;
pub mod user_sequences;

pub use generic_csv::{Column, CsvMapping};

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
    /// MovieLens-1M (`ratings.dat` or `implicit-resn/`, with `users.dat`, `movies.dat`).
    MovieLens1m,
    /// "user item" per line, chronological per user.
    UserItemLines,
    /// One user per line `u i1 i2 ...`, with an optional `_item2attributes.json`.
    UserSequences,
    /// YOOCHOOSE clicks (`SessionId TAB ItemId TAB Time`), a folder or one file.
    Yoochoose,
    /// DIGINETICA views (`session_id;user_id;item_id;timeframe;eventdate`).
    Diginetica,
    /// Any delimited file, read with `LoadOptions::csv`.
    GenericCsv,
}

/// How to load: everything optional; the default detects the format.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The format; `None` = detect it from the file or folder.
    pub format: Option<Format>,
    /// The data set's name; `None` = derived from the path.
    pub name: Option<String>,
    /// The column mapping of a generic CSV/TSV file; giving it selects `Format::GenericCsv`
    /// when `format` is `None`.
    pub csv: Option<CsvMapping>,
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
    let given = path;
    let (format, path) = match (options.format, &options.csv) {
        (Some(format), _) => (format, path.to_path_buf()),
        (None, Some(_)) => (Format::GenericCsv, path.to_path_buf()),
        (None, None) => detect(path)?,
    };
    let mut dataset = match format {
        Format::MovieLens100k => movielens100k::load_movielens100k(&path)?,
        Format::RecBole => recbole::load_recbole(&path)?,
        Format::MovieLens1m => movielens1m::load_movielens1m(&path)?,
        Format::UserItemLines => user_item_lines::load_user_item_lines(&path)?,
        Format::UserSequences => user_sequences::load_user_sequences(&path)?,
        Format::Yoochoose => sessions::load_yoochoose(&path)?,
        Format::Diginetica => sessions::load_diginetica(&path)?,
        Format::GenericCsv => match &options.csv {
            Some(mapping) => generic_csv::load_csv(&path, mapping)?,
            None => {
                return Err(Error::Invalid(
                    "Format::GenericCsv needs a column mapping in LoadOptions::csv".to_string(),
                ));
            }
        },
    };
    dataset.name = match &options.name {
        Some(name) => name.clone(),
        None => default_name(given),
    };
    Ok(dataset)
}

/// The format of a file or folder, and the exact file or folder to give its loader.
pub fn detect(path: &Path) -> Result<(Format, PathBuf)> {
    let found = if path.is_dir() {
        detect_folder(path)?
    } else {
        detect_file(path)?
    };
    found.ok_or_else(|| {
        Error::Invalid(format!(
            "cannot tell the format of {}: expected a MovieLens-100K folder (u.data), a RecBole \
             folder or file (*.inter), MovieLens-1M (users.dat / ratings.dat / implicit-resn/), a \
             YOOCHOOSE folder (*_train_full.txt) or file, a DIGINETICA CSV, or a sequence file \
             (.txt); or choose the format (and a CSV column mapping) with LoadOptions",
            path.display()
        ))
    })
}

fn detect_folder(path: &Path) -> Result<Option<(Format, PathBuf)>> {
    let here = |format: Format| Ok(Some((format, path.to_path_buf())));
    if path.join("u.data").is_file() {
        return here(Format::MovieLens100k);
    }
    if files_with_extension(path, "inter").len() == 1 {
        return here(Format::RecBole);
    }
    let ml1m_files = ["users.dat", "ratings.dat", "movies.dat"];
    if ml1m_files.iter().any(|f| path.join(f).is_file())
        || path.join("implicit-resn/train.txt").is_file()
        || path.join("grouplens/users.dat").is_file()
    {
        return here(Format::MovieLens1m);
    }
    if path.join("train.txt").is_file() && path.file_name().is_some_and(|n| n == "implicit-resn") {
        return here(Format::MovieLens1m);
    }
    if sessions::yoochoose_train_file(path).is_ok() {
        return here(Format::Yoochoose);
    }
    let attribute_files: Vec<PathBuf> = files_with_extension(path, "json")
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("_item2attributes.json"))
        .collect();
    if let [json] = attribute_files.as_slice() {
        let name = json.file_name().unwrap_or_default().to_string_lossy();
        let sequences = json.with_file_name(name.replace("_item2attributes.json", ".txt"));
        if sequences.is_file() {
            return Ok(Some((Format::UserSequences, sequences)));
        }
    }
    // A folder with one data file (besides README / SOURCE notes): that file.
    let data_files: Vec<PathBuf> = ["txt", "csv", "tsv"]
        .iter()
        .flat_map(|ext| files_with_extension(path, ext))
        .collect();
    if let [file] = data_files.as_slice() {
        return detect_file(file);
    }
    // A data set folder whose versions sit in subfolders (ml-100k/grouplens, ...):
    // take the first loadable one in this order of preference.
    for sub in PREFERRED_SUBFOLDERS {
        let candidate = path.join(sub);
        if candidate.is_dir()
            && let Some(found) = detect_folder(&candidate)?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn detect_file(path: &Path) -> Result<Option<(Format, PathBuf)>> {
    let file = |format: Format| Ok(Some((format, path.to_path_buf())));
    if has_extension(path, "inter") {
        return file(Format::RecBole);
    }
    // Sniff the first lines (64 KiB are plenty).
    let mut head = vec![0; 64 * 1024];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| Error::io(path, e))?;
    head.truncate(read);
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines
        .next()
        .unwrap_or("")
        .trim_start_matches('\u{feff}')
        .trim();
    if first == sessions::YOOCHOOSE_HEADER {
        return file(Format::Yoochoose);
    }
    if first == sessions::DIGINETICA_HEADER {
        return file(Format::Diginetica);
    }
    if has_extension(path, "txt") {
        if user_sequences::attributes_path(path).is_file() {
            return file(Format::UserSequences);
        }
        // All-integer whitespace columns: two per line = "user item" lines, more = sequences.
        let sample: Vec<&str> = std::iter::once(first).chain(lines.take(200)).collect();
        let numeric = sample.iter().all(|l| {
            l.split_ascii_whitespace()
                .all(|t| t.bytes().all(|b| b.is_ascii_digit()))
        });
        if numeric && !first.is_empty() {
            let widest = sample
                .iter()
                .map(|l| l.split_ascii_whitespace().count())
                .max()
                .unwrap_or(0);
            return file(if widest > 2 {
                Format::UserSequences
            } else {
                Format::UserItemLines
            });
        }
    }
    Ok(None)
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

/// The file name without its extension, for data set names.
pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
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
