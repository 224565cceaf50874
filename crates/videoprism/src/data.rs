//! The miniature's data and the batches the stages take.
//!
//! The corpus is pw-data's synthetic captioned videos ([`pw_data::synthvideo`]), split by
//! disjoint index ranges of one seeded stream (so a clip is regenerated on demand, never
//! stored): stage-1 video-text pairs (a share with ASR-like noisy captions, as the paper's
//! 582M clips with noisy text beside 36M clean pairs), extra video-only clips for stage 2,
//! and the probe / retrieval splits (train, validation, test). Also: tube masking and the
//! token shuffle order of stage 2, and the user's `pairs.jsonl` / `labels.jsonl`.

use pw_core::{Error, Result};
use pw_data::synthvideo::{Clip, SynthSpec, clips};
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::model::MaskedBatch;

/// How many clips each split holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSizes {
    /// Stage-1 video-text pairs.
    pub pairs: usize,
    /// Extra video-only clips that stage 2 also trains on.
    pub video_only: usize,
    pub probe_train: usize,
    pub probe_val: usize,
    pub probe_test: usize,
}

/// Index ranges of the splits in the clip stream.
#[derive(Debug, Clone)]
pub struct Splits {
    pub spec: SynthSpec,
    pub seed: u64,
    pub pairs: Range<usize>,
    pub video_only: Range<usize>,
    pub probe_train: Range<usize>,
    pub probe_val: Range<usize>,
    pub probe_test: Range<usize>,
}

impl Splits {
    pub fn new(spec: SynthSpec, sizes: &SplitSizes, seed: u64) -> Self {
        let mut at = 0;
        let mut take = |n: usize| {
            let r = at..at + n;
            at += n;
            r
        };
        Splits {
            spec,
            seed,
            pairs: take(sizes.pairs),
            video_only: take(sizes.video_only),
            probe_train: take(sizes.probe_train),
            probe_val: take(sizes.probe_val),
            probe_test: take(sizes.probe_test),
        }
    }

    /// Clips `indices` (in that order).
    pub fn clips(&self, indices: &[usize]) -> Vec<Clip> {
        use rayon::prelude::*;
        indices
            .par_iter()
            .map(|&i| pw_data::synthvideo::clip(&self.spec, self.seed, i))
            .collect()
    }

    pub fn range(&self, r: &Range<usize>) -> Vec<Clip> {
        clips(&self.spec, self.seed, r.clone())
    }
}

/// `[b, t, h, w, 3]` of clips' frames.
pub fn video_tensor(frames: &[&[f32]], t: usize, h: usize, w: usize, device: &Device) -> Tensor<5> {
    let mut data = Vec::with_capacity(frames.len() * t * h * w * 3);
    for f in frames {
        data.extend_from_slice(f);
    }
    Tensor::from_data(TensorData::new(data, [frames.len(), t, h, w, 3]), device)
}

pub fn clip_tensor(clips: &[Clip], spec: &SynthSpec, device: &Device) -> Tensor<5> {
    let frames: Vec<&[f32]> = clips.iter().map(|c| c.frames.as_slice()).collect();
    video_tensor(&frames, spec.frames, spec.size, spec.size, device)
}

/// Block (tube) masking of a `gh x gw` patch grid: rectangular blocks are masked until at
/// least `ratio` of the positions are, then random masked positions are given back so that
/// exactly `round(ratio * n)` are masked (equal counts batch together). The same positions
/// are masked in every frame. Returns the visible positions, sorted.
pub fn tube_mask(gh: usize, gw: usize, ratio: f64, rng: &mut StdRng) -> Vec<usize> {
    let n = gh * gw;
    let target = ((ratio * n as f64).round() as usize).min(n.saturating_sub(1));
    let mut masked = vec![false; n];
    let mut count = 0;
    while count < target {
        let bh = rng.random_range(1..=gh.div_ceil(2).max(1));
        let bw = rng.random_range(1..=gw.div_ceil(2).max(1));
        let y0 = rng.random_range(0..=gh - bh);
        let x0 = rng.random_range(0..=gw - bw);
        for y in y0..y0 + bh {
            for x in x0..x0 + bw {
                if !masked[y * gw + x] {
                    masked[y * gw + x] = true;
                    count += 1;
                }
            }
        }
    }
    let mut extra: Vec<usize> = (0..n).filter(|&i| masked[i]).collect();
    extra.shuffle(rng);
    for &i in extra.iter().take(count - target) {
        masked[i] = false;
    }
    (0..n).filter(|&i| !masked[i]).collect()
}

/// Masks and decoder orders for a batch of `b` videos of `t` frames on a `gh x gw` grid.
pub fn masked_batch(
    b: usize,
    t: usize,
    (gh, gw): (usize, usize),
    ratio: f64,
    shuffle: bool,
    rng: &mut StdRng,
    device: &Device,
) -> MaskedBatch {
    let n = gh * gw;
    let mut visible = Vec::new();
    let mut visible_tokens = Vec::new();
    let mut masked = vec![1f32; b * t * n];
    let mut order = Vec::with_capacity(b * t * n);
    let mut v = 0;
    for s in 0..b {
        let vis = tube_mask(gh, gw, ratio, rng);
        v = vis.len();
        for f in 0..t {
            for &p in &vis {
                visible_tokens.push((f * n + p) as i64);
                masked[s * t * n + f * n + p] = 0.0;
            }
        }
        visible.extend(vis.iter().map(|&p| p as i64));
        let mut o: Vec<i64> = (0..(t * n) as i64).collect();
        if shuffle {
            o.shuffle(rng);
        }
        order.extend(o);
    }
    MaskedBatch {
        visible: Tensor::from_data(TensorData::new(visible, [b, v]), device),
        visible_tokens: Tensor::from_data(TensorData::new(visible_tokens, [b, t * v]), device),
        masked: Tensor::from_data(TensorData::new(masked, [b, t * n, 1]), device),
        order: Tensor::<2, Int>::from_data(TensorData::new(order, [b, t * n]), device),
    }
}

/// One line of a user's `pairs.jsonl` (`videoprism train`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRecord {
    /// Video path, relative to the JSONL file's folder unless absolute.
    pub video: PathBuf,
    pub caption: String,
}

/// One line of a user's `labels.jsonl` (`videoprism probe`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRecord {
    pub video: PathBuf,
    pub label: String,
    /// `train`, `val` or `test` (default: assigned by a hash of the path, 80/10/10).
    #[serde(default)]
    pub split: Option<String>,
}

/// Reads a JSONL file of `T` records; paths are resolved against the file's folder.
pub fn read_records<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let recs: Vec<T> = pw_core::jsonl::read_jsonl(path, "record")?;
    if recs.is_empty() {
        return Err(Error::invalid(path, "holds no records"));
    }
    Ok(recs)
}

pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.parent().unwrap_or(Path::new(".")).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tube_masks_hit_the_ratio_exactly_and_are_blocky() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let vis = tube_mask(4, 4, 0.65, &mut rng);
            assert_eq!(vis.len(), 16 - 10);
            assert!(vis.windows(2).all(|w| w[0] < w[1]));
        }
        let vis = tube_mask(16, 16, 0.65, &mut rng);
        assert_eq!(vis.len(), 256 - 166);
    }

    #[test]
    fn splits_are_disjoint() {
        let s = Splits::new(
            SynthSpec::default(),
            &SplitSizes {
                pairs: 10,
                video_only: 5,
                probe_train: 4,
                probe_val: 2,
                probe_test: 3,
            },
            0,
        );
        assert_eq!(s.video_only, 10..15);
        assert_eq!(s.probe_test, 21..24);
    }
}
