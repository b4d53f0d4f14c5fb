//! Fuzzes the DIGINETICA views parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::sessions::parse_diginetica;

fuzz_target!(|data: &[u8]| {
    let _ = parse_diginetica(data, std::path::Path::new("fuzz.csv"));
});
