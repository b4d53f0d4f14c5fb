//! Backends: where kernels run. Every op of the autograd calls kernels through the
//! `Backend` of the device its inputs live on, so a model runs on either device unchanged.
//!
//! The kernels are grouped in families, one trait per family; `Backend` is all of them.
//! The CPU implements every family in `cpu/`; the GPU backend implements the same traits.

pub mod cpu;
pub mod gpu;

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

/// Elementwise nonlinearities. `forward` and `derivative` are the scalar math both devices
/// implement; `derivative(x, y)` is dy/dx given the input x and the output y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// max(x, 0); derivative 1 where x > 0.
    Relu,
    /// x·Φ(x) with the exact normal CDF Φ(x) = (1 + erf(x/√2))/2; derivative Φ(x) + x·φ(x).
    Gelu,
    /// 1/(1 + e^{−x}); derivative y(1 − y).
    Sigmoid,
    /// tanh x; derivative 1 − y².
    Tanh,
    /// ln(1 + e^x), computed as max(x, 0) + ln(1 + e^{−|x|}); derivative σ(x).
    Softplus,
    /// e^x; derivative y.
    Exp,
    /// ln x; derivative 1/x.
    Log,
}

impl UnaryOp {
    #[inline(always)]
    pub fn forward(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Gelu => x * normal_cdf(x),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
        }
    }

    #[inline(always)]
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            UnaryOp::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            UnaryOp::Gelu => {
                normal_cdf(x)
                    + x * (-0.5 * x * x).exp()
                        * std::f32::consts::FRAC_2_SQRT_PI
                        * std::f32::consts::FRAC_1_SQRT_2
                        * 0.5
            }
            UnaryOp::Sigmoid => y * (1.0 - y),
            UnaryOp::Tanh => 1.0 - y * y,
            UnaryOp::Softplus => sigmoid(x),
            UnaryOp::Exp => y,
            UnaryOp::Log => 1.0 / x,
        }
    }
}

/// 1/(1 + e^{−x}), without overflow for large |x|.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Φ(x) = (1 + erf(x/√2))/2.
#[inline(always)]
pub fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function: erf(x) = 1 − t·exp(−x² + P(t)), t = 1/(1 + |x|/2), with the
/// Chebyshev-fitted polynomial P of Numerical Recipes' erfc (fractional error < 1.2e-7).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let z = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let r = (1.0 - erfc) as f32;
    if x >= 0.0 { r } else { -r }
}

/// Row-major strides of `shape` as seen from `out_shape` (right-aligned), with stride 0 on
/// the axes where `shape` is broadcast. Both backends index broadcast operands this way.
pub(crate) fn broadcast_strides(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let offset = out_shape.len() - shape.len();
    let mut strides = vec![0; out_shape.len()];
    let mut stride = 1;
    for axis in (0..shape.len()).rev() {
        if shape[axis] != 1 {
            strides[axis + offset] = stride;
        }
        stride *= shape[axis];
    }
    strides
}

/// Elementwise activations and the affine map αx + β.
pub trait ActivationKernels {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Tensor;
    /// dy · op'(x) given the forward input x and output y.
    fn unary_backward(&self, op: UnaryOp, x: &Tensor, y: &Tensor, dy: &Tensor) -> Tensor;
    /// αx + β.
    fn affine(&self, x: &Tensor, alpha: f32, beta: f32) -> Tensor;
}

/// Copies that rearrange values. Axis ops see a tensor as `[outer, axis, inner]`.
pub trait ShapeKernels {
    /// Output axis i is input axis `axes[i]`.
    fn permute(&self, x: &Tensor, axes: &[usize]) -> Tensor;
    /// Positions start..start+len along `axis`.
    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor;
    /// The backward of `slice`: `dy` placed at start.. along `axis` of a zero tensor whose
    /// axis has length `full`.
    fn unslice(&self, dy: &Tensor, axis: usize, start: usize, full: usize) -> Tensor;
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Tensor;
    /// Entries `index[j]` along `axis`: output axis length = index.len().
    fn index_select(&self, x: &Tensor, axis: usize, index: &[u32]) -> Tensor;
    /// The backward of `index_select`: entry j of `dy` along `axis` is added at `index[j]` of
    /// a zero tensor whose axis has length `size`; with `skip_zero`, index 0 (padding)
    /// receives nothing.
    fn index_add(
        &self,
        dy: &Tensor,
        axis: usize,
        index: &[u32],
        size: usize,
        skip_zero: bool,
    ) -> Tensor;
    /// `value` where `mask` (broadcast to x) is non-zero, x elsewhere.
    fn masked_fill(&self, x: &Tensor, mask: &Tensor, value: f32) -> Tensor;
}

