//! The captioner: one parameter set serves every level (so the curriculum can start each level
//! from the one below).
//!
//! - **Video mapper**: frozen features (rows of `d_feat`) projected to `d_model`, sinusoidal
//!   positions, then a Q-Former-style cross-attention pooler with `video_queries` learned
//!   queries ([`pw_nn::vivit::MapPooler`]).
//! - **Text mapper**: the lower level's captions (word ids, `<sep>` between captions) embedded
//!   with learned positions, one bidirectional block, then a pooler with `text_queries`
//!   queries. The clip level, and the direct (non-recursive) variant, pass no text: a single
//!   `<sep>`.
//! - **Caption decoder**: pw-nn's [`CausalLm`] reading both mappers' outputs as a prefix of
//!   continuous embeddings, then `<sep>` and the caption. Decoding uses the shared KV-cached
//!   [`Decoder`] (greedy or beam search) on the same prefix.
//!
//! The paper's GPT-2 reads the mappers through gated cross-attention in every layer with its LM
//! weights frozen; a prefix to a small decoder trained from scratch is the miniature's form of
//! the same conditioning (there is no pre-trained LM to keep frozen at this size).

use pw_core::{Error, Result};
use pw_nn::burn;
use pw_nn::burn::module::Module;
use pw_nn::burn::nn::{
    Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use pw_nn::burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use pw_nn::decode::{BeamOptions, Decoder, Prompt, SampleOptions};
use pw_nn::tokenizer::WordVocab;
use pw_nn::transformer::{Block, CausalLm, LAYER_NORM_EPS, TransformerConfig};
use pw_nn::vivit::{MapPooler, sinusoidal};
use serde::{Deserialize, Serialize};

/// Shape of the captioner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub video_queries: usize,
    pub text_queries: usize,
    /// Most feature rows of a segment or video input (more are sampled sparsely, uniformly;
    /// the clip level's dense rows are all read).
    pub max_features: usize,
    /// Most words of the lower level's text (the rest is cut).
    pub max_text: usize,
    /// Most words of a caption.
    pub max_words: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            d_model: 128,
            n_heads: 4,
            n_layers: 3,
            video_queries: 8,
            text_queries: 16,
            max_features: 16,
            max_text: 64,
            max_words: 24,
        }
    }
}

