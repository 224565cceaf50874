//! The two pre-training stages. Each stage's model is a checkpoint in the run directory
//! (`pw_nn::checkpoint::load_or_train`): a killed run resumes after the last finished stage,
//! and its loss curve is kept beside it (`<stage>.loss.jsonl`).
//!
//! - Stage 1 ([`stage1`]): video-text contrastive training, symmetric InfoNCE with a learnable
//!   temperature, on clips with clean or noisy captions.
//! - Stage 2 ([`stage2`]): the student starts from the stage-1 encoder; the frozen stage-1
//!   model (the teacher) sees the whole clip; the student sees the visible tubes only and is
//!   trained to predict the teacher's every token (token-wise distillation, cosine) and, with
//!   `global`, the teacher's pooled embedding from the visible tokens (global distillation),
//!   with equal weights; `shuffle` permutes the decoder's input before its position
//!   embeddings are added.

use crate::config::{StageConfig, VideoPrismConfig};
use crate::data::{Splits, clip_tensor, masked_batch};
use crate::model::{
    DistillModel, DistillVariant, ModelConfig, VideoTextModel, distill_losses, info_nce,
};
use pw_core::Result;
use pw_data::synthvideo::Clip;
use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use pw_nn::checkpoint::load_or_train;
use pw_nn::schedule::OptimConfig;
use pw_nn::tokenizer::WordTokenizer;
use pw_nn::train::{StepLog, StepOutput, train_loop};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;

pub fn optim(stage: &StageConfig) -> OptimConfig {
    OptimConfig {
        lr: stage.lr,
        warmup_steps: (stage.steps / 10).clamp(1, 200),
        weight_decay: 0.05,
        ..Default::default()
    }
}

/// The caption stage 1 trains on for clip `i`: a fixed share of the clips only has its noisy
/// (ASR-like) text, decided by a hash of the index so every run sees the same corpus.
pub fn training_caption(c: &Clip, noisy_share: f64, seed: u64) -> &str {
    let h = pw_core::seed::derive(seed, &format!("noisy/{}", c.index));
    if (h % 10_000) as f64 / 10_000.0 < noisy_share {
        &c.noisy_caption
    } else {
        &c.caption
    }
}

/// Text ids and padding of `texts`, as tensors.
pub fn text_batch(
    tok: &WordTokenizer,
    texts: &[&str],
    max_len: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let (ids, pad) = tok.batch(texts, max_len);
    let b = texts.len();
    let ids = Tensor::from_data(TensorData::new(ids, [b, max_len]), device);
    let pad = Tensor::<2, Int>::from_data(
        TensorData::new(
            pad.iter().map(|&p| p as i64).collect::<Vec<_>>(),
            [b, max_len],
        ),
        device,
    )
    .equal_elem(1);
    (ids, pad)
}

fn save_log(path: &Path, logs: &[StepLog]) -> Result<()> {
    pw_core::jsonl::write_jsonl(path, logs)
}

/// Reads a saved loss curve (empty when the stage was trained by another version).
pub fn read_log(path: &Path) -> Vec<(f64, f64)> {
    pw_core::jsonl::read_jsonl::<serde_json::Value>(path, "loss log")
        .unwrap_or_default()
        .iter()
        .filter_map(|v| Some((v.get("step")?.as_f64()?, v.get("loss")?.as_f64()?)))
        .collect()
}

/// The tokenizer of the stage-1 captions (clean and noisy), saved as `tokenizer.json`.
pub fn tokenizer(splits: &Splits, dir: &Path) -> Result<WordTokenizer> {
    let path = dir.join("tokenizer.json");
    if path.exists() {
        return WordTokenizer::load(&path);
    }
    let clips = splits.range(&splits.pairs);
    let texts = clips
        .iter()
        .flat_map(|c| [c.caption.as_str(), c.noisy_caption.as_str()]);
    let tok = WordTokenizer::from_corpus(texts, 2);
    tok.save(&path)?;
    Ok(tok)
}

/// A batch of stage-1 pairs by index: clips `[b, t, h, w, 3]` on the autodiff device and their
/// captions.
pub type PairBatch<'a> = dyn Fn(&[usize]) -> (Tensor<5>, Vec<String>) + Sync + 'a;

