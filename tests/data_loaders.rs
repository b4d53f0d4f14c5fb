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

// ---------------------------------------------------------------- MovieLens-1M

#[test]
fn movielens1m_generated_implicit_and_ratings() {
    let dir = temp_folder("ml1m");
    write(&dir, "implicit-resn/train.txt", b"0 9 4\n1 4\n");
    write(&dir, "implicit-resn/test.txt", b"0 1\n");
    write(
        &dir,
        "grouplens/users.dat",
        b"1::F::1::10::48067\n2::M::56::16::70072\n",
    );
    // Movie 3 has no interactions: a catalogue entry, skipped.
    write(
        &dir,
        "grouplens/movies.dat",
        b"10::Caf\xe9 (1995)::Comedy|Drama\n5::Untitled::Action\n3::Other (1990)::Drama\n",
    );
    let data = load(&dir).unwrap();
    assert_eq!(counts(&data), (2, 3, 4));
    assert_eq!(data.published_test_start, Some(3));
    let names: Vec<(&str, &str)> = data
        .interactions
        .iter()
        .map(|i| (data.users.name(i.user), data.items.name(i.item)))
        .collect();
    assert_eq!(names, [("1", "10"), ("1", "5"), ("2", "5"), ("1", "2")]);
    let users = &data.user_features.fields;
    assert_eq!(
        tokens(field(users, "age"), data.users.get("2").unwrap()),
        ["56"]
    );
    assert_eq!(
        tokens(field(users, "occupation"), data.users.get("1").unwrap()),
        ["10"]
    );
    let items = &data.item_features.fields;
    let movie10 = data.items.get("10").unwrap();
    assert_eq!(tokens(field(items, "genres"), movie10), ["Comedy", "Drama"]);
    assert_eq!(number(field(items, "year"), movie10), 1995.0);
    assert!(number(field(items, "year"), data.items.get("5").unwrap()).is_nan());

    // With ratings.dat the timed ratings replace the implicit split.
    write(
        &dir,
        "grouplens/ratings.dat",
        b"1::10::5::978300760\n2::5::3::978302109\n",
    );
    let data = load(&dir.join("grouplens")).unwrap();
    assert_eq!(counts(&data), (2, 2, 2));
    assert_eq!(data.published_test_start, None);
    assert_eq!(data.interactions[1].timestamp, Some(978302109));
    assert_eq!(
        data.behaviours.name(data.interactions[1].behaviour),
        "rating=3"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn movielens1m_real() {
    let Some(root) = real_data("ml-1m") else {
        return;
    };
    let data = load(&root).unwrap();
    assert_eq!(data.name, "ml-1m");
    assert_eq!(counts(&data), (6040, 3706, 1_000_209));
    let test_start = data.published_test_start.unwrap();
    assert!(test_start > 700_000 && test_start < 900_000, "{test_start}");
    let users = &data.user_features.fields;
    assert_eq!(field(users, "gender").vocab.len(), 2);
    assert_eq!(field(users, "age").vocab.len(), 7);
    assert_eq!(field(users, "occupation").vocab.len(), 21);
    let items = &data.item_features.fields;
    assert_eq!(field(items, "genres").vocab.len(), 18);
    let toy_story = data.items.get("1").unwrap();
    assert_eq!(number(field(items, "year"), toy_story), 1995.0);
}

// ---------------------------------------------------------------- sequence files

#[test]
fn user_item_lines_generated() {
    let dir = temp_folder("user-item");
    write(&dir, "pairs.txt", b"1 5\n1 7\n2 5\n");
    let data = load(&dir.join("pairs.txt")).unwrap();
    assert_eq!(data.name, "pairs");
    assert_eq!(counts(&data), (2, 2, 3));
    assert_eq!(data.interactions[1].timestamp, None);
    assert_eq!(data.items.name(data.interactions[1].item), "7");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn user_sequences_generated_with_attributes() {
    let dir = temp_folder("sequences");
    write(&dir, "Toy.txt", b"1 3 4 3\n2 4\n");
    write(
        &dir,
        "Toy_item2attributes.json",
        b"{\"3\": [7, 8, 7], \"4\": []}",
    );
    let data = load(&dir).unwrap();
    assert_eq!(counts(&data), (2, 2, 4));
    let items: Vec<&str> = data
        .interactions
        .iter()
        .map(|i| data.items.name(i.item))
        .collect();
    assert_eq!(items, ["3", "4", "3", "4"]);
    let attributes = field(&data.item_features.fields, "attributes");
    assert_eq!(tokens(attributes, data.items.get("3").unwrap()), ["7", "8"]);
    assert!(tokens(attributes, data.items.get("4").unwrap()).is_empty());
    // Without the JSON file, a sequence file is still recognised by its long lines.
    std::fs::remove_file(dir.join("Toy_item2attributes.json")).unwrap();
    let options = LoadOptions::default();
    let plain = load_with(&dir.join("Toy.txt"), &options).unwrap();
    assert_eq!(counts(&plain), (2, 2, 4));
    assert!(plain.item_features.fields.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sequence_files_real() {
    // (folder, users, items, interactions, attribute ids or 0 when none)
    let cases = [
        ("amazon-beauty/bert4rec", 40_226, 54_542, 353_962, 0),
        ("amazon-video-games", 31_013, 23_715, 287_107, 0),
        ("amazon-beauty", 22_363, 12_101, 198_502, 637),
        ("amazon-sports-outdoors", 35_598, 18_357, 296_337, 2_277),
        ("lastfm-s3rec", 1_090, 3_646, 52_551, 388),
    ];
    for (folder, users, items, interactions, attributes) in cases {
        let Some(path) = real_data(folder) else {
            return;
        };
        let data = load(&path).unwrap();
        assert_eq!(counts(&data), (users, items, interactions), "{folder}");
        assert!(data.interactions.iter().all(|i| i.timestamp.is_none()));
        if attributes > 0 {
            let field = field(&data.item_features.fields, "attributes");
            assert_eq!(field.vocab.len(), attributes, "{folder}");
        } else {
            assert!(data.item_features.fields.is_empty(), "{folder}");
        }
    }
}

// ---------------------------------------------------------------- sessions

#[test]
fn yoochoose_generated() {
    let dir = temp_folder("yoochoose");
    let header = "SessionId\tItemId\tTime\n";
    write(
        &dir,
        "clicks_train_full.txt",
        format!("{header}3\t100\t1396437466.94\n3\t101\t1396437500\n").as_bytes(),
    );
    write(
        &dir,
        "clicks_test.txt",
        format!("{header}9\t101\t1396860669.277\n").as_bytes(),
    );
    let data = load(&dir).unwrap();
    assert!(data.sessions);
    assert_eq!(counts(&data), (2, 2, 3));
    assert_eq!(data.published_test_start, Some(2));
    assert_eq!(data.interactions[0].timestamp, Some(1_396_437_466));
    assert_eq!(data.users.name(data.interactions[2].user), "9");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diginetica_generated_orders_views_inside_sessions() {
    let dir = temp_folder("diginetica");
    write(
        &dir,
        "views.csv",
        b"session_id;user_id;item_id;timeframe;eventdate\n\
          1;NA;30;9000;2016-05-09\n2;7;40;0;2016-01-03\n1;NA;10;1500;2016-05-09\n1;NA;20;1400;2016-05-09\n",
    );
    let data = load(&dir.join("views.csv")).unwrap();
    assert!(data.sessions);
    assert_eq!(counts(&data), (2, 4, 4));
    let order: Vec<(&str, &str)> = data
        .interactions
        .iter()
        .map(|i| (data.users.name(i.user), data.items.name(i.item)))
        .collect();
    assert_eq!(order, [("1", "20"), ("1", "10"), ("1", "30"), ("2", "40")]);
    // 2016-05-09 is day 16930: 16930·86400 + 1400/1000.
    assert_eq!(data.interactions[0].timestamp, Some(1_462_752_001));
    assert_eq!(data.interactions[2].timestamp, Some(1_462_752_009));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn session_sets_real() {
    let Some(yoochoose) = real_data("yoochoose-100k-sample") else {
        return;
    };
    let data = load(&yoochoose).unwrap();
    assert!(data.sessions);
    assert_eq!(counts(&data), (17_794 + 3_416, 2_933, 70_278 + 13_568));
    assert_eq!(data.published_test_start, Some(70_278));

    let Some(diginetica) = real_data("diginetica-sample") else {
        return;
    };
    let data = load(&diginetica).unwrap();
    assert!(data.sessions);
    assert_eq!(counts(&data), (2_986, 7_139, 12_391));
    // Inside every session, time never goes back.
    for pair in data.interactions.windows(2) {
        if pair[0].user == pair[1].user {
            assert!(pair[0].timestamp <= pair[1].timestamp);
        }
    }
}

// ---------------------------------------------------------------- generic CSV

#[test]
fn generic_csv_by_name_and_by_index() {
    use seqrec::data::load::{Column, CsvMapping};
    let dir = temp_folder("csv");
    write(
        &dir,
        "log.tsv",
        b"ts\tuser\titem\tkind\n5\tu1\ta\tbuy\n6\tu2\tb\tclick\n",
    );
    let mapping = CsvMapping {
        delimiter: '\t',
        has_header: true,
        user: Column::Name("user".into()),
        item: Column::Name("item".into()),
        timestamp: Some(Column::Name("ts".into())),
        behaviour: Some(Column::Index(3)),
        ..CsvMapping::default()
    };
    let options = LoadOptions {
        csv: Some(mapping),
        ..LoadOptions::default()
    };
    let data = load_with(&dir.join("log.tsv"), &options).unwrap();
    assert_eq!(counts(&data), (2, 2, 2));
    assert_eq!(data.interactions[1].timestamp, Some(6));
    assert_eq!(data.behaviours.name(data.interactions[0].behaviour), "buy");

    write(&dir, "plain.csv", b"u1,a,4.5\nu1,b,2\n");
    let options = LoadOptions {
        csv: Some(CsvMapping {
            rating: Some(Column::Index(2)),
            ..CsvMapping::default()
        }),
        ..LoadOptions::default()
    };
    let data = load_with(&dir.join("plain.csv"), &options).unwrap();
    assert_eq!(counts(&data), (1, 2, 2));
    assert_eq!(data.interactions[0].rating, Some(4.5));
    // Without a mapping, a generic CSV is not guessed.
    assert!(load(&dir.join("plain.csv")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
