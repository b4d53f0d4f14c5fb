//! The CPU backend: rayon over independent rows, batches or heads (never nested), inner
//! loops over contiguous slices that the compiler vectorizes, `matrixmultiply` for GEMM and a
//! register-tiled AVX-512 kernel (`microkernel`) for the small products of the fused kernels.

mod activation;
mod attention;
mod conv;
mod elementwise;
mod ffn;
mod fresh;
mod gru;
mod linalg;
mod linear_ce;
mod math;
pub mod microkernel;
mod nn;
mod optim;
mod shape;

use super::Backend;
use crate::tensor::{Device, Storage, Tensor};

pub use linalg::{gemm_into, par_sgemm, sgemm};

/// Below this many elements a kernel runs on the calling thread: rayon's fork/join costs more
/// than it saves.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// Wraps freshly computed values as a CPU tensor.
pub(crate) fn tensor(shape: &[usize], values: Vec<f32>) -> Tensor {
    debug_assert_eq!(shape.iter().product::<usize>(), values.len());
    Tensor::from_storage(shape, Storage::Cpu(std::sync::Arc::new(values)))
}
