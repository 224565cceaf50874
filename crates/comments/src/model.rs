//! The miniature's code model: a byte-level decoder-only transformer (pw-nn's `CausalLm`),
//! 256 byte tokens plus BOS, EOS and PAD.

use crate::config::LmConfig;
use pw_nn::burn::tensor::Device;
use pw_nn::transformer::{CausalLm, TransformerConfig};

pub const BOS: u32 = 256;
pub const EOS: u32 = 257;
pub const PAD: u32 = 258;
pub const VOCAB: usize = 259;

/// The bytes of `text` as token ids.
pub fn encode(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

pub fn transformer_config(cfg: &LmConfig) -> TransformerConfig {
    TransformerConfig {
        vocab_size: VOCAB,
        max_len: cfg.max_len,
        d_model: cfg.d_model,
        n_heads: cfg.n_heads,
        n_layers: cfg.n_layers,
        mlp_ratio: 4,
        causal: true,
    }
}

pub fn new_lm(cfg: &LmConfig, device: &Device) -> CausalLm {
    CausalLm::new(&transformer_config(cfg), device)
}
