//! Convolution (im2col/col2im) and pooling on the GPU: `conv_unfold.wgsl`, `pool1d.wgsl`,
//! `pool1d_backward.wgsl`.

use super::GpuBackend;
use super::kernel::{Kernel, wgsl_u32};
use super::runtime::grid;
use crate::backend::{ConvGeometry, ConvKernels};
use crate::tensor::Tensor;
use crate::wgsl_kernel;

const UNFOLD: Kernel = wgsl_kernel!("conv_unfold.wgsl", "unfold", [Read, ReadWrite]);
const FOLD: Kernel = wgsl_kernel!("conv_unfold.wgsl", "fold", [Read, ReadWrite]);
const POOL_MAX: Kernel = wgsl_kernel!("pool1d.wgsl", "pool_max", [Read, ReadWrite, ReadWrite]);
const POOL_AVG: Kernel = wgsl_kernel!("pool1d.wgsl", "pool_avg", [Read, ReadWrite]);
const POOL_BACKWARD_MAX: Kernel = wgsl_kernel!(
    "pool1d_backward.wgsl",
    "pool_backward_max",
    [Read, ReadWrite, Read]
);
const POOL_BACKWARD_AVG: Kernel = wgsl_kernel!(
    "pool1d_backward.wgsl",
    "pool_backward_avg",
    [Read, ReadWrite]
);

/// Threads per workgroup of every kernel here.
const WG: u32 = 256;
const _: () = assert!(wgsl_u32(UNFOLD.source, "WG") == WG);
const _: () = assert!(wgsl_u32(POOL_MAX.source, "WG") == WG);
const _: () = assert!(wgsl_u32(POOL_BACKWARD_MAX.source, "WG") == WG);

/// `conv_unfold.wgsl`'s params after the element count: the image and window geometry.
fn geometry_params(n: usize, image: &[usize], g: &ConvGeometry) -> [u32; 14] {
    let (oh, ow) = g.output_size(image[2], image[3]);
    [
        n,
        image[1],
        image[2],
        image[3],
        oh,
        ow,
        g.kernel.0,
        g.kernel.1,
        g.stride.0,
        g.stride.1,
        g.padding.0,
        g.padding.1,
        g.dilation.0,
        g.dilation.1,
    ]
    .map(|v| v as u32)
}

impl ConvKernels for GpuBackend {
    fn unfold2d(&self, x: &Tensor, g: &ConvGeometry) -> Tensor {
        let s = x.shape();
        let (oh, ow) = g.output_size(s[2], s[3]);
        let shape = [s[0], oh * ow, s[1] * g.kernel.0 * g.kernel.1];
        let n = shape.iter().product();
        let xb = self.buffer(x);
        let out = self.rt.alloc(n);
        self.rt.dispatch(
            &UNFOLD,
            &geometry_params(n, s, g),
            &[&xb, &out],
            grid(n, WG),
        );
        self.tensor(&shape, out)
    }

    fn fold2d(&self, cols: &Tensor, image_shape: &[usize], g: &ConvGeometry) -> Tensor {
        let n = image_shape.iter().product();
        let cb = self.buffer(cols);
        let out = self.rt.alloc(n);
        self.rt.dispatch(
            &FOLD,
            &geometry_params(n, image_shape, g),
            &[&cb, &out],
            grid(n, WG),
        );
        self.tensor(image_shape, out)
    }

    fn pool1d(&self, x: &Tensor, kernel: usize, stride: usize, max: bool) -> (Tensor, Vec<u32>) {
        let len = *x.shape().last().expect("rank ≥ 1");
        let out_len = (len - kernel) / stride + 1;
        let rows = x.len() / len;
        let n = rows * out_len;
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("rank ≥ 1") = out_len;
        let xb = self.buffer(x);
        let y = self.rt.alloc(n);
        let params = [
            n as u32,
            len as u32,
            out_len as u32,
            kernel as u32,
            stride as u32,
            f32::NEG_INFINITY.to_bits(),
        ];
        if !max {
            self.rt
                .dispatch(&POOL_AVG, &params, &[&xb, &y], grid(n, WG));
            return (self.tensor(&shape, y), Vec::new());
        }
        let argmax = self.rt.alloc(n);
        self.rt
            .dispatch(&POOL_MAX, &params, &[&xb, &y, &argmax], grid(n, WG));
        // The tape keeps the arg-max on the host; only this small index buffer comes back.
        (self.tensor(&shape, y), self.rt.read::<u32>(&argmax))
    }

    fn pool1d_backward(
        &self,
        dy: &Tensor,
        input_len: usize,
        kernel: usize,
        stride: usize,
        argmax: Option<&[u32]>,
    ) -> Tensor {
        let out_len = *dy.shape().last().expect("rank ≥ 1");
        let rows = dy.len() / out_len.max(1);
        let n = rows * input_len;
        let mut shape = dy.shape().to_vec();
        *shape.last_mut().expect("rank ≥ 1") = input_len;
        let dyb = self.buffer(dy);
        let dx = self.rt.alloc(n);
        let params = [n, input_len, out_len, kernel, stride].map(|v| v as u32);
        match argmax {
            Some(arg) => {
                let ab = self.rt.upload(arg);
                self.rt
                    .dispatch(&POOL_BACKWARD_MAX, &params, &[&dyb, &dx, &ab], grid(n, WG));
            }
            None => {
                self.rt
                    .dispatch(&POOL_BACKWARD_AVG, &params, &[&dyb, &dx], grid(n, WG));
            }
        }
        self.tensor(&shape, dx)
    }
}
