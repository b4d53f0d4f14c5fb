//! Checkpoints: parameters as safetensors (loadable from Python with
//! `safetensors.torch.load_file`), everything else as JSON, every file written atomically.
//!
//! Atomic = written to a temporary file in the same folder, flushed to disk, then renamed over
//! the old file. A crash or Ctrl-C at any moment leaves either the old or the new file, never
//! a torn one.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::optim::ParamStore;
use crate::tensor::Tensor;

/// Writes `bytes` to `path` atomically (temporary file + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Serialises named tensors as safetensors bytes (f32, little-endian).
pub fn tensors_to_safetensors(
    tensors: &[(String, &Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                t.shape().to_vec(),
                t.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::Invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, metadata).map_err(|e| Error::Invalid(format!("safetensors: {e}")))
}

/// Parses safetensors bytes into named f32 tensors. `path` only names the file in errors.
pub fn tensors_from_safetensors(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    let corrupt = |why: String| {
        Error::Invalid(format!(
            "checkpoint {} is corrupt or not a safetensors file: {why}",
            path.display()
        ))
    };
    let file = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(format!(
                "tensor `{name}` has dtype {:?}, expected F32",
                view.dtype()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let tensor = Tensor::from_vec(view.shape(), values)
            .map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        out.push((name, tensor));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Saves every parameter of `store` under its name.
pub fn save_params(path: &Path, store: &ParamStore) -> Result<()> {
    let named: Vec<(String, &Tensor)> = store
        .ids()
        .map(|id| (store.name(id).to_string(), store.value(id)))
        .collect();
    write_atomic(path, &tensors_to_safetensors(&named, None)?)
}

/// Loads parameters saved by `save_params` into `store`. The checkpoint must hold exactly the
/// store's parameters with the same shapes; anything else is an error naming the parameter.
pub fn load_params(path: &Path, store: &mut ParamStore) -> Result<()> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = tensors_from_safetensors(&bytes, path)?;
    let mismatch = |why: String| {
        Error::Invalid(format!(
            "checkpoint {} does not match the model: {why}",
            path.display()
        ))
    };
    for (name, _) in &tensors {
        if store.find(name).is_none() {
            return Err(mismatch(format!(
                "it has a parameter `{name}` the model does not"
            )));
        }
    }
    let ids: Vec<_> = store.ids().collect();
    for id in ids {
        let name = store.name(id).to_string();
        let Some((_, value)) = tensors.iter().find(|(n, _)| *n == name) else {
            return Err(mismatch(format!("parameter `{name}` is missing")));
        };
        if value.shape() != store.value(id).shape() {
            return Err(mismatch(format!(
                "parameter `{name}` has shape {:?}, the model expects {:?}",
                value.shape(),
                store.value(id).shape()
            )));
        }
        store.set_value(id, value.clone())?;
    }
    Ok(())
}

/// Writes a value as pretty JSON, atomically.
pub fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

/// Reads JSON written by `save_json`; a malformed file is an error naming it.
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: line {}: {e}", path.display(), e.line())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ParamStore {
        let mut s = ParamStore::new();
        s.add(
            "item_embedding",
            Tensor::from_vec(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        )
        .unwrap();
        s.add(
            "block0.bias",
            Tensor::from_vec(&[2], vec![-0.5, 0.25]).unwrap(),
        )
        .unwrap();
        s
    }

    #[test]
    fn round_trip_restores_values() {
        let dir = std::env::temp_dir().join(format!("seqrec-ckpt-{}", std::process::id()));
        let path = dir.join("weights.safetensors");
        save_params(&path, &store()).unwrap();
        let mut other = store();
        for id in other.ids().collect::<Vec<_>>() {
            let zeros = Tensor::zeros(other.value(id).shape());
            other.set_value(id, zeros).unwrap();
        }
        load_params(&path, &mut other).unwrap();
        for id in other.ids() {
            assert_eq!(other.value(id).to_vec(), store().value(id).to_vec());
        }
        // No temporary file is left behind.
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_and_mismatched_checkpoints_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("seqrec-ckpt-bad-{}", std::process::id()));
        let path = dir.join("weights.safetensors");
        save_params(&path, &store()).unwrap();
        let bytes = fs::read(&path).unwrap();

        // Truncated file.
        write_atomic(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_params(&path, &mut store()).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("weights.safetensors"),
            "{err}"
        );

        // Garbage.
        write_atomic(&path, b"not a checkpoint at all").unwrap();
        assert!(
            load_params(&path, &mut store())
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );

        // Wrong shape.
        let mut wide = ParamStore::new();
        wide.add("item_embedding", Tensor::zeros(&[3, 4])).unwrap();
        wide.add("block0.bias", Tensor::zeros(&[2])).unwrap();
        save_params(&path, &wide).unwrap();
        let err = load_params(&path, &mut store()).unwrap_err().to_string();
        assert!(
            err.contains("item_embedding") && err.contains("[3, 4]"),
            "{err}"
        );

        // Missing parameter.
        let mut fewer = ParamStore::new();
        fewer.add("item_embedding", Tensor::zeros(&[3, 2])).unwrap();
        save_params(&path, &fewer).unwrap();
        assert!(
            load_params(&path, &mut store())
                .unwrap_err()
                .to_string()
                .contains("`block0.bias` is missing")
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
