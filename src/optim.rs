//! Named parameters and the optimizers that update them.
//!
//! A `ParamStore` owns every trainable tensor under a unique name (the names are what
//! checkpoints store) with its accumulated gradient. Optimizers read the gradients and
//! update the values in place; `zero_grad` clears the gradients between steps.

use crate::backend::{self, AdamStep};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A parameter's index in its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(usize);

#[derive(Default)]
pub struct ParamStore {
    names: Vec<String>,
    values: Vec<Tensor>,
    grads: Vec<Option<Tensor>>,
    /// Parameters excluded from weight decay (biases, layer-norm gains, embeddings' padding).
    no_decay: Vec<bool>,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter. Names must be unique.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<ParamId> {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(Error::Invalid(format!(
                "parameter `{name}` is defined twice"
            )));
        }
        self.names.push(name);
        self.values.push(value);
        self.grads.push(None);
        self.no_decay.push(false);
        Ok(ParamId(self.values.len() - 1))
    }

    /// Adds a parameter drawn uniformly from [-bound, bound] (Xavier/Glorot when
    /// bound = sqrt(6 / (fan_in + fan_out))).
    pub fn add_uniform(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        bound: f32,
        rng: &mut Rng,
    ) -> Result<ParamId> {
        let n = shape.iter().product();
        let values = (0..n)
            .map(|_| (2.0 * rng.uniform() - 1.0) * bound)
            .collect();
        self.add(name, Tensor::from_vec(shape, values)?)
    }

    /// Adds a weight matrix `[fan_in, fan_out]` with Xavier-uniform initialisation.
    pub fn add_xavier(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        rng: &mut Rng,
    ) -> Result<ParamId> {
        let (fan_in, fan_out) = match shape {
            [a, b] => (*a, *b),
            [.., a, b] => (*a, *b),
            _ => (1, shape.iter().product()),
        };
        let bound = (6.0 / (fan_in + fan_out) as f32).sqrt();
        self.add_uniform(name, shape, bound, rng)
    }

    /// Moves every parameter (and gradient) to `device`; training then runs there.
    pub fn to_device(&mut self, device: crate::tensor::Device) {
        for v in &mut self.values {
            *v = v.to_device(device);
        }
        for g in self.grads.iter_mut().flatten() {
            *g = g.to_device(device);
        }
    }

    /// Where the parameters live (the CPU for an empty store).
    pub fn device(&self) -> crate::tensor::Device {
        self.values
            .first()
            .map_or(crate::tensor::Device::Cpu, Tensor::device)
    }

    /// Marks a parameter as exempt from weight decay (AdamW, SGD's L2).
    pub fn set_no_decay(&mut self, id: ParamId) {
        self.no_decay[id.0] = true;
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.values.len()).map(ParamId)
    }

    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    pub fn value(&self, id: ParamId) -> &Tensor {
        &self.values[id.0]
    }

    pub fn value_mut(&mut self, id: ParamId) -> &mut Tensor {
        &mut self.values[id.0]
    }

    /// Replaces a parameter's value; the shape must not change.
    pub fn set_value(&mut self, id: ParamId, value: Tensor) -> Result<()> {
        if value.shape() != self.values[id.0].shape() {
            return Err(Error::shape(
                "ParamStore::set_value",
                format!(
                    "`{}` has shape {:?}, got {:?}",
                    self.names[id.0],
                    self.values[id.0].shape(),
                    value.shape()
                ),
            ));
        }
        self.values[id.0] = value;
        Ok(())
    }

    pub fn grad(&self, id: ParamId) -> Option<&Tensor> {
        self.grads[id.0].as_ref()
    }

    pub fn accumulate_grad(&mut self, id: ParamId, grad: Tensor) {
        let slot = &mut self.grads[id.0];
        *slot = Some(match slot.take() {
            None => grad,
            Some(sum) => crate::backend::of(&sum).add_assign(sum, &grad),
        });
    }

    pub fn zero_grad(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = None);
    }

    /// Total number of scalar parameters.
    pub fn num_scalars(&self) -> usize {
        self.values.iter().map(Tensor::len).sum()
    }

    /// The global L2 norm of all gradients (one readback per gradient on a GPU).
    pub fn grad_norm(&self) -> f32 {
        let sum: f64 = self
            .grads
            .iter()
            .flatten()
            .map(|g| backend::of(g).sum_squares(g).item() as f64)
            .sum();
        sum.sqrt() as f32
    }

    /// Scales all gradients so that their global L2 norm is at most `max_norm`; returns the
    /// norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f32) -> f32 {
        let norm = self.grad_norm();
        if norm > max_norm && norm > 0.0 {
            let factor = max_norm / norm;
            for grad in self.grads.iter_mut().flatten() {
                *grad = backend::of(grad).scale(grad, factor);
            }
        }
        norm
    }
}

