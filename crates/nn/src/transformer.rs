//! Pre-norm transformer blocks (GPT-2 style): `x + attn(ln(x))`, then `x + mlp(ln(x))`.
//!
//! One block type serves both roles: a causal decoder block (each position attends to itself and
//! the past) and a bidirectional encoder block (with an optional key-padding mask). Attention
//! goes through burn's `attention` op, so a backend with a fused kernel uses it.

use crate::fused::{causal_attention, gelu, layer_norm, linear};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The epsilon of every layer norm of these models (burn's `LayerNormConfig` default). The
/// fused layer-norm kernel and the KV-cached decoder read it from here, so the three agree.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// Shape of a transformer stack. Defaults are the benchmark model of the foundation issue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    pub vocab_size: usize,
    pub max_len: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    /// Hidden width of the MLP as a multiple of `d_model` (4 in GPT-2).
    pub mlp_ratio: usize,
    pub causal: bool,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        TransformerConfig {
            vocab_size: 128,
            max_len: 128,
            d_model: 256,
            n_heads: 4,
            n_layers: 4,
            mlp_ratio: 4,
            causal: true,
        }
    }
}

impl TransformerConfig {
    /// Matmul FLOPs of one forward pass over `tokens` tokens at sequence length `seq`
    /// (2 per multiply-accumulate; weights, attention scores and the LM head).
    pub fn forward_flops(&self, tokens: usize, seq: usize) -> f64 {
        let d = self.d_model as f64;
        let per_layer = 2.0 * (3.0 * d * d + d * d + 2.0 * self.mlp_ratio as f64 * d * d) // qkv, proj, mlp
            + 2.0 * 2.0 * seq as f64 * d; // scores and weighted sum
        tokens as f64 * (self.n_layers as f64 * per_layer + 2.0 * d * self.vocab_size as f64)
    }
    /// Forward + backward (backward costs about twice the forward).
    pub fn train_step_flops(&self, batch: usize, seq: usize) -> f64 {
        3.0 * self.forward_flops(batch * seq, seq)
    }
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub proj: Linear,
    pub n_heads: usize,
    pub causal: bool,
}

impl SelfAttention {
    pub fn new(d_model: usize, n_heads: usize, causal: bool, device: &Device) -> Self {
        assert!(
            d_model.is_multiple_of(n_heads),
            "d_model {d_model} is not divisible by n_heads {n_heads}"
        );
        SelfAttention {
            q: LinearConfig::new(d_model, d_model).init(device),
            k: LinearConfig::new(d_model, d_model).init(device),
            v: LinearConfig::new(d_model, d_model).init(device),
            proj: LinearConfig::new(d_model, d_model).init(device),
            n_heads,
            causal,
        }
    }

    /// `x`: [batch, seq, d_model]; `pad`: [batch, seq], true where the key is padding.
    pub fn forward(&self, x: Tensor<3>, pad: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.n_heads;
        // Three projections rather than one fused [d, 3d] one: slicing a fused output costs a
        // copy forward and a zero-filled scatter backward, more than the larger matmul saves.
        let heads = |lin: &Linear| {
            linear(lin, x.clone())
                .reshape([b, t, h, d / h])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (heads(&self.q), heads(&self.k), heads(&self.v));
        let y = match (self.causal, pad) {
            // The common decoder case: fused kernel, one autodiff node.
            (true, None) => causal_attention(q, k, v),
            (causal, pad) => {
                let mask = pad.map(|p| p.reshape([b, 1, 1, t]).expand([b, h, t, t]));
                let opts = AttentionModuleOptions {
                    scale: None,
                    softcap: None,
                    is_causal: causal,
                };
                attention(q, k, v, mask, None, opts)
            }
        };
        linear(&self.proj, y.swap_dims(1, 2).reshape([b, t, d]))
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc: Linear,
    pub out: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(&self.out, gelu(linear(&self.fc, x)))
    }
}

/// A pre-norm transformer block; `causal` makes it a decoder block.
#[derive(Module, Debug)]
pub struct Block {
    pub ln1: LayerNorm,
    pub attn: SelfAttention,
    pub ln2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    pub fn new(cfg: &TransformerConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        Block {
            ln1: LayerNormConfig::new(d)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device),
            attn: SelfAttention::new(d, cfg.n_heads, cfg.causal, device),
            ln2: LayerNormConfig::new(d)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device),
            mlp: Mlp {
                fc: LinearConfig::new(d, cfg.mlp_ratio * d).init(device),
                out: LinearConfig::new(cfg.mlp_ratio * d, d).init(device),
            },
        }
    }

    pub fn forward(&self, x: Tensor<3>, pad: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(layer_norm(&self.ln1, x), pad);
        x.clone() + self.mlp.forward(layer_norm(&self.ln2, x))
    }
}

