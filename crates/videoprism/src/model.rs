//! The networks: the stage-1 video-text model (factorized ViViT encoder, auxiliary layers and
//! MAP pooler on the video side, the class-token text encoder on the other, a learnable
//! temperature) and the stage-2 distillation model (a student encoder, a MASK token, the
//! token-wise decoder with its position embeddings, and the global decoder + MAP pooler).
//! The layers are pw-nn's ([`pw_nn::vivit`]), the ones the released weights load into.

use pw_nn::burn;
use pw_nn::burn::module::{Module, Param};
use pw_nn::burn::nn::{Linear, LinearConfig};
use pw_nn::burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use pw_nn::vivit::{
    LayerSpec, MapPooler, TextEncoder, VivitConfig, VivitEncoder, VpBlock, l2_normalize, run_stack,
    stack,
};
use serde::{Deserialize, Serialize};

/// Shape of the whole model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub encoder: VivitConfig,
    /// Transformer layers between the encoder and the contrastive pooler (released: 2).
    pub aux_layers: usize,
    pub text_layers: usize,
    pub max_text_len: usize,
    /// Layers of each stage-2 decoder (paper: 4).
    pub decoder_layers: usize,
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.encoder
            .validate()
            .map_err(|e| format!("encoder: {e}"))?;
        if self.max_text_len == 0 {
            return Err("max_text_len must be at least 1".into());
        }
        if self.decoder_layers == 0 {
            return Err("decoder_layers must be at least 1".into());
        }
        Ok(())
    }
}

/// Stage 1: video tokens -> auxiliary layers -> MAP pooler -> L2-normalised video embedding;
/// text -> class-token embedding, L2-normalised; similarity scaled by exp(log_scale).
#[derive(Module, Debug)]
pub struct VideoTextModel {
    pub encoder: VivitEncoder,
    pub aux: Vec<VpBlock>,
    pub pooler: MapPooler,
    pub text: TextEncoder,
    /// log of the inverse temperature (CLIP's learnable logit scale).
    pub log_scale: Param<Tensor<1>>,
}

impl VideoTextModel {
    pub fn new(cfg: &ModelConfig, vocab: usize, device: &Device) -> Self {
        let e = &cfg.encoder;
        let d = e.d_model;
        VideoTextModel {
            encoder: VivitEncoder::new(e, device),
            aux: stack(cfg.aux_layers, &LayerSpec::vision(e), device),
            pooler: MapPooler::new(d, 4 * d, e.n_heads, 1, device),
            text: TextEncoder::new(vocab, d, cfg.text_layers, e.n_heads, e.logit_cap, device),
            log_scale: Param::from_tensor(Tensor::from_floats([(1.0f32 / 0.07).ln()], device)),
        }
    }

    /// The video embedding `[b, d]` (unnormalised) of encoder tokens `[b, n, d]`.
    pub fn pool(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = tokens.dims();
        let x = run_stack(&self.aux, tokens, None);
        self.pooler.forward(x, None).reshape([b, d])
    }

    /// Encoder tokens and the L2-normalised video embedding of `video` `[b, t, h, w, 3]`.
    pub fn embed_video(&self, video: Tensor<5>) -> (Tensor<3>, Tensor<2>) {
        let tokens = self.encoder.forward(video);
        let g = l2_normalize(self.pool(tokens.clone()));
        (tokens, g)
    }

    pub fn embed_text(&self, ids: Tensor<2, Int>, pad: Tensor<2, Bool>) -> Tensor<2> {
        l2_normalize(self.text.forward(ids, pad))
    }
}

/// Symmetric InfoNCE over a batch of matched (video, text) embeddings, both L2-normalised.
pub fn info_nce(video: Tensor<2>, text: Tensor<2>, log_scale: Tensor<1>) -> Tensor<1> {
    use pw_nn::burn::tensor::activation::log_softmax;
    let b = video.dims()[0];
    let device = video.device();
    // The scale is clamped at 100 as in CLIP, so the temperature cannot collapse.
    let scale = log_scale.clamp_max(100f32.ln()).exp().reshape([1, 1]);
    let logits = video.matmul(text.transpose()) * scale;
    let eye = Tensor::<2>::eye(b, &device);
    let v2t = -(log_softmax(logits.clone(), 1) * eye.clone()).sum() / b as f64;
    let t2v = -(log_softmax(logits, 0) * eye).sum() / b as f64;
    (v2t + t2v) / 2.0
}

/// 1 - cosine similarity along the last dim, averaged over everything else.
pub fn cosine_loss<const D: usize>(pred: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let dot = (pred.clone() * target.clone()).sum_dim(D - 1);
    let np = (pred.clone() * pred).sum_dim(D - 1).add_scalar(1e-8).sqrt();
    let nt = (target.clone() * target)
        .sum_dim(D - 1)
        .add_scalar(1e-8)
        .sqrt();
    (-(dot / (np * nt))).add_scalar(1.0).mean()
}

/// Stage 2: the student encoder and the two distillation decoders.
#[derive(Module, Debug)]
pub struct DistillModel {
    pub student: VivitEncoder,
    /// Fills the masked positions before the token-wise decoder.
    pub mask_token: Param<Tensor<2>>,
    /// Position embeddings of the token-wise decoder, one per space-time token.
    pub decoder_pos: Param<Tensor<2>>,
    pub token_decoder: Vec<VpBlock>,
    pub token_head: Linear,
    pub global_decoder: Vec<VpBlock>,
    pub global_pooler: MapPooler,
    pub global_head: Linear,
}