/// Per-parameter first and second moments, on the parameters' device.
#[derive(Clone, Debug, Default)]
pub struct AdamState {
    pub step: u64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

/// Adam (Kingma & Ba 2015); with `decoupled_weight_decay > 0` it is AdamW (Loshchilov &
/// Hutter 2019): θ ← θ - lr·(m̂/(√v̂+ε) + λθ).
#[derive(Clone, Debug)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub decoupled_weight_decay: f32,
    pub state: AdamState,
}

impl Adam {
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled_weight_decay: 0.0,
            state: AdamState::default(),
        }
    }

    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        Adam {
            decoupled_weight_decay: weight_decay,
            ..Adam::new(lr)
        }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self, store: &mut ParamStore) {
        let st = &mut self.state;
        if st.m.len() != store.len() {
            st.m = store.values.iter().map(zeros_like).collect();
            st.v = st.m.clone();
        }
        st.step += 1;
        let t = st.step as i32;
        for i in 0..store.len() {
            let Some(grad) = store.grads[i].as_ref() else {
                continue;
            };
            let decay = if store.no_decay[i] {
                0.0
            } else {
                self.lr * self.decoupled_weight_decay
            };
            let step = AdamStep {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                step_size: self.lr / (1.0 - self.beta1.powi(t)),
                bias2: 1.0 - self.beta2.powi(t),
                decay,
            };
            let theta = &mut store.values[i];
            // Moments restored from a checkpoint arrive on the host.
            let device = theta.device();
            for moment in [&mut st.m[i], &mut st.v[i]] {
                if moment.device() != device {
                    *moment = moment.to_device(device);
                }
            }
            backend::of(theta).adam_update(theta, &mut st.m[i], &mut st.v[i], grad, &step);
        }
    }
}

/// SGD with (heavy-ball) momentum and optional L2 weight decay: v ← μv + g + λθ; θ ← θ - lr·v.
#[derive(Clone, Debug)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    velocity: Vec<Tensor>,
}

impl Sgd {
    pub fn new(lr: f32, momentum: f32) -> Self {
        Sgd {
            lr,
            momentum,
            weight_decay: 0.0,
            velocity: Vec::new(),
        }
    }

    pub fn step(&mut self, store: &mut ParamStore) {
        if self.velocity.len() != store.len() {
            self.velocity = store.values.iter().map(zeros_like).collect();
        }
        for i in 0..store.len() {
            let Some(grad) = store.grads[i].as_ref() else {
                continue;
            };
            let decay = if store.no_decay[i] {
                0.0
            } else {
                self.weight_decay
            };
            let theta = &mut store.values[i];
            let velocity = &mut self.velocity[i];
            backend::of(theta).sgd_update(theta, velocity, grad, self.lr, self.momentum, decay);
        }
    }
}

/// Zeros of `t`'s shape on `t`'s device.
fn zeros_like(t: &Tensor) -> Tensor {
    Tensor::zeros(t.shape()).to_device(t.device())
}
