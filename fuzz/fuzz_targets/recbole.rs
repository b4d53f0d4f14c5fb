//! Fuzzes the RecBole parser: the input is split at NUL bytes into .inter, .user, .item.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::recbole::{RecBoleFiles, parse_recbole};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let files = RecBoleFiles {
        inter: parts.next().unwrap_or(&[]),
        user: parts.next(),
        item: parts.next(),
    };
    let _ = parse_recbole(&files, std::path::Path::new("fuzz.inter"));
});
