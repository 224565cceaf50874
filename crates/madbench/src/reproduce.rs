//! The miniature reproduction, orchestration only: synthetic scenes per split written as
//! COCO files ([`crate::data`]); the builder reads them back ([`crate::prompts`]); a tiny VLM
//! trained on truthful QA ([`crate::train`]), its step chosen on validation; the same model
//! robustness-tuned on one category; the describe-then-answer pipeline
//! ([`crate::models`]); every model asked every variant through the runner, judged exactly
//! and (a sample) by an LLM judge ([`crate::evaluate`]); claims and tables in
//! [`crate::report`].

use crate::config::MadBenchConfig;
use crate::data::{BenchItem, Category, Coco, Scene, generate_scenes, write_scene_files};
use crate::evaluate::{AnswerOptions, JudgeOptions, answer, judge_answers};
use crate::judge::Variant;
use crate::model::{TinyVlm, Vocab, patchify};
use crate::models::{DescribeThenAnswer, TinyVlmGenerator};
use crate::prompts::{BuildOptions, REMEDY, build, truthful_qa};
use crate::report::{self, Measured, ModelResult};
use crate::train::{Example, train_vlm};
use pw_core::{Claim, Error, ReproContext, ReproOutcome, Reproduction, Stopwatch, resolve_config};
use pw_llm::Generator;
use pw_nn::burn::module::Module;
use pw_nn::checkpoint::load_or_train;
use pw_nn::{seed_everything, train_device};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::path::Path;
use std::sync::Arc;

#[derive(Default)]
pub struct MadBenchReproduction {
    pub config: Option<MadBenchConfig>,
}

/// Scene id ranges of the splits (disjoint, so a file name says its split).
const TRAIN_FIRST: u64 = 1;
const VALIDATION_FIRST: u64 = 1_000_000;
const TEST_FIRST: u64 = 2_000_000;

/// One split's scenes on disk and the builder's items for them.
pub struct Split {
    pub coco: Coco,
    pub items: Vec<BenchItem>,
    pub patches: Vec<Vec<f32>>,
    pub build: crate::prompts::BuildSummary,
}

fn split(dir: &Path, scenes: &[Scene], seed: u64, cfg: &MadBenchConfig) -> pw_core::Result<Split> {
    let s = write_scene_files(dir, scenes)?;
    let coco = Coco::read(&s.instances)?;
    let caps = crate::data::read_captions(&s.captions)?;
    let (items, build) = build(
        &coco,
        Some(&caps),
        &s.images,
        &BuildOptions {
            categories: Category::PAPER.to_vec(),
            seed,
            source: s.instances.display().to_string(),
        },
    )?;
    let patches = coco
        .images
        .iter()
        .map(|im| {
            let path = s.images.join(&im.file_name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let rgb = crate::data::Rgb::from_png(&bytes, &path.display().to_string())
                .map_err(Error::Other)?;
            Ok(patchify(&rgb, &cfg.vlm))
        })
        .collect::<pw_core::Result<Vec<_>>>()?;
    Ok(Split {
        coco,
        items,
        patches,
        build,
    })
}

/// Exact-judge accuracy of `model` on `items` under `variant`, answered in memory (the
/// validation checks during training).
fn quick_accuracy(
    g: &TinyVlmGenerator,
    split: &Split,
    items: &[&BenchItem],
    variant: Variant,
) -> f64 {
    let index: std::collections::HashMap<u64, usize> = split
        .coco
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| (im.id, i))
        .collect();
    let texts: Vec<(usize, String)> = items
        .iter()
        .filter_map(|it| {
            let img = index.get(&it.provenance.image_id?)?;
            Some((*img, crate::evaluate::variant_text(it, variant)?))
        })
        .collect();
    let inputs: Vec<(&[f32], &str)> = texts
        .iter()
        .map(|(i, t)| (split.patches[*i].as_slice(), t.as_str()))
        .collect();
    let answers = g.answer(&inputs, 24);
    let ok = items
        .iter()
        .zip(&answers)
        .filter(|(it, a)| {
            it.premise
                .as_ref()
                .is_some_and(|p| crate::judge::exact(p, a).correct())
        })
        .count();
    ok as f64 / answers.len().max(1) as f64
}

