//! The GPU backend: hand-written WGSL kernels (`shaders/`, one file per kernel) run through
//! wgpu on whatever adapter the machine has (Vulkan, Metal, DX12 or GL).
//!
//! Tensors stay on the GPU for a whole training step: kernels read and write storage buffers,
//! dispatches are recorded into one command encoder (`runtime`), and the host waits only when
//! it reads a value back (the loss, once per step). A kernel handed a CPU tensor (a mask or
//! a label matrix built on the host) uploads it first.
//!
//! Each kernel family lives in its own file, implementing the same trait as its CPU twin in
//! `backend/cpu/`; the CPU kernels are the reference every GPU kernel is tested against
//! (`tests/gpu_*.rs`).

mod activation;
mod attention;
mod conv;
mod elementwise;
mod ffn;
mod gru;
pub mod kernel;
mod linalg;
mod nn;
mod optim;
pub mod runtime;
mod shape;

use std::sync::{Arc, OnceLock};

use super::{Backend, CpuBackend};
use crate::tensor::{Device, Storage, Tensor};
pub use runtime::GpuBuffer;
use runtime::Runtime;

pub struct GpuBackend {
    rt: Runtime,
}

static GPU: OnceLock<Result<GpuBackend, String>> = OnceLock::new();

/// The GPU backend, opened on first use; `Err` says in one line why there is none.
pub fn backend() -> Result<&'static GpuBackend, String> {
    GPU.get_or_init(|| Runtime::open().map(|rt| GpuBackend { rt }))
        .as_ref()
        .map_err(Clone::clone)
}

fn opened() -> &'static GpuBackend {
    backend().expect("a GPU tensor exists, so the GPU backend was opened")
}

/// Copies host values into a new GPU buffer.
pub fn upload(values: &[f32]) -> GpuBuffer {
    match backend() {
        Ok(gpu) => gpu.rt.upload(values),
        Err(why) => panic!("to_device(Gpu) without a GPU: {why}"),
    }
}

/// The values of a GPU buffer, on the host.
pub fn read(buffer: &GpuBuffer) -> Vec<f32> {
    opened().rt.read(buffer)
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        let info = &self.rt.info;
        format!(
            "gpu: {} ({:?}, {:?}, driver {})",
            info.name, info.backend, info.device_type, info.driver_info
        )
    }

    fn device(&self) -> Device {
        Device::Gpu
    }
}

impl GpuBackend {
    /// Whether the adapter is a software renderer (e.g. Mesa's lavapipe).
    pub fn is_software(&self) -> bool {
        self.rt.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Submits the recorded work without waiting (e.g. at the end of a step).
    pub fn flush(&self) {
        self.rt.flush();
    }

    /// Submits the recorded work and waits for the GPU to finish it (benchmarks).
    pub fn wait(&self) {
        self.rt.wait();
    }

    /// The buffer of a tensor, uploading it first when it lives on the host.
    fn buffer(&self, t: &Tensor) -> Arc<GpuBuffer> {
        match t.storage() {
            Storage::Gpu(b) => b.clone(),
            Storage::Cpu(values) => Arc::new(self.rt.upload(values)),
        }
    }

    /// Wraps a kernel's output buffer as a tensor.
    fn tensor(&self, shape: &[usize], buffer: GpuBuffer) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), buffer.len());
        Tensor::from_storage(shape, Storage::Gpu(Arc::new(buffer)))
    }

    /// A GPU copy of a host result (fallback kernels).
    fn upload_tensor(&self, t: Tensor) -> Tensor {
        match t.storage() {
            Storage::Gpu(_) => t,
            Storage::Cpu(values) => self.tensor(t.shape(), self.rt.upload(values)),
        }
    }
}

/// Host fallback for kernels that have no WGSL version: inputs are read back, the CPU kernel
/// runs, and the result is uploaded. Correct but it waits for the GPU; `fallback_count` makes
/// its use visible in tests and benchmarks.
fn host(t: &Tensor) -> Tensor {
    FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t.to_device(Device::Cpu)
}

static FALLBACKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many tensors host fallbacks have read back so far in this process.
pub fn fallback_count() -> usize {
    FALLBACKS.load(std::sync::atomic::Ordering::Relaxed)
}

const CPU: CpuBackend = CpuBackend;

/// Switches off Mesa's Vulkan device-select layer unless the user set `NODEVICE_SELECT`.
///
/// The layer connects to a Wayland display to find the "default" GPU and prints "error:
/// XDG_RUNTIME_DIR is invalid…" twice on a headless machine; seqrec chooses its adapter itself
/// (`--device`, `WGPU_ADAPTER_NAME`), so the layer has nothing to add.
///
/// # Safety
/// Sets an environment variable: call it before any other thread exists (first thing in
/// `main`), when nothing can read the environment concurrently.
pub unsafe fn silence_device_select_layer() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: the caller guarantees no other thread is running.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
