//! The miniature reproduction, orchestration only: synthetic long videos per split
//! ([`crate::data`]), LLM pseudo-labels for videos with clip captions only
//! ([`crate::pseudo`]), a frozen VideoPrism encoder and its features ([`crate::features`]),
//! the curriculum and its ablations ([`crate::train`]), recursive inference on held-out
//! videos ([`crate::evaluate`]); claims and tables in [`crate::report`].

use crate::config::RecapConfig;
use crate::data::{Hcap, SynthVideo};
use crate::evaluate::{Corpus, TextSource};
use crate::features::{VideoFeatures, encoder_config, extract, train_encoder};
use crate::model::{Captioner, Decoding, ReCap};
use crate::pseudo::{Shot, write_labels};
use crate::report::{self, Measured, Variant};
use crate::train::{Example, TrainLog, train_level};
use pw_core::{Claim, Error, ReproContext, ReproOutcome, Reproduction, Stopwatch, resolve_config};
use pw_nn::tokenizer::WordVocab;
use pw_nn::train_device;
use std::collections::HashMap;
use std::path::Path;

#[derive(Default)]
pub struct RecapReproduction {
    pub config: Option<RecapConfig>,
}

/// First video index of each split (disjoint streams).
const TRAIN_FIRST: usize = 0;
const VALIDATION_FIRST: usize = 1_000_000;
const TEST_FIRST: usize = 2_000_000;
const PSEUDO_FIRST: usize = 3_000_000;

fn videos(seed: u64, first: usize, n: usize, cfg: &RecapConfig) -> Vec<SynthVideo> {
    (first..first + n)
        .map(|i| SynthVideo::generate(seed, i, cfg.segments, cfg.clips_per_segment))
        .collect()
}

/// Features of `vs`, from `dir` when an earlier run wrote them.
fn features_of(
    vs: &[SynthVideo],
    dir: &Path,
    encoder: &pw_videoprism::model::VideoTextModel,
    cfg: &RecapConfig,
    plain: &pw_nn::burn::tensor::Device,
) -> pw_core::Result<HashMap<String, VideoFeatures>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let missing: Vec<SynthVideo> = vs
        .iter()
        .filter(|v| !dir.join(format!("{}.safetensors", v.uid)).exists())
        .cloned()
        .collect();
    for chunk in missing.chunks(16) {
        for (v, f) in chunk
            .iter()
            .zip(extract(encoder, &cfg.video, chunk, plain)?)
        {
            f.save(&dir.join(format!("{}.safetensors", v.uid)))?;
        }
    }
    vs.iter()
        .map(|v| {
            Ok((
                v.uid.clone(),
                VideoFeatures::load(&dir.join(format!("{}.safetensors", v.uid)))?,
            ))
        })
        .collect()
}

