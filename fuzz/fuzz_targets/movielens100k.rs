//! Fuzzes the MovieLens-100K parser: the input is split at NUL bytes into the contents of
//! u.data, u.user, u.item, u.genre and u.occupation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::movielens100k::{Ml100kFiles, parse_movielens100k};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let files = Ml100kFiles {
        data: parts.next().unwrap_or(&[]),
        user: parts.next(),
        item: parts.next(),
        genre: parts.next(),
        occupation: parts.next(),
    };
    let _ = parse_movielens100k(&files, std::path::Path::new("fuzz"));
});