impl Reproduction for MadBenchReproduction {
    fn name(&self) -> &'static str {
        "madbench"
    }

    fn title(&self) -> &'static str {
        "MAD-Bench: how easily multimodal models are fooled by deceptive prompts"
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
        let cfg: MadBenchConfig = ctx.config(self.config.as_ref())?;
        let mut times = Stopwatch::new();
        let train_scenes = generate_scenes(cfg.train_scenes, TRAIN_FIRST, ctx.seed);
        let train = split(&ctx.dir.join("scenes/train"), &train_scenes, ctx.seed, &cfg)?;
        let val = split(
            &ctx.dir.join("scenes/validation"),
            &generate_scenes(cfg.validation_scenes, VALIDATION_FIRST, ctx.seed),
            ctx.seed,
            &cfg,
        )?;
        let test = split(
            &ctx.dir.join("scenes/test"),
            &generate_scenes(cfg.test_scenes, TEST_FIRST, ctx.seed),
            ctx.seed,
            &cfg,
        )?;
        pw_core::jsonl::write_jsonl(&ctx.dir.join("bench-test.jsonl"), &test.items)?;
        times.lap("scenes and prompts");

        // Truthful QA of the training scenes (the same scenes the COCO file describes).
        let mut rng = StdRng::seed_from_u64(pw_core::seed::derive(ctx.seed, "madbench/qa"));
        let mut examples = Vec::new();
        for (i, s) in train_scenes.iter().enumerate() {
            for (q, a) in truthful_qa(s, &mut rng) {
                examples.push(Example {
                    image: i,
                    question: q,
                    answer: a,
                });
            }
        }
        let vocab = {
            let mut texts: Vec<&str> = vec![REMEDY, crate::models::DESCRIBE];
            for e in &examples {
                texts.push(&e.question);
                texts.push(&e.answer);
            }
            for it in train.items.iter().chain(&val.items).chain(&test.items) {
                texts.push(&it.prompt);
                texts.extend(it.neutral_prompt.as_deref());
                texts.extend(it.truth.as_deref());
            }
            Vocab::from_texts(texts)
        };
        let vlm_dir = ctx.dir.join("vlm");
        std::fs::create_dir_all(&vlm_dir).map_err(|e| Error::io(&vlm_dir, e))?;
        pw_core::write_json_atomic(vlm_dir.join("vocab.json"), &vocab)?;
        pw_core::write_json_atomic(vlm_dir.join("config.json"), &cfg.vlm)?;

        let ad = train_device(true)?;
        let val_items: Vec<&BenchItem> = val.items.iter().collect();
        let mut curve = Vec::new();
        let base_path = vlm_dir.join("model.safetensors");
        let mut base_rng = seed_everything(&ad, pw_core::seed::derive(ctx.seed, "madbench/vlm"));
        let base = load_or_train(
            &base_path,
            || TinyVlm::new(&cfg.vlm, vocab.len(), &ad),
            || {
                let mut best: Option<(f64, usize, TinyVlm)> = None;
                let mut eval = |m: &TinyVlm, step: usize| {
                    let frozen = m.valid();
                    let g = TinyVlmGenerator::new("tiny", cfg.vlm, vocab.clone(), frozen.clone())
                        .expect("vocab fits");
                    let acc = quick_accuracy(&g, &val, &val_items, Variant::Neutral);
                    curve.push((step, acc));
                    if best.as_ref().is_none_or(|(b, _, _)| acc > *b) {
                        best = Some((acc, step, frozen));
                    }
                };
                let (m, _) = train_vlm(
                    TinyVlm::new(&cfg.vlm, vocab.len(), &ad),
                    &cfg.vlm,
                    &vocab,
                    &train.patches,
                    &examples,
                    &cfg.train,
                    &mut base_rng,
                    "tiny VLM: truthful QA",
                    cfg.eval_every,
                    &mut eval,
                );
                eval(&m, cfg.train.steps);
                let (_, step, frozen) = best.expect("evaluated at least once");
                tracing::info!("tiny VLM: validation picked step {step}");
                Ok(frozen)
            },
        )?;
        pw_core::write_json_atomic(vlm_dir.join("validation-curve.json"), &curve)?;
        times.lap("tiny VLM training");

        // Robustness tuning on one category (claim c): from the truthful model, deceptive
        // prompts of that category from the TRAINING scenes answered with their truth,
        // mixed into the truthful QA.
        let robust_dir = ctx.dir.join("vlm-robust");
        std::fs::create_dir_all(&robust_dir).map_err(|e| Error::io(&robust_dir, e))?;
        let robust_path = robust_dir.join("model.safetensors");
        let rc = cfg.robust_category;
        let robust = load_or_train(
            &robust_path,
            || TinyVlm::new(&cfg.vlm, vocab.len(), &ad),
            || {
                let index: std::collections::HashMap<u64, usize> = train
                    .coco
                    .images
                    .iter()
                    .enumerate()
                    .map(|(i, im)| (im.id, i))
                    .collect();
                let deceptive: Vec<Example> = train
                    .items
                    .iter()
                    .filter(|it| it.category == rc)
                    .filter_map(|it| {
                        Some(Example {
                            image: index[&it.provenance.image_id?],
                            question: it.prompt.clone(),
                            answer: it.truth.clone()?,
                        })
                    })
                    .collect();
                let mut mix = examples.clone();
                let want = ((cfg.robust_share / (1.0 - cfg.robust_share).max(1e-6))
                    * examples.len() as f64) as usize;
                let mut r = StdRng::seed_from_u64(pw_core::seed::derive(ctx.seed, "madbench/mix"));
                for _ in 0..want.min(deceptive.len() * 20) {
                    mix.push(
                        deceptive[rand::Rng::random_range(&mut r, 0..deceptive.len())].clone(),
                    );
                }
                let val_rc: Vec<&BenchItem> =
                    val.items.iter().filter(|it| it.category == rc).collect();
                let mut best: Option<(f64, TinyVlm)> = None;
                let mut eval = |m: &TinyVlm, _step: usize| {
                    let frozen = m.valid();
                    let g = TinyVlmGenerator::new("tiny", cfg.vlm, vocab.clone(), frozen.clone())
                        .expect("vocab fits");
                    // Chosen on validation: the tuned category's deceptive accuracy and the
                    // neutral accuracy, equally weighted.
                    let acc = 0.5 * quick_accuracy(&g, &val, &val_rc, Variant::Deceptive)
                        + 0.5 * quick_accuracy(&g, &val, &val_items, Variant::Neutral);
                    if best.as_ref().is_none_or(|(b, _)| acc > *b) {
                        best = Some((acc, frozen));
                    }
                };
                let mut rr =
                    seed_everything(&ad, pw_core::seed::derive(ctx.seed, "madbench/robust"));
                let (m, _) = train_vlm(
                    base.clone(),
                    &cfg.vlm,
                    &vocab,
                    &train.patches,
                    &mix,
                    &cfg.robust,
                    &mut rr,
                    "tiny VLM: robustness tuning",
                    (cfg.robust.steps / 4).max(1),
                    &mut eval,
                );
                eval(&m, cfg.robust.steps);
                let (_, frozen) = best.expect("evaluated");
                Ok(frozen)
            },
        )?;
        times.lap("robustness tuning");

        // The models under test.
        let tiny = Arc::new(TinyVlmGenerator::new(
            "tiny-vlm",
            cfg.vlm,
            vocab.clone(),
            base.valid(),
        )?);
        let tuned = Arc::new(TinyVlmGenerator::new(
            format!("tiny-vlm + {} tuning", rc.name()),
            cfg.vlm,
            vocab.clone(),
            robust.valid(),
        )?);
        let mut results = Vec::new();
        let answers_dir = ctx.dir.join("answers");
        for (tag, g) in [
            ("tiny-vlm", tiny.clone()),
            ("tiny-vlm-robust", tuned.clone()),
        ] {
            let s = answer(
                g.as_ref(),
                &test.items,
                &answers_dir.join(tag),
                &AnswerOptions::default(),
            )?;
            let judged = judge_answers(
                &test.items,
                &s.rows,
                &answers_dir.join(tag),
                &JudgeOptions {
                    judge: None,
                    with_image: false,
                    only: None,
                    stage: Default::default(),
                },
            )?;
            results.push(ModelResult {
                name: g.model(),
                tag: tag.to_string(),
                judged,
                stats: s.stats,
            });
        }
        times.lap("tiny VLMs answer");

        // Describe, then answer with the instruction LLM, on a seeded subset per category.
        let mut subset: Vec<BenchItem> = Vec::new();
        let mut r = StdRng::seed_from_u64(pw_core::seed::derive(ctx.seed, "madbench/subset"));
        for c in Category::PAPER {
            let mut of: Vec<&BenchItem> = test.items.iter().filter(|i| i.category == c).collect();
            of.shuffle(&mut r);
            subset.extend(of.into_iter().take(cfg.llm_items_per_category).cloned());
        }
        let gguf = |o: &Option<String>| match o {
            Some(p) => ctx.assets.join(p),
            None => pw_data::assets::code_model(&ctx.assets),
        };
        let answerer_path = gguf(&cfg.answerer);
        let judge_path = gguf(&cfg.judge);
        let open = |p: &Path| -> pw_core::Result<Arc<dyn Generator>> {
            let mut e = pw_llm::EmbeddedConfig::new(p);
            e.parallel = cfg.parallel;
            e.weights = cfg.weights;
            e.ctx_per_seq = 1024;
            pw_llm::backend::open(&pw_llm::LlmConfig {
                embedded: e,
                cache: Some(ctx.dir.join("llm-cache.redb")),
                ..Default::default()
            })
            .map_err(|e| Error::Other(e.to_string()))
        };
        let answerer = open(&answerer_path)?;
        let pipeline = DescribeThenAnswer {
            describer: tiny.clone(),
            answerer: answerer.clone(),
        };
        let tag = "describe-then-answer";
        let s = answer(
            &pipeline,
            &subset,
            &answers_dir.join(tag),
            &AnswerOptions {
                max_tokens: 48,
                ..AnswerOptions::default()
            },
        )?;
        let rows = &s.rows;
        times.lap("describe-then-answer");

        // The LLM judge on a seeded sample of the pipeline's answers (text judge: the truth
        // sentence stands in for the image).
        let judge: Arc<dyn Generator> = if judge_path == answerer_path {
            answerer.clone()
        } else {
            drop(answerer);
            open(&judge_path)?
        };
        let mut ids: Vec<String> = rows.iter().map(|r| r.question_id.clone()).collect();
        ids.shuffle(&mut r);
        ids.truncate(cfg.judge_rows);
        let judged = judge_answers(
            &subset,
            rows,
            &answers_dir.join(tag),
            &JudgeOptions {
                judge: (cfg.judge_rows > 0).then_some(judge.as_ref()),
                with_image: false,
                only: Some(ids.into_iter().collect()),
                stage: pw_llm::stage::StageOptions {
                    retries: 0,
                    chunk: 16,
                    label: "LLM judge".into(),
                    ..Default::default()
                },
            },
        )?;
        results.push(ModelResult {
            name: pipeline.model(),
            tag: tag.to_string(),
            judged,
            stats: s.stats,
        });
        times.lap("LLM judge");

        let measured = Measured {
            cfg: cfg.clone(),
            build_test: test.build.clone(),
            build_train: train.build.clone(),
            train_examples: examples.len(),
            vocab: vocab.len(),
            validation_curve: curve,
            models: results,
            answerer: answerer_path.display().to_string(),
            judge: judge_path.display().to_string(),
            test_items: test.items.clone(),
            times: times.laps().to_vec(),
        };
        Ok(report::outcome(&measured))
    }
}
