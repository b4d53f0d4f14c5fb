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

pub fn fetch(
    name: &str,
    cache: Option<&std::path::Path>,
    url: Option<&str>,
    json: bool,
) -> Result<()> {
    if !json {
        eprintln!(
            "fetching {name} into {} ...",
            cache.map(|c| c.display().to_string()).unwrap_or_else(|| {
                crate::data::fetch::default_cache_dir()
                    .display()
                    .to_string()
            })
        );
    }
    let folder = crate::data::fetch::fetch(name, cache, url)?;
    if json {
        return super::print_json(&serde_json::json!({ "dataset": name, "path": folder }));
    }
    println!("{name} is in {}", folder.display());
    Ok(())
}
