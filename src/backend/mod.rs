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

/// How a fused attention call is configured (see `Tape::attention`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    pub heads: usize,
    pub causal: bool,
    /// Probability of dropping an attention probability; 0 = no dropout.
    pub dropout: f32,
    /// Random stream of the dropout mask (`rng::uniform_at(stream, index)`).
    pub stream: u32,
}

/// Fused scaled-dot-product attention. `q`, `k`, `v`, `out`, `d_out` are `[B, L, D]`, the
/// optional key mask `[B, L]`, the log-sum-exp `[B, H, L]` (shapes checked by the caller).
pub trait AttentionKernels {
    /// Returns the output `[B, L, D]` and the per-row log-sum-exp `[B, H, L]`.
    fn attention_forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: Option<&Tensor>,
        spec: &AttentionSpec,
    ) -> (Tensor, Tensor);
    /// Returns `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        d_out: &Tensor,
        key_mask: Option<&Tensor>,
        spec: &AttentionSpec,
    ) -> (Tensor, Tensor, Tensor);
}

/// Every kernel family: what a device must provide to run seqrec.
pub trait Backend: LinalgKernels + ElementwiseKernels + AttentionKernels + Send + Sync {
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
