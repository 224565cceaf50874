//! The miniature reproduction, orchestration only: generated GSM8K-style problems with exact
//! step truth ([`crate::data`]), a student trained here (SFT + Expert Iteration,
//! [`crate::student`]), SORM labels from K = 8 verifying rollouts ([`crate::label`]), ORM and
//! SORM value models and global and local refiners ([`crate::train`]), and the paper's
//! inference strategies ([`crate::evaluate`]), thresholds picked on the validation split and
//! figures measured on the test split; the report is [`crate::report`].
//!
//! Every trained model is a checkpoint in the run directory and the two sampling stages are
//! ledgers, so a killed run picks up where it stopped.

use crate::config::GloreConfig;
use crate::curve::{self, CurveResult, Init};
use crate::data::{SplitSizes, Splits, TEST_SEED, VAL_SEED};
use crate::evaluate::{
    EvalConfig, Pipeline, Strategy, StrategyResult, best_of_n, pick_threshold, rescore,
    strategy_result,
};
use crate::export;
use crate::label::{self, LabelConfig};
use crate::model::{ValueModel, value_tokens};
use crate::policy::StudentPolicy;
use crate::problem::{Problem, write_gsm8k};
use crate::refine::{global_examples, local_examples};
use crate::report;
use crate::student;
use crate::train::{StudentSummary, ValueExample, refiner_stage, value_model_stage};
use crate::vocab::Vocab;
use pw_core::{Claim, ReproContext, ReproOutcome, Reproduction, Size, Stopwatch, resolve_config};
use pw_nn::burn::module::Module;
use pw_nn::checkpoint::{load_module, save_module};
use pw_nn::transformer::CausalLm;
use pw_nn::{seed_everything, train_device};
use std::collections::HashMap;
use std::time::Instant;

/// Seeds the ORM's own rollouts apart from the labelling stage's.
const ORM_SEED: u64 = 0x0a11;

#[derive(Default)]
pub struct GloreReproduction {
    /// Replaces the size's configuration (tests).
    pub config: Option<GloreConfig>,
}

