//! MovieLens-100K in its original GroupLens files (a folder holding `u.data` ...).
//!
//! - `u.data`: TAB-separated `user item rating timestamp` → one interaction each, with the
//!   timestamp, the rating and the behaviour "rating=R" (R = 1..5).
//! - `u.user` (optional): `id|age|gender|occupation|zip` → user fields `age` (Number),
//!   `gender` (Token), `occupation` (Token, vocabulary in the order of `u.occupation` when
//!   that file exists, and then an unlisted occupation is an error) and `zip_region` (Token:
//!   the first character of the zip code, i.e. the US postal region; the full zip code is
//!   nearly unique per user, so it would only let a model memorise users).
//! - `u.item` (optional, LATIN-1): `id|title|release date|video date|url|19 genre flags` →
//!   item fields `genres` (TokenSet, names from `u.genre`) and `year` (Number, NaN when the
//!   release date is missing). The title and URL are identifiers, not features.
//!
//! Users and items are the ones that occur in `u.data`; an id in a side file that `u.data`
//! never mentions is an error naming the file, line and field.

use std::path::Path;

use super::build::{DatasetBuilder, FieldBuilder, side_row};
use super::lines::{Encoding, LineReader, read_file};
use crate::data::{Dataset, FieldKind, Vocab};
use crate::error::Result;

/// The contents of the files of one MovieLens-100K folder (in memory, for parsing and fuzzing).
pub struct Ml100kFiles<'a> {
    pub data: &'a [u8],
    pub user: Option<&'a [u8]>,
    pub item: Option<&'a [u8]>,
    /// Required when `item` is given: the genre names of the 19 flags.
    pub genre: Option<&'a [u8]>,
    pub occupation: Option<&'a [u8]>,
}

/// Loads a MovieLens-100K folder (the one holding `u.data`).
pub fn load_movielens100k(folder: &Path) -> Result<Dataset> {
    let data = read_file(&folder.join("u.data"))?;
    let optional = |name: &str| -> Result<Option<Vec<u8>>> {
        let path = folder.join(name);
        if path.is_file() {
            read_file(&path).map(Some)
        } else {
            Ok(None)
        }
    };
    let (user, item) = (optional("u.user")?, optional("u.item")?);
    let (genre, occupation) = (optional("u.genre")?, optional("u.occupation")?);
    let files = Ml100kFiles {
        data: &data,
        user: user.as_deref(),
        item: item.as_deref(),
        genre: genre.as_deref(),
        occupation: occupation.as_deref(),
    };
    parse_movielens100k(&files, folder)
}

/// Parses the files of a MovieLens-100K folder; `folder` is used to name files in errors.
pub fn parse_movielens100k(files: &Ml100kFiles<'_>, folder: &Path) -> Result<Dataset> {
    let mut builder = DatasetBuilder::new();
    parse_ratings(files.data, &folder.join("u.data"), &mut builder)?;
    let mut dataset = builder.finish("ml-100k", folder.to_path_buf());
    if let Some(user) = files.user {
        let occupations = match files.occupation {
            Some(bytes) => Some(parse_name_list(bytes, &folder.join("u.occupation"))?),
            None => None,
        };
        dataset.user_features.fields = parse_users(
            user,
            &folder.join("u.user"),
            &dataset.users,
            occupations.as_deref(),
        )?;
    }
    if let Some(item) = files.item {
        let genre_path = folder.join("u.genre");
        let genres = match files.genre {
            Some(bytes) => parse_genres(bytes, &genre_path)?,
            None => {
                return Err(super::lines::parse_error(
                    &genre_path,
                    1,
                    "file",
                    "u.genre is missing: it names the 19 genre flags of u.item",
                ));
            }
        };
        dataset.item_features.fields =
            parse_items(item, &folder.join("u.item"), &dataset.items, &genres)?;
    }
    Ok(dataset)
}

/// `u.data`: `user TAB item TAB rating TAB timestamp`.
pub fn parse_ratings(bytes: &[u8], path: &Path, builder: &mut DatasetBuilder) -> Result<()> {
    parse_rating_lines(bytes, path, "\t", "item_id", builder)
}

/// MovieLens rating lines `user SEP item SEP rating SEP timestamp` (ml-100k's `u.data`, ml-1m's
/// `ratings.dat`): ratings 1..5, the rating level as behaviour type `rating=r`.
pub(super) fn parse_rating_lines(
    bytes: &[u8],
    path: &Path,
    separator: &str,
    item_field: &'static str,
    builder: &mut DatasetBuilder,
) -> Result<()> {
    const BEHAVIOURS: [&str; 5] = ["rating=1", "rating=2", "rating=3", "rating=4", "rating=5"];
    for line in LineReader::non_empty(bytes, path, Encoding::Utf8)? {
        let line = line?;
        let columns =
            line.fixed_columns(separator, &["user_id", item_field, "rating", "timestamp"])?;
        let user = line.id(columns[0], "user_id")?;
        let item = line.id(columns[1], item_field)?;
        let rating: u8 = line.parse(columns[2], "rating")?;
        if !(1..=5).contains(&rating) {
            return Err(line.error("rating", format!("expected 1..5, found {rating}")));
        }
        let timestamp = line.seconds(columns[3], "timestamp")?;
        let behaviour = BEHAVIOURS[rating as usize - 1];
        builder.push(
            user,
            item,
            Some(timestamp),
            Some(rating as f32),
            Some(behaviour),
        );
    }
    Ok(())
}