impl ModelConfig {
    pub fn prefix_len(&self) -> usize {
        self.video_queries + self.text_queries
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err("model.d_model must be a multiple of model.n_heads".into());
        }
        if self.video_queries == 0 || self.text_queries == 0 {
            return Err("model.video_queries and model.text_queries must be positive".into());
        }
        if self.max_features == 0 || self.max_text < 2 || self.max_words < 4 {
            return Err("model.max_features >= 1, max_text >= 2, max_words >= 4".into());
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct ReCap {
    pub feat_proj: Linear,
    pub feat_ln: LayerNorm,
    pub video_mapper: MapPooler,
    pub text_emb: Embedding,
    pub text_pos: Embedding,
    pub text_block: Block,
    pub text_mapper: MapPooler,
    pub lm: CausalLm,
}

impl ReCap {
    pub fn new(cfg: &ModelConfig, d_feat: usize, vocab: usize, device: &Device) -> ReCap {
        let enc = TransformerConfig {
            vocab_size: 1,
            max_len: cfg.max_text,
            d_model: cfg.d_model,
            n_heads: cfg.n_heads,
            n_layers: 1,
            mlp_ratio: 4,
            causal: false,
        };
        let dec = TransformerConfig {
            vocab_size: vocab,
            max_len: cfg.prefix_len() + cfg.max_words + 2,
            d_model: cfg.d_model,
            n_heads: cfg.n_heads,
            n_layers: cfg.n_layers,
            mlp_ratio: 4,
            causal: true,
        };
        let d = cfg.d_model;
        ReCap {
            feat_proj: LinearConfig::new(d_feat, d).init(device),
            feat_ln: LayerNormConfig::new(d)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device),
            video_mapper: MapPooler::new(d, d, cfg.n_heads, cfg.video_queries, device),
            text_emb: EmbeddingConfig::new(vocab, d).init(device),
            text_pos: EmbeddingConfig::new(cfg.max_text, d).init(device),
            text_block: Block::new(&enc, device),
            text_mapper: MapPooler::new(d, d, cfg.n_heads, cfg.text_queries, device),
            lm: CausalLm::new(&dec, device),
        }
    }

    pub fn d_feat(&self) -> usize {
        self.feat_proj.weight.val().dims()[0]
    }

    pub fn vocab(&self) -> usize {
        self.lm.head.weight.val().dims()[1]
    }

    /// The decoder prefix `[b, video_queries + text_queries, d_model]`.
    pub fn prefix(&self, b: &Batch) -> Tensor<3> {
        let device = self.feat_proj.weight.val().device();
        let d_feat = self.d_feat();
        let feats = Tensor::<3>::from_data(
            TensorData::new(b.feats.clone(), [b.size, b.n_feat, d_feat]),
            &device,
        );
        let fpad = Tensor::<2, Bool>::from_data(
            TensorData::new(b.feat_pad.clone(), [b.size, b.n_feat]),
            &device,
        );
        let d = self.feat_ln.gamma.val().dims()[0];
        let x = pw_nn::fused::linear(&self.feat_proj, feats)
            + sinusoidal(b.n_feat, d, &device).reshape([1, b.n_feat, d]);
        let x = pw_nn::fused::layer_norm(&self.feat_ln, x);
        let v = self.video_mapper.forward(x, Some(fpad));
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(b.text.clone(), [b.size, b.n_text]),
            &device,
        );
        let tpad = Tensor::<2, Bool>::from_data(
            TensorData::new(b.text_pad.clone(), [b.size, b.n_text]),
            &device,
        );
        let pos = Tensor::<1, Int>::arange(0..b.n_text as i64, &device)
            .reshape([1, b.n_text])
            .expand([b.size, b.n_text]);
        let t = self.text_emb.forward(ids) + self.text_pos.forward(pos);
        let t = self.text_block.forward(t, Some(tpad.clone()));
        let t = self.text_mapper.forward(t, Some(tpad));
        Tensor::cat(vec![v, t], 1)
    }
}

/// One captioning input: feature rows and the lower level's captions.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// `rows * d_feat` floats.
    pub feats: Vec<f32>,
    pub rows: usize,
    pub texts: Vec<String>,
}

impl Input {
    /// Keeps at most `max` rows, sampled uniformly over the input (sparse sampling).
    pub fn sparse(mut self, max: usize, d_feat: usize) -> Input {
        if self.rows > max {
            let picked: Vec<usize> = (0..max)
                .map(|i| i * self.rows / max + self.rows / (2 * max))
                .collect();
            let mut f = Vec::with_capacity(max * d_feat);
            for r in picked {
                f.extend_from_slice(&self.feats[r * d_feat..(r + 1) * d_feat]);
            }
            self.feats = f;
            self.rows = max;
        }
        self
    }
}

/// The text mapper's ids: each caption's words then `<sep>`, cut at `max` (at least `<sep>`).
pub fn text_ids(vocab: &WordVocab, texts: &[String], max: usize) -> Vec<u32> {
    let mut ids = Vec::new();
    for t in texts {
        ids.extend(vocab.encode(t));
        ids.push(WordVocab::SEP);
    }
    if ids.is_empty() {
        ids.push(WordVocab::SEP);
    }
    ids.truncate(max);
    ids
}

/// A padded batch of inputs (host side; [`ReCap::prefix`] makes tensors of it).
pub struct Batch {
    pub size: usize,
    pub n_feat: usize,
    pub feats: Vec<f32>,
    pub feat_pad: Vec<bool>,
    pub n_text: usize,
    pub text: Vec<i64>,
    pub text_pad: Vec<bool>,
}

