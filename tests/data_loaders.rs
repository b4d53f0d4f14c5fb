//! Loaders on small generated files (always: hand-computed expectations), and on the real
//! data sets when `SEQREC_DATA` names the shared data folder (counts from its README).

use std::path::{Path, PathBuf};

use seqrec::data::load::{Format, LoadOptions, load, load_with};
use seqrec::data::{Dataset, Field, FieldValues};

/// A fresh temporary folder for one test.
fn temp_folder(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqrec-loaders-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, contents: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// The shared data folder, or `None` with a printed reason.
fn real_data(dataset: &str) -> Option<PathBuf> {
    match std::env::var_os("SEQREC_DATA") {
        None => {
            println!(
                "SEQREC_DATA is not set: the real-data checks of {dataset} did not run \
                 (the generated-data tests did)"
            );
            None
        }
        Some(root) => {
            let path = PathBuf::from(root).join(dataset);
            assert!(
                path.exists(),
                "SEQREC_DATA is set but {} does not exist",
                path.display()
            );
            Some(path)
        }
    }
}

fn field<'a>(fields: &'a [Field], name: &str) -> &'a Field {
    fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// The token names of entity `row` in a Token or TokenSet field.
fn tokens(field: &Field, row: u32) -> Vec<String> {
    let ids = match &field.values {
        FieldValues::Token(v) => vec![v[row as usize]],
        FieldValues::TokenSet(v) => v[row as usize].clone(),
        FieldValues::Number(_) => panic!("{} is a number field", field.name),
    };
    ids.iter()
        .map(|&id| field.vocab.name(id).to_string())
        .collect()
}

fn number(field: &Field, row: u32) -> f32 {
    match &field.values {
        FieldValues::Number(v) => v[row as usize],
        _ => panic!("{} is not a number field", field.name),
    }
}

fn counts(dataset: &Dataset) -> (usize, usize, usize) {
    (
        dataset.users.len(),
        dataset.items.len(),
        dataset.interactions.len(),
    )
}

// ---------------------------------------------------------------- MovieLens-100K original

fn write_ml100k(dir: &Path) {
    write(
        dir,
        "u.data",
        b"1\t10\t5\t100\n2\t10\t3\t90\n1\t20\t1\t80\n",
    );
    write(
        dir,
        "u.user",
        b"1|24|M|technician|85711\n2|53|F|other|T8H1N\n",
    );
    write(dir, "u.occupation", b"other\ntechnician\n");
    write(dir, "u.genre", b"unknown|0\nAction|1\nComedy|2\n\n");
    // Latin-1 title ("é" is byte 0xE9) and a missing release date.
    write(
        dir,
        "u.item",
        b"10|Caf\xe9 (1995)|01-Jan-1995||http://x|0|1|1\n20|unknown||||1|0|0\n",
    );
}