/// Row-wise neural-network kernels; "row" = the last axis.
pub trait NnKernels {
    fn softmax(&self, x: &Tensor) -> Tensor;
    /// dx = y·(dy − Σ dy·y) given the softmax output y.
    fn softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor;
    fn log_softmax(&self, x: &Tensor) -> Tensor;
    /// dx = dy − e^y·Σ dy given the log-softmax output y.
    fn log_softmax_backward(&self, y: &Tensor, dy: &Tensor) -> Tensor;
    /// (y, per-row mean, per-row 1/std) of y = (x − μ)/σ·gain + bias; the statistics are
    /// `[rows]` tensors on the same device, kept for backward.
    fn layer_norm(
        &self,
        x: &Tensor,
        gain: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> (Tensor, Tensor, Tensor);
    /// (dx, dgain, dbias).
    fn layer_norm_backward(
        &self,
        x: &Tensor,
        gain: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        dy: &Tensor,
    ) -> (Tensor, Tensor, Tensor);
    /// Element i is zeroed when `uniform_at(stream, i)` < p, else scaled by 1/(1 − p). The
    /// backward is the same map applied to dy.
    fn dropout(&self, x: &Tensor, p: f32, stream: u32) -> Tensor;
    /// The loss Σ_r w_r·(lse_r − x_{r,t_r}) / Σ w for logits `[N, C]`, and its gradient
    /// w_r/Σw·(softmax_r − onehot(t_r)), computed in the same pass over each row. The loss
    /// is a rank-0 tensor on the logits' device (read back only when the caller wants it).
    fn cross_entropy(&self, logits: &Tensor, targets: &[u32], weights: &[f32]) -> (Tensor, Tensor);
    /// `cross_entropy(rows · itemsᵀ, targets, weights)` for rows `[N, d]` and items `[V, d]`
    /// (the output layer of a next-item model and its loss), and, when `with_grads`, the
    /// gradients for dloss = 1: (∂L/∂rows `[N, d]`, ∂L/∂items `[V, d]`). A backend may fuse it
    /// so that the `[N, V]` logits never exist.
    fn linear_cross_entropy(
        &self,
        rows: &Tensor,
        items: &Tensor,
        targets: &[u32],
        weights: &[f32],
        with_grads: bool,
    ) -> (Tensor, Option<(Tensor, Tensor)>);
    /// Σ w·(max(x,0) − x·y + ln(1 + e^{−|x|})) / Σ w, as a rank-0 tensor.
    fn bce_with_logits(&self, logits: &Tensor, labels: &Tensor, weights: &[f32]) -> Tensor;
    /// dx = dloss·w/Σw·(σ(x) − y); `dloss` is the loss's (single-element) gradient.
    fn bce_with_logits_backward(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        weights: &[f32],
        dloss: &Tensor,
    ) -> Tensor;
}

/// The geometry of a 2-d convolution window (1-d convolutions use height 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl ConvGeometry {
    /// Output height and width for an input of h × w (the caller checks they are ≥ 1).
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let span = |k: usize, d: usize| d * (k - 1) + 1;
        (
            (h + 2 * self.padding.0 - span(self.kernel.0, self.dilation.0)) / self.stride.0 + 1,
            (w + 2 * self.padding.1 - span(self.kernel.1, self.dilation.1)) / self.stride.1 + 1,
        )
    }
}

/// Convolution as im2col + GEMM, and pooling.
pub trait ConvKernels {
    /// im2col: x `[B, C, H, W]` → `[B, OH·OW, C·KH·KW]`, one row per output position.
    fn unfold2d(&self, x: &Tensor, geometry: &ConvGeometry) -> Tensor;
    /// col2im, the backward of `unfold2d`: columns summed back into `[B, C, H, W]`.
    fn fold2d(&self, cols: &Tensor, image_shape: &[usize], geometry: &ConvGeometry) -> Tensor;
    /// Max (with arg-max positions, first on ties) or average pooling over the last axis.
    fn pool1d(&self, x: &Tensor, kernel: usize, stride: usize, max: bool) -> (Tensor, Vec<u32>);
    /// dx for `pool1d`: routed to the arg-max, or spread evenly over the window.
    fn pool1d_backward(
        &self,
        dy: &Tensor,
        input_len: usize,
        kernel: usize,
        stride: usize,
        argmax: Option<&[u32]>,
    ) -> Tensor;
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

/// The hyper-parameters of one Adam/AdamW step (bias corrections folded in by the caller).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// lr / (1 − β₁ᵗ).
    pub step_size: f32,
    /// 1 − β₂ᵗ.
    pub bias2: f32,
    /// lr·λ (0 for parameters exempt from decay).
    pub decay: f32,
}

