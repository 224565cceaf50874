//! The real-use entry points `paperworks glore generate | label | refine` call: each takes its
//! options and an open run directory, does the work, writes the metrics, and returns a typed
//! summary naming the files it wrote.

use crate::data::{GenConfig, generate_problems};
use crate::export::{self, Exports};
use crate::label::{self, LabelConfig, LabelStats, Labelled};
use crate::policy::LlmPolicy;
use crate::problem::{read_gsm8k, write_gsm8k};
use crate::refine::{self, RefineStats};
use pw_core::{Error, Metrics, Result, RunDir, Shard};
use pw_llm::LlmConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The response cache of a labelling or refinement run, inside its run directory.
pub const CACHE_FILE: &str = "cache.redb";

/// Writes `n` generated problems (GSM8K JSONL) to `out`; returns how many.
pub fn generate_file(cfg: &GenConfig, n: usize, seed: u64, out: &Path) -> Result<usize> {
    cfg.validate().map_err(Error::Other)?;
    let ps = generate_problems(cfg, n, seed, "");
    write_gsm8k(out, &ps)?;
    Ok(ps.len())
}

/// What `glore label` takes besides the labelling configuration.
pub struct LabelJob<'a> {
    pub problems: &'a Path,
    /// Only the first N problems.
    pub limit: Option<usize>,
    pub llm: LlmConfig,
    /// Bypass the response cache.
    pub no_cache: bool,
    pub max_tokens: u32,
    pub shard: Shard,
}

pub struct LabelSummary {
    pub stats: LabelStats,
    pub labels: PathBuf,
    pub exports: Exports,
}

/// SORM labelling of a GSM8K-format file with any model (resumable in `run`'s directory).
pub fn label(
    run: &mut RunDir,
    job: LabelJob,
    cfg: &LabelConfig,
    seed: u64,
) -> Result<LabelSummary> {
    cfg.validate()
        .map_err(|e| Error::Other(format!("label: {e}")))?;
    // The ledgers hold rollouts of these problems by this model: other problems (a corrected
    // gold answer) or another model must not resume from them.
    run.check_inputs(
        "glore label",
        &[job.problems],
        serde_json::json!({
            "model": job.llm.identity(),
            "seed": seed,
            "temperature": cfg.temperature,
            "max_tokens": job.max_tokens,
            "limit": job.limit,
        }),
    )?;
    let mut problems = read_gsm8k(job.problems)?;
    if let Some(n) = job.limit {
        problems.truncate(n);
    }
    let mut llm = job.llm;
    llm.cache = (!job.no_cache).then(|| run.path(CACHE_FILE));
    let generator = pw_llm::backend::open(&llm)?;
    let policy = LlmPolicy {
        generator,
        max_tokens: job.max_tokens,
    };
    let out = label::run(&policy, &problems, cfg, run.root(), seed, job.shard)?;
    let exports = export::write_exports(run.root(), &job.shard.suffix(), &out.labelled)?;
    let mut m = Metrics::default();
    m.set("glore.label", &out.stats);
    run.write_metrics(&m)?;
    Ok(LabelSummary {
        stats: out.stats,
        labels: out.labels_file,
        exports,
    })
}

/// What `glore refine` takes.
pub struct RefineJob<'a> {
    /// The GSM8K-format problems the labels were made from (for the gold answers).
    pub problems: &'a Path,
    /// `labels.jsonl` of a `glore label` run.
    pub labels: &'a Path,
    pub llm: LlmConfig,
    pub no_cache: bool,
    pub max_tokens: u32,
    pub temperature: f32,
    pub chunk: usize,
}

pub struct RefineSummary {
    pub stats: RefineStats,
    pub refinements: PathBuf,
}

/// Global and local refinement of a labelling run's wrong rollouts by any model.
pub fn refine(run: &mut RunDir, job: RefineJob, seed: u64) -> Result<RefineSummary> {
    run.check_inputs(
        "glore refine",
        &[job.problems, job.labels],
        serde_json::json!({
            "model": job.llm.identity(),
            "seed": seed,
            "temperature": job.temperature,
            "max_tokens": job.max_tokens,
        }),
    )?;
    if !(job.temperature.is_finite() && job.temperature >= 0.0) {
        return Err(Error::Other(format!(
            "--temperature {} must be >= 0",
            job.temperature
        )));
    }
    let answers: HashMap<String, String> = read_gsm8k(job.problems)?
        .into_iter()
        .map(|p| (p.id, p.answer))
        .collect();
    let labelled: Vec<Labelled> = export::read_rows(job.labels)?;
    let mut llm = job.llm;
    llm.cache = (!job.no_cache).then(|| run.path(CACHE_FILE));
    let generator = pw_llm::backend::open(&llm)?;
    let stats = refine::refine_with_generator(
        generator.as_ref(),
        &labelled,
        &answers,
        run.root(),
        seed,
        job.max_tokens,
        job.temperature,
        job.chunk,
    )?;
    let mut m = Metrics::default();
    m.set("glore.refine", &stats);
    run.write_metrics(&m)?;
    Ok(RefineSummary {
        stats,
        refinements: run.path(refine::REFINEMENTS_FILE),
    })
}
