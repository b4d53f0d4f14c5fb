//! Convolutions as im2col + GEMM, and pooling (Caser, NextItNet).
//!
//! conv2d: cols = unfold(x) `[B, P, C·KH·KW]`; y = cols · Wᵀ + b `[B, P, C_out]`, then laid out
//! as `[B, C_out, OH, OW]`. Backward comes from the parts: unfold's backward is fold (col2im),
//! the GEMM's is the matmul backward.
//! conv1d is conv2d on `[B, C, 1, L]`; conv1d_causal pads (K−1)·dilation on the left only, so
//! output t sees inputs ≤ t.
//! max_pool1d: y_t = max of the window; dx routed to the arg-max. avg_pool1d: y_t = mean;
//! dx spread evenly.

use crate::autograd::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, ConvGeometry};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct UnfoldBackward {
    geometry: ConvGeometry,
}

impl Backward for UnfoldBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(ctx.grad).fold2d(
            ctx.grad,
            ctx.inputs[0].shape(),
            &self.geometry,
        ))])
    }
}

struct PoolBackward {
    kernel: usize,
    stride: usize,
    argmax: Option<Vec<u32>>,
}

impl Backward for PoolBackward {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let input_len = *ctx.inputs[0].shape().last().expect("rank ≥ 1");
        Ok(vec![Some(backend::of(ctx.grad).pool1d_backward(
            ctx.grad,
            input_len,
            self.kernel,
            self.stride,
            self.argmax.as_deref(),
        ))])
    }
}

impl Tape {
    /// im2col of x `[B, C, H, W]`: `[B, OH·OW, C·KH·KW]`.
    pub fn unfold2d(&mut self, x: Var, geometry: ConvGeometry) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        let g = geometry;
        if shape.len() != 4
            || g.stride.0 == 0
            || g.stride.1 == 0
            || g.dilation.0 == 0
            || g.dilation.1 == 0
            || g.kernel.0 == 0
            || g.kernel.1 == 0
        {
            return Err(Error::shape(
                "unfold2d",
                format!(
                    "input {shape:?} must be [B, C, H, W] with positive kernel, stride and dilation"
                ),
            ));
        }
        let span = |k: usize, d: usize, size: usize, pad: usize| d * (k - 1) < size + 2 * pad;
        if !span(g.kernel.0, g.dilation.0, shape[2], g.padding.0)
            || !span(g.kernel.1, g.dilation.1, shape[3], g.padding.1)
        {
            return Err(Error::shape(
                "unfold2d",
                format!(
                    "kernel {:?} (dilation {:?}) does not fit input {shape:?} with padding {:?}",
                    g.kernel, g.dilation, g.padding
                ),
            ));
        }
        let v = self.value(x);
        let value = backend::of(v).unfold2d(v, &g);
        Ok(self.record("unfold2d", value, &[x], UnfoldBackward { geometry: g }))
    }

    /// 2-d convolution: x `[B, C_in, H, W]`, weight `[C_out, C_in, KH, KW]`, bias `[C_out]`.
    pub fn conv2d(
        &mut self,
        x: Var,
        weight: Var,
        bias: Option<Var>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Var> {
        self.conv(x, weight, bias, stride, padding, (1, 1))
    }

    fn conv(
        &mut self,
        x: Var,
        weight: Var,
        bias: Option<Var>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
    ) -> Result<Var> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(weight).to_vec());
        if xs.len() != 4 || ws.len() != 4 || ws[1] != xs[1] {
            return Err(Error::shape(
                "conv",
                format!(
                    "input {xs:?} and weight {ws:?} must be [B, C, H, W] and [C_out, C, KH, KW]"
                ),
            ));
        }
        if let Some(b) = bias
            && self.shape(b) != [ws[0]]
        {
            return Err(Error::shape(
                "conv",
                format!("bias {:?} must be [{}]", self.shape(b), ws[0]),
            ));
        }
        let geometry = ConvGeometry {
            kernel: (ws[2], ws[3]),
            stride,
            padding,
            dilation,
        };
        let cols = self.unfold2d(x, geometry)?;
        let (oh, ow) = geometry.output_size(xs[2], xs[3]);
        let w2 = self.reshape(weight, &[ws[0], ws[1] * ws[2] * ws[3]])?;
        let mut y = self.matmul_t(cols, w2, false, true)?; // [B, P, C_out]
        if let Some(b) = bias {
            y = self.add(y, b)?;
        }
        let y = self.permute(y, &[0, 2, 1])?;
        self.reshape(y, &[xs[0], ws[0], oh, ow])
    }

    /// 1-d convolution: x `[B, C_in, L]`, weight `[C_out, C_in, K]` → `[B, C_out, L_out]`.
    pub fn conv1d(
        &mut self,
        x: Var,
        weight: Var,
        bias: Option<Var>,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Result<Var> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(weight).to_vec());
        if xs.len() != 3 || ws.len() != 3 {
            return Err(Error::shape(
                "conv1d",
                format!("input {xs:?} and weight {ws:?} must be [B, C, L] and [C_out, C, K]"),
            ));
        }
        let x4 = self.reshape(x, &[xs[0], xs[1], 1, xs[2]])?;
        let w4 = self.reshape(weight, &[ws[0], ws[1], 1, ws[2]])?;
        let y = self.conv(x4, w4, bias, (1, stride), (0, padding), (1, dilation))?;
        let l_out = self.shape(y)[3];
        self.reshape(y, &[xs[0], ws[0], l_out])
    }

    /// Causal 1-d convolution (stride 1): output t sees inputs t−(K−1)·dilation..=t; L_out = L.
    pub fn conv1d_causal(
        &mut self,
        x: Var,
        weight: Var,
        bias: Option<Var>,
        dilation: usize,
    ) -> Result<Var> {
        let (l, k) = (
            *self.shape(x).last().unwrap_or(&0),
            *self.shape(weight).last().unwrap_or(&0),
        );
        if k == 0 {
            return Err(Error::shape("conv1d_causal", "empty kernel"));
        }
        // Symmetric padding of (K−1)·d; the first L outputs are exactly the causal ones.
        let y = self.conv1d(x, weight, bias, 1, (k - 1) * dilation, dilation)?;
        self.slice(y, 2, 0, l)
    }

    fn pool(
        &mut self,
        name: &'static str,
        x: Var,
        kernel: usize,
        stride: usize,
        max: bool,
    ) -> Result<Var> {
        let shape = self.shape(x);
        let l = *shape.last().unwrap_or(&0);
        if shape.is_empty() || kernel == 0 || stride == 0 || kernel > l {
            return Err(Error::shape(
                name,
                format!("kernel {kernel}, stride {stride} do not fit the last axis of {shape:?}"),
            ));
        }
        let v = self.value(x);
        let (value, arg) = backend::of(v).pool1d(v, kernel, stride, max);
        Ok(self.record(
            name,
            value,
            &[x],
            PoolBackward {
                kernel,
                stride,
                argmax: max.then_some(arg),
            },
        ))
    }

    /// Max pooling over the last axis.
    pub fn max_pool1d(&mut self, x: Var, kernel: usize, stride: usize) -> Result<Var> {
        self.pool("max_pool1d", x, kernel, stride, true)
    }

    /// Average pooling over the last axis.
    pub fn avg_pool1d(&mut self, x: Var, kernel: usize, stride: usize) -> Result<Var> {
        self.pool("avg_pool1d", x, kernel, stride, false)
    }
}