/// Token + learned position embeddings, a stack of blocks and a final layer norm: the trunk
/// shared by language models, value models and classifiers.
#[derive(Module, Debug)]
pub struct Transformer {
    pub tok: Embedding,
    pub pos: Embedding,
    pub blocks: Vec<Block>,
    pub ln_f: LayerNorm,
    pub max_len: usize,
}

impl Transformer {
    pub fn new(cfg: &TransformerConfig, device: &Device) -> Self {
        Transformer {
            tok: EmbeddingConfig::new(cfg.vocab_size, cfg.d_model).init(device),
            pos: EmbeddingConfig::new(cfg.max_len, cfg.d_model).init(device),
            blocks: (0..cfg.n_layers).map(|_| Block::new(cfg, device)).collect(),
            ln_f: LayerNormConfig::new(cfg.d_model)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device),
            max_len: cfg.max_len,
        }
    }

    /// `tokens`: [batch, seq] -> hidden states [batch, seq, d_model].
    pub fn forward(&self, tokens: Tensor<2, Int>, pad: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let x = self.tok.forward(tokens);
        self.forward_embedded(x, pad)
    }

    /// `prefix` [batch, p, d_model] (continuous embeddings, e.g. projected video features)
    /// placed before the embedded `tokens` [batch, seq]: hidden states [batch, p + seq, d_model].
    /// Positions count from the first prefix row, as in [`crate::decode::Prompt`].
    pub fn forward_with_prefix(&self, prefix: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<3> {
        let x = Tensor::cat(vec![prefix, self.tok.forward(tokens)], 1);
        self.forward_embedded(x, None)
    }

    /// Adds position embeddings to `x` [batch, seq, d_model] and runs the blocks and the final
    /// norm.
    fn forward_embedded(&self, x: Tensor<3>, pad: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        assert!(
            t <= self.max_len,
            "sequence length {t} exceeds the model's max_len {}",
            self.max_len
        );
        let device = x.device();
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device)
            .reshape([1, t])
            .expand([b, t]);
        let mut x = x + self.pos.forward(positions);
        for block in &self.blocks {
            x = block.forward(x, pad.clone());
        }
        layer_norm(&self.ln_f, x)
    }
}

/// A decoder-only language model: transformer trunk + next-token head.
#[derive(Module, Debug)]
pub struct CausalLm {
    pub trunk: Transformer,
    pub head: Linear,
}

impl CausalLm {
    pub fn new(cfg: &TransformerConfig, device: &Device) -> Self {
        let cfg = TransformerConfig {
            causal: true,
            ..*cfg
        };
        CausalLm {
            trunk: Transformer::new(&cfg, device),
            head: LinearConfig::new(cfg.d_model, cfg.vocab_size)
                .with_bias(false)
                .init(device),
        }
    }

    /// Logits [batch, seq, vocab].
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        linear(&self.head, self.trunk.forward(tokens, None))
    }

    /// Logits [batch, p + seq, vocab] after a prefix of `p` continuous embeddings.
    pub fn forward_with_prefix(&self, prefix: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<3> {
        linear(&self.head, self.trunk.forward_with_prefix(prefix, tokens))
    }
}
