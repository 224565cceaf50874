//! The miniature reproduction: the whole pipeline on the strongest instruct GGUF in the assets
//! (Qwen2.5-Coder-0.5B-Instruct, else SmolLM2; or any configured model) for a 2-discipline
//! taxonomy, measured.
//!
//! The paper's headline (Mistral-7B fine-tuned on 10M GLAN pairs: GSM8K 43.4 -> 80.8, HumanEval
//! 28.0 -> 48.8) needs a 7B fine-tune on millions of pairs and is out of reach here; the
//! report says so. What is checked is what the method promises of the data itself, and, with
//! `claim.enabled` (on at both sizes), the central claim in miniature: a small base model tuned
//! on GLAN pairs against the same number of Self-Instruct pairs (`claim.rs`).

use crate::config::GlanConfig;
use crate::dataset::Pair;
use crate::report::{self, Measured};
use crate::run;
use crate::{claim, selfinstruct};
use pw_core::{Claim, ReproContext, ReproOutcome, Reproduction, Size, resolve_config};

/// The reproduction's human-reviewed taxonomy (the paper's review step): two disciplines at
/// the quick size, eight at the full size. `paperworks glan taxonomy` shows what the model
/// proposes on its own.
pub const REVIEWED_TAXONOMY: &str = r#"[[fields]]
name = "Natural Sciences"
[[fields.subfields]]
name = "Physics"
disciplines = ["Classical Mechanics", "Thermodynamics"]
[[fields.subfields]]
name = "Biology"
disciplines = ["Cell Biology", "Ecology"]

[[fields]]
name = "Mathematics"
[[fields.subfields]]
name = "Pure Mathematics"
disciplines = ["Linear Algebra", "Number Theory"]

[[fields]]
name = "Humanities"
[[fields.subfields]]
name = "History"
disciplines = ["World History", "History of Science"]
"#;

#[derive(Default)]
pub struct GlanReproduction {
    /// Replaces the size's configuration (tests).
    pub config: Option<GlanConfig>,
}

impl Reproduction for GlanReproduction {
    fn name(&self) -> &'static str {
        "glan"
    }

    fn title(&self) -> &'static str {
        "GLAN: instruction data from a taxonomy of human knowledge (taxonomy -> subjects -> syllabus -> homework -> answers)"
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
        let cfg: GlanConfig = ctx.config(self.config.as_ref())?;
        std::fs::create_dir_all(&ctx.dir).map_err(|e| pw_core::Error::io(&ctx.dir, e))?;
        let t0 = std::time::Instant::now();
        let tax_file = ctx.dir.join("taxonomy.toml");
        if cfg.taxonomy.file.is_none() && !tax_file.exists() {
            pw_core::write_atomic(&tax_file, REVIEWED_TAXONOMY.as_bytes())?;
        }
        let models = run::open_models(&cfg, &ctx.dir, &ctx.assets)?;
        let tax = run::taxonomy(&cfg, &ctx.dir, models.for_stage("taxonomy"), ctx.seed)?;
        let mut stats = run::generate_stages(
            &cfg,
            &ctx.dir,
            &models,
            &tax,
            ctx.seed,
            pw_core::Shard::ALL,
            None,
        )?;
        let mut n_disc = tax.disciplines().len();
        if cfg.max_disciplines > 0 {
            n_disc = n_disc.min(cfg.max_disciplines);
        }
        let d = run::finalize(&cfg, &ctx.dir, &ctx.assets, n_disc)?;
        let model_names = (models.question.model(), models.answer.model());
        let cache = models.cache.as_ref().map(|c| c.counts());
        let claim = if cfg.claim.enabled {
            let si = selfinstruct::generate(&cfg, &ctx.dir, &models, &ctx.assets, ctx.seed)?;
            stats.extend(si.stats.clone());
            // the engines' memory and threads go back before the training starts
            drop(models);
            let glan: Vec<Pair> =
                pw_core::jsonl::read_jsonl(&ctx.dir.join(run::DATASET_JSONL), "GLAN pairs")?;
            // an arm the filters emptied leaves the claim undecided, not the run failed
            let c = if glan.is_empty() || si.kept.is_empty() {
                None
            } else {
                Some(claim::run(
                    &cfg.claim,
                    &claim::claim_dir(&ctx.dir),
                    &glan,
                    &si.kept,
                    ctx.seed,
                )?)
            };
            Some((si, c, glan.len()))
        } else {
            None
        };
        let wall = t0.elapsed().as_secs_f64();
        Ok(report::outcome(Measured {
            cfg: &cfg,
            tax: &tax,
            n_disc,
            stats: &stats,
            dataset: &d,
            wall,
            models: model_names,
            cache,
            claim: claim.as_ref().map(|(s, c, g)| (s, c.as_ref(), *g)),
        }))
    }
}
