//! `seqrec data ...`.

use crate::Result;
use crate::data::{find::resolve_data_path, load::load, stats::stats as dataset_stats};

pub fn stats(data: Option<&str>, json: bool) -> Result<()> {
    let path = resolve_data_path(data)?;
    let dataset = load(&path)?;
    let s = dataset_stats(&dataset);
    if json {
        super::print_json(&s)
    } else {
        print!("{}", s.render());
        Ok(())
    }
}
