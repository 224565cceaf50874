//! The tiny vision-language model of the miniature: a ViT over 8x8 patches of the 64x64 image
//! (linear patch embedding, learned positions, bidirectional blocks), projected to the
//! decoder's width and placed before the question as a prefix of continuous embeddings; a
//! small causal decoder (pw-nn's [`CausalLm`]) writes the answer. Words are the tokens: the
//! scene world's grammar has a few hundred.

use pw_core::{Error, Result};
use pw_nn::burn;
use pw_nn::burn::module::Module;
use pw_nn::burn::nn::{
    Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::transformer::{Block, CausalLm, LAYER_NORM_EPS, TransformerConfig};
use serde::{Deserialize, Serialize};

/// Shape of the tiny VLM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VlmConfig {
    /// Image side the model reads (others are resampled), and the patch side.
    pub image: usize,
    pub patch: usize,
    pub d_vision: usize,
    pub vision_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    /// Most words of question + answer.
    pub max_words: usize,
}

impl Default for VlmConfig {
    fn default() -> Self {
        VlmConfig {
            image: 64,
            patch: 8,
            d_vision: 96,
            vision_layers: 2,
            d_model: 128,
            n_heads: 4,
            n_layers: 3,
            max_words: 48,
        }
    }
}

impl VlmConfig {
    pub fn patches(&self) -> usize {
        (self.image / self.patch).pow(2)
    }
    pub fn patch_dim(&self) -> usize {
        3 * self.patch * self.patch
    }
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.patch == 0 || !self.image.is_multiple_of(self.patch) {
            return Err("vlm.image must be a multiple of vlm.patch".into());
        }
        if self.n_heads == 0
            || !self.d_model.is_multiple_of(self.n_heads)
            || !self.d_vision.is_multiple_of(self.n_heads)
        {
            return Err("vlm.d_model and vlm.d_vision must be multiples of vlm.n_heads".into());
        }
        if self.max_words < 8 {
            return Err("vlm.max_words must be at least 8".into());
        }
        Ok(())
    }
}

pub use pw_nn::tokenizer::WordVocab as Vocab;

#[derive(Module, Debug)]
pub struct TinyVlm {
    pub patch: Linear,
    pub vpos: Embedding,
    pub enc: Vec<Block>,
    pub enc_ln: LayerNorm,
    pub proj: Linear,
    pub lm: CausalLm,
}

impl TinyVlm {
    pub fn new(cfg: &VlmConfig, vocab: usize, device: &Device) -> TinyVlm {
        let venc = TransformerConfig {
            vocab_size: 1,
            max_len: cfg.patches(),
            d_model: cfg.d_vision,
            n_heads: cfg.n_heads,
            n_layers: cfg.vision_layers,
            mlp_ratio: 4,
            causal: false,
        };
        let dec = TransformerConfig {
            vocab_size: vocab,
            max_len: cfg.patches() + cfg.max_words + 2,
            d_model: cfg.d_model,
            n_heads: cfg.n_heads,
            n_layers: cfg.n_layers,
            mlp_ratio: 4,
            causal: true,
        };
        TinyVlm {
            patch: LinearConfig::new(cfg.patch_dim(), cfg.d_vision).init(device),
            vpos: EmbeddingConfig::new(cfg.patches(), cfg.d_vision).init(device),
            enc: (0..cfg.vision_layers)
                .map(|_| Block::new(&venc, device))
                .collect(),
            enc_ln: LayerNormConfig::new(cfg.d_vision)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device),
            proj: LinearConfig::new(cfg.d_vision, cfg.d_model).init(device),
            lm: CausalLm::new(&dec, device),
        }
    }

    /// Patches `[b, n, patch_dim]` -> the decoder prefix `[b, n, d_model]`.
    pub fn prefix(&self, patches: Tensor<3>) -> Tensor<3> {
        let [b, n, _] = patches.dims();
        let device = patches.device();
        let pos = Tensor::<1, Int>::arange(0..n as i64, &device)
            .reshape([1, n])
            .expand([b, n]);
        let mut x = pw_nn::fused::linear(&self.patch, patches) + self.vpos.forward(pos);
        for blk in &self.enc {
            x = blk.forward(x, None);
        }
        let x = pw_nn::fused::layer_norm(&self.enc_ln, x);
        pw_nn::fused::linear(&self.proj, x)
    }

    /// Logits `[b, n + t, vocab]` of the tokens after the image prefix.
    pub fn forward(&self, patches: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<3> {
        let prefix = self.prefix(patches);
        self.lm.forward_with_prefix(prefix, tokens)
    }
}

/// An RGB image as the model's patch rows (`[patches * patch_dim]`, values in [-0.5, 0.5]),
/// resampled to `cfg.image` by nearest neighbour when its size differs.
pub fn patchify(rgb: &crate::data::Rgb, cfg: &VlmConfig) -> Vec<f32> {
    let s = cfg.image;
    let p = cfg.patch;
    let g = s / p;
    let mut out = vec![0f32; cfg.patches() * cfg.patch_dim()];
    for py in 0..g {
        for px in 0..g {
            let row = (py * g + px) * cfg.patch_dim();
            for y in 0..p {
                for x in 0..p {
                    let (ix, iy) = (px * p + x, py * p + y);
                    let sx = ix * rgb.w as usize / s;
                    let sy = iy * rgb.h as usize / s;
                    let si = (sy * rgb.w as usize + sx) * 3;
                    for c in 0..3 {
                        out[row + (y * p + x) * 3 + c] = rgb.data[si + c] as f32 / 255.0 - 0.5;
                    }
                }
            }
        }
    }
    out
}

/// A batch of patch rows as a tensor.
pub fn patches_tensor(rows: &[&[f32]], cfg: &VlmConfig, device: &Device) -> Tensor<3> {
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::<3>::from_data(
        TensorData::new(data, [rows.len(), cfg.patches(), cfg.patch_dim()]),
        device,
    )
}

/// Checks that a checkpoint's vocabulary fits the model it is loaded into.
pub fn check_vocab(vocab: &Vocab, model: &TinyVlm) -> Result<()> {
    let v = model.lm.head.weight.val().dims()[1];
    if v != vocab.len() {
        return Err(Error::Other(format!(
            "tiny VLM: the vocabulary has {} words but the model's head {v}",
            vocab.len()
        )));
    }
    Ok(())
}