impl DistillModel {
    /// A student initialised from the stage-1 encoder (`student`), fresh decoders for
    /// `tokens` space-time tokens.
    pub fn new(cfg: &ModelConfig, student: VivitEncoder, tokens: usize, device: &Device) -> Self {
        let e = &cfg.encoder;
        let d = e.d_model;
        let std = Distribution::Normal(0.0, 0.02);
        DistillModel {
            student,
            mask_token: Param::from_tensor(Tensor::random([1, d], std, device)),
            decoder_pos: Param::from_tensor(decoder_positions(e, tokens, device)),
            token_decoder: stack(cfg.decoder_layers, &LayerSpec::vision(e), device),
            token_head: LinearConfig::new(d, d).init(device),
            global_decoder: stack(cfg.decoder_layers, &LayerSpec::vision(e), device),
            global_pooler: MapPooler::new(d, 4 * d, e.n_heads, 1, device),
            global_head: LinearConfig::new(d, d).init(device),
        }
    }
}

/// Starting values of the token-wise decoder's position table, `[tokens, d]` frame-major: the
/// sum of the encoder's sin-cos tables (see [`VivitEncoder::new`]) of the token's frame and
/// patch, scaled by 1/sqrt(2). The decoder's input may be shuffled, so these are its only cue to
/// which teacher token each output predicts. A token count other than frames x grid (a user's
/// clips of another size) starts from a 1-D sin-cos table over the tokens.
fn decoder_positions(e: &VivitConfig, tokens: usize, device: &Device) -> Tensor<2> {
    use pw_nn::burn::tensor::TensorData;
    use pw_nn::vivit::{spatial_sincos, temporal_sincos};
    let d = e.d_model;
    let (gh, gw) = e.grid;
    let n = gh * gw;
    let v = if tokens == e.frames * n {
        let (s, t) = (spatial_sincos(gh, gw, d), temporal_sincos(e.frames, d));
        let mut v = Vec::with_capacity(tokens * d);
        for k in 0..tokens {
            let (f, p) = (k / n, k % n);
            v.extend(
                (0..d).map(|i| (s[p * d + i] + t[f * d + i]) * std::f32::consts::FRAC_1_SQRT_2),
            );
        }
        v
    } else {
        temporal_sincos(tokens, d)
    };
    Tensor::from_data(TensorData::new(v, [tokens, d]), device)
}

/// Which stage-2 losses and tricks a variant uses (the paper's ablation ladder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistillVariant {
    pub global: bool,
    pub shuffle: bool,
}

/// One stage-2 batch after masking: visible positions per sample, and (with shuffling) the
/// permutation of the decoder's input sequence.
pub struct MaskedBatch {
    /// `[b, v]` visible patch positions (the same in every frame).
    pub visible: Tensor<2, Int>,
    /// `[b, t * v]` indices of the visible tokens in the full `t * n` sequence.
    pub visible_tokens: Tensor<2, Int>,
    /// `[b, t * n, 1]` 1 where the token is masked.
    pub masked: Tensor<3>,
    /// `[b, t * n]` the decoder input order (identity without shuffling).
    pub order: Tensor<2, Int>,
}

/// The stage-2 losses `(token-wise, global)` of one batch. `teacher_tokens` `[b, t*n, d]`
/// and `teacher_global` `[b, d]` come from the frozen stage-1 model on the whole video.
pub fn distill_losses(
    m: &DistillModel,
    patches: Tensor<3>,
    (b, t, grid): (usize, usize, (usize, usize)),
    batch: &MaskedBatch,
    teacher_tokens: Tensor<3>,
    teacher_global: Tensor<2>,
    variant: DistillVariant,
) -> (Tensor<1>, Option<Tensor<1>>) {
    let n = grid.0 * grid.1;
    let d = m.student.d_model();
    let visible = m
        .student
        .encode_patches(patches, b, t, grid, Some(batch.visible.clone()));
    let tv = visible.dims()[1];
    // Token-wise: visible tokens at their places, the MASK token elsewhere.
    let idx = batch
        .visible_tokens
        .clone()
        .reshape([b, tv, 1])
        .expand([b, tv, d]);
    let placed = Tensor::<3>::zeros([b, t * n, d], &visible.device()).scatter(
        1,
        idx,
        visible.clone(),
        pw_nn::burn::tensor::IndexingUpdateOp::Add,
    );
    let seq = placed + m.mask_token.val().reshape([1, 1, d]) * batch.masked.clone();
    // Shuffled (or not), then the decoder's position embeddings: index i must predict the
    // teacher's token i, whatever content the shuffle put there.
    let order = batch
        .order
        .clone()
        .reshape([b, t * n, 1])
        .expand([b, t * n, d]);
    let seq = seq.gather(1, order) + m.decoder_pos.val().reshape([1, t * n, d]);
    let pred = m.token_head.forward(run_stack(&m.token_decoder, seq, None));
    let token_loss = cosine_loss(pred, teacher_tokens);
    let global_loss = variant.global.then(|| {
        let g = run_stack(&m.global_decoder, visible, None);
        let g = m.global_pooler.forward(g, None).reshape([b, d]);
        cosine_loss(m.global_head.forward(g), teacher_global)
    });
    (token_loss, global_loss)
}

/// An attention-pooler probe over frozen tokens: MAP pooler + linear classifier.
#[derive(Module, Debug)]
pub struct Probe {
    pub pooler: MapPooler,
    pub head: Linear,
}

impl Probe {
    pub fn new(d: usize, heads: usize, classes: usize, device: &Device) -> Self {
        Probe {
            pooler: MapPooler::new(d, d, heads, 1, device),
            head: LinearConfig::new(d, classes).init(device),
        }
    }

    /// Logits `[b, classes]` of tokens `[b, n, d]`.
    pub fn forward(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = tokens.dims();
        self.head
            .forward(self.pooler.forward(tokens, None).reshape([b, d]))
    }
}
