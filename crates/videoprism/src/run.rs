//! Real use: `paperworks videoprism embed | train | probe` on a user's videos.
//!
//! An encoder comes from a folder this crate wrote (`videoprism train`, or a reproduction's
//! `videoprism/seed0`: `model.json`, `stage1.safetensors`, a stage-2 checkpoint) or from a
//! released `.npz` ([`crate::npz`]). Videos are decoded on worker threads
//! ([`pw_data::video::decode_many`]) at the encoder's frame count and size, while the encoder
//! works on the previous batch.

use crate::config::{StageConfig, VideoPrismConfig};
use crate::data::{LabelRecord, PairRecord, read_records, resolve, video_tensor};
use crate::evaluate::{Features, ProbeScore, probe};
use crate::model::{DistillModel, DistillVariant, ModelConfig, VideoTextModel};
use crate::train::{train_distill, train_video_text};
use pw_core::{Error, Result, Size, write_json_atomic};
use pw_data::video::{FrameSpec, Frames, decode_many};
use pw_nn::burn::tensor::{Device, Tensor};
use pw_nn::checkpoint::{NamedTensors, load_module, save_tensors};
use pw_nn::tokenizer::WordTokenizer;
use pw_nn::train_device;
use pw_nn::vivit::{VivitEncoder, l2_normalize};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `model.json` beside our checkpoints: what builds the templates they load into.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub model: ModelConfig,
    pub vocab: usize,
    /// Frames and square frame size the encoder was trained on.
    pub frames: usize,
    pub size: usize,
}

pub const MODEL_FILE: &str = "model.json";
/// Stage-2 checkpoints, in order of preference.
const STAGE2_FILES: [&str; 2] = ["stage2.safetensors", "stage2-shuffle.safetensors"];

/// A frozen encoder ready to embed videos.
pub struct Encoder {
    pub encoder: VivitEncoder,
    /// The stage-1 model whose pooler gives the global embedding (ours); `None` for a released
    /// video-only checkpoint, whose global embedding is the mean of its tokens.
    pub video_text: Option<VideoTextModel>,
    pub frames: usize,
    pub size: usize,
    /// What was loaded, for the index and the summary.
    pub source: String,
}

impl Encoder {
    /// Tokens `[b, t*n, d]` and L2-normalised global embeddings `[b, d]`.
    pub fn embed(&self, video: Tensor<5>) -> (Tensor<3>, Tensor<2>) {
        let tokens = self.encoder.forward(video);
        let g = match &self.video_text {
            Some(m) => m.pool(tokens.clone()),
            None => {
                let [b, _, d] = tokens.dims();
                tokens.clone().mean_dim(1).reshape([b, d])
            }
        };
        (tokens, l2_normalize(g))
    }
}

/// Loads the encoder at `path`: a folder of ours or a released `.npz`. `frames` / `size`
/// override the input shape (position embeddings are interpolated).
pub fn load_encoder(path: &Path, device: &Device) -> Result<Encoder> {
    if path.is_file() {
        let (encoder, cfg) = crate::npz::load_encoder(path, 50.0, device)?;
        return Ok(Encoder {
            encoder,
            video_text: None,
            frames: cfg.frames,
            size: cfg.grid.0 * cfg.patch,
            source: format!("released checkpoint {}", path.display()),
        });
    }
    let mf_path = path.join(MODEL_FILE);
    if !mf_path.exists() {
        return Err(Error::invalid(
            path,
            format!(
                "not an encoder: no {MODEL_FILE} (pass a `videoprism train` output folder, a reproduction's videoprism/seed0, or a released .npz)"
            ),
        ));
    }
    let mf: ModelFile =
        serde_json::from_slice(&std::fs::read(&mf_path).map_err(|e| Error::io(&mf_path, e))?)
            .map_err(|e| Error::invalid(&mf_path, format!("bad model file: {e}")))?;
    mf.model
        .validate()
        .map_err(|e| Error::invalid(&mf_path, e))?;
    let s1 = path.join("stage1.safetensors");
    let vt = load_module(VideoTextModel::new(&mf.model, mf.vocab, device), &s1)?;
    let (encoder, stage) = match STAGE2_FILES
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.exists())
    {
        Some(p) => {
            let g = mf.size / mf.model.encoder.patch;
            let tokens = g * g * mf.frames;
            let enc = VivitEncoder::new(&mf.model.encoder, device);
            let m = load_module(DistillModel::new(&mf.model, enc, tokens, device), &p)?;
            (m.student, p)
        }
        None => (vt.encoder.clone(), s1),
    };
    Ok(Encoder {
        encoder,
        video_text: Some(vt),
        frames: mf.frames,
        size: mf.size,
        source: stage.display().to_string(),
    })
}

