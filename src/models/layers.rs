//! Building blocks shared by the attention models: a linear layer, layer normalisation, and
//! SASRec's self-attention block. Each holds the `ParamId`s of its weights; `forward` records
//! the computation on a tape.

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::ops::Activation;
use crate::optim::{ParamId, ParamStore};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// y = x W + b, with W `[in, out]` (Xavier-uniform) and b `[out]` (zeros).
pub struct Linear {
    pub weight: ParamId,
    pub bias: ParamId,
}

impl Linear {
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        inputs: usize,
        outputs: usize,
        rng: &mut Rng,
    ) -> Result<Linear> {
        let weight = store.add_xavier(format!("{name}.weight"), &[inputs, outputs], rng)?;
        let bias = store.add(format!("{name}.bias"), Tensor::zeros(&[outputs]))?;
        store.set_no_decay(bias);
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, tape: &mut Tape, store: &ParamStore, x: Var) -> Result<Var> {
        let (w, b) = (tape.param(store, self.weight), tape.param(store, self.bias));
        let xw = tape.matmul(x, w)?;
        tape.add(xw, b)
    }
}

/// Layer normalisation over the last axis with a learned gain (ones) and bias (zeros).
pub struct LayerNorm {
    pub gain: ParamId,
    pub bias: ParamId,
    pub eps: f32,
}

impl LayerNorm {
    pub fn new(store: &mut ParamStore, name: &str, width: usize, eps: f32) -> Result<LayerNorm> {
        let gain = store.add(format!("{name}.gain"), Tensor::full(&[width], 1.0))?;
        let bias = store.add(format!("{name}.bias"), Tensor::zeros(&[width]))?;
        store.set_no_decay(gain);
        store.set_no_decay(bias);
        Ok(LayerNorm { gain, bias, eps })
    }

    pub fn forward(&self, tape: &mut Tape, store: &ParamStore, x: Var) -> Result<Var> {
        let (g, b) = (tape.param(store, self.gain), tape.param(store, self.bias));
        tape.layer_norm(x, g, b, self.eps)
    }
}

/// One block of SASRec (Kang & McAuley 2018, section III-B/C), pre-norm as in its reference
/// implementation:
///   x ← x + Dropout(SA(LN(x))),   SA(X) = Attention(X W_Q, X W_K, X W_V)   (eq. 4, causal)
///   x ← x + Dropout(FFN(LN(x))),  FFN(X) = ReLU(X W_1 + b_1) W_2 + b_2      (eq. 5)
/// then padding positions are zeroed again so they never leak into later blocks.
pub struct AttentionBlock {
    attention_norm: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    ffn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    heads: usize,
    dropout: f32,
}

impl AttentionBlock {
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        dim: usize,
        ffn_dim: usize,
        heads: usize,
        dropout: f32,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(AttentionBlock {
            attention_norm: LayerNorm::new(store, &format!("{name}.attention_norm"), dim, 1e-8)?,
            query: Linear::new(store, &format!("{name}.query"), dim, dim, rng)?,
            key: Linear::new(store, &format!("{name}.key"), dim, dim, rng)?,
            value: Linear::new(store, &format!("{name}.value"), dim, dim, rng)?,
            ffn_norm: LayerNorm::new(store, &format!("{name}.ffn_norm"), dim, 1e-8)?,
            ffn_in: Linear::new(store, &format!("{name}.ffn_in"), dim, ffn_dim, rng)?,
            ffn_out: Linear::new(store, &format!("{name}.ffn_out"), ffn_dim, dim, rng)?,
            heads,
            dropout,
        })
    }

    /// x `[B, n, d]`; `keep` `[B, n, 1]` is 1 at real positions and 0 at padding;
    /// `key_mask` `[B, n]` is the same mask for the attention's keys.
    pub fn forward(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        x: Var,
        keep: Var,
        key_mask: &Tensor,
    ) -> Result<Var> {
        let normed = self.attention_norm.forward(tape, store, x)?;
        let q = self.query.forward(tape, store, normed)?;
        let k = self.key.forward(tape, store, normed)?;
        let v = self.value.forward(tape, store, normed)?;
        let attended = tape.attention(q, k, v, self.heads, true, Some(key_mask), self.dropout)?;
        let attended = tape.dropout(attended, self.dropout)?;
        let x = tape.add(x, attended)?;

        let normed = self.ffn_norm.forward(tape, store, x)?;
        let (w1, b1) = (
            tape.param(store, self.ffn_in.weight),
            tape.param(store, self.ffn_in.bias),
        );
        let (w2, b2) = (
            tape.param(store, self.ffn_out.weight),
            tape.param(store, self.ffn_out.bias),
        );
        let fed = tape.ffn(normed, w1, b1, w2, b2, Activation::Relu, self.dropout)?;
        let fed = tape.dropout(fed, self.dropout)?;
        let x = tape.add(x, fed)?;
        tape.mul(x, keep)
    }
}

/// SASRec's encoder after the embedding (shared by SASRec and AMSRM): padding positions
/// zeroed, `config.blocks` attention blocks, then a final layer norm. Parameters are named
/// `block{i}.*` and `final_norm.*`.
pub struct BlockStack {
    blocks: Vec<AttentionBlock>,
    final_norm: LayerNorm,
}

impl BlockStack {
    pub fn new(
        store: &mut ParamStore,
        config: &crate::config::ModelConfig,
        rng: &mut Rng,
    ) -> Result<BlockStack> {
        let d = config.dim;
        let blocks = (0..config.blocks)
            .map(|b| {
                AttentionBlock::new(
                    store,
                    &format!("block{b}"),
                    d,
                    config.ffn_dim,
                    config.heads,
                    config.dropout,
                    rng,
                )
            })
            .collect::<Result<_>>()?;
        let final_norm = LayerNorm::new(store, "final_norm", d, 1e-8)?;
        Ok(BlockStack { blocks, final_norm })
    }

    /// F: the last block's output at every position of x `[B, n, d]`, the embedded `items`
    /// `[B, n]` (id 0 = padding).
    pub fn forward(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        x: Var,
        items: &crate::tensor::Ids,
    ) -> Result<Var> {
        let key_mask = super::padding_mask(items);
        let shape = items.shape();
        let keep = tape.constant(key_mask.reshaped(&[shape[0], shape[1], 1])?);
        let mut x = tape.mul(x, keep)?;
        for block in &self.blocks {
            x = block.forward(tape, store, x, keep, &key_mask)?;
        }
        self.final_norm.forward(tape, store, x)
    }
}
