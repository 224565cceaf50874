//! Frozen video features, as the paper's captioner reads them: dense features for the clip
//! level (the encoder's space-time tokens of every second frame, so the video mapper can see
//! where things are in each frame) and one feature per 4-second clip above it (the encoder's
//! pooled embedding).
//!
//! The encoder is VideoPrism's stage 1 (pw-videoprism) trained on the synthetic captioned
//! clips of pw-data, then frozen. Feature files are safetensors, one per video, so users bring
//! features of their own videos in the same layout:
//! `DIR/<video_uid>.safetensors` with `clip_features` `[clips, d]` (one row per 4-s clip) and,
//! optionally, `dense_features` `[clips, rows, d]` (the clip level's dense rows, e.g. patch
//! tokens; without them the clip level reads its clip's one row).

use crate::data::SynthVideo;
use pw_core::{Error, Result};
use pw_data::synthvideo::{SynthSpec, render_factors};
use pw_nn::burn::tensor::{Device, Tensor};
use pw_nn::checkpoint::{NamedTensors, load_tensors, save_tensors};
use pw_videoprism::config::VideoPrismConfig;
use pw_videoprism::data::{Splits, video_tensor};
use pw_videoprism::model::VideoTextModel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One video's features.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFeatures {
    pub d: usize,
    /// `clips * d`
    pub clip: Vec<f32>,
    /// `clips * dense_rows * d` (empty when absent)
    pub frames: Vec<f32>,
    pub dense_rows: usize,
}

impl VideoFeatures {
    pub fn clips(&self) -> usize {
        self.clip.len() / self.d.max(1)
    }

    /// Row `i` of the clip features.
    pub fn clip_row(&self, i: usize) -> &[f32] {
        &self.clip[i * self.d..(i + 1) * self.d]
    }

    /// The clip level's dense rows of clip `i` (its frames, or its one row).
    pub fn dense(&self, i: usize) -> (&[f32], usize) {
        if self.dense_rows > 0 {
            let w = self.dense_rows * self.d;
            (&self.frames[i * w..(i + 1) * w], self.dense_rows)
        } else {
            (self.clip_row(i), 1)
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t: NamedTensors = BTreeMap::new();
        t.insert(
            "clip_features".into(),
            (vec![self.clips(), self.d], self.clip.clone()),
        );
        if self.dense_rows > 0 {
            t.insert(
                "dense_features".into(),
                (
                    vec![self.clips(), self.dense_rows, self.d],
                    self.frames.clone(),
                ),
            );
        }
        save_tensors(path, &t, None)
    }

    pub fn load(path: &Path) -> Result<VideoFeatures> {
        let mut t = load_tensors(path)?;
        let (shape, clip) = t
            .remove("clip_features")
            .ok_or_else(|| Error::invalid(path, "no tensor `clip_features` [clips, d]"))?;
        let [clips, d] = shape[..] else {
            return Err(Error::invalid(
                path,
                format!("clip_features has shape {shape:?}, want [clips, d]"),
            ));
        };
        if clips == 0 || d == 0 {
            return Err(Error::invalid(path, "clip_features is empty"));
        }
        let (frames, dense_rows) = match t.remove("dense_features") {
            None => (Vec::new(), 0),
            Some((s, v)) => match s[..] {
                [c, f, dd] if c == clips && dd == d && f > 0 => (v, f),
                _ => {
                    return Err(Error::invalid(
                        path,
                        format!("dense_features has shape {s:?}, want [{clips}, rows, {d}]"),
                    ));
                }
            },
        };
        Ok(VideoFeatures {
            d,
            clip,
            frames,
            dense_rows,
        })
    }
}

/// The VideoPrism configuration of the frozen encoder: the VideoPrism quick model, trained
/// for `steps` on `pairs` synthetic pairs.
pub fn encoder_config(spec: SynthSpec, steps: usize, pairs: usize) -> VideoPrismConfig {
    let mut c = <VideoPrismConfig as pw_core::ReproConfig>::for_size(pw_core::Size::Quick);
    c.video = spec;
    c.stage1.steps = steps;
    c.splits.pairs = pairs;
    c
}

/// Trains (or reloads) the encoder into `dir` (a folder `videoprism embed --encoder` reads).
pub fn train_encoder(
    cfg: &VideoPrismConfig,
    dir: &Path,
    devices: (&Device, &Device),
    seed: u64,
) -> Result<VideoTextModel> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let splits = Splits::new(cfg.video, &cfg.splits, seed);
    let tok = pw_videoprism::train::tokenizer(&splits, dir)?;
    pw_core::write_json_atomic(
        dir.join(pw_videoprism::run::MODEL_FILE),
        &pw_videoprism::run::ModelFile {
            model: cfg.model,
            vocab: tok.vocab_size(),
            frames: cfg.video.frames,
            size: cfg.video.size,
        },
    )?;
    pw_videoprism::train::stage1(
        cfg,
        &splits,
        &tok,
        &dir.join("stage1.safetensors"),
        devices,
        seed,
    )
}

