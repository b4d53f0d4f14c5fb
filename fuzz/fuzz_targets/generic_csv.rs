//! Fuzzes the generic CSV parser; the first byte picks the delimiter, header flag and
//! which optional columns are mapped.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqrec::data::load::generic_csv::{Column, CsvMapping, parse_csv};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mapping = CsvMapping {
        delimiter: [',', '\t', ';', ' '][(flags & 3) as usize],
        has_header: flags & 4 != 0,
        user: Column::Index(0),
        item: Column::Index(1),
        timestamp: (flags & 8 != 0).then_some(Column::Index(2)),
        rating: (flags & 16 != 0).then_some(Column::Index(3)),
        behaviour: (flags & 32 != 0).then_some(Column::Index(4)),
        sessions: false,
    };
    let _ = parse_csv(rest, std::path::Path::new("fuzz.csv"), &mapping);
});
