//! Times `seqrec::data::load::load` on data sets (run in release):
//! `cargo run --release --example load_timing -- PATH [PATH ...]`
//! Prints the median of 5 loads after one warm-up, with the counts loaded.

use std::path::Path;
use std::time::Instant;

fn main() -> seqrec::Result<()> {
    for arg in std::env::args().skip(1) {
        let path = seqrec::data::find::resolve_data_path(Some(&arg))?;
        let data = seqrec::data::load::load(&path)?;
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                let loaded = seqrec::data::load::load(Path::new(&path));
                let elapsed = start.elapsed().as_secs_f64() * 1e3;
                assert!(loaded.is_ok());
                elapsed
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{arg}: {} users, {} items, {} interactions: median {:.1} ms (min {:.1})",
            data.users.len(),
            data.items.len(),
            data.interactions.len(),
            times[2],
            times[0]
        );
    }
    Ok(())
}
