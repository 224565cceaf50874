//! The miniature reproduction of VideoPrism, orchestration only: the paper's ablation ladder
//! (stage 1 only / two stages with token-wise distillation / + global distillation / + token
//! shuffling) trained on synthetic captioned clips ([`crate::train`]), each encoder frozen
//! and probed on an appearance task and a motion task, and the stage-1 model's zero-shot
//! retrieval ([`crate::evaluate`]); the claims and tables are [`crate::report`]'s.

use crate::config::VideoPrismConfig;
use crate::data::{Splits, clip_tensor};
use crate::evaluate::{Features, ProbeScore, features, probe, retrieval, video_embeddings};
use crate::model::DistillVariant;
use crate::report::{self, Measured, Rung};
use crate::train::{read_log, stage1, stage2, tokenizer};
use pw_core::{Claim, ReproContext, ReproOutcome, Reproduction, Size, Stopwatch, resolve_config};
use pw_data::synthvideo::{APPEARANCE_CLASSES, Clip, MOTION_CLASSES};
use pw_nn::vivit::VivitEncoder;
use pw_nn::{seed_everything, train_device};

/// The registered reproduction; `config` overrides the size's defaults (tests use a tiny one).
#[derive(Default)]
pub struct VideoPrismReproduction {
    pub config: Option<VideoPrismConfig>,
}

/// The rungs of the ladder after stage 1: (name, file tag, variant).
pub const LADDER: [(&str, &str, DistillVariant); 3] = [
    (
        "two stages (token-wise distillation)",
        "token",
        DistillVariant {
            global: false,
            shuffle: false,
        },
    ),
    (
        "+ global distillation",
        "global",
        DistillVariant {
            global: true,
            shuffle: false,
        },
    ),
    (
        "+ token shuffling",
        "shuffle",
        DistillVariant {
            global: true,
            shuffle: true,
        },
    ),
];

/// A probe task's label of a clip.
type Label = fn(&Clip) -> usize;

pub const STAGE1_ONLY: &str = "stage 1 only (video-text contrastive)";

