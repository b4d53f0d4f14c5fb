//! NextItNet — Yuan, Karatzoglou, Arapakis, Jose, He, "A Simple Convolutional Generative
//! Network for Next Item Recommendation", WSDM 2019.
//!
//! Embedding (section 3.2): the session x_{0..t} becomes a "sentence" E ∈ R^{t×d} of item
//! embeddings; padding positions are zero.
//! Dilated causal convolutions (3.3, 3.4): a stack of residual blocks. Each block is the
//! paper's residual block (b) (Figure 4b), without the 1×1 reductions of ByteNet's block (a):
//!   F(E) = Conv_d(ReLU(LN(Conv_d(ReLU(LN(E)))))),   E ← E + F(E)                  (eq. 6)
//! Conv_d is a masked (causal) 1×k convolution with dilation d over the sequence, with d
//! channels in and out: output t sees inputs t−(k−1)·d ..= t only, so no block ever looks at
//! a future item (the paper's "masking" of 3.3). The blocks' dilations are e.g. {1, 2, 4, 8}
//! repeated (the paper stacks {1, 2, 4, 8} ×2 or ×3): the receptive field of the stack is
//!   1 + Σ_blocks 2·(k−1)·d_block
//! (61 items for k = 3 and {1, 2, 4, 8}; 121 for two repeats).
//! Final layer (3.5): a softmax over the catalogue at every position t, from the last block's
//! output h_t: p(x_{t+1} = i) ∝ exp(⟨h_t, o_i⟩); o_i is item i's input embedding by default
//! (weight tying, which keeps the model small) or a separate output embedding (the paper's
//! own output layer: `nextitnet_separate_output = true`).
//! Training (3.6): the next item at every position — the paper's "generative" objective over
//! all of x_1..x_t at once — with full-softmax cross-entropy (the paper) or sampled BCE.
//!
//! Choices the paper leaves open, and the options that set them:
//! - `nextitnet_dilations`: a list of per-block dilations ([1, 2, 4, 8, 1, 2, 4, 8]) or a
//!   number of repeats of {1, 2, 4, 8} (2 ≡ that list). Both convolutions of a block use the
//!   block's dilation (the authors' TensorFlow code doubles it for the second conv; here a
//!   list says it directly, e.g. [1, 2, 4, 8] as two-conv blocks of one dilation each).
//! - `nextitnet_kernel`: the width k of every convolution (the paper: 3).
//! - `nextitnet_separate_output`: see above.
//! - Padding: sequences are left-padded; every convolution's input is zeroed at padding
//!   positions, so a padded sequence is scored exactly as the same sequence unpadded (the
//!   causal convolution's own zero padding then continues into the batch's padding).
//! - Layer norm is pre-norm inside the block (Figure 4b) with no final norm; no dropout (the
//!   paper uses none; `dropout` is ignored).

use serde::{Deserialize, Serialize};

use super::layers::LayerNorm;
use super::{
    LossKind, Model, SequenceInput, TrainingBatch, excluded_items_offsets, last_position_scores,
    next_item_loss_excluding, padding_mask,
};
use crate::autograd::{Tape, Var};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The dilation of each residual block: a list, or a number of repeats of {1, 2, 4, 8}.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Dilations {
    Repeats(usize),
    List(Vec<usize>),
}

impl Default for Dilations {
    fn default() -> Self {
        Dilations::Repeats(2)
    }
}

impl Dilations {
    /// The per-block dilations, checked.
    pub fn blocks(&self) -> Result<Vec<usize>> {
        let list = match self {
            Dilations::Repeats(r) => [1, 2, 4, 8].repeat(*r),
            Dilations::List(list) => list.clone(),
        };
        if list.is_empty() || list.contains(&0) {
            return Err(Error::Invalid(format!(
                "model_options.nextitnet_dilations: need at least one block and positive \
                 dilations, got {self:?}"
            )));
        }
        Ok(list)
    }
}

/// One residual block (Figure 4b): two (LN → ReLU → causal dilated conv) with a residual.
struct ResidualBlock {
    norms: [LayerNorm; 2],
    /// Conv weights `[d, d, k]` and biases `[d]`.
    convs: [(ParamId, ParamId); 2],
    dilation: usize,
}

pub struct NextItNet {
    store: ParamStore,
    item_embedding: ParamId,
    /// The output embeddings o_i when not tied to the input embeddings.
    output_embedding: Option<ParamId>,
    blocks: Vec<ResidualBlock>,
    kernel: usize,
    /// Logit offsets keeping cold-start items out of the training softmax (`set_cold_items`).
    cold_offsets: Option<Tensor>,
    items: usize,
}

