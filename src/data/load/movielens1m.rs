//! MovieLens-1M: the GroupLens `::`-separated files, and the ReSN implicit split.
//!
//! - Interactions: `grouplens/ratings.dat` (`UserID::MovieID::Rating::Timestamp`) when it
//!   exists; otherwise `implicit-resn/train.txt` then `test.txt`, lines `u i1 i2 ...` with
//!   0-based ids (u = UserID−1, i = MovieID−1; stored under the GroupLens ids so that the
//!   side files match), no time, and `published_test_start` at the first test pair.
//! - `users.dat` `UserID::Gender::Age::Occupation::Zip` → Token fields `gender`, `age`
//!   (GroupLens's age-group code), `occupation` (its code). The zip code is not kept.
//! - `movies.dat` (LATIN-1) `MovieID::Title (Year)::Genre|Genre` → `genres` (TokenSet) and
//!   `year` (Number from the title, NaN when absent).
//!
//! The side files are catalogues: users or movies without interactions (177 of the 3,883
//! movies here) are skipped, not errors. A catalogue id listed twice is an error.

use std::path::{Path, PathBuf};

use super::build::{DatasetBuilder, FieldBuilder};
use super::lines::{Encoding, Line, LineReader, read_file};
use crate::data::{Dataset, Field, FieldKind, Vocab};
use crate::error::{Error, Result};

/// The files of one MovieLens-1M folder, in memory (each may be absent).
#[derive(Default)]
pub struct Ml1mFiles<'a> {
    pub ratings: Option<&'a [u8]>,
    pub train: Option<&'a [u8]>,
    pub test: Option<&'a [u8]>,
    pub users: Option<&'a [u8]>,
    pub movies: Option<&'a [u8]>,
}

/// Where the files of a MovieLens-1M folder are: (`grouplens` folder, `implicit-resn` folder).
pub fn folders(path: &Path) -> (PathBuf, PathBuf) {
    if path.join("users.dat").is_file() || path.join("ratings.dat").is_file() {
        let parent = path.parent().unwrap_or(path);
        (path.to_path_buf(), parent.join("implicit-resn"))
    } else if path.join("train.txt").is_file() {
        let parent = path.parent().unwrap_or(path);
        (parent.join("grouplens"), path.to_path_buf())
    } else {
        (path.join("grouplens"), path.join("implicit-resn"))
    }
}

/// Loads a MovieLens-1M folder (the data set folder, or its `grouplens` / `implicit-resn`).
pub fn load_movielens1m(path: &Path) -> Result<Dataset> {
    let (grouplens, implicit) = folders(path);
    let optional = |path: PathBuf| -> Result<Option<Vec<u8>>> {
        if path.is_file() {
            read_file(&path).map(Some)
        } else {
            Ok(None)
        }
    };
    let ratings = optional(grouplens.join("ratings.dat"))?;
    let (train, test) = if ratings.is_none() {
        (
            optional(implicit.join("train.txt"))?,
            optional(implicit.join("test.txt"))?,
        )
    } else {
        (None, None)
    };
    let users = optional(grouplens.join("users.dat"))?;
    let movies = optional(grouplens.join("movies.dat"))?;
    let files = Ml1mFiles {
        ratings: ratings.as_deref(),
        train: train.as_deref(),
        test: test.as_deref(),
        users: users.as_deref(),
        movies: movies.as_deref(),
    };
    parse_movielens1m(&files, &grouplens, &implicit)
}

/// Parses MovieLens-1M files; the folders name the files in errors.
pub fn parse_movielens1m(
    files: &Ml1mFiles<'_>,
    grouplens: &Path,
    implicit: &Path,
) -> Result<Dataset> {
    let mut builder = DatasetBuilder::new();
    let mut published_test_start = None;
    if let Some(ratings) = files.ratings {
        parse_ratings_dat(ratings, &grouplens.join("ratings.dat"), &mut builder)?;
    } else if let Some(train) = files.train {
        parse_implicit(train, &implicit.join("train.txt"), &mut builder)?;
        if let Some(test) = files.test {
            published_test_start = Some(builder.interactions.len());
            parse_implicit(test, &implicit.join("test.txt"), &mut builder)?;
        }
    } else {
        return Err(Error::Invalid(format!(
            "MovieLens-1M has no interactions: neither {} nor {} exists",
            grouplens.join("ratings.dat").display(),
            implicit.join("train.txt").display()
        )));
    }
    let mut dataset = builder.finish("ml-1m", grouplens.parent().unwrap_or(grouplens).into());
    dataset.published_test_start = published_test_start;
    if let Some(users) = files.users {
        dataset.user_features.fields =
            parse_users_dat(users, &grouplens.join("users.dat"), &dataset.users)?;
    }
    if let Some(movies) = files.movies {
        dataset.item_features.fields =
            parse_movies_dat(movies, &grouplens.join("movies.dat"), &dataset.items)?;
    }
    Ok(dataset)
}

