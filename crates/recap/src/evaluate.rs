//! The inputs of each level and the recursive inference.
//!
//! A [`Corpus`] joins Ego4D-HCap records with their videos' features. The inputs follow the
//! paper: the clip level reads its clip's dense features; the segment level the clip
//! features of its window and the clip captions PREDICTED for them; the video level every
//! clip feature (sampled sparsely to `max_features`) and the PREDICTED segment descriptions.
//! At inference ([`Corpus::infer`]) no ground-truth boundary is used: every clip row is
//! captioned, segments are fixed windows of `segment_clips` clips (the paper's fixed 3-minute
//! segments), and the summary reads the predicted descriptions of those windows.

use crate::data::{CLIP_SECONDS, Hcap};
use crate::features::VideoFeatures;
use crate::metrics::{Scores, score};
use crate::model::{Captioner, Decoding, Input};
use crate::train::Example;
use pw_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the text mapper of a level reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSource {
    /// Nothing (the clip level; the direct, non-recursive summary).
    None,
    /// The level below's predicted captions.
    Predicted,
}

/// Records joined with features.
pub struct Corpus {
    pub hcap: Hcap,
    pub features: HashMap<String, VideoFeatures>,
    /// Clips per inference segment.
    pub segment_clips: usize,
    pub max_features: usize,
}

/// Predicted captions at every level, per video.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Predictions {
    /// video uid -> one caption per clip row
    pub clips: HashMap<String, Vec<String>>,
    /// video uid -> one description per window
    pub segments: HashMap<String, Vec<String>>,
    pub summaries: HashMap<String, String>,
}

/// Scores of one hierarchy of predictions against the corpus' references.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LevelScores {
    pub clip: Scores,
    pub segment: Scores,
    pub video: Scores,
}

fn row_of(t: f64) -> usize {
    (t / CLIP_SECONDS).floor().max(0.0) as usize
}

impl Corpus {
    pub fn feats(&self, uid: &str) -> Result<&VideoFeatures> {
        self.features
            .get(uid)
            .ok_or_else(|| Error::Other(format!("no features for video {uid}")))
    }

    /// Clip rows `[start, end)` (seconds) of a video, clamped to its features.
    fn window(&self, uid: &str, start: f64, end: f64) -> Result<std::ops::Range<usize>> {
        let f = self.feats(uid)?;
        let a = row_of(start).min(f.clips().saturating_sub(1));
        let b = ((end / CLIP_SECONDS).ceil() as usize).clamp(a + 1, f.clips());
        Ok(a..b)
    }

    fn rows_input(
        &self,
        uid: &str,
        r: std::ops::Range<usize>,
        texts: Vec<String>,
    ) -> Result<Input> {
        let f = self.feats(uid)?;
        let n = r.len();
        Ok(Input {
            feats: f.clip[r.start * f.d..r.end * f.d].to_vec(),
            rows: n,
            texts,
        }
        .sparse(self.max_features, f.d))
    }

    /// Clip-level training pairs (every clip record).
    pub fn clip_examples(&self) -> Result<Vec<Example>> {
        self.hcap
            .clips
            .iter()
            .map(|c| {
                let f = self.feats(&c.video_uid)?;
                let (rows, n) = f.dense(row_of(c.start).min(f.clips() - 1));
                Ok(Example {
                    input: Input {
                        feats: rows.to_vec(),
                        rows: n,
                        texts: Vec::new(),
                    },
                    target: c.caption.clone(),
                })
            })
            .collect()
    }

    /// Segment-level pairs: window features + the predicted clip captions of the window.
    pub fn segment_examples(&self, pred: &Predictions) -> Result<Vec<Example>> {
        self.hcap
            .segments
            .iter()
            .map(|s| {
                let r = self.window(&s.video_uid, s.start, s.end)?;
                let texts = clip_texts(pred, &s.video_uid, r.clone())?;
                Ok(Example {
                    input: self.rows_input(&s.video_uid, r, texts)?,
                    target: s.description.clone(),
                })
            })
            .collect()
    }

    /// Video-level pairs: all clip features + the predicted segment descriptions (or none).
    pub fn video_examples(&self, pred: &Predictions, text: TextSource) -> Result<Vec<Example>> {
        self.hcap
            .videos
            .iter()
            .map(|v| {
                let f = self.feats(&v.video_uid)?;
                let texts = match text {
                    TextSource::None => Vec::new(),
                    TextSource::Predicted => {
                        pred.segments.get(&v.video_uid).cloned().ok_or_else(|| {
                            Error::Other(format!("no predicted segments for {}", v.video_uid))
                        })?
                    }
                };
                Ok(Example {
                    input: self.rows_input(&v.video_uid, 0..f.clips(), texts)?,
                    target: v.summary.clone(),
                })
            })
            .collect()
    }

    /// Captions every clip row of every video with `clip` (no boundaries needed).
    pub fn predict_clips(
        &self,
        clip: &Captioner,
        uids: &[String],
        dec: Decoding,
    ) -> Result<Predictions> {
        let mut inputs = Vec::new();
        let mut owners = Vec::new();
        for uid in uids {
            let f = self.feats(uid)?;
            for i in 0..f.clips() {
                let (rows, n) = f.dense(i);
                inputs.push(Input {
                    feats: rows.to_vec(),
                    rows: n,
                    texts: Vec::new(),
                });
                owners.push(uid.clone());
            }
        }
        let caps = clip.caption(&inputs, dec)?;
        let mut p = Predictions::default();
        for (uid, c) in owners.into_iter().zip(caps) {
            p.clips.entry(uid).or_default().push(c);
        }
        Ok(p)
    }

