//! The line reader every loader shares: walks the bytes of a text file line by line,
//! tracking the 1-based line number, so that every error can name the file, the line and
//! the field. Lines are borrowed slices of the file (no allocation per line), except for
//! Latin-1 files (small side files), whose lines are decoded into an owned `String` each.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How the bytes of a file are turned into text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Invalid UTF-8 is a parse error naming the line.
    Utf8,
    /// Every byte is one character (U+0000..U+00FF): decoding never fails.
    Latin1,
}

/// Reads the non-blank lines of an in-memory file.
pub struct LineReader<'a> {
    path: &'a Path,
    rest: &'a [u8],
    /// Number of the line that `next_line` returns next (1-based).
    next_number: usize,
    encoding: Encoding,
}

/// One non-blank line, without its line ending.
pub struct Line<'a> {
    pub text: Cow<'a, str>,
    /// 1-based line number in the file.
    pub number: usize,
    path: &'a Path,
}

impl<'a> LineReader<'a> {
    pub fn new(bytes: &'a [u8], path: &'a Path, encoding: Encoding) -> Self {
        LineReader {
            path,
            rest: bytes,
            next_number: 1,
            encoding,
        }
    }

    /// Like `new`, but a file without any non-blank line is an error.
    pub fn non_empty(bytes: &'a [u8], path: &'a Path, encoding: Encoding) -> Result<Self> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(parse_error(
                path,
                1,
                "file",
                "the file is empty (no data lines)",
            ));
        }
        Ok(Self::new(bytes, path, encoding))
    }

    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// The next line that is not blank (blank lines, e.g. a trailing newline, are skipped),
    /// or `None` at the end of the file.
    pub fn next_line(&mut self) -> Option<Result<Line<'a>>> {
        while !self.rest.is_empty() {
            let end = self
                .rest
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(self.rest.len());
            let mut raw = &self.rest[..end];
            self.rest = if end < self.rest.len() {
                &self.rest[end + 1..]
            } else {
                &[]
            };
            let number = self.next_number;
            self.next_number += 1;
            if let Some(stripped) = raw.strip_suffix(b"\r") {
                raw = stripped;
            }
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let text = match self.encoding {
                Encoding::Latin1 => Cow::Owned(raw.iter().map(|&b| b as char).collect()),
                Encoding::Utf8 => match std::str::from_utf8(raw) {
                    Ok(text) => Cow::Borrowed(text),
                    Err(e) => {
                        return Some(Err(parse_error(
                            self.path,
                            number,
                            "line",
                            format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                        )));
                    }
                },
            };
            return Some(Ok(Line {
                text,
                number,
                path: self.path,
            }));
        }
        None
    }

    /// The first non-blank line, or an error saying the file is empty.
    pub fn first_line(&mut self) -> Result<Line<'a>> {
        match self.next_line() {
            Some(line) => line,
            None => Err(parse_error(
                self.path,
                1,
                "file",
                "the file is empty (no data lines)",
            )),
        }
    }
}

impl<'a> Iterator for LineReader<'a> {
    type Item = Result<Line<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line()
    }
}

impl<'a> Line<'a> {
    /// An error about `field` on this line.
    pub fn error(&self, field: &str, message: impl Into<String>) -> Error {
        parse_error(self.path, self.number, field, message)
    }

