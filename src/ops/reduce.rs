//! Sums and means over axes.
//!
//! sum: y = Σ_{axes} x; dx = dy broadcast back over the summed axes.
//! mean: y = Σ_{axes} x / m (m = number of summed elements); dx = dy / m broadcast back.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, BinaryOp};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct SumBackward {
    /// The input's shape with 1 on the summed axes (the output's shape with kept dims).
    kept_shape: Vec<usize>,
    scale: f32,
}

impl Backward for SumBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let be = backend::of(ctx.grad);
        let dy = ctx.grad.reshaped(&self.kept_shape)?;
        // Broadcast dy back to the input's shape (adding a scalar zero broadcasts).
        let dx = be.binary(
            BinaryOp::Add,
            &dy,
            &Tensor::scalar(0.0),
            ctx.inputs[0].shape(),
        );
        Ok(vec![Some(if self.scale == 1.0 {
            dx
        } else {
            be.affine(&dx, self.scale, 0.0)
        })])
    }
}

impl Tape {
    fn reduce(
        &mut self,
        name: &'static str,
        x: Var,
        axes: &[usize],
        keep_dims: bool,
        mean: bool,
    ) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        let mut kept_shape = shape.clone();
        for &axis in axes {
            if axis >= shape.len() {
                return Err(Error::shape(
                    name,
                    format!("axis {axis} out of range for shape {shape:?}"),
                ));
            }
            kept_shape[axis] = 1;
        }
        let count: usize = axes.iter().map(|&a| shape[a]).product::<usize>().max(1);
        let scale = if mean { 1.0 / count as f32 } else { 1.0 };
        let v = self.value(x);
        let be = backend::of(v);
        let mut value = be.sum_to_shape(v, &kept_shape);
        if mean {
            value = be.affine(&value, scale, 0.0);
        }
        if !keep_dims {
            let out_shape: Vec<usize> = shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            value = value.reshaped(&out_shape)?;
        }
        Ok(self.record(name, value, &[x], SumBackward { kept_shape, scale }))
    }

    /// Σ over `axes`.
    pub fn sum(&mut self, x: Var, axes: &[usize], keep_dims: bool) -> Result<Var> {
        self.reduce("sum", x, axes, keep_dims, false)
    }

    /// Mean over `axes`.
    pub fn mean(&mut self, x: Var, axes: &[usize], keep_dims: bool) -> Result<Var> {
        self.reduce("mean", x, axes, keep_dims, true)
    }

    /// Σ of every element, as a rank-0 tensor.
    pub fn sum_all(&mut self, x: Var) -> Result<Var> {
        let axes: Vec<usize> = (0..self.shape(x).len()).collect();
        self.reduce("sum_all", x, &axes, false, false)
    }

    /// Mean of every element, as a rank-0 tensor.
    pub fn mean_all(&mut self, x: Var) -> Result<Var> {
        let axes: Vec<usize> = (0..self.shape(x).len()).collect();
        self.reduce("mean_all", x, &axes, false, true)
    }
}
