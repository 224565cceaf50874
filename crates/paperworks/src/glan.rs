//! `paperworks glan taxonomy | run | merge`: flags and printing; the work is in pw-glan.

use crate::Global;
use crate::llm::BackendArgs;
use clap::{Args, Subcommand};
use pw_core::{Report, Result, RunDir, Shard};
use pw_glan::GlanConfig;
use pw_glan::run as glan;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum GlanCommand {
    /// Generate the taxonomy (fields -> sub-fields -> disciplines) into <run-dir>/taxonomy.toml
    /// for review. Edit it (deleting a node deletes what is under it), then `glan run`.
    Taxonomy(CommonArgs),
    /// Run the pipeline: subjects, syllabus, homework, answers, filters, dataset.
    ///
    /// Resumes from what <run-dir> (default runs/glan) already holds; answers are cached in
    /// <run-dir>/cache.redb. With --shard I/N only every N-th discipline is done, into
    /// shard-suffixed ledgers; `glan merge --shards N` then builds the dataset.
    Run(RunArgs),
    /// Merge the ledgers of `run --shard I/N` (I = 0..N-1) and build the dataset and report.
    Merge {
        /// N of the shard runs.
        #[arg(long)]
        shards: u32,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// A reviewed taxonomy TOML (default: <run-dir>/taxonomy.toml, generated when missing).
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    /// Bypass the response cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Question model (taxonomy, subjects, syllabus, homework): --model GGUF or --endpoint URLs
    /// override the config file's [glan.model].
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Do only the disciplines of shard I of N (by a stable hash of their ids).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Answer model: a local GGUF (the paper used a cheaper model for answers).
    #[arg(long, value_name = "GGUF")]
    pub answer_model: Option<PathBuf>,
    /// Answer model: OpenAI-compatible endpoint(s).
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    pub answer_endpoint: Vec<String>,
    /// Stop after this stage (subjects, syllabus, homework, answers); a later run goes on.
    #[arg(long, value_name = "STAGE")]
    pub until: Option<String>,
    /// Model name to send to the answer endpoints.
    #[arg(long, default_value = "default")]
    pub answer_api_model: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn config(g: &Global, c: &CommonArgs, file: Option<GlanConfig>) -> GlanConfig {
    let mut cfg = file.unwrap_or_default();
    if c.backend.model.is_some() || !c.backend.endpoint.is_empty() {
        cfg.model = c.backend.config(g, None);
    }
    if c.taxonomy.is_some() {
        cfg.taxonomy.file = c.taxonomy.clone();
    }
    cfg.no_cache |= c.no_cache;
    cfg
}

fn dir(g: &Global) -> PathBuf {
    g.run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/glan"))
}

fn open_run(g: &Global, cfg: &GlanConfig) -> Result<RunDir> {
    RunDir::open(
        dir(g),
        std::env::args().collect(),
        serde_json::to_value(cfg).unwrap_or_default(),
        g.seed,
        crate::versions(),
        g.fresh,
    )
}

fn finish_dataset(
    g: &Global,
    cfg: &GlanConfig,
    run: &mut RunDir,
    stats: Option<&std::collections::BTreeMap<String, pw_llm::stage::StageStats>>,
    disciplines: usize,
) -> Result<()> {
    let d = dir(g);
    let summary = glan::finalize(cfg, &d, &g.assets, disciplines)?;
    let mut metrics = pw_core::Metrics::default();
    metrics.set("glan.dataset", &summary);
    let mut report = Report::new("GLAN dataset");
    if let Some(s) = stats {
        metrics.set("glan.stages", s);
        report.table(pw_glan::reproduce::stage_table(s));
    }
    report.extend(pw_glan::reproduce::dataset_blocks(&summary));
    run.write_metrics(&metrics)?;
    report.write(&d)?;
    println!(
        "{} pairs kept of {} answered: {} and {}",
        summary.kept,
        summary.answered,
        d.join("glan.jsonl").display(),
        d.join("glan.parquet").display()
    );
    println!("report: {}", d.join("report.md").display());
    Ok(())
}

pub fn run(g: &Global, cmd: &GlanCommand, file: Option<GlanConfig>) -> Result<()> {
    match cmd {
        GlanCommand::Taxonomy(c) => {
            let cfg = config(g, c, file);
            let d = dir(g);
            std::fs::create_dir_all(&d).map_err(|e| pw_core::Error::io(&d, e))?;
            let models = glan::open_models(&cfg, &d, &g.assets)?;
            let t = glan::taxonomy(&cfg, &d, models.for_stage("taxonomy"), g.seed)?;
            println!(
                "{} fields, {} disciplines: {} (edit it, then `paperworks glan run`)",
                t.fields.len(),
                t.disciplines().len(),
                d.join("taxonomy.toml").display()
            );
            Ok(())
        }
        GlanCommand::Run(a) => {
            let mut cfg = config(g, &a.common, file);
            if let Some(m) = &a.answer_model {
                let mut b = a.common.backend.clone();
                b.model = Some(m.clone());
                b.endpoint.clear();
                cfg.answer_model = Some(b.config(g, None));
            } else if !a.answer_endpoint.is_empty() {
                let mut b = a.common.backend.clone();
                b.endpoint = a.answer_endpoint.clone();
                b.api_model = a.answer_api_model.clone();
                cfg.answer_model = Some(b.config(g, None));
            }
            let shard = a.shard.unwrap_or(Shard::ALL);
            let mut run = open_run(g, &cfg)?;
            let d = dir(g);
            let result = (|| -> Result<()> {
                let models = glan::open_models(&cfg, &d, &g.assets)?;
                let tax = glan::taxonomy(&cfg, &d, models.for_stage("taxonomy"), g.seed)?;
                let stats =
                    glan::generate(&cfg, &d, &models, &tax, g.seed, shard, a.until.as_deref())?;
                let mut n = tax.disciplines().len();
                if cfg.max_disciplines > 0 {
                    n = n.min(cfg.max_disciplines);
                }
                if a.until.is_some() && a.until.as_deref() != Some("answers") {
                    println!(
                        "stopped after {}; run again without --until to go on",
                        a.until.as_deref().unwrap_or_default()
                    );
                    Ok(())
                } else if shard == Shard::ALL {
                    drop(models);
                    finish_dataset(g, &cfg, &mut run, Some(&stats), n)
                } else {
                    println!(
                        "shard {shard} done; when every shard has run: paperworks glan merge --shards {} --run-dir {}",
                        shard.count,
                        d.display()
                    );
                    Ok(())
                }
            })();
            run.finish(result.as_ref().map(|_| ()).map_err(|e| e.to_string()))?;
            result
        }
        GlanCommand::Merge { shards, common } => {
            let cfg = config(g, common, file);
            let mut run = open_run(g, &cfg)?;
            let d = dir(g);
            let result = (|| -> Result<()> {
                let n = glan::merge(&d, *shards)?;
                let tax = match &cfg.taxonomy.file {
                    Some(f) => pw_glan::taxonomy::Taxonomy::load(f)?,
                    None => pw_glan::taxonomy::Taxonomy::load(&d.join("taxonomy.toml"))?,
                };
                eprintln!("merged {shards} shards: {n} new answers");
                let mut k = tax.disciplines().len();
                if cfg.max_disciplines > 0 {
                    k = k.min(cfg.max_disciplines);
                }
                finish_dataset(g, &cfg, &mut run, None, k)
            })();
            run.finish(result.as_ref().map(|_| ()).map_err(|e| e.to_string()))?;
            result
        }
    }
}
