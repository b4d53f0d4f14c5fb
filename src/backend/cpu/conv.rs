//! im2col / col2im and 1-d pooling on the CPU, parallel over the batch.

use rayon::prelude::*;

use super::{CpuBackend, tensor};
use crate::backend::{ConvGeometry, ConvKernels};
use crate::tensor::Tensor;

impl ConvKernels for CpuBackend {
    fn unfold2d(&self, x: &Tensor, g: &ConvGeometry) -> Tensor {
        let (b, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (oh, ow) = g.output_size(h, w);
        let k = c * g.kernel.0 * g.kernel.1;
        let xs = x.cpu();
        let mut out = vec![0.0f32; b * oh * ow * k];
        out.par_chunks_mut((oh * ow * k).max(1))
            .enumerate()
            .for_each(|(n, o)| {
                let image = &xs[n * c * h * w..(n + 1) * c * h * w];
                for (p, col) in o.chunks_mut(k).enumerate() {
                    let (py, px) = (p / ow, p % ow);
                    for (j, v) in col.iter_mut().enumerate() {
                        let (ch, ky, kx) = (
                            j / (g.kernel.0 * g.kernel.1),
                            (j / g.kernel.1) % g.kernel.0,
                            j % g.kernel.1,
                        );
                        let y =
                            (py * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                        let xx =
                            (px * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                        *v = if y >= 0 && (y as usize) < h && xx >= 0 && (xx as usize) < w {
                            image[(ch * h + y as usize) * w + xx as usize]
                        } else {
                            0.0
                        };
                    }
                }
            });
        tensor(&[b, oh * ow, k], out)
    }

    fn fold2d(&self, cols: &Tensor, image_shape: &[usize], g: &ConvGeometry) -> Tensor {
        let (b, c, h, w) = (
            image_shape[0],
            image_shape[1],
            image_shape[2],
            image_shape[3],
        );
        let (oh, ow) = g.output_size(h, w);
        let k = c * g.kernel.0 * g.kernel.1;
        let cs = cols.cpu();
        let mut out = vec![0.0f32; b * c * h * w];
        out.par_chunks_mut((c * h * w).max(1))
            .enumerate()
            .for_each(|(n, image)| {
                let columns = &cs[n * oh * ow * k..(n + 1) * oh * ow * k];
                for (p, col) in columns.chunks(k).enumerate() {
                    let (py, px) = (p / ow, p % ow);
                    for (j, &v) in col.iter().enumerate() {
                        let (ch, ky, kx) = (
                            j / (g.kernel.0 * g.kernel.1),
                            (j / g.kernel.1) % g.kernel.0,
                            j % g.kernel.1,
                        );
                        let y =
                            (py * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                        let xx =
                            (px * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                        if y >= 0 && (y as usize) < h && xx >= 0 && (xx as usize) < w {
                            image[(ch * h + y as usize) * w + xx as usize] += v;
                        }
                    }
                }
            });
        tensor(image_shape, out)
    }

    fn pool1d(&self, x: &Tensor, kernel: usize, stride: usize, max: bool) -> (Tensor, Vec<u32>) {
        let l = *x.shape().last().expect("rank ≥ 1");
        let lo = (l - kernel) / stride + 1;
        let xs = x.cpu();
        let rows = xs.len() / l;
        let mut out = vec![0.0f32; rows * lo];
        let mut arg = vec![0u32; if max { rows * lo } else { 0 }];
        for r in 0..rows {
            let row = &xs[r * l..(r + 1) * l];
            for t in 0..lo {
                let window = &row[t * stride..t * stride + kernel];
                if max {
                    let (best, value) = window.iter().enumerate().fold(
                        (0, f32::NEG_INFINITY),
                        |(bi, bv), (i, &v)| {
                            if v > bv { (i, v) } else { (bi, bv) }
                        },
                    );
                    out[r * lo + t] = value;
                    arg[r * lo + t] = (t * stride + best) as u32;
                } else {
                    out[r * lo + t] = window.iter().sum::<f32>() / kernel as f32;
                }
            }
        }
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("rank ≥ 1") = lo;
        (tensor(&shape, out), arg)
    }

    fn pool1d_backward(
        &self,
        dy: &Tensor,
        input_len: usize,
        kernel: usize,
        stride: usize,
        argmax: Option<&[u32]>,
    ) -> Tensor {
        let lo = *dy.shape().last().expect("rank ≥ 1");
        let ds = dy.cpu();
        let rows = ds.len() / lo.max(1);
        let mut out = vec![0.0f32; rows * input_len];
        for r in 0..rows {
            for t in 0..lo {
                let d = ds[r * lo + t];
                match argmax {
                    Some(arg) => out[r * input_len + arg[r * lo + t] as usize] += d,
                    None => out[r * input_len + t * stride..r * input_len + t * stride + kernel]
                        .iter_mut()
                        .for_each(|o| *o += d / kernel as f32),
                }
            }
        }
        let mut shape = dy.shape().to_vec();
        *shape.last_mut().expect("rank ≥ 1") = input_len;
        tensor(&shape, out)
    }
}