    /// Fixed windows of `segment_clips` rows (the last one may be shorter).
    pub fn windows(&self, uid: &str) -> Result<Vec<std::ops::Range<usize>>> {
        let n = self.feats(uid)?.clips();
        let w = self.segment_clips.max(1);
        Ok((0..n.div_ceil(w))
            .map(|i| i * w..((i + 1) * w).min(n))
            .collect())
    }

    /// Describes every window from its features and the predicted clip captions.
    pub fn predict_segments(
        &self,
        seg: &Captioner,
        pred: &mut Predictions,
        uids: &[String],
        dec: Decoding,
    ) -> Result<()> {
        let mut inputs = Vec::new();
        let mut owners = Vec::new();
        for uid in uids {
            for r in self.windows(uid)? {
                let texts = clip_texts(pred, uid, r.clone())?;
                inputs.push(self.rows_input(uid, r, texts)?);
                owners.push(uid.clone());
            }
        }
        let caps = seg.caption(&inputs, dec)?;
        for uid in uids {
            pred.segments.remove(uid);
        }
        for (uid, c) in owners.into_iter().zip(caps) {
            pred.segments.entry(uid).or_default().push(c);
        }
        Ok(())
    }

    /// Summarises every video from its features and (with [`TextSource::Predicted`]) the
    /// predicted segment descriptions.
    pub fn predict_summaries(
        &self,
        video: &Captioner,
        pred: &mut Predictions,
        uids: &[String],
        text: TextSource,
        dec: Decoding,
    ) -> Result<()> {
        let inputs = uids
            .iter()
            .map(|uid| {
                let n = self.feats(uid)?.clips();
                let texts = match text {
                    TextSource::None => Vec::new(),
                    TextSource::Predicted => pred.segments.get(uid).cloned().unwrap_or_default(),
                };
                self.rows_input(uid, 0..n, texts)
            })
            .collect::<Result<Vec<_>>>()?;
        let caps = video.caption(&inputs, dec)?;
        for (uid, c) in uids.iter().zip(caps) {
            pred.summaries.insert(uid.clone(), c);
        }
        Ok(())
    }

    /// (predictions, references) per level (clip, segment, video); a reference without a
    /// prediction pairs with an empty one.
    pub fn pairs(&self, pred: &Predictions) -> [(Vec<String>, Vec<String>); 3] {
        let (mut cp, mut cr) = (Vec::new(), Vec::new());
        for c in &self.hcap.clips {
            let p = pred
                .clips
                .get(&c.video_uid)
                .and_then(|v| v.get(row_of(c.start)))
                .cloned()
                .unwrap_or_default();
            cp.push(p);
            cr.push(c.caption.clone());
        }
        let (mut sp, mut sr) = (Vec::new(), Vec::new());
        let w = self.segment_clips.max(1);
        for s in &self.hcap.segments {
            let p = pred
                .segments
                .get(&s.video_uid)
                .and_then(|v| v.get(row_of(s.start) / w))
                .cloned()
                .unwrap_or_default();
            sp.push(p);
            sr.push(s.description.clone());
        }
        let (mut vp, mut vr) = (Vec::new(), Vec::new());
        for v in &self.hcap.videos {
            vp.push(
                pred.summaries
                    .get(&v.video_uid)
                    .cloned()
                    .unwrap_or_default(),
            );
            vr.push(v.summary.clone());
        }
        [(cp, cr), (sp, sr), (vp, vr)]
    }

    /// Scores per level.
    pub fn score(&self, pred: &Predictions) -> LevelScores {
        let [c, s, v] = self.pairs(pred);
        LevelScores {
            clip: score(&c.0, &c.1),
            segment: score(&s.0, &s.1),
            video: score(&v.0, &v.1),
        }
    }

    /// Per-item CIDEr-D (x100) of each level, for paired comparisons.
    pub fn cider_items(&self, pred: &Predictions) -> [Vec<f64>; 3] {
        self.pairs(pred)
            .map(|(p, r)| crate::metrics::cider_items(&p, &r))
    }

    /// Inputs and references of the segment level's validation (for choosing a step).
    pub fn segment_validation(&self, pred: &Predictions) -> Result<(Vec<Input>, Vec<String>)> {
        let ex = self.segment_examples(pred)?;
        Ok(ex.into_iter().map(|e| (e.input, e.target)).unzip())
    }

    pub fn video_validation(
        &self,
        pred: &Predictions,
        text: TextSource,
    ) -> Result<(Vec<Input>, Vec<String>)> {
        let ex = self.video_examples(pred, text)?;
        Ok(ex.into_iter().map(|e| (e.input, e.target)).unzip())
    }

    pub fn clip_validation(&self) -> Result<(Vec<Input>, Vec<String>)> {
        let ex = self.clip_examples()?;
        Ok(ex.into_iter().map(|e| (e.input, e.target)).unzip())
    }
}

fn clip_texts(pred: &Predictions, uid: &str, r: std::ops::Range<usize>) -> Result<Vec<String>> {
    let caps = pred
        .clips
        .get(uid)
        .ok_or_else(|| Error::Other(format!("no predicted clip captions for {uid}")))?;
    Ok(caps[r.start.min(caps.len())..r.end.min(caps.len())].to_vec())
}