#[test]
fn movielens100k_generated() {
    let dir = temp_folder("ml100k");
    write_ml100k(&dir);
    let data = load(&dir).unwrap();
    assert_eq!(counts(&data), (2, 2, 3));
    let first = data.interactions[0];
    assert_eq!(
        (data.users.name(first.user), data.items.name(first.item)),
        ("1", "10")
    );
    assert_eq!((first.timestamp, first.rating), (Some(100), Some(5.0)));
    assert_eq!(data.behaviours.name(first.behaviour), "rating=5");
    assert_eq!(
        data.behaviours.name(data.interactions[2].behaviour),
        "rating=1"
    );

    let user2 = data.users.get("2").unwrap();
    let users = &data.user_features.fields;
    assert_eq!(number(field(users, "age"), user2), 53.0);
    assert_eq!(tokens(field(users, "gender"), user2), ["F"]);
    assert_eq!(tokens(field(users, "occupation"), user2), ["other"]);
    assert_eq!(tokens(field(users, "zip_region"), user2), ["T"]);
    // Occupation ids follow u.occupation's order.
    assert_eq!(field(users, "occupation").vocab.get("technician"), Some(2));

    let (item10, item20) = (data.items.get("10").unwrap(), data.items.get("20").unwrap());
    let items = &data.item_features.fields;
    assert_eq!(tokens(field(items, "genres"), item10), ["Action", "Comedy"]);
    assert_eq!(tokens(field(items, "genres"), item20), ["unknown"]);
    assert_eq!(number(field(items, "year"), item10), 1995.0);
    assert!(number(field(items, "year"), item20).is_nan());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn movielens100k_real() {
    let Some(root) = real_data("ml-100k") else {
        return;
    };
    let data = load(&root).unwrap();
    assert_eq!(data.name, "ml-100k");
    assert_eq!(counts(&data), (943, 1682, 100_000));
    assert!(data.interactions.iter().all(|i| i.timestamp.is_some()));
    assert_eq!(data.behaviours.len(), 5);
    let users = &data.user_features.fields;
    assert_eq!(field(users, "occupation").vocab.len(), 21);
    assert_eq!(field(users, "gender").vocab.len(), 2);
    let items = &data.item_features.fields;
    assert_eq!(field(items, "genres").vocab.len(), 19);
    // Toy Story: Animation, Children's, Comedy, released 1995.
    let toy_story = data.items.get("1").unwrap();
    assert_eq!(
        tokens(field(items, "genres"), toy_story),
        ["Animation", "Children's", "Comedy"]
    );
    assert_eq!(number(field(items, "year"), toy_story), 1995.0);
    // Explicit format choice gives the same data.
    let options = LoadOptions {
        format: Some(Format::MovieLens100k),
        ..LoadOptions::default()
    };
    let again = load_with(&root.join("grouplens"), &options).unwrap();
    assert_eq!(again.interactions, data.interactions);
}

// ---------------------------------------------------------------- RecBole atomic files

#[test]
fn recbole_generated() {
    let dir = temp_folder("recbole");
    write(
        &dir,
        "toy.inter",
        b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
          u1\ti1\t4\t10.5\nu2\ti1\t3.5\t11\nu1\ti2\t1\t12\n",
    );
    write(
        &dir,
        "toy.user",
        b"user_id:token\tage:float\tgender:token\nu2\t\tF\nu1\t30\tM\n",
    );
    write(
        &dir,
        "toy.item",
        b"item_id:token\tmovie_title:token_seq\tclass:token_seq\tscore:float_seq\n\
          i1\tA Title\tDrama Comedy Drama\t1 2\ni2\tB\t\t\n",
    );
    let data = load(&dir).unwrap();
    assert_eq!(
        data.name,
        format!("seqrec-loaders-{}-recbole", std::process::id())
    );
    assert_eq!(counts(&data), (2, 2, 3));
    let second = data.interactions[1];
    assert_eq!((second.timestamp, second.rating), (Some(11), Some(3.5)));
    assert_eq!(data.behaviours.name(second.behaviour), "rating=3.5");
    assert_eq!(data.interactions[0].timestamp, Some(10));
    let users = &data.user_features.fields;
    assert!(number(field(users, "age"), data.users.get("u2").unwrap()).is_nan());
    assert_eq!(
        number(field(users, "age"), data.users.get("u1").unwrap()),
        30.0
    );
    assert_eq!(
        tokens(field(users, "gender"), data.users.get("u2").unwrap()),
        ["F"]
    );
    // Titles are identifiers and float_seq has no field kind: only `class` is kept.
    let items = &data.item_features.fields;
    let names: Vec<&str> = items.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["class"]);
    let i1 = data.items.get("i1").unwrap();
    assert_eq!(tokens(field(items, "class"), i1), ["Drama", "Comedy"]);
    assert!(tokens(field(items, "class"), data.items.get("i2").unwrap()).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn recbole_real() {
    let Some(root) = real_data("ml-100k") else {
        return;
    };
    let data = load(&root.join("recbole")).unwrap();
    assert_eq!(data.name, "ml-100k");
    assert_eq!(counts(&data), (943, 1682, 100_000));
    // Same rows in the same order as the GroupLens u.data.
    let grouplens = load(&root.join("grouplens")).unwrap();
    for (a, b) in data.interactions.iter().zip(&grouplens.interactions) {
        assert_eq!(data.users.name(a.user), grouplens.users.name(b.user));
        assert_eq!(data.items.name(a.item), grouplens.items.name(b.item));
        assert_eq!((a.timestamp, a.rating), (b.timestamp, b.rating));
    }
    let users = &data.user_features.fields;
    assert_eq!(field(users, "occupation").vocab.len(), 21);
    let items = &data.item_features.fields;
    assert_eq!(field(items, "class").vocab.len(), 19);
    assert!(items.iter().all(|f| f.name != "movie_title"));
}