impl NextItNet {
    pub fn new(items: usize, config: &ModelConfig, seed: u64) -> Result<NextItNet> {
        let dilations = config.nextitnet_dilations.blocks()?;
        let k = config.nextitnet_kernel;
        if k == 0 {
            return Err(Error::Invalid(
                "model_options.nextitnet_kernel must be at least 1".into(),
            ));
        }
        let mut rng = Rng::new(seed);
        let mut store = ParamStore::new();
        let d = config.dim;
        let item_embedding = store.add_xavier("item_embedding", &[items + 1, d], &mut rng)?;
        // Xavier for a convolution: fan_in = fan_out = d·k.
        let conv_bound = (6.0 / (2 * d * k) as f32).sqrt();
        let mut blocks = Vec::with_capacity(dilations.len());
        for (b, &dilation) in dilations.iter().enumerate() {
            let mut half = |j: usize| -> Result<(LayerNorm, (ParamId, ParamId))> {
                let norm = LayerNorm::new(&mut store, &format!("block{b}.norm{j}"), d, 1e-6)?;
                let weight = store.add_uniform(
                    format!("block{b}.conv{j}.weight"),
                    &[d, d, k],
                    conv_bound,
                    &mut rng,
                )?;
                let bias = store.add(format!("block{b}.conv{j}.bias"), Tensor::zeros(&[d]))?;
                store.set_no_decay(bias);
                Ok((norm, (weight, bias)))
            };
            let (norm0, conv0) = half(0)?;
            let (norm1, conv1) = half(1)?;
            blocks.push(ResidualBlock {
                norms: [norm0, norm1],
                convs: [conv0, conv1],
                dilation,
            });
        }
        let output_embedding = if config.nextitnet_separate_output {
            Some(store.add_xavier("output_embedding", &[items + 1, d], &mut rng)?)
        } else {
            None
        };
        Ok(NextItNet {
            store,
            item_embedding,
            output_embedding,
            blocks,
            kernel: k,
            cold_offsets: None,
            items,
        })
    }

    /// How many of the latest items (the current one included) the output at a position
    /// depends on: 1 + Σ 2·(k−1)·d.
    pub fn receptive_field(&self) -> usize {
        1 + self
            .blocks
            .iter()
            .map(|b| 2 * (self.kernel - 1) * b.dilation)
            .sum::<usize>()
    }

    /// h_t for every position t: the last block's output `[B, n, d]`.
    fn encode(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let store = &self.store;
        let shape = input.items.shape();
        let (b, n) = (shape[0], shape[1]);
        let keep = tape.constant(padding_mask(&input.items).reshaped(&[b, n, 1])?);
        let table = tape.param(store, self.item_embedding);
        let embedded = tape.embedding(table, &input.items)?;
        let mut x = tape.mul(embedded, keep)?;
        for block in &self.blocks {
            let mut h = x;
            for (norm, &(weight, bias)) in block.norms.iter().zip(&block.convs) {
                let normed = norm.forward(tape, store, h)?;
                let activated = tape.relu(normed)?;
                let activated = tape.mul(activated, keep)?;
                // The convolution runs over the sequence axis: channels first, [B, d, n].
                let channels = tape.permute(activated, &[0, 2, 1])?;
                let (w, c) = (tape.param(store, weight), tape.param(store, bias));
                let convolved = tape.conv1d_causal(channels, w, Some(c), block.dilation)?;
                h = tape.permute(convolved, &[0, 2, 1])?;
            }
            x = tape.add(x, h)?;
        }
        Ok(x)
    }

    fn output_items(&self, tape: &mut Tape) -> Var {
        tape.param(
            &self.store,
            self.output_embedding.unwrap_or(self.item_embedding),
        )
    }
}

impl Model for NextItNet {
    fn set_cold_items(&mut self, items: &[u32]) -> Result<()> {
        self.cold_offsets = excluded_items_offsets(self.items, items)?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "nextitnet"
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn loss(&self, tape: &mut Tape, batch: &TrainingBatch, kind: LossKind) -> Result<Var> {
        let hidden = self.encode(tape, &batch.input)?;
        let items = self.output_items(tape);
        next_item_loss_excluding(tape, hidden, items, batch, kind, self.cold_offsets.as_ref())
    }

    fn scores(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let hidden = self.encode(tape, input)?;
        let items = self.output_items(tape);
        last_position_scores(tape, hidden, items)
    }
}

/// Every position's scores `[B, n, items + 1]`, for tests of causality.
impl NextItNet {
    pub fn scores_at_every_position(&self, tape: &mut Tape, input: &SequenceInput) -> Result<Var> {
        let hidden = self.encode(tape, input)?;
        let items = self.output_items(tape);
        tape.matmul_t(hidden, items, false, true)
    }
}
