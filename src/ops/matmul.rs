//! Matrix products.
//!
//! C = op(A) · op(B), op = identity or transpose of the last two axes, batched over leading
//! axes (B may be a single matrix shared by the whole batch, as in a linear layer).
//! Backward (for C = A · B): dA = dC · Bᵀ, dB = Aᵀ · dC, summed over the batch when B is
//! shared. With transposes the same identities are applied to the transposed operands.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct MatmulBackward {
    transpose_a: bool,
    transpose_b: bool,
}

impl Backward for MatmulBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (a, b, dc) = (ctx.inputs[0], ctx.inputs[1], ctx.grad);
        let be = backend::of(dc);
        let (ta, tb) = (self.transpose_a, self.transpose_b);
        // C = op(A)op(B). dop(A) = dC op(B)ᵀ; dop(B) = op(A)ᵀ dC. Undo op on the result by
        // swapping operands and transposes: (X Y)ᵀ = Yᵀ Xᵀ.
        let da = ctx.needs_grad[0].then(|| {
            if ta {
                be.matmul(b, dc, tb, true)
            } else {
                be.matmul(dc, b, false, !tb)
            }
        });
        let db = if ctx.needs_grad[1] {
            if b.rank() == 2 && a.rank() > 2 {
                // B shared across the batch: flatten the batch into rows and sum via GEMM.
                // B shared across the batch (forward forbids transposing A then): flatten the
                // batch into rows and let one GEMM do the sum over items.
                let cols = a.shape()[a.rank() - 1];
                let a2 = a.reshaped(&[a.len() / cols, cols])?;
                let dc2 = dc.reshaped(&[
                    dc.len() / dc.shape()[dc.rank() - 1],
                    dc.shape()[dc.rank() - 1],
                ])?;
                Some(if tb {
                    be.matmul(&dc2, &a2, true, false)
                } else {
                    be.matmul(&a2, &dc2, true, false)
                })
            } else if tb {
                Some(be.matmul(dc, a, true, ta))
            } else {
                Some(be.matmul(a, dc, !ta, false))
            }
        } else {
            None
        };
        Ok(vec![da, db])
    }
}

impl Tape {
    /// `a · b` (see `matmul_t`).
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.matmul_t(a, b, false, false)
    }

    /// `op(a) · op(b)` with optional transposes of the last two axes. `a` is rank 2-4; `b` has
    /// the same batch axes as `a` or is a single matrix shared by every batch item.
    pub fn matmul_t(
        &mut self,
        a: Var,
        b: Var,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<Var> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa.len() < 2 || sb.len() < 2 {
            return Err(Error::shape(
                "matmul",
                format!("operands must be at least rank 2: {sa:?} · {sb:?}"),
            ));
        }
        if sb.len() != 2 && sb[..sb.len() - 2] != sa[..sa.len() - 2] {
            return Err(Error::shape(
                "matmul",
                format!("batch axes differ: {sa:?} · {sb:?}"),
            ));
        }
        let (ra, rb) = (sa.len(), sb.len());
        let k_a = if transpose_a { sa[ra - 2] } else { sa[ra - 1] };
        let k_b = if transpose_b { sb[rb - 1] } else { sb[rb - 2] };
        if k_a != k_b {
            return Err(Error::shape(
                "matmul",
                format!(
                    "inner sizes differ: {sa:?} · {sb:?} (transposes {transpose_a}, {transpose_b})"
                ),
            ));
        }
        if transpose_a && rb == 2 && ra > 2 {
            return Err(Error::shape(
                "matmul",
                "a batched, transposed `a` times a shared `b` is not supported: transpose `a` first",
            ));
        }
        let (x, y) = (self.value(a), self.value(b));
        let value = backend::of(x).matmul(x, y, transpose_a, transpose_b);
        Ok(self.record(
            "matmul",
            value,
            &[a, b],
            MatmulBackward {
                transpose_a,
                transpose_b,
            },
        ))
    }
}
