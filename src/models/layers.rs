//! Building blocks shared by the attention models: a linear layer, layer normalisation,
//! SASRec's self-attention block, and the item level of a two-level attention. Each holds the
//! `ParamId`s of its weights; `forward` records the computation on a tape.

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
    /// The side stream's query and key (`SideAttention`), when the block has one.
    side: Option<SideAttention>,
    heads: usize,
    dropout: f32,
}

impl AttentionBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        dim: usize,
        ffn_dim: usize,
        heads: usize,
        dropout: f32,
        side_attention: bool,
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
            // Created after the block's own weights, so that those start as without it.
            side: if side_attention {
                Some(SideAttention::new(store, name, dim, rng)?)
            } else {
                None
            },
            heads,
            dropout,
        })
    }

    /// x `[B, n, d]`; `keep` `[B, n, 1]` is 1 at real positions and 0 at padding;
    /// `key_mask` `[B, n]` is the same mask for the attention's keys. `item_weights`, if
    /// given, reweights the keys per query (see `ItemWeights`); `side` `[B, n, d]` is the
    /// side stream of a block built with `side_attention` (see `SideAttention`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        x: Var,
        keep: Var,
        key_mask: &Tensor,
        item_weights: Option<&ItemWeights>,
        side: Option<Var>,
    ) -> Result<Var> {
        let normed = self.attention_norm.forward(tape, store, x)?;
        let q = self.query.forward(tape, store, normed)?;
        let k = self.key.forward(tape, store, normed)?;
        let v = self.value.forward(tape, store, normed)?;
        let attended = match (&self.side, side) {
            (Some(side_attention), Some(side)) => {
                let side_q = side_attention.query.forward(tape, store, side)?;
                let side_k = side_attention.key.forward(tape, store, side)?;
                let streams = [q, k, v, side_q, side_k];
                decoupled_attention(
                    tape,
                    streams,
                    self.heads,
                    key_mask,
                    self.dropout,
                    item_weights,
                )?
            }
            (None, None) => {
                let qkv = [q, k, v];
                causal_attention(tape, qkv, self.heads, key_mask, self.dropout, item_weights)?
            }
            _ => {
                return Err(crate::error::Error::Invalid(
                    "an attention block gets a side stream exactly when it was built for one"
                        .into(),
                ));
            }
        };
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

/// Causal self-attention of `[q, k, v]` `[B, n, d]`: the fused kernel, or with item-level
/// weights in the logits the composed `weighted_attention`.
fn causal_attention(
    tape: &mut Tape,
    [q, k, v]: [Var; 3],
    heads: usize,
    key_mask: &Tensor,
    dropout: f32,
    item_weights: Option<&ItemWeights>,
) -> Result<Var> {
    match item_weights {
        None => tape.attention(q, k, v, heads, true, Some(key_mask), dropout),
        Some(weights) => weighted_attention(tape, q, k, v, heads, dropout, weights),
    }
}

/// Side information decoupled from the item stream, as in DIF-SR (Xie et al., "Decoupled Side
/// Information Fusion for Sequential Recommendation", SIGIR 2022): the side stream M `[B, n, d]`
/// gets its own query and key in every block (`decoupled_attention`) and enters only the
/// attention logits, never the values, so the item representations are not mixed with it.
pub struct SideAttention {
    query: Linear,
    key: Linear,
}

impl SideAttention {
    fn new(store: &mut ParamStore, block: &str, dim: usize, rng: &mut Rng) -> Result<Self> {
        Ok(SideAttention {
            query: Linear::new(store, &format!("{block}.side_query"), dim, dim, rng)?,
            key: Linear::new(store, &format!("{block}.side_key"), dim, dim, rng)?,
        })
    }
}

/// Causal attention whose logits add a second stream's, per head h (d_h = d / heads):
///   logits_h = (q_h·k_hᵀ + q^M_h·k^M_hᵀ) / √d_h  (+ log a with `item_weights`),
///   out_h    = softmax(logits_h) v_h,
/// for `[q, k, v, q^M, k^M]`, each `[B, n, d]`. The attention kernel computes it over widened
/// heads: head h's query is √2·[q_h, q^M_h], its key [k_h, k^M_h] and its value [v_h, 0], all
/// 2·d_h wide, so that the kernel's 1/√(2 d_h) times √2 is each stream's 1/√d_h; the first
/// d_h columns of every head's output are the result (the zero value columns give zeros).
pub fn decoupled_attention(
    tape: &mut Tape,
    [q, k, v, side_q, side_k]: [Var; 5],
    heads: usize,
    key_mask: &Tensor,
    dropout: f32,
    item_weights: Option<&ItemWeights>,
) -> Result<Var> {
    let shape = tape.shape(q).to_vec();
    let (b, n, d) = (shape[0], shape[1], shape[2]);
    let head_dim = d / heads;
    let zeros = tape.constant(Tensor::zeros(&[b, n, d]));
    let mut interleave = |x: Var, y: Var| -> Result<Var> {
        let x = tape.reshape(x, &[b, n, heads, head_dim])?;
        let y = tape.reshape(y, &[b, n, heads, head_dim])?;
        let both = tape.concat(&[x, y], 3)?;
        tape.reshape(both, &[b, n, 2 * d])
    };
    let wide_q = interleave(q, side_q)?;
    let wide_k = interleave(k, side_k)?;
    let wide_v = interleave(v, zeros)?;
    let wide_q = tape.scale(wide_q, std::f32::consts::SQRT_2)?;
    let wide = causal_attention(
        tape,
        [wide_q, wide_k, wide_v],
        heads,
        key_mask,
        dropout,
        item_weights,
    )?;
    let wide = tape.reshape(wide, &[b, n, heads, 2 * head_dim])?;
    let items = tape.slice(wide, 3, 0, head_dim)?;
    tape.reshape(items, &[b, n, d])
}

/// The logit (and log-weight) of a key a query must not see: exp(−1e9 − max) is exactly 0 in
/// f32, and unlike −∞ a row with no visible key stays finite.
const HIDDEN_LOGIT: f32 = -1e9;

/// The same causal attention as `Tape::attention`, composed from primitive ops so that
/// the item-level weights can enter the logits (the fused kernel takes only a 0/1 mask):
///   P_{t,j} = a_{t,j} exp(s_{t,j}) / Σ_{j'} a_{t,j'} exp(s_{t,j'}),
///   i.e. softmax_j(s_{t,j} + log a_{t,j}),  s_{t,j} = q_t·k_j/√d_h,
/// with hidden keys (later or padding) at −1e9, then dropout on P and O = P V per head.
/// q, k, v `[B, n, d]` (d = heads·d_h).
pub fn weighted_attention(
    tape: &mut Tape,
    q: Var,
    k: Var,
    v: Var,
    heads: usize,
    dropout: f32,
    weights: &ItemWeights,
) -> Result<Var> {
    let shape = tape.shape(q).to_vec();
    let (b, n, d, h) = (shape[0], shape[1], shape[2], heads);
    let head_dim = d / h;
    let split_heads = |tape: &mut Tape, x: Var| -> Result<Var> {
        let x = tape.reshape(x, &[b, n, h, head_dim])?;
        let x = tape.permute(x, &[0, 2, 1, 3])?;
        tape.reshape(x, &[b * h, n, head_dim])
    };
    let (q, k, v) = (
        split_heads(tape, q)?,
        split_heads(tape, k)?,
        split_heads(tape, v)?,
    );
    let logits = tape.matmul_t(q, k, false, true)?;
    let logits = tape.scale(logits, 1.0 / (head_dim as f32).sqrt())?;
    let logits = tape.reshape(logits, &[b, h, n, n])?;
    let log_weights = tape.reshape(weights.log_weights, &[b, 1, n, n])?;
    let logits = tape.add(logits, log_weights)?;
    let logits = tape.masked_fill(logits, &weights.hidden, HIDDEN_LOGIT)?;
    let probabilities = tape.softmax(logits)?;
    let probabilities = tape.dropout(probabilities, dropout)?;
    let probabilities = tape.reshape(probabilities, &[b * h, n, n])?;
    let out = tape.matmul(probabilities, v)?;
    let out = tape.reshape(out, &[b, h, n, head_dim])?;
    let out = tape.permute(out, &[0, 2, 1, 3])?;
    tape.reshape(out, &[b, n, d])
}

/// The item level of a two-level attention (the survey's section 5.2): how much each item of
/// the sequence matters to the intent at each position, so that items unrelated to the rest
/// of the sequence (noise) can be down-weighted. With e_j the fused input of position j and
/// m_j = 1 for a real item, 0 for padding:
///   c_t     = Σ_{k≤t} m_k e_k / max(1, Σ_{k≤t} m_k)       (the intent: causal mean so far)
///   r_{t,j} = (e_j W_e + b_e)·(c_t W_c + b_c) / √d          (relevance of item j to it)
///   a_{t,j} = σ(r_{t,j}) for j ≤ t with m_j = 1, else 0      (the item-level weight)
/// Tied (W_c = W_e, b_c = b_e): with u_j = e_j W_e + b_e, c_t W_e + b_e is the mean ū_t of the
/// u's so far and r_{t,j} = u_j·ū_t/√d, a similarity: an item gains weight only by agreeing
/// with the intent. Untied, the bilinear form is free to learn any relation, including the
/// reverse (measured in docs/RESULTS.md).
/// a_{t,j} uses only positions ≤ t, so it stays causal. The weights enter every attention
/// block as log a_{t,j} added to the logits (`weighted_attention`). A weight
/// shared by all keys changes nothing (the softmax renormalises), so at initialisation, with
/// r ≈ 0, the model starts close to plain self-attention.
pub struct ItemRelevance {
    item: Linear,
    /// W_c, b_c; `None` when tied to W_e, b_e.
    intent: Option<Linear>,
}

/// What `ItemRelevance::forward` returns for a batch.
pub struct ItemWeights {
    /// log a_{t,j} `[B, n, n]` (query t, key j), −1e9 where the weight is 0.
    pub log_weights: Var,
    /// `[B, 1, n, n]`: 1 where key j is hidden from query t (j > t or j padding), else 0.
    pub hidden: Tensor,
}

impl ItemRelevance {
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        dim: usize,
        tied: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let item = Linear::new(store, &format!("{name}.item"), dim, dim, rng)?;
        let intent = if tied {
            None
        } else {
            Some(Linear::new(
                store,
                &format!("{name}.intent"),
                dim,
                dim,
                rng,
            )?)
        };
        Ok(ItemRelevance { item, intent })
    }

    /// e `[B, n, d]`: the fused inputs; `items` `[B, n]` (id 0 = padding).
    pub fn forward(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        e: Var,
        items: &crate::tensor::Ids,
    ) -> Result<ItemWeights> {
        let item = [self.item.weight, self.item.bias].map(|id| tape.param(store, id));
        let intent = match &self.intent {
            Some(intent) => [intent.weight, intent.bias].map(|id| tape.param(store, id)),
            None => item,
        };
        item_weights(tape, e, item, intent, items)
    }
}

