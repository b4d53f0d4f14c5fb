//! Elementwise activations and the affine map on the GPU: `unary.wgsl`, `affine.wgsl`.

use super::GpuBackend;
use super::kernel::{Kernel, wgsl_u32};
use super::runtime::grid;
use crate::backend::{ActivationKernels, UnaryOp};
use crate::tensor::Tensor;
use crate::wgsl_kernel;

const UNARY: Kernel = wgsl_kernel!("unary.wgsl", "unary", [Read, ReadWrite]);
const UNARY_BACKWARD: Kernel = wgsl_kernel!(
    "unary.wgsl",
    "unary_backward",
    [Read, ReadWrite, Read, Read]
);
const AFFINE: Kernel = wgsl_kernel!("affine.wgsl", "affine", [Read, ReadWrite]);

/// Threads per workgroup of the three kernels.
const WG: u32 = 256;
const _: () = assert!(wgsl_u32(UNARY.source, "WG") == WG);
const _: () = assert!(wgsl_u32(AFFINE.source, "WG") == WG);

/// The shader's op code of `op`, read from its source.
fn op_code(op: UnaryOp) -> u32 {
    const CODES: [u32; 7] = [
        wgsl_u32(UNARY.source, "OP_RELU"),
        wgsl_u32(UNARY.source, "OP_GELU"),
        wgsl_u32(UNARY.source, "OP_SIGMOID"),
        wgsl_u32(UNARY.source, "OP_TANH"),
        wgsl_u32(UNARY.source, "OP_SOFTPLUS"),
        wgsl_u32(UNARY.source, "OP_EXP"),
        wgsl_u32(UNARY.source, "OP_LOG"),
    ];
    CODES[match op {
        UnaryOp::Relu => 0,
        UnaryOp::Gelu => 1,
        UnaryOp::Sigmoid => 2,
        UnaryOp::Tanh => 3,
        UnaryOp::Softplus => 4,
        UnaryOp::Exp => 5,
        UnaryOp::Log => 6,
    }]
}

impl GpuBackend {
    /// α·x + β into a new GPU tensor (`affine` and `scale`).
    pub(super) fn affine_map(&self, x: &Tensor, alpha: f32, beta: f32) -> Tensor {
        let n = x.len();
        let xb = self.buffer(x);
        let out = self.rt.alloc(n);
        self.rt.dispatch(
            &AFFINE,
            &[n as u32, alpha.to_bits(), beta.to_bits()],
            &[&xb, &out],
            grid(n, WG),
        );
        self.tensor(x.shape(), out)
    }
}

impl ActivationKernels for GpuBackend {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Tensor {
        let n = x.len();
        let xb = self.buffer(x);
        let out = self.rt.alloc(n);
        self.rt
            .dispatch(&UNARY, &[n as u32, op_code(op)], &[&xb, &out], grid(n, WG));
        self.tensor(x.shape(), out)
    }

    fn unary_backward(&self, op: UnaryOp, x: &Tensor, y: &Tensor, dy: &Tensor) -> Tensor {
        let n = x.len();
        let (xb, yb, dyb) = (self.buffer(x), self.buffer(y), self.buffer(dy));
        let out = self.rt.alloc(n);
        self.rt.dispatch(
            &UNARY_BACKWARD,
            &[n as u32, op_code(op)],
            &[&xb, &out, &yb, &dyb],
            grid(n, WG),
        );
        self.tensor(x.shape(), out)
    }

    fn affine(&self, x: &Tensor, alpha: f32, beta: f32) -> Tensor {
        self.affine_map(x, alpha, beta)
    }
}
