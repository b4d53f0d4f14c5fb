//! Fuzzes the one-user-per-line parser and the item2attributes JSON parser: the input is
//! split at the first NUL byte into the sequence file and the JSON file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::build::DatasetBuilder;
use seqrec::data::load::user_sequences::{parse_item_attributes, parse_user_sequences};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let sequences = parts.next().unwrap_or(&[]);
    let path = std::path::Path::new("fuzz.txt");
    let mut builder = DatasetBuilder::new();
    if parse_user_sequences(sequences, path, &mut builder).is_ok()
        && let Some(json) = parts.next()
    {
        let _ = parse_item_attributes(json, path, &builder.items);
    }
});
