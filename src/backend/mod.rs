//! Backends: where kernels run. Every op of the autograd calls kernels through the
//! `Backend` of the device its inputs live on, so a model runs on either device unchanged.
//!
//! The kernels are grouped in families, one trait per family; `Backend` is all of them.
//! The CPU implements every family in `cpu/`; the GPU backend implements the same traits.

pub mod cpu;

use crate::ops::Activation;
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

/// Fused recurrent layers (see `ops::gru` for the math). `gates` is what forward saves for
/// backward: per step `[r, z, n, h·W_hn + b_hn]`, shape `[B, L, 4H]`.
#[allow(clippy::too_many_arguments)]
pub trait RecurrentKernels {
    /// GRU over `x` `[B, L, I]`; returns all hidden states `[B, L, H]` and the gates if asked.
    fn gru_forward(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b_ih: &Tensor,
        b_hh: &Tensor,
        mask: Option<&Tensor>,
        save_gates: bool,
    ) -> (Tensor, Option<Tensor>);
    /// Backward through time from `d_hidden` `[B, L, H]`.
    fn gru_backward(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        w_ih: &Tensor,
        w_hh: &Tensor,
        mask: Option<&Tensor>,
        hidden: &Tensor,
        gates: &Tensor,
        d_hidden: &Tensor,
        want_dx: bool,
    ) -> GruGradients;
}

/// Gradients of a GRU layer's inputs (`dx` only when asked).
pub struct GruGradients {
    pub dx: Option<Tensor>,
    pub dh0: Tensor,
    pub dw_ih: Tensor,
    pub dw_hh: Tensor,
    pub db_ih: Tensor,
    pub db_hh: Tensor,
}

/// The fused feed-forward block (see `ops::ffn`). `dropout` is `(p, stream)` when active.
#[allow(clippy::too_many_arguments)]
pub trait FeedForwardKernels {
    /// `x` `[N, d]` → (`y` `[N, d_out]`, the pre-activation `x·W1 + b1` `[N, F]`).
    fn ffn_forward(
        &self,
        x: &Tensor,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
        activation: Activation,
        dropout: Option<(f32, u32)>,
    ) -> (Tensor, Tensor);
    /// Gradients from `d_y` `[N, d_out]`, recomputing the activation and dropout mask.
    fn ffn_backward(
        &self,
        x: &Tensor,
        w1: &Tensor,
        w2: &Tensor,
        pre_activation: &Tensor,
        d_y: &Tensor,
        activation: Activation,
        dropout: Option<(f32, u32)>,
        want_dx: bool,
    ) -> FfnGradients;
}

/// Gradients of a feed-forward block's inputs (`dx` only when asked).
pub struct FfnGradients {
    pub dx: Option<Tensor>,
    pub dw1: Tensor,
    pub db1: Tensor,
    pub dw2: Tensor,
    pub db2: Tensor,
}

/// Every kernel family: what a device must provide to run seqrec.
pub trait Backend:
    LinalgKernels + ElementwiseKernels + RecurrentKernels + FeedForwardKernels + Send + Sync
{
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