/// `ItemRelevance::forward` with its weights as tape variables: `item` = [W_e, b_e],
/// `intent` = [W_c, b_c] (so that tests can check their gradients directly).
pub fn item_weights(
    tape: &mut Tape,
    e: Var,
    item: [Var; 2],
    intent: [Var; 2],
    items: &crate::tensor::Ids,
) -> Result<ItemWeights> {
    let shape = items.shape();
    let (b, n) = (shape[0], shape[1]);
    let dim = *tape.shape(e).last().unwrap_or(&1);
    let real = super::padding_mask(items).to_vec();
    // The causal mean as one constant matrix: mean_of[b, t, k] = m_k / count_t for k ≤ t.
    let mut mean_of = vec![0.0f32; b * n * n];
    let mut hidden = vec![1.0f32; b * n * n];
    for s in 0..b {
        let m = &real[s * n..(s + 1) * n];
        let mut count = 0.0f32;
        for t in 0..n {
            count += m[t];
            for (k, &real_k) in m[..=t].iter().enumerate() {
                let at = (s * n + t) * n + k;
                mean_of[at] = real_k / count.max(1.0);
                if real_k != 0.0 {
                    hidden[at] = 0.0;
                }
            }
        }
    }
    let mean_of = tape.constant(Tensor::from_vec(&[b, n, n], mean_of)?);
    let intent_so_far = tape.matmul(mean_of, e)?; // c_t, [B, n, d]
    let keys = tape.matmul(e, item[0])?;
    let keys = tape.add(keys, item[1])?;
    let queries = tape.matmul(intent_so_far, intent[0])?;
    let queries = tape.add(queries, intent[1])?;
    let relevance = tape.matmul_t(queries, keys, false, true)?; // r_{t,j}, [B, n, n]
    let relevance = tape.scale(relevance, 1.0 / (dim as f32).sqrt())?;
    // log σ(r) = −softplus(−r): finite for any r, unlike log(sigmoid(r)).
    let negated = tape.scale(relevance, -1.0)?;
    let log_weights = tape.softplus(negated)?;
    let log_weights = tape.scale(log_weights, -1.0)?;
    let hidden = Tensor::from_vec(&[b, n, n], hidden)?;
    let log_weights = tape.masked_fill(log_weights, &hidden, HIDDEN_LOGIT)?;
    Ok(ItemWeights {
        log_weights,
        hidden: hidden.reshaped(&[b, 1, n, n])?,
    })
}

