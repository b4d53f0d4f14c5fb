//! Session data sets: "users" are anonymous sessions (`Dataset::sessions = true`).
//!
//! - YOOCHOOSE (session-rec's sample): TAB-separated (⇥) with the header
//!   `SessionId ⇥ ItemId ⇥ Time`, Time in fractional unix seconds (stored truncated to whole
//!   seconds; the file order, already time-sorted inside each session, is kept). A folder
//!   holds `X_train_full.txt` and `X_test.txt`: train is loaded first, then test, and
//!   `published_test_start` marks the first test click.
//! - DIGINETICA: `;`-separated with the header `session_id;user_id;item_id;timeframe;eventdate`
//!   (user_id is mostly "NA" and not used). Rows are not time-sorted inside a session, so
//!   each session's views are ordered by (eventdate, timeframe), sessions in order of first
//!   appearance. Timestamp = days since 1970-01-01 of eventdate × 86400 + timeframe / 1000
//!   (timeframe is a millisecond offset), in seconds; the stored order is exact even where
//!   two views fall in the same second.

use std::path::{Path, PathBuf};

use super::build::DatasetBuilder;
use super::lines::{Encoding, Line, LineReader, read_file};
use crate::data::Dataset;
use crate::error::{Error, Result};

pub const YOOCHOOSE_HEADER: &str = "SessionId\tItemId\tTime";
pub const DIGINETICA_HEADER: &str = "session_id;user_id;item_id;timeframe;eventdate";

/// Loads a YOOCHOOSE folder (`*_train_full.txt` + `*_test.txt`) or one YOOCHOOSE file.
pub fn load_yoochoose(path: &Path) -> Result<Dataset> {
    let (train_path, test_path) = if path.is_dir() {
        let train = yoochoose_train_file(path)?;
        let name = train.file_name().unwrap_or_default().to_string_lossy();
        let test = train.with_file_name(name.replace("_train_full.txt", "_test.txt"));
        (train, test.is_file().then_some(test))
    } else {
        (path.to_path_buf(), None)
    };
    let mut builder = DatasetBuilder::new();
    parse_yoochoose(&read_file(&train_path)?, &train_path, &mut builder)?;
    let mut published_test_start = None;
    if let Some(test_path) = &test_path {
        published_test_start = Some(builder.interactions.len());
        parse_yoochoose(&read_file(test_path)?, test_path, &mut builder)?;
    }
    let mut dataset = builder.finish("yoochoose", path.to_path_buf());
    dataset.sessions = true;
    dataset.published_test_start = published_test_start;
    Ok(dataset)
}

/// The one `*_train_full.txt` in a folder.
pub fn yoochoose_train_file(folder: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| Error::io(folder, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_train_full.txt"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(Error::Invalid(format!(
            "expected one *_train_full.txt in {}, found {n}",
            folder.display()
        ))),
    }
}

/// Parses one YOOCHOOSE file (header + `session TAB item TAB time`) into `builder`.
pub fn parse_yoochoose(bytes: &[u8], path: &Path, builder: &mut DatasetBuilder) -> Result<()> {
    let mut reader = LineReader::non_empty(bytes, path, Encoding::Utf8)?;
    let header = reader.first_line()?;
    expect_header(&header, YOOCHOOSE_HEADER)?;
    for line in reader {
        let line = line?;
        let columns = line.fixed_columns("\t", &["SessionId", "ItemId", "Time"])?;
        let session = line.id(columns[0], "SessionId")?;
        let item = line.id(columns[1], "ItemId")?;
        let time = line.seconds(columns[2], "Time")?;
        builder.push(session, item, Some(time), None, None);
    }
    Ok(())
}

fn expect_header(header: &Line<'_>, expected: &str) -> Result<()> {
    if header.text.trim_start_matches('\u{feff}').trim() != expected {
        return Err(header.error(
            "header",
            format!("expected the header {expected:?}, found {:?}", header.text),
        ));
    }
    Ok(())
}

/// Loads a DIGINETICA views file.
pub fn load_diginetica(path: &Path) -> Result<Dataset> {
    parse_diginetica(&read_file(path)?, path)
}

/// Parses a DIGINETICA views file from memory; `path` names it in errors.
pub fn parse_diginetica(bytes: &[u8], path: &Path) -> Result<Dataset> {
    let mut reader = LineReader::non_empty(bytes, path, Encoding::Utf8)?;
    let header = reader.first_line()?;
    expect_header(&header, DIGINETICA_HEADER)?;
    let names = ["session_id", "user_id", "item_id", "timeframe", "eventdate"];
    let mut builder = DatasetBuilder::new();
    // (day, timeframe) of each interaction, to order views inside a session.
    let mut order_keys: Vec<(i64, i64)> = Vec::new();
    for line in reader {
        let line = line?;
        let columns = line.fixed_columns(";", &names)?;
        let session = line.id(columns[0], "session_id")?;
        let item = line.id(columns[2], "item_id")?;
        let timeframe: i64 = line.parse(columns[3], "timeframe")?;
        if timeframe < 0 {
            return Err(line.error("timeframe", "expected a non-negative offset"));
        }
        let day = days_since_epoch(columns[4]).ok_or_else(|| {
            line.error(
                "eventdate",
                format!("expected YYYY-MM-DD, found {:?}", columns[4]),
            )
        })?;
        let seconds = day * 86_400 + timeframe / 1000;
        builder.push(session, item, Some(seconds), None, None);
        order_keys.push((day, timeframe));
    }
    if builder.interactions.is_empty() {
        return Err(super::lines::parse_error(
            path,
            2,
            "file",
            "no views after the header",
        ));
    }
    // Sessions keep their first-appearance order (internal ids are assigned in that order).
    let mut order: Vec<usize> = (0..order_keys.len()).collect();
    let interactions = &builder.interactions;
    order.sort_by_key(|&i| (interactions[i].user, order_keys[i]));
    builder.interactions = order.iter().map(|&i| interactions[i]).collect();
    let mut dataset = builder.finish("diginetica", path.to_path_buf());
    dataset.sessions = true;
    Ok(dataset)
}

/// Days from 1970-01-01 to a proleptic Gregorian date "YYYY-MM-DD"; `None` when invalid.
pub fn days_since_epoch(date: &str) -> Option<i64> {
    let mut parts = date.trim().split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) =
        (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] {
        return None;
    }
    // Count days in a calendar whose years start on March 1st, so the leap day comes last.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use super::days_since_epoch;

    #[test]
    fn calendar_dates_count_days_from_1970() {
        assert_eq!(days_since_epoch("1970-01-01"), Some(0));
        assert_eq!(days_since_epoch("1970-03-01"), Some(59));
        assert_eq!(days_since_epoch("2000-03-01"), Some(11_017));
        // 2016-05-09 = 1462752000 unix seconds.
        assert_eq!(days_since_epoch("2016-05-09"), Some(1_462_752_000 / 86_400));
        assert_eq!(days_since_epoch("1969-12-31"), Some(-1));
        assert_eq!(days_since_epoch("2015-02-29"), None);
        assert_eq!(days_since_epoch("2016-13-01"), None);
        assert_eq!(days_since_epoch("16-05-09"), None);
    }
}