    /// Splits the line at `separator` into exactly `names.len()` columns; a wrong count is
    /// an error naming the first missing column (or the extra ones).
    pub fn columns<'l>(&'l self, separator: &str, names: &[&str]) -> Result<Vec<&'l str>> {
        let columns: Vec<&str> = self.text.split(separator).collect();
        self.check_column_count(&columns, separator, names)?;
        Ok(columns)
    }

    /// `columns` for a fixed number of columns, without allocating (for the hot loops).
    pub fn fixed_columns<'l, const N: usize>(
        &'l self,
        separator: &str,
        names: &[&str; N],
    ) -> Result<[&'l str; N]> {
        let mut columns = [""; N];
        let mut count = 0;
        for column in self.text.split(separator) {
            if count < N {
                columns[count] = column;
            }
            count += 1;
        }
        if count != N {
            // Rare: build the full list for the error message.
            let all: Vec<&str> = self.text.split(separator).collect();
            self.check_column_count(&all, separator, names)?;
        }
        Ok(columns)
    }

    /// Like `columns`, but splits at runs of ASCII whitespace (spaces or tabs).
    pub fn whitespace_columns<'l>(&'l self, names: &[&str]) -> Result<Vec<&'l str>> {
        let columns: Vec<&str> = self.text.split_ascii_whitespace().collect();
        self.check_column_count(&columns, "whitespace", names)?;
        Ok(columns)
    }

    fn check_column_count(&self, columns: &[&str], separator: &str, names: &[&str]) -> Result<()> {
        if columns.len() < names.len() {
            return Err(self.error(
                names[columns.len()],
                format!(
                    "missing column: expected {} columns ({}) separated by {}, found {}",
                    names.len(),
                    names.join(", "),
                    separator_name(separator),
                    columns.len()
                ),
            ));
        }
        if columns.len() > names.len() {
            return Err(self.error(
                "columns",
                format!(
                    "too many columns: expected {} ({}) separated by {}, found {}",
                    names.len(),
                    names.join(", "),
                    separator_name(separator),
                    columns.len()
                ),
            ));
        }
        Ok(())
    }

    /// Parses `text` (a column of this line) as a `T`, or errors naming `field`.
    pub fn parse<T: FromStr>(&self, text: &str, field: &str) -> Result<T> {
        text.trim().parse().map_err(|_| {
            self.error(
                field,
                format!("expected {}, found {:?}", type_name::<T>(), text),
            )
        })
    }

    /// Parses an external id: an unsigned integer, kept as text for the vocabulary.
    pub fn id<'t>(&self, text: &'t str, field: &str) -> Result<&'t str> {
        let trimmed = text.trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) || trimmed.len() > 19
        {
            return Err(self.error(
                field,
                format!("expected a non-negative integer id, found {text:?}"),
            ));
        }
        Ok(trimmed)
    }

    /// Parses a finite floating-point number.
    pub fn number(&self, text: &str, field: &str) -> Result<f64> {
        let value: f64 = self.parse(text, field)?;
        if !value.is_finite() {
            return Err(self.error(field, format!("expected a finite number, found {text:?}")));
        }
        Ok(value)
    }

    /// Parses a timestamp in seconds, integer or fractional (truncated to whole seconds).
    pub fn seconds(&self, text: &str, field: &str) -> Result<i64> {
        let trimmed = text.trim();
        if let Ok(whole) = trimmed.parse::<i64>() {
            return Ok(whole);
        }
        let value = self.number(text, field)?;
        if value.abs() > 1e17 {
            return Err(self.error(field, format!("timestamp out of range: {text:?}")));
        }
        Ok(value.floor() as i64)
    }
}

/// A `Parse` error value.
pub fn parse_error(path: &Path, line: usize, field: &str, message: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// Reads a whole file, mapping the I/O error to one naming the file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn separator_name(separator: &str) -> String {
    match separator {
        "\t" => "TAB".to_string(),
        "whitespace" => "whitespace".to_string(),
        other => format!("{other:?}"),
    }
}

fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    match full {
        "f32" | "f64" => "a number",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i32" | "i64" => "an integer",
        _ => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lines_and_skips_blank_lines() {
        let path = Path::new("x.txt");
        let mut reader = LineReader::new(b"a b\r\n\n  \nc\td", path, Encoding::Utf8);
        let first = reader.next_line().unwrap().unwrap();
        assert_eq!((first.text.as_ref(), first.number), ("a b", 1));
        let second = reader.next_line().unwrap().unwrap();
        assert_eq!((second.text.as_ref(), second.number), ("c\td", 4));
        assert!(reader.next_line().is_none());
    }

    #[test]
    fn invalid_utf8_is_an_error_but_latin1_never_fails() {
        let path = Path::new("x.txt");
        let bytes = b"ok\nbad \xe9 byte\n";
        let mut reader = LineReader::new(bytes, path, Encoding::Utf8);
        reader.next_line().unwrap().unwrap();
        let error = reader.next_line().unwrap().err().unwrap().to_string();
        assert!(error.contains("x.txt:2"), "{error}");
        let mut latin = LineReader::new(bytes, path, Encoding::Latin1);
        latin.next_line().unwrap().unwrap();
        assert_eq!(latin.next_line().unwrap().unwrap().text, "bad é byte");
    }

    #[test]
    fn column_count_errors_name_the_missing_field() {
        let path = Path::new("f");
        let mut reader = LineReader::new(b"1\t2\n", path, Encoding::Utf8);
        let line = reader.next_line().unwrap().unwrap();
        let error = line
            .columns("\t", &["user", "item", "rating"])
            .err()
            .unwrap();
        assert!(error.to_string().contains("field `rating`"), "{error}");
        assert!(line.columns("\t", &["user"]).is_err());
        assert_eq!(line.columns("\t", &["user", "item"]).unwrap(), ["1", "2"]);
    }
}
