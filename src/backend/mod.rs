//! Backends: where kernels run. Every op of the autograd calls kernels through the
//! `Backend` of the device its inputs live on, so a model runs on either device unchanged.
//!
//! The kernels are grouped in families, one trait per family; `Backend` is all of them.
//! The CPU implements every family in `cpu/`; the GPU backend implements the same traits.

pub mod cpu;

use crate::tensor::{Device, Tensor};

pub use cpu::CpuBackend;

/// Elementwise binary ops with numpy-style broadcasting (shapes aligned on the right).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// Matrix products.
pub trait LinalgKernels {
    /// `op(a) · op(b)` where `op` transposes the last two axes when asked. Shapes (checked by
    /// the caller): `a` is `[batch.., m, k]` (`[batch.., k, m]` transposed), `b` is
    /// `[batch.., k, n]` or `[k, n]` shared by every batch item (or transposed likewise).
    /// The result is `[batch.., m, n]`.
    fn matmul(&self, a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Tensor;
}

/// Elementwise arithmetic and the reductions that broadcasting needs.
pub trait ElementwiseKernels {
    /// `op(a, b)` broadcast to `out_shape` (validated by the caller).
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Tensor;
    /// `sum + x`, reusing `sum`'s buffer when it is not shared (gradient accumulation).
    fn add_assign(&self, sum: Tensor, x: &Tensor) -> Tensor;
    /// Sums `x` over the axes along which `shape` was broadcast to `x`'s shape.
    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Tensor;
    /// `alpha * x`.
    fn scale(&self, x: &Tensor, alpha: f32) -> Tensor;
}

/// Every kernel family: what a device must provide to run seqrec.
pub trait Backend: LinalgKernels + ElementwiseKernels + Send + Sync {
    /// A one-line description for logs, e.g. "cpu (2 threads)".
    fn name(&self) -> String;
    fn device(&self) -> Device;
}

static CPU: CpuBackend = CpuBackend;

/// The backend of a device.
pub fn for_device(device: Device) -> &'static dyn Backend {
    match device {
        Device::Cpu => &CPU,
    }
}

/// The backend that holds `tensor`.
pub fn of(tensor: &Tensor) -> &'static dyn Backend {
    for_device(tensor.device())
}