impl Reproduction for RecapReproduction {
    fn name(&self) -> &'static str {
        "recap"
    }

    fn title(&self) -> &'static str {
        "Video ReCap: recursive clip, segment and summary captioning of long videos"
    }

    fn claims(&self) -> Vec<Claim> {
        report::claims()
    }

    fn check(
        &self,
        size: pw_core::Size,
        overrides: Option<&serde_json::Value>,
    ) -> Result<(), String> {
        resolve_config(self.config.as_ref(), size, overrides).map(|_| ())
    }

    fn run(
        &self,
        ctx: &ReproContext,
    ) -> Result<ReproOutcome, Box<dyn std::error::Error + Send + Sync>> {
        let cfg: RecapConfig = ctx.config(self.config.as_ref())?;
        let mut times = Stopwatch::new();
        let cps = cfg.clips_per_segment;
        let train_v = videos(ctx.seed, TRAIN_FIRST, cfg.train_videos, &cfg);
        let val_v = videos(ctx.seed, VALIDATION_FIRST, cfg.validation_videos, &cfg);
        let test_v = videos(ctx.seed, TEST_FIRST, cfg.test_videos, &cfg);
        let pool_v = videos(ctx.seed, PSEUDO_FIRST, cfg.pseudo_videos, &cfg);
        let data_dir = ctx.dir.join("hcap");
        std::fs::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
        let (h_train, h_val, h_test) = (
            Hcap::from_videos(&train_v, cps),
            Hcap::from_videos(&val_v, cps),
            Hcap::from_videos(&test_v, cps),
        );
        for (name, h) in [
            ("train", &h_train),
            ("validation", &h_val),
            ("test", &h_test),
        ] {
            pw_core::write_json_atomic(data_dir.join(format!("{name}.json")), h)?;
        }
        // The pseudo-label pool keeps its clip captions only (its higher levels are held back
        // to score the pseudo-labels).
        let h_pool_full = Hcap::from_videos(&pool_v, cps);
        pw_core::write_json_atomic(
            data_dir.join("pseudo-clips.json"),
            &Hcap {
                clips: h_pool_full.clips.clone(),
                ..Default::default()
            },
        )?;
        times.lap("synthetic videos");

        // LLM pseudo-labels: segment descriptions from the pool's clip captions, then
        // summaries from those descriptions, few-shot from training videos.
        let llm_path = match &cfg.llm {
            Some(p) => ctx.assets.join(p),
            None => pw_data::assets::default_model(&ctx.assets),
        };
        let (pseudo, pseudo_stats) = if cfg.pseudo_videos > 0 {
            let mut e = pw_llm::EmbeddedConfig::new(&llm_path);
            e.parallel = cfg.parallel;
            e.ctx_per_seq = 1024;
            let llm = pw_llm::backend::open(&pw_llm::LlmConfig {
                embedded: e,
                cache: Some(ctx.dir.join("llm-cache.redb")),
                ..Default::default()
            })
            .map_err(|e| Error::Other(e.to_string()))?;
            let seg_shots: Vec<Shot> = h_train.segments[..2]
                .iter()
                .map(|s| Shot {
                    inputs: s.clip_captions.clone(),
                    output: s.description.clone(),
                })
                .collect();
            let vid_shots: Vec<Shot> = h_train.videos[..2]
                .iter()
                .map(|v| Shot {
                    inputs: v.segment_descriptions.clone(),
                    output: v.summary.clone(),
                })
                .collect();
            let seg_items: Vec<(String, Vec<String>)> = h_pool_full
                .segments
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        format!("{}/{}", s.video_uid, i % cfg.segments),
                        s.clip_captions.clone(),
                    )
                })
                .collect();
            let dir = ctx.dir.join("pseudo");
            let (seg_labels, s1) = write_labels(
                llm.as_ref(),
                "segments",
                "segment descriptions from numbered clip captions",
                &seg_shots,
                &seg_items,
                &dir,
                32,
                "recap: LLM segment pseudo-labels",
            )?;
            let vid_items: Vec<(String, Vec<String>)> = h_pool_full
                .videos
                .iter()
                .filter_map(|v| {
                    let d: Option<Vec<String>> = (0..cfg.segments)
                        .map(|s| seg_labels.get(&format!("{}/{s}", v.video_uid)).cloned())
                        .collect();
                    Some((v.video_uid.clone(), d?))
                })
                .collect();
            let (sum_labels, s2) = write_labels(
                llm.as_ref(),
                "summaries",
                "one-sentence summaries from numbered segment descriptions",
                &vid_shots,
                &vid_items,
                &dir,
                40,
                "recap: LLM summary pseudo-labels",
            )?;
            let mut h = Hcap::default();
            for (i, s) in h_pool_full.segments.iter().enumerate() {
                if let Some(l) = seg_labels.get(&format!("{}/{}", s.video_uid, i % cfg.segments)) {
                    h.segments.push(crate::data::SegmentRecord {
                        description: l.clone(),
                        ..s.clone()
                    });
                }
            }
            for v in &h_pool_full.videos {
                if let Some(l) = sum_labels.get(&v.video_uid) {
                    let descs = (0..cfg.segments)
                        .filter_map(|s| seg_labels.get(&format!("{}/{s}", v.video_uid)).cloned())
                        .collect();
                    h.videos.push(crate::data::VideoRecord {
                        summary: l.clone(),
                        segment_descriptions: descs,
                        ..v.clone()
                    });
                }
            }
            h.clips = h_pool_full.clips.clone();
            pw_core::write_json_atomic(data_dir.join("pseudo.json"), &h)?;
            (h, vec![s1, s2])
        } else {
            (Hcap::default(), Vec::new())
        };
        times.lap("LLM pseudo-labels");

        // One vocabulary for every variant (the curriculum shares weights): the training
        // split's captions at every level and the pseudo-labels.
        let vocab = {
            let mut texts: Vec<&str> = Vec::new();
            texts.extend(h_train.clips.iter().map(|c| c.caption.as_str()));
            texts.extend(h_train.segments.iter().map(|c| c.description.as_str()));
            texts.extend(h_train.videos.iter().map(|c| c.summary.as_str()));
            texts.extend(pseudo.segments.iter().map(|c| c.description.as_str()));
            texts.extend(pseudo.videos.iter().map(|c| c.summary.as_str()));
            WordVocab::from_texts(texts)
        };
        let model_dir = ctx.dir.join("models");
        std::fs::create_dir_all(&model_dir).map_err(|e| Error::io(&model_dir, e))?;
        pw_core::write_json_atomic(model_dir.join("vocab.json"), &vocab)?;
        pw_core::write_json_atomic(model_dir.join("model.json"), &cfg.model)?;

        let (ad, plain) = (train_device(true)?, train_device(false)?);
        let enc_cfg = encoder_config(cfg.video, cfg.encoder_steps, cfg.encoder_pairs);
        let encoder = train_encoder(&enc_cfg, &ctx.dir.join("encoder"), (&ad, &plain), ctx.seed)?;
        times.lap("frozen encoder (VideoPrism stage 1)");
        let fdir = ctx.dir.join("features");
        let corpus = |h: &Hcap, vs: &[SynthVideo]| -> pw_core::Result<Corpus> {
            Ok(Corpus {
                hcap: h.clone(),
                features: features_of(vs, &fdir, &encoder, &cfg, &plain)?,
                segment_clips: cps,
                max_features: cfg.model.max_features,
            })
        };
        let train = corpus(&h_train, &train_v)?;
        let val = corpus(&h_val, &val_v)?;
        let test = corpus(&h_test, &test_v)?;
        let pool = corpus(&pseudo, &pool_v)?;
        let d_feat = train.features.values().next().map(|f| f.d).unwrap_or(1);
        let (u_train, u_val, u_test, u_pool) = (
            train.hcap.video_uids(),
            val.hcap.video_uids(),
            test.hcap.video_uids(),
            pool.hcap.video_uids(),
        );
        times.lap("features");

        let devs = (&ad, &plain);
        let captioner = |m: &ReCap| Captioner::new(m.clone(), cfg.model, vocab.clone());
        let mut logs: Vec<(String, TrainLog)> = Vec::new();
        let level = |label: &str,
                     file: &str,
                     ex: &[Example],
                     valset: (Vec<crate::model::Input>, Vec<String>),
                     init: Option<&ReCap>,
                     tc: &crate::config::TrainConfig,
                     logs: &mut Vec<(String, TrainLog)>|
         -> pw_core::Result<ReCap> {
            let (m, log) = train_level(
                label,
                &cfg.model,
                d_feat,
                &vocab,
                ex,
                (&valset.0, &valset.1),
                init,
                tc,
                cfg.evals,
                &model_dir.join(file),
                devs,
                pw_core::seed::derive(ctx.seed, file),
            )?;
            logs.push((label.to_string(), log));
            Ok(m)
        };
        let g = Decoding::Greedy;

        // Clip level, then its predictions everywhere (re-extracted for the next stage).
        let clip = level(
            "clip level",
            "clip.safetensors",
            &train.clip_examples()?,
            val.clip_validation()?,
            None,
            &cfg.clip,
            &mut logs,
        )?;
        let cc = captioner(&clip)?;
        let mut p_train = train.predict_clips(&cc, &u_train, g)?;
        let mut p_val = val.predict_clips(&cc, &u_val, g)?;
        let mut p_test = test.predict_clips(&cc, &u_test, g)?;
        let p_pool_clips = pool.predict_clips(&cc, &u_pool, g)?;
        times.lap("clip level");

        // Segment level from the clip weights, on predicted clip captions.
        let seg = level(
            "segment level (from clip)",
            "segment.safetensors",
            &train.segment_examples(&p_train)?,
            val.segment_validation(&p_val)?,
            Some(&clip),
            &cfg.segment,
            &mut logs,
        )?;
        let sc = captioner(&seg)?;
        train.predict_segments(&sc, &mut p_train, &u_train, g)?;
        val.predict_segments(&sc, &mut p_val, &u_val, g)?;
        test.predict_segments(&sc, &mut p_test, &u_test, g)?;
        times.lap("segment level");

        // Video level: the curriculum and its ablations.
        let mut variants: Vec<Variant> = Vec::new();
        let ladder: [(&str, &str, Option<&ReCap>, TextSource); 4] = [
            (
                report::DIRECT,
                "video-direct.safetensors",
                None,
                TextSource::None,
            ),
            (
                report::NO_CURRICULUM,
                "video-scratch.safetensors",
                None,
                TextSource::Predicted,
            ),
            (
                report::CLIP_TO_VIDEO,
                "video-from-clip.safetensors",
                Some(&clip),
                TextSource::Predicted,
            ),
            (
                report::CURRICULUM,
                "video-curriculum.safetensors",
                Some(&seg),
                TextSource::Predicted,
            ),
        ];
        let mut curriculum_video: Option<ReCap> = None;
        for (name, file, init, text) in ladder {
            let m = level(
                &format!("video level: {name}"),
                file,
                &train.video_examples(&p_train, text)?,
                val.video_validation(&p_val, text)?,
                init,
                &cfg.video_level,
                &mut logs,
            )?;
            let mut p = p_test.clone();
            test.predict_summaries(&captioner(&m)?, &mut p, &u_test, text, g)?;
            variants.push(Variant {
                name: name.to_string(),
                scores: test.score(&p),
                cider_items: test.cider_items(&p),
                predictions: p,
            });
            times.lap(format!("video level: {name}"));
            if name == report::CURRICULUM {
                curriculum_video = Some(m);
            }
        }

        // With LLM pseudo-labels: the pool joins the segment and video levels' training.
        if !pool.hcap.segments.is_empty() {
            let mut p_pool = p_pool_clips.clone();
            let mut seg_ex = train.segment_examples(&p_train)?;
            seg_ex.extend(pool.segment_examples(&p_pool)?);
            let seg_pl = level(
                "segment level + pseudo-labels",
                "segment-pseudo.safetensors",
                &seg_ex,
                val.segment_validation(&p_val)?,
                Some(&clip),
                &cfg.segment,
                &mut logs,
            )?;
            let spc = captioner(&seg_pl)?;
            let (mut q_train, mut q_val, mut q_test) =
                (p_train.clone(), p_val.clone(), p_test.clone());
            train.predict_segments(&spc, &mut q_train, &u_train, g)?;
            val.predict_segments(&spc, &mut q_val, &u_val, g)?;
            test.predict_segments(&spc, &mut q_test, &u_test, g)?;
            pool.predict_segments(&spc, &mut p_pool, &u_pool, g)?;
            let mut vid_ex = train.video_examples(&q_train, TextSource::Predicted)?;
            vid_ex.extend(pool.video_examples(&p_pool, TextSource::Predicted)?);
            let vid_pl = level(
                &format!("video level: {}", report::PSEUDO),
                "video-pseudo.safetensors",
                &vid_ex,
                val.video_validation(&q_val, TextSource::Predicted)?,
                Some(&seg_pl),
                &cfg.video_level,
                &mut logs,
            )?;
            test.predict_summaries(
                &captioner(&vid_pl)?,
                &mut q_test,
                &u_test,
                TextSource::Predicted,
                g,
            )?;
            variants.push(Variant {
                name: report::PSEUDO.to_string(),
                scores: test.score(&q_test),
                cider_items: test.cider_items(&q_test),
                predictions: q_test,
            });
            times.lap("pseudo-label chain");
        }

        // Beam search on the curriculum's chain (the decoder's other mode).
        let beam = {
            let mut p = test.predict_clips(&cc, &u_test, Decoding::Beam { width: 3 })?;
            test.predict_segments(&sc, &mut p, &u_test, Decoding::Beam { width: 3 })?;
            let m = curriculum_video
                .as_ref()
                .expect("the ladder trains the curriculum");
            test.predict_summaries(
                &captioner(m)?,
                &mut p,
                &u_test,
                TextSource::Predicted,
                Decoding::Beam { width: 3 },
            )?;
            test.score(&p)
        };
        times.lap("beam search");

        // How good the pseudo-labels are, against the pool's held-back references.
        let pseudo_quality = {
            let refs: HashMap<(String, i64), &str> = h_pool_full
                .segments
                .iter()
                .map(|s| {
                    (
                        (s.video_uid.clone(), (s.start * 1000.0) as i64),
                        s.description.as_str(),
                    )
                })
                .collect();
            let (mut p, mut r) = (Vec::new(), Vec::new());
            for s in &pseudo.segments {
                if let Some(x) = refs.get(&(s.video_uid.clone(), (s.start * 1000.0) as i64)) {
                    p.push(s.description.clone());
                    r.push(x.to_string());
                }
            }
            let seg = crate::metrics::score(&p, &r);
            let refs: HashMap<&str, &str> = h_pool_full
                .videos
                .iter()
                .map(|v| (v.video_uid.as_str(), v.summary.as_str()))
                .collect();
            let (mut p, mut r) = (Vec::new(), Vec::new());
            for v in &pseudo.videos {
                if let Some(x) = refs.get(v.video_uid.as_str()) {
                    p.push(v.summary.clone());
                    r.push(x.to_string());
                }
            }
            (seg, crate::metrics::score(&p, &r))
        };

        // Each chain's test predictions as records (`recap eval --pred F --ref hcap/test.json`).
        let pred_dir = ctx.dir.join("predictions");
        std::fs::create_dir_all(&pred_dir).map_err(|e| Error::io(&pred_dir, e))?;
        for v in &variants {
            let tag = report::file_tag(&v.name);
            pw_core::write_json_atomic(
                pred_dir.join(format!("{tag}.json")),
                &crate::run::to_records(&test, &v.predictions)?,
            )?;
        }
        let samples: Vec<SynthVideo> = test_v.iter().take(2).cloned().collect();
        Ok(report::outcome(&Measured {
            cfg: &cfg,
            vocab: vocab.len(),
            variants: &variants,
            beam,
            logs: &logs,
            pseudo: &pseudo,
            pseudo_stats: &pseudo_stats,
            pseudo_quality,
            pseudo_samples: pseudo
                .segments
                .iter()
                .take(3)
                .map(|s| (s.clip_captions.clone(), s.description.clone()))
                .collect(),
            llm: llm_path.display().to_string(),
            samples: &samples,
            times: &times,
            encoder_steps: cfg.encoder_steps,
        }))
    }
}
