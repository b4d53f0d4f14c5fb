//! Shape ops: reshape, permute/transpose, slice/split, concat, index_select, embedding,
//! masked_fill. Their backwards move the gradient back where the values came from:
//! reshape → reshape back; permute → the inverse permutation; slice → place into zeros;
//! concat → slice per input; index_select/embedding → scatter-add (repeated indices
//! accumulate; an embedding's padding row 0 gets nothing); masked_fill → zero where filled.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::{Ids, Tensor};

struct ReshapeBackward;

impl Backward for ReshapeBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.grad.reshaped(ctx.inputs[0].shape())?)])
    }
}

struct PermuteBackward {
    inverse: Vec<usize>,
}

impl Backward for PermuteBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            backend::of(ctx.grad).permute(ctx.grad, &self.inverse),
        )])
    }
}

struct SliceBackward {
    axis: usize,
    start: usize,
}

impl Backward for SliceBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let full = ctx.inputs[0].shape()[self.axis];
        Ok(vec![Some(
            backend::of(ctx.grad).unslice(ctx.grad, self.axis, self.start, full),
        )])
    }
}

struct ConcatBackward {
    axis: usize,
}

impl Backward for ConcatBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let be = backend::of(ctx.grad);
        let mut start = 0;
        let mut grads = Vec::with_capacity(ctx.inputs.len());
        for (input, &needs) in ctx.inputs.iter().zip(&ctx.needs_grad) {
            let len = input.shape()[self.axis];
            grads.push(needs.then(|| be.slice(ctx.grad, self.axis, start, len)));
            start += len;
        }
        Ok(grads)
    }
}

struct IndexSelectBackward {
    axis: usize,
    index: Ids,
    /// Embedding: the padding row 0 receives no gradient.
    skip_zero: bool,
    /// The shape dy is seen in by `index_add` (embedding flattens the ids).
    grad_shape: Vec<usize>,
}

impl Backward for IndexSelectBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let size = ctx.inputs[0].shape()[self.axis];
        let dy = ctx.grad.reshaped(&self.grad_shape)?;
        Ok(vec![Some(backend::of(&dy).index_add(
            &dy,
            self.axis,
            self.index.values(),
            size,
            self.skip_zero,
        ))])
    }
}

struct MaskedFillBackward {
    mask: Tensor,
}

impl Backward for MaskedFillBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            backend::of(ctx.grad).masked_fill(ctx.grad, &self.mask, 0.0),
        )])
    }
}

fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
    if axis >= shape.len() {
        return Err(Error::shape(
            op,
            format!("axis {axis} out of range for shape {shape:?}"),
        ));
    }
    Ok(())
}

