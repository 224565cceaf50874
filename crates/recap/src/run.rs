//! Real use: `paperworks recap train` on a user's Ego4D-HCap-style records and features, and
//! `paperworks recap eval` on any predictions. (`recap caption` is [`crate::caption`].)

use crate::config::TrainConfig;
use crate::data::{CLIP_SECONDS, ClipRecord, Hcap, SegmentRecord, VideoRecord, read_hcap};
use crate::evaluate::{Corpus, Predictions, TextSource};
use crate::features::VideoFeatures;
use crate::metrics::{Scores, score};
use crate::model::{Captioner, Decoding, ModelConfig, ReCap};
use crate::train::{TrainLog, train_level};
use pw_core::{Error, Result};
use pw_nn::tokenizer::WordVocab;
use pw_nn::train_device;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct TrainOptions {
    pub data: PathBuf,
    /// Validation records; without them every tenth video of `data` is held out.
    pub validation: Option<PathBuf>,
    pub features: PathBuf,
    pub out: PathBuf,
    pub model: ModelConfig,
    pub segment_clips: usize,
    pub clip: TrainConfig,
    pub segment: TrainConfig,
    pub video: TrainConfig,
    pub evals: usize,
    pub seed: u64,
}

pub struct TrainSummary {
    pub videos: (usize, usize),
    pub logs: Vec<(String, TrainLog)>,
    pub validation: [Scores; 3],
    pub predictions: PathBuf,
    pub out: PathBuf,
}

fn load_features(dir: &Path, uids: &[String]) -> Result<HashMap<String, VideoFeatures>> {
    if !dir.is_dir() {
        return Err(Error::invalid(dir, "features folder not found"));
    }
    uids.iter()
        .map(|u| {
            let p = dir.join(format!("{u}.safetensors"));
            if !p.exists() {
                return Err(Error::invalid(&p, format!("no features for video {u}")));
            }
            Ok((u.clone(), VideoFeatures::load(&p)?))
        })
        .collect()
}

fn subset(h: &Hcap, keep: &dyn Fn(&str) -> bool) -> Hcap {
    Hcap {
        clips: h
            .clips
            .iter()
            .filter(|c| keep(&c.video_uid))
            .cloned()
            .collect(),
        segments: h
            .segments
            .iter()
            .filter(|c| keep(&c.video_uid))
            .cloned()
            .collect(),
        videos: h
            .videos
            .iter()
            .filter(|c| keep(&c.video_uid))
            .cloned()
            .collect(),
    }
}

/// Predictions in the records' own format (what `recap eval --pred` reads).
pub fn to_records(c: &Corpus, p: &Predictions) -> Result<Hcap> {
    let mut h = Hcap::default();
    for uid in c.hcap.video_uids() {
        let n = c.feats(&uid)?.clips();
        let caps = p.clips.get(&uid).cloned().unwrap_or_default();
        for (i, cap) in caps.iter().enumerate() {
            h.clips.push(ClipRecord {
                video_uid: uid.clone(),
                start: i as f64 * CLIP_SECONDS,
                end: (i + 1) as f64 * CLIP_SECONDS,
                caption: cap.clone(),
            });
        }
        let segs = p.segments.get(&uid).cloned().unwrap_or_default();
        for (r, d) in c.windows(&uid)?.into_iter().zip(&segs) {
            h.segments.push(SegmentRecord {
                video_uid: uid.clone(),
                start: r.start as f64 * CLIP_SECONDS,
                end: r.end as f64 * CLIP_SECONDS,
                clip_captions: caps[r.start.min(caps.len())..r.end.min(caps.len())].to_vec(),
                pred_clip_captions: None,
                description: d.clone(),
            });
        }
        if let Some(s) = p.summaries.get(&uid) {
            h.videos.push(VideoRecord {
                video_uid: uid.clone(),
                start: 0.0,
                end: n as f64 * CLIP_SECONDS,
                segment_descriptions: segs.clone(),
                pred_segment_descriptions: None,
                summary: s.clone(),
            });
        }
    }
    Ok(h)
}

