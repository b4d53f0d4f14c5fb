//! Fuzzes the YOOCHOOSE clicks parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::build::DatasetBuilder;
use seqrec::data::load::sessions::parse_yoochoose;

fuzz_target!(|data: &[u8]| {
    let mut builder = DatasetBuilder::new();
    let _ = parse_yoochoose(data, std::path::Path::new("fuzz.txt"), &mut builder);
});
