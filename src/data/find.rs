//! Finding the data: `--data` may be a path, or the name of a data set (like "ml-100k")
//! looked up under the folder named by the `SEQREC_DATA` environment variable.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The data set used when no `--data` is given.
pub const DEFAULT_DATASET: &str = "ml-100k";

/// Resolves `--data`: an existing path is used as is; otherwise (or when `arg` is `None`,
/// meaning `DEFAULT_DATASET`) the name is looked up under `$SEQREC_DATA`.
pub fn resolve_data_path(arg: Option<&str>) -> Result<PathBuf> {
    let data_root = std::env::var_os("SEQREC_DATA").map(PathBuf::from);
    resolve_data_path_in(arg, data_root.as_deref())
}

/// `resolve_data_path` with the data folder given explicitly (`None` = `SEQREC_DATA` unset).
pub fn resolve_data_path_in(arg: Option<&str>, data_root: Option<&Path>) -> Result<PathBuf> {
    let name = arg.unwrap_or(DEFAULT_DATASET);
    if name.trim().is_empty() {
        return Err(Error::Invalid(
            "--data is empty: give a path or a data set name such as ml-100k".to_string(),
        ));
    }
    let as_path = Path::new(name);
    if arg.is_some() && as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    let how_to_get_data = format!(
        "to get data, either set SEQREC_DATA to a folder that holds the data sets \
         (e.g. `export SEQREC_DATA=/path/to/shared/data`, with {name}/ inside), \
         or run `seqrec data fetch {name}`, or pass an existing path with --data"
    );
    match data_root {
        None => Err(Error::Invalid(format!(
            "data set {name:?} not found: it is not an existing path and SEQREC_DATA is not set; \
             {how_to_get_data}"
        ))),
        Some(root) => {
            let candidate = root.join(name);
            if candidate.exists() {
                Ok(candidate)
            } else {
                Err(Error::Invalid(format!(
                    "data set {name:?} not found: neither {name:?} nor {} exists \
                     (SEQREC_DATA={}); {how_to_get_data}",
                    candidate.display(),
                    root.display()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_names_and_helpful_errors() {
        let root = std::env::temp_dir().join(format!("seqrec-find-{}", std::process::id()));
        std::fs::create_dir_all(root.join("ml-100k")).unwrap();
        // A dataset name is looked up under the data folder, also as the default.
        assert_eq!(
            resolve_data_path_in(Some("ml-100k"), Some(&root)).unwrap(),
            root.join("ml-100k")
        );
        assert_eq!(
            resolve_data_path_in(None, Some(&root)).unwrap(),
            root.join("ml-100k")
        );
        // An existing path wins over the data folder.
        let direct = root.join("ml-100k");
        let given = direct.to_str().unwrap();
        assert_eq!(resolve_data_path_in(Some(given), None).unwrap(), direct);
        // Unknown names explain how to get data.
        let error = resolve_data_path_in(Some("ml-20m"), Some(&root))
            .unwrap_err()
            .to_string();
        assert!(error.contains("SEQREC_DATA") && error.contains("seqrec data fetch ml-20m"));
        let error = resolve_data_path_in(None, None).unwrap_err().to_string();
        assert!(error.contains("SEQREC_DATA is not set") && error.contains("seqrec data fetch"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