/// `u.user`: `id|age|gender|occupation|zip` → age, gender, occupation, zip_region.
pub fn parse_users(
    bytes: &[u8],
    path: &Path,
    users: &Vocab,
    occupations: Option<&[String]>,
) -> Result<Vec<crate::data::Field>> {
    const COLUMNS: [&str; 5] = ["user_id", "age", "gender", "occupation", "zip_code"];
    let mut age = FieldBuilder::new("age", FieldKind::Number, users.len());
    let mut gender = FieldBuilder::new("gender", FieldKind::Token, users.len());
    let mut occupation = FieldBuilder::new("occupation", FieldKind::Token, users.len());
    let mut zip_region = FieldBuilder::new("zip_region", FieldKind::Token, users.len());
    for name in occupations.unwrap_or(&[]) {
        occupation.declare_token(name);
    }
    let mut seen = vec![false; users.len() + 1];
    for line in LineReader::non_empty(bytes, path, Encoding::Utf8)? {
        let line = line?;
        let columns = line.columns("|", &COLUMNS)?;
        let id = line.id(columns[0], "user_id")?;
        let row = side_row(&line, id, "user_id", users, &mut seen, "u.data")?;
        let years: u16 = line.parse(columns[1], "age")?;
        age.set_number(row, years as f32);
        gender.set_token(row, columns[2]);
        if occupations.is_some() && !occupation.knows(columns[3]) {
            return Err(line.error(
                "occupation",
                format!("{:?} is not listed in u.occupation", columns[3]),
            ));
        }
        occupation.set_token(row, columns[3]);
        zip_region.set_token(row, columns[4].trim().get(..1).unwrap_or(""));
    }
    Ok(vec![
        age.finish(),
        gender.finish(),
        occupation.finish(),
        zip_region.finish(),
    ])
}

/// `u.item` (LATIN-1): `id|title|release date|video date|url|19 flags` → genres, year.
pub fn parse_items(
    bytes: &[u8],
    path: &Path,
    items: &Vocab,
    genre_names: &[String],
) -> Result<Vec<crate::data::Field>> {
    let mut genres = FieldBuilder::new("genres", FieldKind::TokenSet, items.len());
    for name in genre_names {
        genres.declare_token(name);
    }
    let mut year = FieldBuilder::new("year", FieldKind::Number, items.len());
    let mut column_names = vec![
        "item_id",
        "title",
        "release_date",
        "video_release_date",
        "url",
    ];
    column_names.extend(genre_names.iter().map(String::as_str));
    let mut seen = vec![false; items.len() + 1];
    for line in LineReader::non_empty(bytes, path, Encoding::Latin1)? {
        let line = line?;
        let columns = line.columns("|", &column_names)?;
        let id = line.id(columns[0], "item_id")?;
        let row = side_row(&line, id, "item_id", items, &mut seen, "u.data")?;
        let mut item_genres = Vec::new();
        for (flag, name) in columns[5..].iter().zip(genre_names) {
            match flag.trim() {
                "1" => item_genres.push(name.as_str()),
                "0" => {}
                other => {
                    return Err(line.error(name, format!("expected 0 or 1, found {other:?}")));
                }
            }
        }
        genres.set_tokens(row, item_genres);
        year.set_number(row, release_year(&line, columns[2])?);
    }
    Ok(vec![genres.finish(), year.finish()])
}

/// The year of a release date like "01-Jan-1995"; NaN when the date is empty.
fn release_year(line: &super::lines::Line<'_>, date: &str) -> Result<f32> {
    let date = date.trim();
    if date.is_empty() {
        return Ok(f32::NAN);
    }
    let year = date.rsplit('-').next().unwrap_or("");
    let year: u16 = line.parse(year, "release_date")?;
    Ok(year as f32)
}

/// `u.genre`: `name|index` lines, indices 0..n in order.
pub fn parse_genres(bytes: &[u8], path: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for line in LineReader::non_empty(bytes, path, Encoding::Latin1)? {
        let line = line?;
        let columns = line.columns("|", &["genre", "index"])?;
        let index: usize = line.parse(columns[1], "index")?;
        if index != names.len() {
            return Err(line.error(
                "index",
                format!("expected genre index {}, found {index}", names.len()),
            ));
        }
        names.push(columns[0].trim().to_string());
    }
    Ok(names)
}

/// A file with one name per line (`u.occupation`).
pub fn parse_name_list(bytes: &[u8], path: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for line in LineReader::non_empty(bytes, path, Encoding::Utf8)? {
        names.push(line?.text.trim().to_string());
    }
    Ok(names)
}