/// Stage 1: video-text contrastive pre-training on (clip, caption) pairs from `pair`.
#[allow(clippy::too_many_arguments)]
pub fn train_video_text(
    model_cfg: &ModelConfig,
    stage: &StageConfig,
    tok: &WordTokenizer,
    n_pairs: usize,
    pair: &PairBatch,
    path: &Path,
    (ad, plain): (&Device, &Device),
    seed: u64,
) -> Result<VideoTextModel> {
    let log_path = path.with_extension("loss.jsonl");
    load_or_train(
        path,
        || VideoTextModel::new(model_cfg, tok.vocab_size(), plain),
        || {
            // The starting weights come from burn's process-wide generator: seeded here, so
            // they do not depend on what ran before in the process (Video ReCap trains this
            // model after other systems and its own LLM stage).
            ad.seed(seed);
            let mut rng = StdRng::seed_from_u64(seed);
            let model = VideoTextModel::new(model_cfg, tok.vocab_size(), ad);
            let (m, logs) = train_loop(
                model,
                stage.steps,
                &optim(stage),
                "videoprism stage 1 (video-text contrastive)",
                10,
                |m, _| {
                    let idx: Vec<usize> = (0..stage.batch)
                        .map(|_| rng.random_range(0..n_pairs))
                        .collect();
                    let (video, texts) = pair(&idx);
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let (ids, pad) = text_batch(tok, &refs, model_cfg.max_text_len, ad);
                    let (_, v) = m.embed_video(video);
                    let t = m.embed_text(ids, pad);
                    StepOutput {
                        loss: info_nce(v, t, m.log_scale.val()),
                        items: idx.len(),
                    }
                },
                |_| true,
            );
            save_log(&log_path, &logs)?;
            Ok(m.valid())
        },
    )
}

/// Every appearance factor of a clip: clips with the same key differ only in motion.
fn appearance_key(f: &pw_data::synthvideo::Factors) -> (usize, usize, usize, usize) {
    (f.colour, f.shape, f.texture, f.size)
}

/// Stage 1 of the miniature: pairs from the synthetic corpus.
pub fn stage1(
    cfg: &VideoPrismConfig,
    splits: &Splits,
    tok: &WordTokenizer,
    path: &Path,
    devices: (&Device, &Device),
    seed: u64,
) -> Result<VideoTextModel> {
    let ad = devices.0;
    let pairs = splits.pairs.clone();
    // Pairs grouped by their whole appearance (colour, shape, texture, size), for batches whose
    // captions can only be told apart by motion (see `VideoPrismConfig::stage1_group`).
    let keys: Vec<_> = (0..pairs.len())
        .map(|i| appearance_key(&pw_data::synthvideo::factors(splits.seed, pairs.start + i)))
        .collect();
    let mut groups: std::collections::HashMap<_, Vec<usize>> = Default::default();
    for (i, k) in keys.iter().enumerate() {
        groups.entry(*k).or_default().push(i);
    }
    let group = cfg.stage1_group.max(1);
    let pair = |idx: &[usize]| -> (Tensor<5>, Vec<String>) {
        // Every `group`-th index is an anchor; the indices after it are replaced by pairs of
        // the anchor's appearance (the random index picks which one).
        let mut chosen: Vec<usize> = Vec::with_capacity(idx.len());
        for (j, &i) in idx.iter().enumerate() {
            if j % group == 0 {
                chosen.push(i);
            } else {
                let g = &groups[&keys[chosen[j - j % group]]];
                chosen.push(g[i % g.len()]);
            }
        }
        let ids: Vec<usize> = chosen.iter().map(|&i| pairs.start + i).collect();
        let clips = splits.clips(&ids);
        let texts = clips
            .iter()
            .map(|c| training_caption(c, cfg.noisy_share, splits.seed).to_string())
            .collect();
        (clip_tensor(&clips, &splits.spec, ad), texts)
    };
    train_video_text(
        &cfg.model,
        &cfg.stage1,
        tok,
        pairs.len(),
        &pair,
        path,
        devices,
        seed,
    )
}

