//! Tensors: f32 values of rank 0 to 4 with an explicit, row-major shape, and integer id
//! tensors for item ids. The values live in a `Storage` that names its device; every op
//! dispatches to the `Backend` of the device its inputs live on.

use std::sync::Arc;

use crate::backend::gpu::GpuBuffer;
use crate::error::{Error, Result};

/// The largest rank a tensor may have: (batch, heads, length, width) is the deepest we need.
pub const MAX_RANK: usize = 4;

/// Where a tensor's values live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    /// The GPU opened by `backend::gpu` (one per process).
    Gpu,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        })
    }
}

/// A tensor's values. Cloning is cheap (the buffer is shared); a kernel that writes makes its
/// own buffer, so values are never changed under another tensor's feet.
#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(Arc<Vec<f32>>),
    Gpu(Arc<GpuBuffer>),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(_) => Device::Gpu,
        }
    }
}

/// A dense f32 tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

fn check_shape(op: &'static str, shape: &[usize], len: usize) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(Error::shape(
            op,
            format!("rank {} exceeds {MAX_RANK}: {shape:?}", shape.len()),
        ));
    }
    let count: usize = shape.iter().product();
    if count != len {
        return Err(Error::shape(
            op,
            format!("shape {shape:?} holds {count} values, got {len}"),
        ));
    }
    Ok(())
}

impl Tensor {
    /// A CPU tensor from values in row-major order.
    pub fn from_vec(shape: &[usize], values: Vec<f32>) -> Result<Tensor> {
        check_shape("Tensor::from_vec", shape, values.len())?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(Arc::new(values)),
        })
    }

    /// A tensor on the given storage; the caller (a backend) guarantees the element count.
    pub fn from_storage(shape: &[usize], storage: Storage) -> Tensor {
        debug_assert!(shape.len() <= MAX_RANK);
        Tensor {
            shape: shape.to_vec(),
            storage,
        }
    }

    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    pub fn full(shape: &[usize], value: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(shape, vec![value; n]).expect("full: rank checked by caller")
    }

    pub fn scalar(value: f32) -> Tensor {
        Tensor::from_vec(&[], vec![value]).expect("rank-0 tensor")
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        self.storage.device()
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The values of a CPU tensor, borrowed. Kernels of the CPU backend read through this;
    /// a GPU tensor here is a bug in the caller (use `to_vec` or `to_device`).
    pub fn cpu(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(values) => values,
            Storage::Gpu(_) => panic!("cpu(): tensor {:?} lives on the GPU", self.shape),
        }
    }

    /// The values, copied to the host whatever the device (a GPU tensor waits for the work
    /// recorded so far).
    pub fn to_vec(&self) -> Vec<f32> {
        match &self.storage {
            Storage::Cpu(values) => values.as_ref().clone(),
            Storage::Gpu(buffer) => crate::backend::gpu::read(buffer),
        }
    }

    /// The same values on `device` (shared, not copied, when already there).
    pub fn to_device(&self, device: Device) -> Tensor {
        let storage = match (&self.storage, device) {
            (Storage::Cpu(_), Device::Cpu) | (Storage::Gpu(_), Device::Gpu) => self.storage.clone(),
            (Storage::Gpu(_), Device::Cpu) => Storage::Cpu(Arc::new(self.to_vec())),
            (Storage::Cpu(values), Device::Gpu) => {
                Storage::Gpu(Arc::new(crate::backend::gpu::upload(values)))
            }
        };
        Tensor {
            shape: self.shape.clone(),
            storage,
        }
    }

    /// A rank-0 or single-element tensor's value.
    pub fn item(&self) -> f32 {
        assert_eq!(
            self.len(),
            1,
            "item() of a tensor of shape {:?}",
            self.shape
        );
        self.to_vec()[0]
    }

    /// Mutable access to CPU values, copying the buffer first if it is shared.
    pub fn cpu_mut(&mut self) -> &mut [f32] {
        match &mut self.storage {
            Storage::Cpu(values) => Arc::make_mut(values).as_mut_slice(),
            Storage::Gpu(_) => panic!("cpu_mut(): tensor {:?} lives on the GPU", self.shape),
        }
    }

    /// The same values under another shape with the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor> {
        check_shape("reshape", shape, self.len())?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
        })
    }

    /// A view as an ndarray (CPU only), for code that wants ndarray's conveniences.
    pub fn to_ndarray(&self) -> ndarray::ArrayD<f32> {
        ndarray::ArrayD::from_shape_vec(self.shape.clone(), self.to_vec()).expect("shape matches")
    }
}

/// Integer ids (item ids, user ids, positions) of rank 1 to 4. Id 0 is the padding id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    shape: Vec<usize>,
    values: Arc<Vec<u32>>,
}

impl Ids {
    pub fn from_vec(shape: &[usize], values: Vec<u32>) -> Result<Ids> {
        check_shape("Ids::from_vec", shape, values.len())?;
        Ok(Ids {
            shape: shape.to_vec(),
            values: Arc::new(values),
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[u32] {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_element_count_is_an_error() {
        assert!(Tensor::from_vec(&[2, 3], vec![0.0; 5]).is_err());
        assert!(Tensor::from_vec(&[1, 1, 1, 1, 1], vec![0.0]).is_err());
        assert!(Ids::from_vec(&[2], vec![1, 2, 3]).is_err());
    }

    #[test]
    fn reshape_keeps_values() {
        let t = Tensor::from_vec(&[2, 3], (0..6).map(|x| x as f32).collect()).unwrap();
        let r = t.reshaped(&[3, 2]).unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        assert_eq!(r.to_vec(), t.to_vec());
        assert!(t.reshaped(&[4]).is_err());
    }
}
