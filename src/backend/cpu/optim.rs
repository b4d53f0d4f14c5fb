//! Parameter updates on the CPU: one pass over θ, the moments and the gradient.

use super::CpuBackend;
use crate::backend::{AdamStep, OptimizerKernels};
use crate::tensor::Tensor;

impl OptimizerKernels for CpuBackend {
    fn adam_update(
        &self,
        theta: &mut Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        grad: &Tensor,
        s: &AdamStep,
    ) {
        let (g, m, v, theta) = (grad.cpu(), m.cpu_mut(), v.cpu_mut(), theta.cpu_mut());
        for j in 0..theta.len() {
            m[j] = s.beta1 * m[j] + (1.0 - s.beta1) * g[j];
            v[j] = s.beta2 * v[j] + (1.0 - s.beta2) * g[j] * g[j];
            let denom = (v[j] / s.bias2).sqrt() + s.eps;
            theta[j] -= s.step_size * m[j] / denom + s.decay * theta[j];
        }
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
        let (g, velocity, theta) = (grad.cpu(), velocity.cpu_mut(), theta.cpu_mut());
        for j in 0..theta.len() {
            velocity[j] = momentum * velocity[j] + g[j] + decay * theta[j];
            theta[j] -= lr * velocity[j];
        }
    }

    fn sum_squares(&self, x: &Tensor) -> Tensor {
        let sum: f64 = x.cpu().iter().map(|&v| v as f64 * v as f64).sum();
        super::tensor(&[], vec![sum as f32])
    }
}
