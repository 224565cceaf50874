//! `paperworks glore generate | label | refine`: flags to one pw-glore call each, and the
//! printed summary.

use crate::Global;
use crate::llm::BackendArgs;
use clap::{Args, Subcommand};
use pw_core::{Result, RunDir, Shard};
use pw_glore::data::GenConfig;
use pw_glore::label::{Estimation, LabelConfig};
use pw_glore::run::{self, LabelJob, RefineJob};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum GloreCommand {
    /// Write GSM8K-style arithmetic word problems (GSM8K JSONL: id, question, answer with one
    /// `a op b = c` step per line and `#### N`), with exact step-level ground truth.
    Generate(GenerateArgs),
    /// SORM labelling with any model: rollouts per question, then K verifying rollouts from
    /// every step prefix; ORM and SORM labels with the paper's post-processing.
    ///
    /// Writes into <run-dir> (default runs/glore-label): rollouts.jsonl and verify.jsonl
    /// (resumable ledgers: rerun the same command after a kill), labels.jsonl, prm_trl.jsonl
    /// (TRL PRMTrainer rows) and math_shepherd.jsonl (Math-Shepherd / OpenRLHF: steps tagged
    /// `ки`, labels `+`/`-`).
    Label(LabelArgs),
    /// Global and local refinement of the wrong rollouts of a `label` run by any model: the
    /// draft is rewritten from scratch (global) and from its first SORM-negative step, marked
    /// [BAD] (local). Writes <run-dir>/refinements.jsonl (chat messages + answer, correctness;
    /// resumable) and prints how many wrong drafts each mode fixed.
    Refine(RefineArgs),
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of problems.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Output JSONL file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Reasoning steps per problem, at least.
    #[arg(long, default_value_t = 2)]
    pub min_steps: usize,
    /// Reasoning steps per problem, at most.
    #[arg(long, default_value_t = 6)]
    pub max_steps: usize,
    /// Largest quantity anywhere in a problem.
    #[arg(long, default_value_t = 999)]
    pub max_value: i64,
}

#[derive(Args, Debug)]
pub struct LabelArgs {
    /// GSM8K-format JSONL problems (question, answer ending in `#### N`).
    #[arg(long, value_name = "FILE")]
    pub problems: PathBuf,
    /// Only the first N problems.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Sampled solutions per question.
    #[arg(long, default_value_t = 4)]
    pub rollouts: usize,
    /// Verifying rollouts per step prefix (K; 8 in the paper).
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Tokens per solution at most.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Soft estimation (the fraction of the K that succeed) for the SORM targets.
    #[arg(long)]
    pub soft: bool,
    /// Switch off post-processing rule 1 (earlier steps of a positive step are positive).
    #[arg(long)]
    pub no_monotone: bool,
    /// Switch off rule 2 (a success must use the step's intermediate result).
    #[arg(long)]
    pub no_consistency: bool,
    /// Switch off rule 3 (balance positive/negative per prefix length in `keep`).
    #[arg(long)]
    pub no_balance: bool,
    /// Requests per batch (and per ledger flush).
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    /// Label only the questions of shard I of N (by a stable hash of their ids).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Bypass the response cache (<run-dir>/cache.redb).
    #[arg(long)]
    pub no_cache: bool,
    /// The policy: --model GGUF (default: the embedded SmolLM2) or --endpoint URLs.
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Args, Debug)]
pub struct RefineArgs {
    /// The GSM8K-format problems the labels were made from (for the gold answers).
    #[arg(long, value_name = "FILE")]
    pub problems: PathBuf,
    /// labels.jsonl of a `glore label` run.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    #[arg(long)]
    pub no_cache: bool,
    /// The refiner: --model GGUF (default: the embedded SmolLM2) or --endpoint URLs.
    #[command(flatten)]
    pub backend: BackendArgs,
}

fn dir(g: &Global, default: &str) -> PathBuf {
    g.run_dir.clone().unwrap_or_else(|| PathBuf::from(default))
}

fn pct(x: usize, of: usize) -> String {
    pw_core::pct(x as f64 / of.max(1) as f64)
}

pub fn run(g: &Global, cmd: &GloreCommand) -> Result<()> {
    match cmd {
        GloreCommand::Generate(a) => {
            let cfg = GenConfig {
                min_steps: a.min_steps,
                max_steps: a.max_steps,
                max_value: a.max_value,
                ..Default::default()
            };
            let n = run::generate_file(&cfg, a.n, g.seed, &a.out)?;
            println!("{n} problems: {}", a.out.display());
            Ok(())
        }
        GloreCommand::Label(a) => {
            let cfg = LabelConfig {
                rollouts: a.rollouts,
                k: a.k,
                temperature: a.temperature,
                estimation: if a.soft {
                    Estimation::Soft
                } else {
                    Estimation::Hard
                },
                monotone: !a.no_monotone,
                consistency: !a.no_consistency,
                balance: !a.no_balance,
                chunk: a.chunk,
            };
            let job = LabelJob {
                problems: &a.problems,
                limit: a.limit,
                llm: a.backend.config(g, None),
                no_cache: a.no_cache,
                max_tokens: a.max_tokens,
                shard: a.shard.unwrap_or(Shard::ALL),
            };
            let config = serde_json::to_value(&cfg).unwrap_or_default();
            let d = dir(g, "runs/glore-label");
            let out = RunDir::scope(&d, config, g.seed, g.fresh, |r| {
                run::label(r, job, &cfg, g.seed)
            })?;
            let s = &out.stats;
            println!(
                "{} questions, {} rollouts ({} correct), {} prefixes verified with {} continuations; {} step labels, {} positive",
                s.questions,
                s.rollouts,
                s.rollouts_correct,
                s.prefixes_verified,
                s.continuations,
                s.labels,
                s.positive
            );
            if let (Some(r), Some(p)) = (s.raw_label_accuracy, s.label_accuracy) {
                println!(
                    "SORM labels vs exact step truth: {} raw, {} after post-processing",
                    pw_core::pct(r),
                    pw_core::pct(p)
                );
            }
            println!(
                "labels: {}\nTRL PRM: {}\nMath-Shepherd: {}",
                out.labels.display(),
                out.exports.prm_trl.display(),
                out.exports.math_shepherd.display()
            );
            Ok(())
        }
        GloreCommand::Refine(a) => {
            let job = RefineJob {
                problems: &a.problems,
                labels: &a.labels,
                llm: a.backend.config(g, None),
                no_cache: a.no_cache,
                max_tokens: a.max_tokens,
                temperature: a.temperature,
                chunk: a.chunk,
            };
            let config = serde_json::json!({"labels": a.labels, "temperature": a.temperature});
            let d = dir(g, "runs/glore-refine");
            let out = RunDir::scope(&d, config, g.seed, g.fresh, |r| run::refine(r, job, g.seed))?;
            let s = &out.stats;
            println!(
                "{} wrong drafts: global fixed {} ({}), local fixed {} ({}), either {} ({})",
                s.wrong_drafts,
                s.global_fixed,
                pct(s.global_fixed, s.wrong_drafts),
                s.local_fixed,
                pct(s.local_fixed, s.wrong_drafts),
                s.either_fixed,
                pct(s.either_fixed, s.wrong_drafts)
            );
            println!("refinements: {}", out.refinements.display());
            Ok(())
        }
    }
}
