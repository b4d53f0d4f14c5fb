//! Elementwise activations and affine maps.
//!
//! y = f(x) elementwise; dx = dy · f'(x) (the derivatives are listed on `UnaryOp`).
//! scale: y = αx, dx = α·dy. add_scalar: y = x + c, dx = dy.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, UnaryOp};
use crate::error::Result;
use crate::tensor::Tensor;

struct UnaryBackward {
    op: UnaryOp,
}

impl Backward for UnaryBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let be = backend::of(ctx.grad);
        Ok(vec![Some(be.unary_backward(
            self.op,
            ctx.inputs[0],
            ctx.output,
            ctx.grad,
        ))])
    }
}

struct AffineBackward {
    alpha: f32,
}

impl Backward for AffineBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            backend::of(ctx.grad).affine(ctx.grad, self.alpha, 0.0),
        )])
    }
}

impl Tape {
    fn unary(&mut self, name: &'static str, op: UnaryOp, x: Var) -> Result<Var> {
        let v = self.value(x);
        let value = backend::of(v).unary(op, v);
        Ok(self.record(name, value, &[x], UnaryBackward { op }))
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary("relu", UnaryOp::Relu, x)
    }

    /// Exact (erf) GELU, PyTorch's default.
    pub fn gelu(&mut self, x: Var) -> Result<Var> {
        self.unary("gelu", UnaryOp::Gelu, x)
    }

    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary("sigmoid", UnaryOp::Sigmoid, x)
    }

    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.unary("tanh", UnaryOp::Tanh, x)
    }

    pub fn softplus(&mut self, x: Var) -> Result<Var> {
        self.unary("softplus", UnaryOp::Softplus, x)
    }

    pub fn exp(&mut self, x: Var) -> Result<Var> {
        self.unary("exp", UnaryOp::Exp, x)
    }

    pub fn log(&mut self, x: Var) -> Result<Var> {
        self.unary("log", UnaryOp::Log, x)
    }

    /// αx.
    pub fn scale(&mut self, x: Var, alpha: f32) -> Result<Var> {
        let v = self.value(x);
        let value = backend::of(v).affine(v, alpha, 0.0);
        Ok(self.record("scale", value, &[x], AffineBackward { alpha }))
    }

    /// x + c.
    pub fn add_scalar(&mut self, x: Var, c: f32) -> Result<Var> {
        let v = self.value(x);
        let value = backend::of(v).affine(v, 1.0, c);
        Ok(self.record("add_scalar", value, &[x], AffineBackward { alpha: 1.0 }))
    }
}
