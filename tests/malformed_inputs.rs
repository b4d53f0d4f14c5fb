//! The malformed-input corpus: every case in `tests/malformed/cases.toml` must fail to
//! load with a parse error naming the expected file, line and field (never a panic), and
//! every file or folder of the corpus must be covered by a case.

use std::path::{Path, PathBuf};

use seqrec::Error;
use seqrec::data::load::{Column, CsvMapping, Format, LoadOptions, load_with};

#[derive(serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    path: String,
    format: String,
    file: String,
    line: usize,
    field: String,
    message: String,
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed")
}

fn options(format: &str) -> LoadOptions {
    let format = match format {
        "MovieLens100k" => Format::MovieLens100k,
        "RecBole" => Format::RecBole,
        "MovieLens1m" => Format::MovieLens1m,
        "UserItemLines" => Format::UserItemLines,
        "UserSequences" => Format::UserSequences,
        "Yoochoose" => Format::Yoochoose,
        "Diginetica" => Format::Diginetica,
        "GenericCsv" => Format::GenericCsv,
        other => panic!("cases.toml names an unknown format {other:?}"),
    };
    // The CSV cases share one layout: a header `user,item,ts`.
    let csv = CsvMapping {
        has_header: true,
        user: Column::Name("user".into()),
        item: Column::Name("item".into()),
        timestamp: Some(Column::Name("ts".into())),
        ..CsvMapping::default()
    };
    LoadOptions {
        format: Some(format),
        csv: Some(csv),
        ..LoadOptions::default()
    }
}

fn load_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus().join("cases.toml")).unwrap();
    toml::from_str::<Cases>(&text).unwrap().case
}

#[test]
fn every_malformed_input_is_a_clear_parse_error() {
    let cases = load_cases();
    assert!(cases.len() >= 30, "the corpus lost cases: {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let stored = corpus().join(&case.path);
        assert!(stored.exists(), "{} is missing", stored.display());
        let path = materialize(&case.path);
        let result = std::panic::catch_unwind(|| load_with(&path, &options(&case.format)));
        let outcome = match result {
            Err(_) => Err("PANICKED".to_string()),
            Ok(Ok(_)) => Err("loaded without error".to_string()),
            Ok(Err(error)) => check(&error, case),
        };
        if let Err(problem) = outcome {
            failures.push(format!("{}: {problem}", case.path));
        }
    }
    assert!(
        failures.is_empty(),
        "malformed cases:\n{}",
        failures.join("\n")
    );
}

/// Copies a case (file or folder) into a temporary folder, dropping the `.in` suffix that the
/// corpus gives files named like a data set's own (`u.data.in` → `u.data`): the repository must
/// not hold files that look like redistributed data, even tiny hand-made ones.
fn materialize(case_path: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("seqrec-malformed-{}", std::process::id()));
    // The whole top-level entry of the case travels (a data file needs its side files).
    let top = case_path.split('/').next().unwrap();
    let stored_top = corpus().join(top);
    copy_tree(&stored_top, &root.join(without_suffix(&stored_top)));
    case_path.split('/').fold(root, |path, part| {
        path.join(part.strip_suffix(".in").unwrap_or(part))
    })
}

fn without_suffix(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    name.strip_suffix(".in").unwrap_or(&name).to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            copy_tree(&path, &to.join(without_suffix(&path)));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// The error is a `Parse` naming the case's file, line and field, and says so in words.
fn check(error: &Error, case: &Case) -> Result<(), String> {
    let shown = error.to_string();
    let Error::Parse {
        path,
        line,
        field,
        message,
    } = error
    else {
        return Err(format!("not a parse error: {shown}"));
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if file_name.as_deref() != Some(case.file.as_str()) {
        return Err(format!("wrong file (want {}): {shown}", case.file));
    }
    if *line != case.line || *field != case.field {
        return Err(format!(
            "want line {} field {}: {shown}",
            case.line, case.field
        ));
    }
    if !message.contains(&case.message) {
        return Err(format!("message lacks {:?}: {shown}", case.message));
    }
    let line_shown = format!("{}:{}", case.file, case.line);
    if !shown.contains(&line_shown) || !shown.contains(&format!("`{}`", case.field)) {
        return Err(format!(
            "the message does not show {line_shown} and the field: {shown}"
        ));
    }
    Ok(())
}

#[test]
fn every_corpus_entry_has_a_case() {
    let cases = load_cases();
    let mut uncovered = Vec::new();
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "cases.toml" {
            continue;
        }
        let covered = cases
            .iter()
            .any(|c| c.path == name || c.path.starts_with(&format!("{name}/")));
        if !covered {
            uncovered.push(name);
        }
    }
    assert!(
        uncovered.is_empty(),
        "corpus entries without a case: {uncovered:?}"
    );
}