/// The curriculum on a user's data: clip, segment (from clip, on predicted clip captions),
/// video (from segment, on predicted descriptions); then the validation videos captioned
/// recursively and scored.
pub fn train(o: &TrainOptions) -> Result<TrainSummary> {
    o.model.validate().map_err(Error::Other)?;
    let all = read_hcap(&o.data)?;
    let (train_h, val_h) = match &o.validation {
        Some(v) => (all, read_hcap(v)?),
        None => {
            let ids = all.video_uids();
            if ids.len() < 2 {
                return Err(Error::invalid(
                    &o.data,
                    "needs at least 2 videos (or --validation)",
                ));
            }
            let held: std::collections::HashSet<String> = ids.iter().step_by(10).cloned().collect();
            (
                subset(&all, &|u| !held.contains(u)),
                subset(&all, &|u| held.contains(u)),
            )
        }
    };
    for (what, h) in [("training", &train_h), ("validation", &val_h)] {
        if h.clips.is_empty() || h.segments.is_empty() || h.videos.is_empty() {
            return Err(Error::Other(format!(
                "recap train: the {what} records need all three levels (clips {}, segments {}, videos {})",
                h.clips.len(),
                h.segments.len(),
                h.videos.len()
            )));
        }
    }
    let corpus = |h: Hcap| -> Result<Corpus> {
        let f = load_features(&o.features, &h.video_uids())?;
        Ok(Corpus {
            hcap: h,
            features: f,
            segment_clips: o.segment_clips,
            max_features: o.model.max_features,
        })
    };
    let train = corpus(train_h)?;
    let val = corpus(val_h)?;
    let d_feat = train.features.values().next().map(|f| f.d).unwrap_or(1);
    if let Some((u, f)) = train
        .features
        .iter()
        .chain(&val.features)
        .find(|(_, f)| f.d != d_feat)
    {
        return Err(Error::Other(format!(
            "features of {u} have width {}, others {d_feat}",
            f.d
        )));
    }
    let vocab = {
        let mut t: Vec<&str> = train
            .hcap
            .clips
            .iter()
            .map(|c| c.caption.as_str())
            .collect();
        t.extend(train.hcap.segments.iter().map(|s| s.description.as_str()));
        t.extend(train.hcap.videos.iter().map(|v| v.summary.as_str()));
        WordVocab::from_texts(t)
    };
    std::fs::create_dir_all(&o.out).map_err(|e| Error::io(&o.out, e))?;
    pw_core::write_json_atomic(o.out.join("vocab.json"), &vocab)?;
    pw_core::write_json_atomic(o.out.join("model.json"), &o.model)?;
    let (ad, plain) = (train_device(true)?, train_device(false)?);
    let g = Decoding::Greedy;
    let cap = |m: &ReCap| Captioner::new(m.clone(), o.model, vocab.clone());
    let mut logs = Vec::new();
    let mut level = |label: &str,
                     file: &str,
                     ex: &[crate::train::Example],
                     val: (Vec<crate::model::Input>, Vec<String>),
                     init: Option<&ReCap>,
                     tc: &TrainConfig|
     -> Result<ReCap> {
        let (m, log) = train_level(
            label,
            &o.model,
            d_feat,
            &vocab,
            ex,
            (&val.0, &val.1),
            init,
            tc,
            o.evals,
            &o.out.join(file),
            (&ad, &plain),
            pw_core::seed::derive(o.seed, file),
        )?;
        logs.push((label.to_string(), log));
        Ok(m)
    };
    let (tu, vu) = (train.hcap.video_uids(), val.hcap.video_uids());
    let clip = level(
        "recap: clip level",
        "clip.safetensors",
        &train.clip_examples()?,
        val.clip_validation()?,
        None,
        &o.clip,
    )?;
    let cc = cap(&clip)?;
    let mut pt = train.predict_clips(&cc, &tu, g)?;
    let mut pv = val.predict_clips(&cc, &vu, g)?;
    let seg = level(
        "recap: segment level",
        "segment.safetensors",
        &train.segment_examples(&pt)?,
        val.segment_validation(&pv)?,
        Some(&clip),
        &o.segment,
    )?;
    let sc = cap(&seg)?;
    train.predict_segments(&sc, &mut pt, &tu, g)?;
    val.predict_segments(&sc, &mut pv, &vu, g)?;
    let video = level(
        "recap: video level",
        "video.safetensors",
        &train.video_examples(&pt, TextSource::Predicted)?,
        val.video_validation(&pv, TextSource::Predicted)?,
        Some(&seg),
        &o.video,
    )?;
    val.predict_summaries(&cap(&video)?, &mut pv, &vu, TextSource::Predicted, g)?;
    let s = val.score(&pv);
    let predictions = o.out.join("predictions-validation.json");
    pw_core::write_json_atomic(&predictions, &to_records(&val, &pv)?)?;
    Ok(TrainSummary {
        videos: (tu.len(), vu.len()),
        logs,
        validation: [s.clip, s.segment, s.video],
        predictions,
        out: o.out.clone(),
    })
}

/// Scores of one level, with how many references had no prediction.
#[derive(Debug, Clone)]
pub struct EvalLevel {
    pub level: &'static str,
    pub scores: Scores,
    pub missing: usize,
}

/// Scores `pred` against `refs` (both Ego4D-HCap-style files) per level: records are matched
/// by video and start time; a reference without a prediction scores as an empty caption.
pub fn eval(pred: &Path, refs: &Path) -> Result<Vec<EvalLevel>> {
    let p = read_hcap(pred)?;
    let r = read_hcap(refs)?;
    let key = |u: &str, s: f64| (u.to_string(), (s * 1000.0).round() as i64);
    let mut out = Vec::new();
    let mut level = |name: &'static str,
                     refs: Vec<((String, i64), String)>,
                     preds: HashMap<(String, i64), String>| {
        if refs.is_empty() {
            return;
        }
        let mut missing = 0;
        let (mut ps, mut rs) = (Vec::new(), Vec::new());
        for (k, text) in refs {
            match preds.get(&k) {
                Some(x) => ps.push(x.clone()),
                None => {
                    missing += 1;
                    ps.push(String::new());
                }
            }
            rs.push(text);
        }
        out.push(EvalLevel {
            level: name,
            scores: score(&ps, &rs),
            missing,
        });
    };
    level(
        "clip",
        r.clips
            .iter()
            .map(|c| (key(&c.video_uid, c.start), c.caption.clone()))
            .collect(),
        p.clips
            .iter()
            .map(|c| (key(&c.video_uid, c.start), c.caption.clone()))
            .collect(),
    );
    level(
        "segment",
        r.segments
            .iter()
            .map(|c| (key(&c.video_uid, c.start), c.description.clone()))
            .collect(),
        p.segments
            .iter()
            .map(|c| (key(&c.video_uid, c.start), c.description.clone()))
            .collect(),
    );
    level(
        "summary",
        r.videos
            .iter()
            .map(|c| (key(&c.video_uid, c.start), c.summary.clone()))
            .collect(),
        p.videos
            .iter()
            .map(|c| (key(&c.video_uid, c.start), c.summary.clone()))
            .collect(),
    );
    Ok(out)
}