impl Batch {
    pub fn new(inputs: &[&Input], vocab: &WordVocab, cfg: &ModelConfig, d_feat: usize) -> Batch {
        let size = inputs.len();
        // Rows come sampled by the caller (dense clip rows are all kept).
        let n_feat = inputs.iter().map(|i| i.rows).max().unwrap_or(1).max(1);
        let texts: Vec<Vec<u32>> = inputs
            .iter()
            .map(|i| text_ids(vocab, &i.texts, cfg.max_text))
            .collect();
        let n_text = texts.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut feats = vec![0f32; size * n_feat * d_feat];
        let mut feat_pad = vec![true; size * n_feat];
        let mut text = vec![WordVocab::PAD as i64; size * n_text];
        let mut text_pad = vec![true; size * n_text];
        for (b, inp) in inputs.iter().enumerate() {
            for r in 0..inp.rows {
                feat_pad[b * n_feat + r] = false;
                feats[(b * n_feat + r) * d_feat..(b * n_feat + r + 1) * d_feat]
                    .copy_from_slice(&inp.feats[r * d_feat..(r + 1) * d_feat]);
            }
            if inp.rows == 0 {
                // No features (cannot happen with our data): one zero row, attended.
                feat_pad[b * n_feat] = false;
            }
            for (j, &id) in texts[b].iter().enumerate() {
                text[b * n_text + j] = id as i64;
                text_pad[b * n_text + j] = false;
            }
        }
        Batch {
            size,
            n_feat,
            feats,
            feat_pad,
            n_text,
            text,
            text_pad,
        }
    }
}

/// How captions are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    Greedy,
    Beam { width: usize },
}

/// A trained captioner ready to caption (its weights copied into the shared decoder).
pub struct Captioner {
    pub model: ReCap,
    pub cfg: ModelConfig,
    pub vocab: WordVocab,
    decoder: Decoder,
}

impl Captioner {
    pub fn new(model: ReCap, cfg: ModelConfig, vocab: WordVocab) -> Result<Captioner> {
        if model.vocab() != vocab.len() {
            return Err(Error::Other(format!(
                "captioner: the vocabulary has {} words but the model's head {}",
                vocab.len(),
                model.vocab()
            )));
        }
        let decoder = Decoder::new(&model.lm)?;
        Ok(Captioner {
            model,
            cfg,
            vocab,
            decoder,
        })
    }

    /// A caption per input.
    pub fn caption(&self, inputs: &[Input], decoding: Decoding) -> Result<Vec<String>> {
        let d_feat = self.model.d_feat();
        for (i, inp) in inputs.iter().enumerate() {
            if inp.feats.len() != inp.rows * d_feat {
                return Err(Error::Other(format!(
                    "captioner: input {i} has {} floats for {} rows of {d_feat}",
                    inp.feats.len(),
                    inp.rows
                )));
            }
        }
        let mut out = Vec::with_capacity(inputs.len());
        let sep = [WordVocab::SEP];
        for chunk in inputs.chunks(64) {
            let refs: Vec<&Input> = chunk.iter().collect();
            let batch = Batch::new(&refs, &self.vocab, &self.cfg, d_feat);
            let prefix = self.model.prefix(&batch);
            let [b, p, d] = prefix.dims();
            let rows: Vec<f32> = prefix
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Other(format!("captioner: {e:?}")))?;
            let prompts: Vec<Prompt> = (0..b)
                .map(|i| Prompt {
                    prefix: &rows[i * p * d..(i + 1) * p * d],
                    tokens: &sep,
                })
                .collect();
            let ids: Vec<Vec<u32>> = match decoding {
                Decoding::Greedy => self
                    .decoder
                    .sample_prompts(
                        &prompts,
                        &vec![0; b],
                        1,
                        &SampleOptions {
                            temperature: 0.0,
                            top_p: 1.0,
                            max_new: self.cfg.max_words,
                            stop: WordVocab::EOS,
                        },
                    )?
                    .into_iter()
                    .map(|mut s| s.swap_remove(0))
                    .collect(),
                Decoding::Beam { width } => self
                    .decoder
                    .beam_search(
                        &prompts,
                        &BeamOptions {
                            width,
                            max_new: self.cfg.max_words,
                            stop: WordVocab::EOS,
                            length_penalty: 1.0,
                        },
                    )?
                    .into_iter()
                    .map(|h| h.into_iter().next().map(|h| h.tokens).unwrap_or_default())
                    .collect(),
            };
            out.extend(ids.iter().map(|t| self.vocab.decode(t)));
        }
        Ok(out)
    }
}
