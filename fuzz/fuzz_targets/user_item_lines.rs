//! Fuzzes the "user item" per-line parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::user_item_lines::parse_user_item_lines;

fuzz_target!(|data: &[u8]| {
    let _ = parse_user_item_lines(data, std::path::Path::new("fuzz.txt"));
});
