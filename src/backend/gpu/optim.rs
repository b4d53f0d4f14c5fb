//! Parameter updates on the GPU, in place: `adam.wgsl`, `sgd.wgsl`, `sum_squares.wgsl`.

use std::sync::Arc;

use super::GpuBackend;
use super::kernel::{Kernel, wgsl_u32};
use super::runtime::{GpuBuffer, grid};
use crate::backend::{AdamStep, OptimizerKernels};
use crate::tensor::{Storage, Tensor};
use crate::wgsl_kernel;

const ADAM: Kernel = wgsl_kernel!("adam.wgsl", "adam", [ReadWrite, ReadWrite, ReadWrite, Read]);
const SGD: Kernel = wgsl_kernel!("sgd.wgsl", "sgd", [ReadWrite, ReadWrite, Read]);
const SUM_SQUARES: Kernel = wgsl_kernel!("sum_squares.wgsl", "sum_squares", [Read, ReadWrite]);

/// Threads per workgroup of the three kernels.
const WG: u32 = 256;
const _: () = assert!(wgsl_u32(ADAM.source, "WG") == WG);
const _: () = assert!(wgsl_u32(SGD.source, "WG") == WG);
const _: () = assert!(wgsl_u32(SUM_SQUARES.source, "WG") == WG);

impl GpuBackend {
    /// The buffer of `t` for a kernel to update in place: uploaded when on the host, copied
    /// first when another tensor shares it (the same rule as `Tensor::cpu_mut`).
    fn exclusive(&self, t: &mut Tensor) -> Arc<GpuBuffer> {
        let unique = match t.storage() {
            Storage::Gpu(b) => Arc::strong_count(b) == 1,
            Storage::Cpu(_) => false,
        };
        if !unique {
            let copy = match t.storage() {
                Storage::Gpu(b) => self.rt.copy(b),
                Storage::Cpu(values) => self.rt.upload(values),
            };
            *t = self.tensor(t.shape(), copy);
        }
        self.buffer(t)
    }
}

impl OptimizerKernels for GpuBackend {
    fn adam_update(
        &self,
        theta: &mut Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        grad: &Tensor,
        s: &AdamStep,
    ) {
        let n = theta.len();
        let (t, mb, vb, g) = (
            self.exclusive(theta),
            self.exclusive(m),
            self.exclusive(v),
            self.buffer(grad),
        );
        let params = [
            n as u32,
            s.beta1.to_bits(),
            s.beta2.to_bits(),
            s.eps.to_bits(),
            s.step_size.to_bits(),
            s.bias2.to_bits(),
            s.decay.to_bits(),
        ];
        self.rt
            .dispatch(&ADAM, &params, &[&t, &mb, &vb, &g], grid(n, WG));
    }

    fn sgd_update(
        &self,
        theta: &mut Tensor,
        velocity: &mut Tensor,
        grad: &Tensor,
        lr: f32,
        momentum: f32,
        decay: f32,
    ) {
        let n = theta.len();
        let (t, vel, g) = (
            self.exclusive(theta),
            self.exclusive(velocity),
            self.buffer(grad),
        );
        let params = [n as u32, lr.to_bits(), momentum.to_bits(), decay.to_bits()];
        self.rt
            .dispatch(&SGD, &params, &[&t, &vel, &g], grid(n, WG));
    }

    fn sum_squares(&self, x: &Tensor) -> Tensor {
        let out = self.rt.alloc(1);
        let xb = self.buffer(x);
        self.rt
            .dispatch(&SUM_SQUARES, &[x.len() as u32], &[&xb, &out], [1, 1, 1]);
        self.tensor(&[], out)
    }
}
