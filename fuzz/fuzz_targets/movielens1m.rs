//! Fuzzes the MovieLens-1M parser: the input is split at NUL bytes into ratings.dat (or,
//! when the first byte is odd, train.txt), test.txt, users.dat and movies.dat.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::movielens1m::{Ml1mFiles, parse_movielens1m};

fuzz_target!(|data: &[u8]| {
    let use_ratings = data.first().is_some_and(|b| b % 2 == 0);
    let mut parts = data.get(1..).unwrap_or(&[]).split(|&b| b == 0);
    let interactions = parts.next();
    let files = Ml1mFiles {
        ratings: if use_ratings { interactions } else { None },
        train: if use_ratings { None } else { interactions },
        test: parts.next(),
        users: parts.next(),
        movies: parts.next(),
    };
    let path = std::path::Path::new("fuzz");
    let _ = parse_movielens1m(&files, path, path);
});
