//! Broadcasting add, sub, mul, div.
//!
//! y = a ∘ b with numpy broadcasting. Backward: the gradient of each operand is the
//! elementwise partial derivative times dy, summed over the axes it was broadcast along:
//! add: (dy, dy); sub: (dy, -dy); mul: (dy·b, dy·a); div: (dy/b, -dy·a/b²).

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, BinaryOp};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The shape two operands broadcast to (numpy rules, aligned on the right).
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("cannot broadcast {a:?} with {b:?}"),
                ));
            }
        };
    }
    Ok(out)
}

struct BinaryBackward {
    op: BinaryOp,
}

impl Backward for BinaryBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (a, b, dy) = (ctx.inputs[0], ctx.inputs[1], ctx.grad);
        let be = backend::of(dy);
        let out_shape = dy.shape();
        let da = ctx.needs_grad[0].then(|| {
            let full = match self.op {
                BinaryOp::Add | BinaryOp::Sub => dy.clone(),
                BinaryOp::Mul => be.binary(BinaryOp::Mul, dy, b, out_shape),
                BinaryOp::Div => be.binary(BinaryOp::Div, dy, b, out_shape),
            };
            be.sum_to_shape(&full, a.shape())
        });
        let db = ctx.needs_grad[1].then(|| {
            let full = match self.op {
                BinaryOp::Add => dy.clone(),
                BinaryOp::Sub => be.scale(dy, -1.0),
                BinaryOp::Mul => be.binary(BinaryOp::Mul, dy, a, out_shape),
                // -dy · a / b² = -(dy · y) / b, with y = a / b the output.
                BinaryOp::Div => {
                    let dy_y = be.binary(BinaryOp::Mul, dy, ctx.output, out_shape);
                    be.scale(&be.binary(BinaryOp::Div, &dy_y, b, out_shape), -1.0)
                }
            };
            be.sum_to_shape(&full, b.shape())
        });
        Ok(vec![da, db])
    }
}

impl Tape {
    fn binary(&mut self, name: &'static str, op: BinaryOp, a: Var, b: Var) -> Result<Var> {
        let out_shape = broadcast_shape(name, self.shape(a), self.shape(b))?;
        let (x, y) = (self.value(a), self.value(b));
        let value = backend::of(x).binary(op, x, y, &out_shape);
        Ok(self.record(name, value, &[a, b], BinaryBackward { op }))
    }

    /// a + b, broadcasting.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary("add", BinaryOp::Add, a, b)
    }

    /// a - b, broadcasting.
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary("sub", BinaryOp::Sub, a, b)
    }

    /// a * b elementwise, broadcasting.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary("mul", BinaryOp::Mul, a, b)
    }

    /// a / b elementwise, broadcasting.
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary("div", BinaryOp::Div, a, b)
    }
}