/// Parameter updates, in place on the parameter's device.
pub trait OptimizerKernels {
    /// m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ − step_size·m/(√(v/bias2) + ε) − decay·θ.
    fn adam_update(
        &self,
        theta: &mut Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        grad: &Tensor,
        step: &AdamStep,
    );
    /// v ← μv + g + λθ; θ ← θ − lr·v.
    fn sgd_update(
        &self,
        theta: &mut Tensor,
        velocity: &mut Tensor,
        grad: &Tensor,
        lr: f32,
        momentum: f32,
        decay: f32,
    );
    /// Σ x², as a rank-0 tensor on x's device.
    fn sum_squares(&self, x: &Tensor) -> Tensor;
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
pub trait Backend:
    LinalgKernels
    + ElementwiseKernels
    + ActivationKernels
    + ShapeKernels
    + NnKernels
    + ConvKernels
    + RecurrentKernels
    + FeedForwardKernels
    + AttentionKernels
    + OptimizerKernels
    + Send
    + Sync
{
    /// A one-line description for logs, e.g. "cpu (2 threads)".
    fn name(&self) -> String;
    fn device(&self) -> Device;
}

static CPU: CpuBackend = CpuBackend;

/// Keeps freed memory in the process instead of returning it to the system.
///
/// A training step allocates the same large buffers (logits, their gradient: tens of MB) again
/// and again. glibc serves allocations above its mmap threshold with fresh pages from the
/// kernel and returns them on free, so every step pays a page fault per 4 KiB touched —
/// measured at 3-4× the time of the full-softmax cross-entropy itself. Raising the mmap and
/// trim thresholds lets freed blocks be reused. Done once, the first time a backend is used.
fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's tuning parameters, which is allowed at any time
        // and from any thread; it is called once.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}

/// The backend of a device.
pub fn for_device(device: Device) -> &'static dyn Backend {
    keep_freed_memory();
    match device {
        Device::Cpu => &CPU,
        Device::Gpu => gpu::backend().expect("a GPU tensor exists, so the GPU backend was opened"),
    }
}

/// The device a run asked for, resolved: `cpu`, `gpu` (an error when there is none, saying
/// why) or `auto` (a hardware GPU when there is one, else the CPU). Software adapters such as
/// Mesa's lavapipe count for `gpu` (CI tests the kernels on one) but not for `auto`, where
/// they would be far slower than the CPU backend. Returns the device and a one-line log.
pub fn select_device(request: &str) -> crate::Result<(Device, String)> {
    let cpu_line = || format!("device: {}", CPU.name());
    match request {
        "cpu" => Ok((Device::Cpu, cpu_line())),
        "gpu" => match gpu::backend() {
            Ok(gpu) => Ok((Device::Gpu, format!("device: {}", gpu.name()))),
            Err(why) => Err(crate::Error::Invalid(format!("--device gpu: {why}"))),
        },
        "auto" => match gpu::backend() {
            Ok(gpu) if !gpu.is_software() => Ok((Device::Gpu, format!("device: {}", gpu.name()))),
            Ok(gpu) => Ok((
                Device::Cpu,
                format!(
                    "{} (the only GPU, {}, is a software renderer; --device gpu uses it anyway)",
                    cpu_line(),
                    gpu.name()
                ),
            )),
            Err(why) => Ok((Device::Cpu, format!("{} (no GPU: {why})", cpu_line()))),
        },
        other => Err(crate::Error::Invalid(format!(
            "device {other:?}: expected auto, cpu or gpu"
        ))),
    }
}

/// Waits until all work recorded on `device` has run (a no-op on the CPU, whose kernels
/// return when done). Benchmarks call it to time GPU work, not its recording.
pub fn synchronize(device: Device) {
    if device == Device::Gpu
        && let Ok(gpu) = gpu::backend()
    {
        gpu.wait();
    }
}

/// The device named by `--device` when given, else by `SEQREC_DEVICE`, else `auto`.
pub fn requested_device(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("SEQREC_DEVICE").ok())
        .unwrap_or_else(|| "auto".to_string())
}

/// The backend that holds `tensor`.
pub fn of(tensor: &Tensor) -> &'static dyn Backend {
    for_device(tensor.device())
}
