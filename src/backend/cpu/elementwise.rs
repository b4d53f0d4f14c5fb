//! Broadcasting elementwise arithmetic on the CPU.

use super::fresh::{collect_chunks, fill_chunks};
use super::{CpuBackend, PARALLEL_MIN_ELEMENTS, tensor};
use crate::backend::broadcast_strides;
use crate::backend::{BinaryOp, ElementwiseKernels};
use crate::tensor::Tensor;

/// The offset in a broadcast operand of output row `row` (all axes but the last).
fn row_offset(mut row: usize, out_shape: &[usize], strides: &[usize]) -> usize {
    let mut offset = 0;
    for axis in (0..out_shape.len().saturating_sub(1)).rev() {
        offset += (row % out_shape[axis]) * strides[axis];
        row /= out_shape[axis];
    }
    offset
}

/// `op` applied elementwise with broadcasting, the op chosen once per call: with `op.apply`
/// inside the loops every element went through a jump table and nothing vectorized.
fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Tensor {
    match op {
        BinaryOp::Add => binary_with(|x, y| x + y, a, b, out_shape),
        BinaryOp::Sub => binary_with(|x, y| x - y, a, b, out_shape),
        BinaryOp::Mul => binary_with(|x, y| x * y, a, b, out_shape),
        BinaryOp::Div => binary_with(|x, y| x / y, a, b, out_shape),
    }
}

fn binary_with(
    apply: impl Fn(f32, f32) -> f32 + Copy + Sync,
    a: &Tensor,
    b: &Tensor,
    out_shape: &[usize],
) -> Tensor {
    let (x, y) = (a.cpu(), b.cpu());
    let n: usize = out_shape.iter().product();
    let parallel = n >= PARALLEL_MIN_ELEMENTS;
    if a.shape() == out_shape && b.shape() == out_shape {
        let out = collect_chunks(n, 4096, parallel, |_, range| {
            x[range.clone()]
                .iter()
                .zip(&y[range])
                .map(|(&x, &y)| apply(x, y))
        });
        return tensor(out_shape, out);
    }
    // General case: walk output rows; within a row each operand either advances by one
    // or stays put (broadcast along the last axis).
    let width = out_shape.last().copied().unwrap_or(1).max(1);
    let sa = broadcast_strides(a.shape(), out_shape);
    let sb = broadcast_strides(b.shape(), out_shape);
    let (step_a, step_b) = (
        sa.last().copied().unwrap_or(0),
        sb.last().copied().unwrap_or(0),
    );
    let out = fill_chunks(n, width, parallel, |row, o| {
        let (oa, ob) = (
            row_offset(row, out_shape, &sa),
            row_offset(row, out_shape, &sb),
        );
        let w = o.len();
        // Contiguous or constant operands get loops the compiler vectorizes.
        match (step_a, step_b) {
            (1, 1) => {
                for ((o, &a), &b) in o.iter_mut().zip(&x[oa..oa + w]).zip(&y[ob..ob + w]) {
                    *o = apply(a, b);
                }
            }
            (1, 0) => {
                let b = y[ob];
                for (o, &a) in o.iter_mut().zip(&x[oa..oa + w]) {
                    *o = apply(a, b);
                }
            }
            (0, 1) => {
                let a = x[oa];
                for (o, &b) in o.iter_mut().zip(&y[ob..ob + w]) {
                    *o = apply(a, b);
                }
            }
            _ => {
                for (j, o) in o.iter_mut().enumerate() {
                    *o = apply(x[oa + j * step_a], y[ob + j * step_b]);
                }
            }
        }
    });
    tensor(out_shape, out)
}

impl ElementwiseKernels for CpuBackend {
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Tensor {
        binary(op, a, b, out_shape)
    }

    fn add_assign(&self, mut sum: Tensor, x: &Tensor) -> Tensor {
        for (s, &v) in sum.cpu_mut().iter_mut().zip(x.cpu()) {
            *s += v;
        }
        sum
    }

    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Tensor {
        if x.shape() == shape {
            return x.clone();
        }
        let n: usize = shape.iter().product();
        let out_shape = x.shape();
        let strides = broadcast_strides(shape, out_shape);
        let width = out_shape.last().copied().unwrap_or(1).max(1);
        let step = strides.last().copied().unwrap_or(0);
        let values = x.cpu();
        let mut out = vec![0.0f32; n];
        for (row, chunk) in values.chunks(width).enumerate() {
            let offset = row_offset(row, out_shape, &strides);
            if step == 0 {
                out[offset] += chunk.iter().sum::<f32>();
            } else {
                for (o, &v) in out[offset..offset + width].iter_mut().zip(chunk) {
                    *o += v;
                }
            }
        }
        tensor(shape, out)
    }

    fn scale(&self, x: &Tensor, alpha: f32) -> Tensor {
        tensor(x.shape(), x.cpu().iter().map(|&v| alpha * v).collect())
    }
}