impl Reproduction for VideoPrismReproduction {
    fn name(&self) -> &'static str {
        "videoprism"
    }

    fn title(&self) -> &'static str {
        "VideoPrism: a video encoder from video-text contrast and masked global-local distillation"
    }

    fn claims(&self) -> Vec<Claim> {
        report::claims()
    }

    fn check(&self, size: Size, overrides: Option<&serde_json::Value>) -> Result<(), String> {
        resolve_config(self.config.as_ref(), size, overrides).map(|_| ())
    }

    fn run(
        &self,
        ctx: &ReproContext,
    ) -> Result<ReproOutcome, Box<dyn std::error::Error + Send + Sync>> {
        let cfg: VideoPrismConfig = ctx.config(self.config.as_ref())?;
        let (ad, plain) = (train_device(true)?, train_device(false)?);
        let devices = (&ad, &plain);
        let mut times = Stopwatch::new();
        let splits = Splits::new(cfg.video, &cfg.splits, ctx.seed);
        let tok = tokenizer(&splits, &ctx.dir)?;

        // The probe / retrieval clips, rendered once.
        let probe_train = splits.range(&splits.probe_train);
        let probe_val = splits.range(&splits.probe_val);
        let probe_test = splits.range(&splits.probe_test);
        // Each probe task and its labels of the probe splits, the same for every encoder.
        let tasks: [(usize, Label); 2] = [
            (APPEARANCE_CLASSES, |c| c.factors.appearance_label()),
            (MOTION_CLASSES, |c| c.factors.motion_label()),
        ];
        let labels: Vec<[Vec<usize>; 3]> = tasks
            .iter()
            .map(|(_, label)| {
                [&probe_train, &probe_val, &probe_test]
                    .map(|clips| clips.iter().map(label).collect::<Vec<_>>())
            })
            .collect();
        times.lap("data");

        let heads = cfg.model.encoder.n_heads;
        let mut rungs: Vec<Rung> = Vec::new();
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        let mut retrievals = Vec::new();
        let mut retrieval_examples = Vec::new();
        for s in 0..cfg.seeds {
            let seed = ctx.seed.wrapping_add(s as u64);
            seed_everything(&ad, seed);
            let dir = ctx.dir.join(format!("seed{s}"));
            std::fs::create_dir_all(&dir).map_err(|e| pw_core::Error::io(&dir, e))?;
            pw_core::write_json_atomic(
                dir.join(crate::run::MODEL_FILE),
                &crate::run::ModelFile {
                    model: cfg.model,
                    vocab: tok.vocab_size(),
                    frames: cfg.video.frames,
                    size: cfg.video.size,
                },
            )?;
            let s1_path = dir.join("stage1.safetensors");
            let s1 = stage1(&cfg, &splits, &tok, &s1_path, devices, seed)?;
            times.lap(format!("seed {s}: stage 1"));
            if s == 0 {
                curves.push((
                    "stage 1 (InfoNCE)".into(),
                    read_log(&s1_path.with_extension("loss.jsonl")),
                ));
            }
            let mut encoders: Vec<(&str, VivitEncoder)> = vec![(STAGE1_ONLY, s1.encoder.clone())];
            for (name, tag, variant) in LADDER {
                let path = dir.join(format!("stage2-{tag}.safetensors"));
                let m = stage2(&cfg, &splits, &s1, variant, &path, devices, seed)?;
                times.lap(format!("seed {s}: stage 2 {tag}"));
                if s == 0 {
                    curves.push((
                        format!("stage 2 {name}"),
                        read_log(&path.with_extension("loss.jsonl")),
                    ));
                }
                encoders.push((name, m.student));
            }

            // Zero-shot retrieval with the stage-1 towers on the test clips' clean captions.
            let test_video =
                |r: std::ops::Range<usize>| clip_tensor(&probe_test[r], &splits.spec, &plain);
            let emb = video_embeddings(&s1, probe_test.len(), 64, test_video);
            let texts: Vec<&str> = probe_test.iter().map(|c| c.caption.as_str()).collect();
            let same = |i: usize, j: usize| probe_test[i].factors == probe_test[j].factors;
            let r = retrieval(
                &s1,
                &tok,
                cfg.model.max_text_len,
                &emb,
                &texts,
                same,
                &plain,
            );
            if s == 0 {
                retrieval_examples = r
                    .text_top1
                    .iter()
                    .take(5)
                    .enumerate()
                    .map(|(q, &k)| {
                        let (query, hit) = (&probe_test[q], &probe_test[k]);
                        (query.caption.clone(), hit.caption.clone(), same(q, k))
                    })
                    .collect();
            }
            retrievals.push(r);
            times.lap(format!("seed {s}: retrieval"));

            for (i, (name, enc)) in encoders.iter().enumerate() {
                let feats = |clips: &[Clip]| -> Features {
                    features(enc, clips.len(), 64, |r| {
                        clip_tensor(&clips[r], &splits.spec, &plain)
                    })
                };
                let (ft, fv, fe) = (feats(&probe_train), feats(&probe_val), feats(&probe_test));
                // A probe's steps are too small to keep both cores busy (1.25 cores measured),
                // so the probes of one encoder train side by side, each on its own thread
                // (1.84 cores with four); every probe's result is the same as alone.
                let jobs: Vec<(usize, usize)> = (0..tasks.len())
                    .flat_map(|task| (0..cfg.probe_seeds).map(move |p| (task, p)))
                    .collect();
                let results: Vec<ProbeScore> = std::thread::scope(|sc| {
                    let handles: Vec<_> = jobs
                        .iter()
                        .map(|&(task, p)| {
                            let (classes, [lt, lv, le]) = (tasks[task].0, &labels[task]);
                            let (ft, fv, fe, cfg) = (&ft, &fv, &fe, &cfg);
                            let pseed =
                                pw_core::seed::derive(seed, &format!("probe/{i}/{task}/{p}"));
                            sc.spawn(move || {
                                probe(
                                    (ft, lt),
                                    (fv, lv),
                                    (fe, le),
                                    classes,
                                    heads,
                                    &cfg.probe,
                                    cfg.probe_evals,
                                    pseed,
                                    devices,
                                )
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                        .collect()
                });
                let mut scores: [Vec<ProbeScore>; 2] = [Vec::new(), Vec::new()];
                for (&(task, _), r) in jobs.iter().zip(results) {
                    scores[task].push(r);
                }
                match rungs.iter_mut().find(|r| r.name == *name) {
                    Some(r) => {
                        r.appearance.extend(scores[0].iter().copied());
                        r.motion.extend(scores[1].iter().copied());
                    }
                    None => {
                        let [a, m] = scores;
                        rungs.push(Rung {
                            name: name.to_string(),
                            appearance: a,
                            motion: m,
                        });
                    }
                }
            }
            times.lap(format!("seed {s}: frozen probes"));
        }

        let samples: Vec<(String, String)> = probe_test
            .iter()
            .take(4)
            .map(|c| (c.caption.clone(), c.noisy_caption.clone()))
            .collect();
        Ok(report::outcome(Measured {
            cfg: &cfg,
            rungs,
            retrievals,
            retrieval_examples,
            curves,
            samples,
            vocab: tok.vocab_size(),
            times: &times,
        }))
    }
}
