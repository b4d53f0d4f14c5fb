use crate::backend;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::tensor::{Device, Tensor};

/// A handle to a value recorded on a tape. Copy it freely; it is an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(usize);

impl Var {
    pub fn index(self) -> usize {
        self.0
    }
}

/// What a backward function sees: the op's input values, its output value and the gradient
/// of the loss with respect to that output.
pub struct BackwardContext<'a> {
    pub inputs: Vec<&'a Tensor>,
    pub output: &'a Tensor,
    pub grad: &'a Tensor,
    /// `needs_grad[i]` is false when input `i` is a constant: skip computing its gradient.
    pub needs_grad: Vec<bool>,
}

/// The backward half of an op. Returns one entry per input, in the order the inputs were
/// recorded: the gradient with respect to that input (its shape), or `None` where
/// `needs_grad` is false or the input is not differentiable.
pub trait Backward: Send + Sync {
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>>;
}

struct Record {
    op: &'static str,
    inputs: Vec<Var>,
    backward: Box<dyn Backward>,
}

struct Node {
    value: Tensor,
    requires_grad: bool,
    record: Option<Record>,
}

/// The record of one forward computation. Build a new tape for every training step.
pub struct Tape {
    nodes: Vec<Node>,
    grad_enabled: bool,
    params: Vec<(ParamId, Var)>,
    training: bool,
    dropout_calls: u32,
    seed: u32,
    /// Where every value of this tape lives; values recorded from elsewhere are moved here.
    device: Device,
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A tape that records backward functions (training).
    pub fn new() -> Tape {
        Tape {
            nodes: Vec::new(),
            grad_enabled: true,
            params: Vec::new(),
            training: true,
            dropout_calls: 0,
            seed: 0,
            device: Device::Cpu,
        }
    }