/// Stage 2: masked distillation from the frozen stage-1 `teacher` (on the plain device).
/// `videos(idx)` gives clips `[b, t, h, w, 3]` of the stage-2 corpus of `n_videos`.
#[allow(clippy::too_many_arguments)]
pub fn train_distill(
    model_cfg: &ModelConfig,
    stage: &StageConfig,
    mask_ratio: f64,
    teacher: &VideoTextModel,
    n_videos: usize,
    videos: &(dyn Fn(&[usize], &Device) -> Tensor<5> + Sync),
    variant: DistillVariant,
    path: &Path,
    (ad, plain): (&Device, &Device),
    seed: u64,
) -> Result<DistillModel> {
    let log_path = path.with_extension("loss.jsonl");
    let patch = model_cfg.encoder.patch;
    // The clip shape sizes the decoder's position table (one row per space-time token).
    let [_, t, h, w, _] = videos(&[0], plain).dims();
    let grid = (h / patch, w / patch);
    let tokens = t * grid.0 * grid.1;
    load_or_train(
        path,
        || {
            let enc = pw_nn::vivit::VivitEncoder::new(&model_cfg.encoder, plain);
            DistillModel::new(model_cfg, enc, tokens, plain)
        },
        || {
            let mut rng = StdRng::seed_from_u64(seed);
            let student = teacher.encoder.clone().fork(ad).train();
            let model = DistillModel::new(model_cfg, student, tokens, ad);
            let label = format!(
                "videoprism stage 2 (distillation{}{})",
                if variant.global { " + global" } else { "" },
                if variant.shuffle { " + shuffle" } else { "" }
            );
            let (m, logs) = train_loop(
                model,
                stage.steps,
                &optim(stage),
                &label,
                10,
                |m, _| {
                    let idx: Vec<usize> = (0..stage.batch)
                        .map(|_| rng.random_range(0..n_videos))
                        .collect();
                    let video = videos(&idx, plain);
                    let b = idx.len();
                    // Teacher targets on the whole clip, computed without gradients.
                    let (tt, tg) = {
                        let tokens = teacher.encoder.forward(video.clone());
                        let g = teacher.pool(tokens.clone());
                        (tokens, g)
                    };
                    let tt = Tensor::<3>::from_data(tt.into_data(), ad);
                    let tg = Tensor::<2>::from_data(tg.into_data(), ad);
                    let video = Tensor::<5>::from_data(video.into_data(), ad);
                    let batch = masked_batch(b, t, grid, mask_ratio, variant.shuffle, &mut rng, ad);
                    let patches = m.student.patchify(video);
                    let (tok_loss, glob_loss) =
                        distill_losses(m, patches, (b, t, grid), &batch, tt, tg, variant);
                    let loss = match glob_loss {
                        Some(g) => tok_loss + g,
                        None => tok_loss,
                    };
                    StepOutput { loss, items: b }
                },
                |_| true,
            );
            save_log(&log_path, &logs)?;
            Ok(m.valid())
        },
    )
}

/// Stage 2 of the miniature: all stage-1 clips plus the video-only clips, without text.
pub fn stage2(
    cfg: &VideoPrismConfig,
    splits: &Splits,
    teacher: &VideoTextModel,
    variant: DistillVariant,
    path: &Path,
    devices: (&Device, &Device),
    seed: u64,
) -> Result<DistillModel> {
    let (p, v) = (splits.pairs.clone(), splits.video_only.clone());
    let n = p.len() + v.len();
    let videos = |idx: &[usize], device: &Device| -> Tensor<5> {
        let ids: Vec<usize> = idx
            .iter()
            .map(|&i| {
                if i < p.len() {
                    p.start + i
                } else {
                    v.start + i - p.len()
                }
            })
            .collect();
        clip_tensor(&splits.clips(&ids), &splits.spec, device)
    };
    train_distill(
        &cfg.model,
        &cfg.stage2,
        cfg.mask_ratio,
        teacher,
        n,
        &videos,
        variant,
        path,
        devices,
        seed,
    )
}