/// A seeded random encoder of the quick reproduction's shape (pipeline and speed checks).
pub fn random_encoder(seed: u64, device: &Device) -> Encoder {
    let cfg = <VideoPrismConfig as pw_core::ReproConfig>::for_size(Size::Quick);
    device.seed(seed);
    Encoder {
        encoder: VivitEncoder::new(&cfg.model.encoder, device),
        video_text: None,
        frames: cfg.video.frames,
        size: cfg.video.size,
        source: format!("random encoder (seed {seed}), not trained"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedOptions {
    pub videos: Vec<PathBuf>,
    pub out: PathBuf,
    pub tokens: bool,
    pub batch: usize,
    pub workers: usize,
}

/// One line of the embeddings' JSONL index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexRecord {
    pub row: usize,
    pub video: String,
    pub frame_indices: Vec<usize>,
    pub frame_times_s: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedSummary {
    pub videos: usize,
    pub dim: usize,
    pub tokens_per_video: usize,
    pub out: PathBuf,
    pub index: PathBuf,
    pub decode_s: f64,
    pub total_s: f64,
    pub source: String,
}

/// Decodes `paths` (uniform frames at the encoder's shape) in encoder batches, calling
/// `f(first_row, frames, tokens, global)` per batch.
fn encode_videos(
    enc: &Encoder,
    paths: &[PathBuf],
    batch: usize,
    workers: usize,
    device: &Device,
    mut f: impl FnMut(usize, &[Frames], Tensor<3>, Tensor<2>) -> Result<()>,
) -> Result<f64> {
    let spec = FrameSpec::uniform(enc.frames, enc.size, enc.size);
    let mut pending: Vec<Frames> = Vec::new();
    let mut first = 0usize;
    let mut decode_wait = 0f64;
    let mut waited = std::time::Instant::now();
    let bar = pw_core::progress::bar(paths.len() as u64, "videoprism embed");
    let mut flush = |pending: &mut Vec<Frames>, first: &mut usize| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let views: Vec<&[f32]> = pending.iter().map(|f| f.data.as_slice()).collect();
        let x = video_tensor(&views, enc.frames, enc.size, enc.size, device);
        let (tokens, global) = enc.embed(x);
        f(*first, pending, tokens, global)?;
        bar.inc(pending.len() as u64);
        *first += pending.len();
        pending.clear();
        Ok(())
    };
    decode_many(paths, &spec, workers, batch * 2, |_, r| {
        decode_wait += waited.elapsed().as_secs_f64();
        pending.push(r?);
        if pending.len() == batch {
            flush(&mut pending, &mut first)?;
        }
        waited = std::time::Instant::now();
        Ok::<(), Error>(())
    })?;
    flush(&mut pending, &mut first)?;
    bar.finish_and_clear();
    Ok(decode_wait)
}

/// `videoprism embed`: per-video global (and optionally token) embeddings in one safetensors
/// file (`global` `[n, d]`, `tokens` `[n, t*n, d]`) plus a JSONL index beside it.
pub fn embed(enc: &Encoder, opts: &EmbedOptions) -> Result<EmbedSummary> {
    if opts.videos.is_empty() {
        return Err(Error::Other("no videos given".into()));
    }
    let t0 = std::time::Instant::now();
    let plain = train_device(false)?;
    let mut global: Vec<f32> = Vec::new();
    let mut tokens: Vec<f32> = Vec::new();
    let mut index = Vec::new();
    let (mut d, mut ntok) = (0, 0);
    let decode_s = encode_videos(
        enc,
        &opts.videos,
        opts.batch,
        opts.workers,
        &plain,
        |first, frames, tok, g| {
            let dims = tok.dims();
            ntok = dims[1];
            d = dims[2];
            global.extend(
                g.into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| Error::Other(format!("{e:?}")))?,
            );
            if opts.tokens {
                tokens.extend(
                    tok.into_data()
                        .try_to_vec::<f32>()
                        .map_err(|e| Error::Other(format!("{e:?}")))?,
                );
            }
            for (i, fr) in frames.iter().enumerate() {
                index.push(IndexRecord {
                    row: first + i,
                    video: opts.videos[first + i].display().to_string(),
                    frame_indices: fr.indices.clone(),
                    frame_times_s: fr
                        .times
                        .iter()
                        .map(|t| (t * 1000.0).round() / 1000.0)
                        .collect(),
                });
            }
            Ok(())
        },
    )?;
    let n = index.len();
    let mut named: NamedTensors = NamedTensors::new();
    named.insert("global".into(), (vec![n, d], global));
    if opts.tokens {
        named.insert("tokens".into(), (vec![n, ntok, d], tokens));
    }
    if let Some(parent) = opts.out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("source".to_string(), enc.source.clone());
    meta.insert("frames".to_string(), enc.frames.to_string());
    meta.insert("size".to_string(), enc.size.to_string());
    save_tensors(&opts.out, &named, Some(meta))?;
    let index_path = opts.out.with_extension("jsonl");
    pw_core::jsonl::write_jsonl(&index_path, &index)?;
    Ok(EmbedSummary {
        videos: n,
        dim: d,
        tokens_per_video: ntok,
        out: opts.out.clone(),
        index: index_path,
        decode_s,
        total_s: t0.elapsed().as_secs_f64(),
        source: enc.source.clone(),
    })
}

/// Decodes every video of `paths` at `frames x size x size` (all in memory: `videoprism
/// train` and `probe` are for datasets of modest size on one machine).
fn decode_all(
    paths: &[PathBuf],
    frames: usize,
    size: usize,
    workers: usize,
) -> Result<Vec<Vec<f32>>> {
    let spec = FrameSpec::uniform(frames, size, size);
    let mut out = Vec::with_capacity(paths.len());
    let bar = pw_core::progress::bar(paths.len() as u64, "decoding videos");
    decode_many(paths, &spec, workers, workers * 2, |_, r| {
        out.push(r?.data);
        bar.inc(1);
        Ok::<(), Error>(())
    })?;
    bar.finish_and_clear();
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    pub frames: usize,
    pub size: usize,
    pub stage1_steps: usize,
    pub stage2_steps: usize,
    pub batch: usize,
    pub seed: u64,
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub pairs: usize,
    pub vocab: usize,
    pub out: PathBuf,
}

/// `videoprism train`: both stages on a user's video-caption pairs, at the quick
/// reproduction's model shape (stage 2 with global distillation and token shuffling).
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    let recs: Vec<PairRecord> = read_records(&opts.data)?;
    if recs.len() < 2 {
        return Err(Error::invalid(&opts.data, "needs at least 2 pairs"));
    }
    let mut cfg = <VideoPrismConfig as pw_core::ReproConfig>::for_size(Size::Quick);
    cfg.video.frames = opts.frames;
    cfg.video.size = opts.size;
    cfg.stage1.steps = opts.stage1_steps;
    cfg.stage2.steps = opts.stage2_steps;
    cfg.stage1.batch = opts.batch.min(recs.len());
    cfg.stage2.batch = opts.batch.min(recs.len());
    // Same-appearance grouping is for the synthetic corpus; a user's batches are uniform.
    cfg.stage1_group = 1;
    cfg.model.encoder.frames = opts.frames;
    cfg.model.encoder.grid = (
        opts.size / cfg.model.encoder.patch,
        opts.size / cfg.model.encoder.patch,
    );
    pw_core::ReproConfig::validate(&cfg).map_err(|e| Error::invalid(&opts.data, e))?;
    let paths: Vec<PathBuf> = recs.iter().map(|r| resolve(&opts.data, &r.video)).collect();
    let clips = decode_all(&paths, opts.frames, opts.size, opts.workers)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let tok_path = opts.out.join("tokenizer.json");
    let tok = if tok_path.exists() {
        WordTokenizer::load(&tok_path)?
    } else {
        let t = WordTokenizer::from_corpus(recs.iter().map(|r| r.caption.as_str()), 1);
        t.save(&tok_path)?;
        t
    };
    write_json_atomic(
        opts.out.join(MODEL_FILE),
        &ModelFile {
            model: cfg.model,
            vocab: tok.vocab_size(),
            frames: opts.frames,
            size: opts.size,
        },
    )?;
    let (ad, plain) = (train_device(true)?, train_device(false)?);
    let (t, s) = (opts.frames, opts.size);
    let batch_of = |idx: &[usize], dev: &Device| {
        let views: Vec<&[f32]> = idx.iter().map(|&i| clips[i].as_slice()).collect();
        video_tensor(&views, t, s, s, dev)
    };
    let pair = |idx: &[usize]| -> (Tensor<5>, Vec<String>) {
        (
            batch_of(idx, &ad),
            idx.iter().map(|&i| recs[i].caption.clone()).collect(),
        )
    };
    ad.seed(opts.seed);
    let s1 = train_video_text(
        &cfg.model,
        &cfg.stage1,
        &tok,
        recs.len(),
        &pair,
        &opts.out.join("stage1.safetensors"),
        (&ad, &plain),
        opts.seed,
    )?;
    let videos = |idx: &[usize], dev: &Device| -> Tensor<5> { batch_of(idx, dev) };
    train_distill(
        &cfg.model,
        &cfg.stage2,
        cfg.mask_ratio,
        &s1,
        recs.len(),
        &videos,
        DistillVariant {
            global: true,
            shuffle: true,
        },
        &opts.out.join("stage2.safetensors"),
        (&ad, &plain),
        opts.seed,
    )?;
    Ok(TrainSummary {
        pairs: recs.len(),
        vocab: tok.vocab_size(),
        out: opts.out.clone(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeOptions {
    pub data: PathBuf,
    pub steps: usize,
    pub seed: u64,
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    pub classes: Vec<String>,
    pub sizes: [usize; 3],
    pub score: ProbeScore,
    pub source: String,
}

/// `videoprism probe`: an attention-pooler probe on the frozen encoder for a user's labels;
/// the split is the record's `split` or a hash of its path (80/10/10).
pub fn probe_labels(enc: &Encoder, opts: &ProbeOptions) -> Result<ProbeSummary> {
    let recs: Vec<LabelRecord> = read_records(&opts.data)?;
    let mut classes: Vec<String> = recs.iter().map(|r| r.label.clone()).collect();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        return Err(Error::invalid(
            &opts.data,
            "needs at least 2 distinct labels",
        ));
    }
    let mut split_of = Vec::with_capacity(recs.len());
    for (i, r) in recs.iter().enumerate() {
        let s = match r.split.as_deref() {
            Some("train") => 0,
            Some("val") => 1,
            Some("test") => 2,
            Some(other) => {
                return Err(Error::corrupt(
                    &opts.data,
                    i + 1,
                    format!("split {other:?} is not train, val or test"),
                ));
            }
            None => match pw_core::seed::fnv1a(r.video.to_string_lossy().as_bytes()) % 10 {
                0 => 1,
                1 => 2,
                _ => 0,
            },
        };
        split_of.push(s);
    }
    let plain = train_device(false)?;
    let ad = train_device(true)?;
    let paths: Vec<PathBuf> = recs.iter().map(|r| resolve(&opts.data, &r.video)).collect();
    let mut feats: [Features; 3] = std::array::from_fn(|_| Features {
        n: 0,
        tokens: 0,
        d: 0,
        data: Vec::new(),
    });
    let mut labels: [Vec<usize>; 3] = Default::default();
    encode_videos(
        enc,
        &paths,
        16,
        opts.workers,
        &plain,
        |first, frames, tok, _| {
            let [_, n, d] = tok.dims();
            let v = tok
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Other(format!("{e:?}")))?;
            for i in 0..frames.len() {
                let s = split_of[first + i];
                let f = &mut feats[s];
                f.tokens = n;
                f.d = d;
                f.n += 1;
                f.data.extend_from_slice(&v[i * n * d..(i + 1) * n * d]);
                labels[s].push(
                    classes
                        .binary_search(&recs[first + i].label)
                        .expect("label listed"),
                );
            }
            Ok(())
        },
    )?;
    let sizes = [feats[0].n, feats[1].n, feats[2].n];
    if sizes.contains(&0) {
        return Err(Error::invalid(
            &opts.data,
            format!("every split needs a video (train/val/test: {sizes:?})"),
        ));
    }
    let stage = StageConfig {
        steps: opts.steps,
        batch: 32,
        lr: 2e-3,
    };
    let heads = enc
        .encoder
        .spatial
        .first()
        .map(|b| b.attn.n_heads)
        .unwrap_or(1);
    let score = probe(
        (&feats[0], &labels[0]),
        (&feats[1], &labels[1]),
        (&feats[2], &labels[2]),
        classes.len(),
        heads,
        &stage,
        8,
        opts.seed,
        (&ad, &plain),
    );
    Ok(ProbeSummary {
        classes,
        sizes,
        score,
        source: enc.source.clone(),
    })
}