/// Renders every clip of `videos` and encodes it with the frozen `encoder`.
pub fn extract(
    encoder: &VideoTextModel,
    spec: &SynthSpec,
    videos: &[SynthVideo],
    device: &Device,
) -> Result<Vec<VideoFeatures>> {
    use rayon::prelude::*;
    let bar = pw_core::progress::bar(videos.len() as u64, "recap: frozen features");
    let out = videos
        .iter()
        .map(|v| {
            let frames: Vec<Vec<f32>> = v
                .clips
                .par_iter()
                .map(|c| render_factors(spec, &c.factors, c.render_seed))
                .collect();
            let refs: Vec<&[f32]> = frames.iter().map(Vec::as_slice).collect();
            let f = encode(encoder, &refs, spec.frames, spec.size, device)?;
            bar.inc(1);
            Ok(f)
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    out
}

/// Encodes clips (`[frames, size, size, 3]` each) into one video's features.
pub fn encode(
    encoder: &VideoTextModel,
    clips: &[&[f32]],
    frames: usize,
    size: usize,
    device: &Device,
) -> Result<VideoFeatures> {
    let video = video_tensor(clips, frames, size, size, device);
    let (tokens, pooled) = encoder.embed_video(video);
    from_tokens(tokens, pooled, frames)
}

/// One video's features from the encoder's tokens `[clips, frames * n, d]` (frame-major) and
/// pooled embeddings `[clips, d]`.
pub fn from_tokens(tokens: Tensor<3>, pooled: Tensor<2>, frames: usize) -> Result<VideoFeatures> {
    let [b, tn, d] = tokens.dims();
    let n = tn / frames.max(1);
    let all = tokens
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Other(format!("features: {e:?}")))?;
    // Every second frame's n tokens, in order.
    let kept: Vec<usize> = (0..frames).step_by(DENSE_FRAME_STRIDE).collect();
    let mut dense = Vec::with_capacity(b * kept.len() * n * d);
    for i in 0..b {
        for &t in &kept {
            let at = (i * tn + t * n) * d;
            dense.extend_from_slice(&all[at..at + n * d]);
        }
    }
    let clip = pooled
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Other(format!("features: {e:?}")))?;
    Ok(VideoFeatures {
        d,
        clip,
        frames: dense,
        dense_rows: kept.len() * n,
    })
}

/// What [`video_features`] wrote.
pub struct FeatureSummary {
    pub videos: Vec<(PathBuf, usize)>,
    pub out: PathBuf,
}

/// Features of real videos for `recap train`: each video cut into clips of `clip_seconds`,
/// the encoder's frame count sampled in each (at its frame size), written as
/// `out/<file stem>.safetensors`. A video shorter than one clip is an error naming it.
pub fn video_features(
    encoder: &pw_videoprism::run::Encoder,
    videos: &[PathBuf],
    clip_seconds: f64,
    out: &Path,
    device: &Device,
) -> Result<FeatureSummary> {
    use pw_data::video::{FrameSpec, Sampling, decode, probe};
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (t, s) = (encoder.frames, encoder.size);
    let mut done = Vec::new();
    for v in videos {
        let info = probe(v)?;
        let n = (info.duration_s / clip_seconds).floor() as usize;
        if n == 0 {
            return Err(Error::invalid(
                v,
                format!(
                    "is {:.2} s long, shorter than one clip of {clip_seconds} s",
                    info.duration_s
                ),
            ));
        }
        let all = decode(
            v,
            &FrameSpec {
                sampling: Sampling::Fps(t as f64 / clip_seconds),
                size: Some((s, s)),
            },
        )?;
        let plane = s * s * 3;
        let mut clips: Vec<Vec<f32>> = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b) = (i as f64 * clip_seconds, (i + 1) as f64 * clip_seconds);
            let idx: Vec<usize> = (0..all.frames)
                .filter(|&k| all.times[k] >= a - 1e-6 && all.times[k] < b - 1e-6)
                .collect();
            if idx.is_empty() {
                return Err(Error::invalid(
                    v,
                    format!("no frame decoded in {a:.1}-{b:.1} s"),
                ));
            }
            // `t` frames, the last one repeated when the clip decoded fewer.
            let mut f = Vec::with_capacity(t * plane);
            for j in 0..t {
                let k = idx[j.min(idx.len() - 1)];
                f.extend_from_slice(&all.data[k * plane..(k + 1) * plane]);
            }
            clips.push(f);
        }
        let mut parts = Vec::new();
        for chunk in clips.chunks(32) {
            let refs: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
            let (tokens, pooled) = encoder.embed(video_tensor(&refs, t, s, s, device));
            parts.push(from_tokens(tokens, pooled, t)?);
        }
        let mut f = parts.remove(0);
        for p in parts {
            f.clip.extend(p.clip);
            f.frames.extend(p.frames);
        }
        let stem = v
            .file_stem()
            .map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_else(|| "video".into());
        f.save(&out.join(format!("{stem}.safetensors")))?;
        done.push((v.clone(), n));
    }
    Ok(FeatureSummary {
        videos: done,
        out: out.to_path_buf(),
    })
}

/// The clip level keeps the tokens of every `DENSE_FRAME_STRIDE`-th frame (the paper's clip
/// level reads 4 frames).
pub const DENSE_FRAME_STRIDE: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_files_round_trip_and_bad_shapes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = VideoFeatures {
            d: 2,
            clip: vec![1.0, 2.0, 3.0, 4.0],
            frames: vec![0.5; 2 * 3 * 2],
            dense_rows: 3,
        };
        let p = dir.path().join("v.safetensors");
        f.save(&p).unwrap();
        assert_eq!(VideoFeatures::load(&p).unwrap(), f);
        assert_eq!(f.dense(1).1, 3);
        let mut t: NamedTensors = BTreeMap::new();
        t.insert("clip_features".into(), (vec![4], vec![0.0; 4]));
        let bad = dir.path().join("bad.safetensors");
        save_tensors(&bad, &t, None).unwrap();
        let e = VideoFeatures::load(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.safetensors") && e.contains("[clips, d]"),
            "{e}"
        );
        std::fs::write(&bad, b"garbage").unwrap();
        assert!(
            VideoFeatures::load(&bad)
                .unwrap_err()
                .to_string()
                .contains("bad.safetensors")
        );
    }
}