/// `ratings.dat`: `UserID::MovieID::Rating::Timestamp`.
pub fn parse_ratings_dat(bytes: &[u8], path: &Path, builder: &mut DatasetBuilder) -> Result<()> {
    super::movielens100k::parse_rating_lines(bytes, path, "::", "movie_id", builder)
}

/// `implicit-resn/{train,test}.txt`: `u i1 i2 ...`, 0-based ids, stored 1-based.
pub fn parse_implicit(bytes: &[u8], path: &Path, builder: &mut DatasetBuilder) -> Result<()> {
    let mut user_name = String::new();
    let mut item_name = String::new();
    for line in LineReader::non_empty(bytes, path, Encoding::Utf8)? {
        let line = line?;
        let mut columns = line.text.split_ascii_whitespace();
        let user: u64 = line.parse(line.id(columns.next().unwrap_or(""), "user_id")?, "user_id")?;
        user_name.clear();
        user_name.push_str(&(user + 1).to_string());
        for item in columns {
            let item: u64 = line.parse(line.id(item, "item_id")?, "item_id")?;
            item_name.clear();
            item_name.push_str(&(item + 1).to_string());
            builder.push(&user_name, &item_name, None, None, None);
        }
    }
    Ok(())
}

/// A catalogue row's entity, `None` when it has no interactions; repeats are errors.
fn catalogue_row(
    line: &Line<'_>,
    text: &str,
    field: &str,
    vocab: &Vocab,
    seen: &mut [bool],
) -> Result<Option<u32>> {
    let id = line.id(text, field)?;
    let Some(row) = vocab.get(id) else {
        return Ok(None);
    };
    if std::mem::replace(&mut seen[row as usize], true) {
        return Err(line.error(field, format!("id {id} is listed twice")));
    }
    Ok(Some(row))
}

/// `users.dat`: `UserID::Gender::Age::Occupation::Zip`.
pub fn parse_users_dat(bytes: &[u8], path: &Path, users: &Vocab) -> Result<Vec<Field>> {
    let names = ["user_id", "gender", "age", "occupation", "zip_code"];
    let mut gender = FieldBuilder::new("gender", FieldKind::Token, users.len());
    let mut age = FieldBuilder::new("age", FieldKind::Token, users.len());
    let mut occupation = FieldBuilder::new("occupation", FieldKind::Token, users.len());
    let mut seen = vec![false; users.len() + 1];
    for line in LineReader::non_empty(bytes, path, Encoding::Utf8)? {
        let line = line?;
        let columns = line.columns("::", &names)?;
        let age_code = line.id(columns[2], "age")?;
        let occupation_code = line.id(columns[3], "occupation")?;
        let Some(row) = catalogue_row(&line, columns[0], "user_id", users, &mut seen)? else {
            continue;
        };
        gender.set_token(row, columns[1]);
        age.set_token(row, age_code);
        occupation.set_token(row, occupation_code);
    }
    Ok(vec![gender.finish(), age.finish(), occupation.finish()])
}

/// `movies.dat` (LATIN-1): `MovieID::Title (Year)::Genre|Genre`.
pub fn parse_movies_dat(bytes: &[u8], path: &Path, items: &Vocab) -> Result<Vec<Field>> {
    let mut genres = FieldBuilder::new("genres", FieldKind::TokenSet, items.len());
    let mut year = FieldBuilder::new("year", FieldKind::Number, items.len());
    let mut seen = vec![false; items.len() + 1];
    for line in LineReader::non_empty(bytes, path, Encoding::Latin1)? {
        let line = line?;
        let columns = line.columns("::", &["movie_id", "title", "genres"])?;
        let Some(row) = catalogue_row(&line, columns[0], "movie_id", items, &mut seen)? else {
            continue;
        };
        genres.set_tokens(row, columns[2].split('|'));
        year.set_number(row, title_year(columns[1]));
    }
    Ok(vec![genres.finish(), year.finish()])
}

/// The year in a title ending with "(1995)", or NaN.
fn title_year(title: &str) -> f32 {
    let title = title.trim();
    let Some(inside) = title.strip_suffix(')').and_then(|t| t.rsplit_once('(')) else {
        return f32::NAN;
    };
    match inside.1.parse::<u16>() {
        Ok(year) if inside.1.len() == 4 => year as f32,
        _ => f32::NAN,
    }
}