/// SASRec's encoder after the embedding (shared by SASRec and AMSRM): padding positions
/// zeroed, `config.blocks` attention blocks, then a final layer norm. Parameters are named
/// `block{i}.*` and `final_norm.*`.
pub struct BlockStack {
    blocks: Vec<AttentionBlock>,
    final_norm: LayerNorm,
}

impl BlockStack {
    /// `side_attention`: every block takes a side stream (`SideAttention`).
    pub fn new(
        store: &mut ParamStore,
        config: &crate::config::ModelConfig,
        side_attention: bool,
        rng: &mut Rng,
    ) -> Result<BlockStack> {
        let d = config.dim;
        let blocks = (0..config.blocks)
            .map(|b| {
                AttentionBlock::new(
                    store,
                    &format!("block{b}"),
                    d,
                    config.ffn_width(),
                    config.heads,
                    config.dropout,
                    side_attention,
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
        self.forward_with(tape, store, x, items, None, None)
    }

    /// `forward` with item-level weights (`ItemRelevance`) in every block's attention, and the
    /// side stream `side` `[B, n, d]` of blocks built with `side_attention`.
    pub fn forward_with(
        &self,
        tape: &mut Tape,
        store: &ParamStore,
        x: Var,
        items: &crate::tensor::Ids,
        item_weights: Option<&ItemWeights>,
        side: Option<Var>,
    ) -> Result<Var> {
        let key_mask = super::padding_mask(items);
        let shape = items.shape();
        let keep = tape.constant(key_mask.reshaped(&[shape[0], shape[1], 1])?);
        let mut x = tape.mul(x, keep)?;
        for block in &self.blocks {
            x = block.forward(tape, store, x, keep, &key_mask, item_weights, side)?;
        }
        self.final_norm.forward(tape, store, x)
    }
}