impl Reproduction for GloreReproduction {
    fn name(&self) -> &'static str {
        "glore"
    }
    fn title(&self) -> &'static str {
        "GLoRe: when, where and how to refine (ORM, SORM, global and local refiners)"
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
        let cfg: GloreConfig = ctx.config(self.config.as_ref())?;
        let ad = train_device(true)?;
        let mut rng = seed_everything(&ad, ctx.seed);
        let dir = &ctx.dir;
        std::fs::create_dir_all(dir)?;
        let mut times = Stopwatch::new();
        let s = ctx.seed;
        let Splits {
            sft,
            train,
            val,
            test,
        } = Splits::generate(
            &cfg.problems,
            &SplitSizes {
                sft: cfg.sft_problems,
                train: cfg.train_problems,
                val: cfg.val_problems,
                test: cfg.test_problems,
            },
            s,
        );
        for (name, set) in [("train", &train), ("val", &val), ("test", &test)] {
            write_gsm8k(&dir.join(format!("{name}.jsonl")), set)?;
        }
        let vocab = Vocab::domain();
        std::fs::write(dir.join("vocab.json"), serde_json::to_string(&vocab)?)?;
        let mc = cfg.student.model.transformer(vocab.len());

        // 1. Student: SFT + Expert Iteration.
        let summary_path = dir.join("student.json");
        let student_path = dir.join("student.safetensors");
        let (student_lm, summary) = if student_path.exists() && summary_path.exists() {
            let lm = load_module(CausalLm::new(&mc, &ad), &student_path)?;
            (
                lm,
                serde_json::from_slice::<StudentSummary>(&std::fs::read(&summary_path)?)?,
            )
        } else {
            let t0 = Instant::now();
            let mut val_accuracy = Vec::new();
            let (lm, ei) = student::train_student_on(
                &sft,
                &train,
                &cfg.student,
                &vocab,
                &ad,
                &mut rng,
                s,
                |stage, lm| {
                    let p = student::policy(lm, &cfg.student, &vocab, "student")?;
                    val_accuracy
                        .push((stage.to_string(), student::greedy_accuracy(&p, &val, s)?.0));
                    Ok(())
                },
            )?;
            let summary = StudentSummary {
                val_accuracy,
                ei,
                train_s: t0.elapsed().as_secs_f64(),
            };
            save_module(&lm, &student_path)?;
            pw_core::write_json_atomic(&summary_path, &summary)?;
            (lm, summary)
        };
        let policy = student::policy(&student_lm, &cfg.student, &vocab, "student")?;
        times.lap("student: SFT + expert iteration");

        // 2. Rollouts and labels on the training questions.
        let lab = label::run(
            &policy,
            &train,
            &cfg.label,
            &dir.join("label-train"),
            s,
            pw_core::Shard::ALL,
        )?;
        export::write_exports(&dir.join("label-train"), "", &lab.labelled)?;
        times.lap("rollouts + SORM labels (train)");

        // 3. The ORM's learning curve (its rollouts, one ORM per point) and the SORM.
        let sorm_ex: Vec<ValueExample> = lab
            .labelled
            .iter()
            .filter_map(|l| {
                let (tokens, positions) = value_tokens(&vocab, &l.question, &l.lines);
                let targets = l.targets(cfg.label.estimation);
                let (p, y): (Vec<usize>, Vec<f32>) = positions
                    .iter()
                    .zip(&targets)
                    .zip(&l.keep)
                    .filter(|(_, k)| **k)
                    .map(|((p, y), _)| (*p, *y))
                    .unzip();
                (!p.is_empty()).then_some(ValueExample {
                    tokens,
                    positions: p,
                    labels: y,
                })
            })
            .collect();
        let points = cfg.orm.points(train.len());
        let curve_dir = dir.join("orm-curve");
        std::fs::create_dir_all(&curve_dir)?;
        let max_q = points.iter().map(|p| p.questions).max().unwrap_or(0);
        let max_r = points.iter().map(|p| p.rollouts).max().unwrap_or(1);
        let curve_questions: Vec<&Problem> = train.iter().take(max_q).collect();
        let mut orm_rollouts: HashMap<String, Vec<label::Rollout>> = HashMap::new();
        for r in label::sample_rollouts(
            &policy,
            &curve_questions,
            max_r,
            &cfg.label,
            &curve_dir.join(format!("rollouts-q{max_q}-r{max_r}.jsonl")),
            s ^ ORM_SEED,
        )? {
            orm_rollouts
                .entry(r.question_id.clone())
                .or_default()
                .push(r);
        }
        let qs: Vec<(String, String)> = curve_questions
            .iter()
            .map(|p| (p.id.clone(), p.question.clone()))
            .collect();
        let mut curve_models = Vec::new();
        for (i, point) in points.iter().enumerate() {
            let key = point.key(&cfg.student.model);
            let ex = curve::examples(&vocab, point, &qs, &orm_rollouts);
            let tc = cfg.orm.train(ex.len());
            let shape = point.shape(&cfg.student.model).transformer(vocab.len());
            let template = || match point.init {
                Init::Student => ValueModel::from_student(&student_lm, &ad),
                Init::Scratch => ValueModel::scratch(&shape, &ad),
            };
            let m = value_model_stage(
                &curve_dir.join(format!("{key}.safetensors")),
                template,
                &ex,
                &tc,
                &mut rng,
                &format!(
                    "ORM {}/{} ({})",
                    i + 1,
                    points.len(),
                    point.describe(&cfg.student.model)
                ),
            )?;
            curve_models.push((*point, key, m.valid(), (ex, tc.steps)));
        }
        let sorm = value_model_stage(
            &dir.join("sorm.safetensors"),
            || ValueModel::from_student(&student_lm, &ad),
            &sorm_ex,
            &cfg.sorm,
            &mut rng,
            "SORM",
        )?;
        times.lap("ORM learning curve + SORM");

        // 4. Refiners from the same rollouts.
        let answers: HashMap<String, String> = train
            .iter()
            .map(|p| (p.id.clone(), p.answer.clone()))
            .collect();
        let g_ex = global_examples(
            &vocab,
            &lab.labelled,
            cfg.global_pairs_per_question,
            &mut rng,
        );
        let l_ex = local_examples(
            &vocab,
            &lab.labelled,
            &lab.verifications,
            &answers,
            &mut rng,
        );
        let global_lm = refiner_stage(
            &dir.join("global.safetensors"),
            &student_lm,
            &g_ex,
            &cfg.global,
            &mut rng,
            "global refiner",
        )?;
        let local_lm = refiner_stage(
            &dir.join("local.safetensors"),
            &student_lm,
            &l_ex,
            &cfg.local,
            &mut rng,
            "local refiner",
        )?;
        times.lap("train global + local refiners");

        // 5. Evaluation: the ORM and thresholds on validation, figures on test.
        let sorm = sorm.valid();
        let global = StudentPolicy {
            name: "global refiner".into(),
            ..student::policy(&global_lm, &cfg.student, &vocab, "global")?
        };
        let local = StudentPolicy {
            name: "local refiner".into(),
            ..student::policy(&local_lm, &cfg.student, &vocab, "local")?
        };
        let pipeline = |orm| Pipeline {
            vocab: &vocab,
            student: &policy,
            orm,
            sorm: &sorm,
            global: &global,
            local: &local,
        };
        let batch = cfg.eval.score_batch;
        // The candidates do not depend on the ORM: one pipeline run per split, rescored by
        // every ORM of the curve.
        let val_base = pipeline(&curve_models[0].2).run(&val, &cfg.eval, s ^ VAL_SEED)?;
        let test_base = pipeline(&curve_models[0].2).run(&test, &cfg.eval, s ^ TEST_SEED)?;
        // Each ORM's rescored items; the chosen one's are the items the strategies use.
        let mut rescored = Vec::new();
        let mut curve_results: Vec<CurveResult> = Vec::new();
        for (point, key, m, (ex, steps)) in &curve_models {
            let v = rescore(&vocab, m, &val, &val_base, batch);
            let t = rescore(&vocab, m, &test, &test_base, batch);
            curve_results.push(curve::measure(
                key.clone(),
                *point,
                point.describe(&cfg.student.model),
                (ex, *steps),
                &v,
                &t,
            ));
            rescored.push((v, t));
        }
        let chosen = curve::select(&curve_results);
        curve_results[chosen].selected = true;
        pw_core::write_json_atomic(curve_dir.join("curve.json"), &curve_results)?;
        let (mut val_items, mut test_items) = rescored.swap_remove(chosen);
        let orm = &curve_models[chosen].2;
        let pipe = pipeline(orm);
        // The best-of-3 baseline's temperature, picked on validation with the chosen ORM; the
        // validation samples at the picked temperature are kept, the test ones drawn once.
        let mut eval = cfg.eval.clone();
        let mut temps = Vec::new();
        let mut val_samples = Vec::new();
        for &t in &cfg.eval.sample_temperatures {
            let at_t = EvalConfig {
                sample_temperature: t,
                ..cfg.eval.clone()
            };
            let smp = pipe.samples(&val, &at_t, s ^ VAL_SEED)?;
            temps.push((t, best_of_n(&smp)));
            val_samples.push(smp);
        }
        let picked = (0..temps.len()).max_by(|&a, &b| temps[a].1.total_cmp(&temps[b].1));
        if let Some(i) = picked
            && temps[i].0 != cfg.eval.sample_temperature
        {
            eval.sample_temperature = temps[i].0;
            for (it, smp) in val_items.iter_mut().zip(val_samples.swap_remove(i)) {
                it.samples = smp;
            }
            for (it, smp) in test_items
                .iter_mut()
                .zip(pipe.samples(&test, &eval, s ^ TEST_SEED)?)
            {
                it.samples = smp;
            }
        }
        pw_core::jsonl::write_jsonl(&dir.join("eval-test.jsonl"), &test_items)?;
        let test_label_cfg = LabelConfig {
            rollouts: cfg.test_rollouts,
            balance: false,
            ..cfg.label.clone()
        };
        let test_lab = label::run(
            &policy,
            &test,
            &test_label_cfg,
            &dir.join("label-test"),
            s ^ TEST_SEED,
            pw_core::Shard::ALL,
        )?;
        export::write_exports(&dir.join("label-test"), "", &test_lab.labelled)?;
        let steps = pipe.step_metrics(&test_lab.labelled, &eval);
        times.lap("evaluate (validation + test)");

        let results: Vec<(Strategy, StrategyResult)> = Strategy::ALL
            .iter()
            .map(|&st| {
                let tau = pick_threshold(&val_items, st);
                (st, strategy_result(&test_items, st, tau))
            })
            .collect();
        let cfg = GloreConfig { eval, ..cfg };
        Ok(report::outcome(
            &cfg,
            &curve_results,
            &temps,
            &summary,
            &lab.stats,
            &test_lab.stats,
            &results,
            &val_items,
            &test_items,
            &steps,
            &times,
            g_ex.len(),
            l_ex.len(),
        ))
    }
}