    /// This tape with its values on `device`: constants and leaves recorded from host data
    /// are uploaded, so a model runs on either device without a code change.
    pub fn on(mut self, device: Device) -> Tape {
        self.device = device;
        self
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// A tape that records nothing for backward (inference): ops only compute values, and
    /// dropout is the identity.
    pub fn inference() -> Tape {
        Tape {
            grad_enabled: false,
            training: false,
            ..Tape::new()
        }
    }

    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Whether stochastic ops (dropout) are active.
    pub fn training(&self) -> bool {
        self.training
    }

    /// Seeds the stochastic ops of this tape. Each dropout call draws from its own stream
    /// derived from this seed and its call number, so a step is reproducible.
    pub fn set_seed(&mut self, seed: u32) {
        self.seed = seed;
    }

    /// A fresh random stream for a stochastic op: distinct per call, fixed for a seed.
    pub fn next_stream(&mut self) -> u32 {
        self.dropout_calls += 1;
        crate::rng::hash32(self.seed ^ crate::rng::hash32(self.dropout_calls))
    }

    /// Runs `f` with gradient recording switched off (values only).
    pub fn no_grad<T>(&mut self, f: impl FnOnce(&mut Tape) -> T) -> T {
        let saved = self.grad_enabled;
        self.grad_enabled = false;
        let out = f(self);
        self.grad_enabled = saved;
        out
    }

    fn push(&mut self, value: Tensor, requires_grad: bool, record: Option<Record>) -> Var {
        let value = value.to_device(self.device);
        self.nodes.push(Node {
            value,
            requires_grad,
            record,
        });
        Var(self.nodes.len() - 1)
    }

    /// A value that receives no gradient (data, masks).
    pub fn constant(&mut self, value: Tensor) -> Var {
        self.push(value, false, None)
    }

    /// A leaf that receives a gradient (used by tests; models use `param`).
    pub fn leaf(&mut self, value: Tensor) -> Var {
        let requires_grad = self.grad_enabled;
        self.push(value, requires_grad, None)
    }

    /// A parameter of `store` as a leaf of this tape. The buffer is shared, not copied.
    pub fn param(&mut self, store: &ParamStore, id: ParamId) -> Var {
        if let Some(&(_, var)) = self.params.iter().find(|(p, _)| *p == id) {
            return var;
        }
        let var = self.leaf(store.value(id).clone());
        self.params.push((id, var));
        var
    }

    pub fn value(&self, var: Var) -> &Tensor {
        &self.nodes[var.0].value
    }

    pub fn shape(&self, var: Var) -> &[usize] {
        self.nodes[var.0].value.shape()
    }

    pub fn requires_grad(&self, var: Var) -> bool {
        self.nodes[var.0].requires_grad
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Records an op's output. The output needs a gradient when any input does; otherwise
    /// (or with recording off) the backward is dropped and the output is a constant.
    pub fn record(
        &mut self,
        op: &'static str,
        value: Tensor,
        inputs: &[Var],
        backward: impl Backward + 'static,
    ) -> Var {
        let requires_grad =
            self.grad_enabled && inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        if !requires_grad {
            return self.push(value, false, None);
        }
        let record = Record {
            op,
            inputs: inputs.to_vec(),
            backward: Box::new(backward),
        };
        self.push(value, true, Some(record))
    }

    /// Gradients of the scalar `loss` with respect to every value that requires one.
    pub fn backward(&self, loss: Var) -> Result<Gradients> {
        let shape = self.shape(loss);
        if shape.iter().product::<usize>() != 1 {
            return Err(Error::shape(
                "backward",
                format!("loss must be a single value, got shape {shape:?}"),
            ));
        }
        let seed = Tensor::full(shape, 1.0);
        self.backward_with(loss, seed)
    }

    /// Gradients when the output `out` receives the gradient `seed` (for a non-scalar output:
    /// the gradient of sum(seed * out)).
    pub fn backward_with(&self, out: Var, seed: Tensor) -> Result<Gradients> {
        if seed.shape() != self.shape(out) {
            return Err(Error::shape(
                "backward",
                format!(
                    "seed shape {:?} differs from output shape {:?}",
                    seed.shape(),
                    self.shape(out)
                ),
            ));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; out.0 + 1];
        grads[out.0] = Some(seed.to_device(self.device));
        for index in (0..=out.0).rev() {
            let node = &self.nodes[index];
            let Some(record) = &node.record else { continue };
            let Some(grad) = grads[index].take() else {
                continue;
            };
            let ctx = BackwardContext {
                inputs: record
                    .inputs
                    .iter()
                    .map(|v| &self.nodes[v.0].value)
                    .collect(),
                output: &node.value,
                grad: &grad,
                needs_grad: record
                    .inputs
                    .iter()
                    .map(|v| self.nodes[v.0].requires_grad)
                    .collect(),
            };
            let input_grads = record.backward.backward(&ctx)?;
            if input_grads.len() != record.inputs.len() {
                return Err(Error::Invalid(format!(
                    "backward of {} returned {} gradients for {} inputs",
                    record.op,
                    input_grads.len(),
                    record.inputs.len()
                )));
            }
            for (input, input_grad) in record.inputs.iter().zip(input_grads) {
                let Some(input_grad) = input_grad else {
                    continue;
                };
                if !self.nodes[input.0].requires_grad {
                    continue;
                }
                if input_grad.shape() != self.shape(*input) {
                    return Err(Error::Invalid(format!(
                        "backward of {} gave a gradient of shape {:?} for an input of shape {:?}",
                        record.op,
                        input_grad.shape(),
                        self.shape(*input)
                    )));
                }
                accumulate(&mut grads[input.0], input_grad);
            }
            // `grad` of this intermediate value is dropped here; leaves keep theirs.
        }
        Ok(Gradients {
            grads,
            params: self.params.clone(),
        })
    }
}

/// Adds a gradient contribution where a value is used more than once.
fn accumulate(slot: &mut Option<Tensor>, contribution: Tensor) {
    *slot = Some(match slot.take() {
        None => contribution,
        Some(sum) => backend::of(&sum).add_assign(sum, &contribution),
    });
}

/// The result of a backward pass: gradients of leaves, by `Var`.
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
    params: Vec<(ParamId, Var)>,
}

impl Gradients {
    pub fn get(&self, var: Var) -> Option<&Tensor> {
        self.grads.get(var.0).and_then(|g| g.as_ref())
    }

    /// Adds the gradient of every parameter used on the tape into the store.
    pub fn accumulate_into(mut self, store: &mut ParamStore) {
        for (id, var) in std::mem::take(&mut self.params) {
            if let Some(grad) = self.grads.get_mut(var.0).and_then(|g| g.take()) {
                store.accumulate_grad(id, grad);
            }
        }
    }
}