impl Tape {
    /// The same values under a new shape (no copy).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let value = self.value(x).reshaped(shape)?;
        Ok(self.record("reshape", value, &[x], ReshapeBackward))
    }

    /// Output axis i is input axis `axes[i]`.
    pub fn permute(&mut self, x: Var, axes: &[usize]) -> Result<Var> {
        let rank = self.shape(x).len();
        let mut seen = vec![false; rank];
        if axes.len() != rank
            || axes
                .iter()
                .any(|&a| a >= rank || std::mem::replace(&mut seen[a], true))
        {
            return Err(Error::shape(
                "permute",
                format!(
                    "{axes:?} is not a permutation of the {rank} axes of {:?}",
                    self.shape(x)
                ),
            ));
        }
        let mut inverse = vec![0; rank];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i;
        }
        let v = self.value(x);
        let value = backend::of(v).permute(v, axes);
        Ok(self.record("permute", value, &[x], PermuteBackward { inverse }))
    }

    /// Swaps two axes.
    pub fn transpose(&mut self, x: Var, axis0: usize, axis1: usize) -> Result<Var> {
        let rank = self.shape(x).len();
        check_axis("transpose", self.shape(x), axis0.max(axis1))?;
        let mut axes: Vec<usize> = (0..rank).collect();
        axes.swap(axis0, axis1);
        self.permute(x, &axes)
    }

    /// Positions start..start+len along `axis`.
    pub fn slice(&mut self, x: Var, axis: usize, start: usize, len: usize) -> Result<Var> {
        let shape = self.shape(x);
        check_axis("slice", shape, axis)?;
        if start + len > shape[axis] {
            return Err(Error::shape(
                "slice",
                format!(
                    "{start}..{} is out of range for axis {axis} of {shape:?}",
                    start + len
                ),
            ));
        }
        let v = self.value(x);
        let value = backend::of(v).slice(v, axis, start, len);
        Ok(self.record("slice", value, &[x], SliceBackward { axis, start }))
    }

    /// Cuts `x` along `axis` into consecutive parts of the given sizes.
    pub fn split(&mut self, x: Var, axis: usize, sizes: &[usize]) -> Result<Vec<Var>> {
        let shape = self.shape(x);
        check_axis("split", shape, axis)?;
        if sizes.iter().sum::<usize>() != shape[axis] {
            return Err(Error::shape(
                "split",
                format!("sizes {sizes:?} do not add up to axis {axis} of {shape:?}"),
            ));
        }
        let mut start = 0;
        let mut parts = Vec::with_capacity(sizes.len());
        for &len in sizes {
            parts.push(self.slice(x, axis, start, len)?);
            start += len;
        }
        Ok(parts)
    }

    /// Joins tensors along `axis`; all other axes must agree.
    pub fn concat(&mut self, xs: &[Var], axis: usize) -> Result<Var> {
        let Some(&first) = xs.first() else {
            return Err(Error::shape("concat", "nothing to concatenate"));
        };
        let shape = self.shape(first).to_vec();
        check_axis("concat", &shape, axis)?;
        for &x in xs {
            let s = self.shape(x);
            if s.len() != shape.len()
                || s.iter()
                    .zip(&shape)
                    .enumerate()
                    .any(|(i, (a, b))| i != axis && a != b)
            {
                return Err(Error::shape(
                    "concat",
                    format!("shapes {shape:?} and {s:?} differ outside axis {axis}"),
                ));
            }
        }
        let values: Vec<&Tensor> = xs.iter().map(|&x| self.value(x)).collect();
        let value = backend::of(values[0]).concat(&values, axis);
        Ok(self.record("concat", value, xs, ConcatBackward { axis }))
    }

    /// Entries `index[j]` along `axis` (index is rank 1).
    pub fn index_select(&mut self, x: Var, axis: usize, index: &Ids) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        check_axis("index_select", &shape, axis)?;
        if index.shape().len() != 1 {
            return Err(Error::shape(
                "index_select",
                format!("index must be rank 1, got {:?}", index.shape()),
            ));
        }
        if let Some(&bad) = index.values().iter().find(|&&i| i as usize >= shape[axis]) {
            return Err(Error::shape(
                "index_select",
                format!("index {bad} out of range for axis {axis} of {shape:?}"),
            ));
        }
        let v = self.value(x);
        let value = backend::of(v).index_select(v, axis, index.values());
        let grad_shape = value.shape().to_vec();
        Ok(self.record(
            "index_select",
            value,
            &[x],
            IndexSelectBackward {
                axis,
                index: index.clone(),
                skip_zero: false,
                grad_shape,
            },
        ))
    }

    /// Rows of `table` `[n, d]` for every id: `[ids.shape.., d]`. Id 0 is padding: its row is
    /// returned like any other but never receives a gradient.
    pub fn embedding(&mut self, table: Var, ids: &Ids) -> Result<Var> {
        let shape = self.shape(table).to_vec();
        if shape.len() != 2 {
            return Err(Error::shape(
                "embedding",
                format!("table must be [n, d], got {shape:?}"),
            ));
        }
        if ids.shape().len() > 3 {
            return Err(Error::shape(
                "embedding",
                format!("ids of rank {} (at most 3)", ids.shape().len()),
            ));
        }
        if let Some(&bad) = ids.values().iter().find(|&&i| i as usize >= shape[0]) {
            return Err(Error::shape(
                "embedding",
                format!("id {bad} out of range for a table of {} rows", shape[0]),
            ));
        }
        let v = self.value(table);
        let rows = backend::of(v).index_select(v, 0, ids.values());
        let mut out_shape = ids.shape().to_vec();
        out_shape.push(shape[1]);
        let value = rows.reshaped(&out_shape)?;
        let grad_shape = vec![ids.len(), shape[1]];
        Ok(self.record(
            "embedding",
            value,
            &[table],
            IndexSelectBackward {
                axis: 0,
                index: ids.clone(),
                skip_zero: true,
                grad_shape,
            },
        ))
    }

    /// `value` where `mask` (broadcastable to x; 1 = fill, 0 = keep) is set; the gradient is
    /// zero there.
    pub fn masked_fill(&mut self, x: Var, mask: &Tensor, value: f32) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        let broadcast = super::broadcast_shape("masked_fill", &shape, mask.shape())?;
        if broadcast != shape {
            return Err(Error::shape(
                "masked_fill",
                format!("mask {:?} does not broadcast to {shape:?}", mask.shape()),
            ));
        }
        let v = self.value(x);
        let out = backend::of(v).masked_fill(v, mask, value);
        Ok(self.record(
            "masked_fill",
            out,
            &[x],
            MaskedFillBackward { mask: mask.clone() },
        ))
    }
}
