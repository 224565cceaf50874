//! `paperworks glan taxonomy | run | merge`: flags to pw-glan calls, and the printed summary.

use crate::Global;
use crate::llm::BackendArgs;
use clap::{Args, Subcommand};
use pw_core::{Result, RunDir, Shard};
use pw_glan::GlanConfig;
use pw_glan::run as glan;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum GlanCommand {
    /// Generate the taxonomy (fields -> sub-fields -> disciplines) into <run-dir>/taxonomy.toml
    /// for review. Edit it (deleting a node deletes what is under it), then `glan run`.
    Taxonomy(CommonArgs),
    /// Run the pipeline: subjects, syllabus, homework, answers, judge, filters, dataset.
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
    /// Stop after this stage (subjects, syllabus, homework, answers, judge); a later run goes on.
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

fn print_dataset(d: &std::path::Path, summary: &glan::DatasetSummary) {
    println!(
        "{} pairs kept of {} answered: {} and {}",
        summary.kept,
        summary.answered,
        d.join(glan::DATASET_JSONL).display(),
        d.join(glan::DATASET_PARQUET).display()
    );
    println!(
        "SFT export (messages only, for TRL / axolotl): {} ({} pairs) and {} ({})",
        d.join(glan::SFT_DIR).join("train.jsonl").display(),
        summary.sft_train,
        d.join(glan::SFT_DIR).join("test.jsonl").display(),
        summary.sft_test
    );
    println!("report: {}", d.join("report.md").display());
}

pub fn run(g: &Global, cmd: &GlanCommand, file: Option<GlanConfig>) -> Result<()> {
    let d = dir(g);
    match cmd {
        GlanCommand::Taxonomy(c) => {
            let cfg = config(g, c, file);
            let conf = serde_json::to_value(&cfg).unwrap_or_default();
            let t = RunDir::scope(&d, conf, g.seed, g.fresh, |_| {
                let models = glan::open_models(&cfg, &d, &g.assets)?;
                glan::taxonomy(&cfg, &d, models.for_stage("taxonomy"), g.seed)
            })?;
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
            let until = a.until.as_deref();
            let conf = serde_json::to_value(&cfg).unwrap_or_default();
            let summary = RunDir::scope(&d, conf, g.seed, g.fresh, |run| {
                let models = glan::open_models(&cfg, &d, &g.assets)?;
                let tax = glan::taxonomy(&cfg, &d, models.for_stage("taxonomy"), g.seed)?;
                let (tax_file, settings) = glan::input_print(&cfg, &d, &g.assets, g.seed);
                run.check_inputs("glan run", &[&tax_file], settings)?;
                let stats = glan::generate_stages(&cfg, &d, &models, &tax, g.seed, shard, until)?;
                if until.is_some_and(|u| u != "judge") || shard != Shard::ALL {
                    return Ok(None);
                }
                drop(models);
                let n = glan::discipline_count(&cfg, &tax);
                glan::write_dataset(run, &cfg, &g.assets, Some(&stats), n).map(Some)
            })?;
            match (summary, until) {
                (Some(s), _) => print_dataset(&d, &s),
                (None, Some(u)) if u != "judge" => {
                    println!("stopped after {u}; run again without --until to go on")
                }
                (None, _) => println!(
                    "shard {shard} done; when every shard has run: paperworks glan merge --shards {} --run-dir {}",
                    shard.count,
                    d.display()
                ),
            }
            Ok(())
        }
        GlanCommand::Merge { shards, common } => {
            let cfg = config(g, common, file);
            let conf = serde_json::to_value(&cfg).unwrap_or_default();
            let summary = RunDir::scope(&d, conf, g.seed, g.fresh, |run| {
                let n = glan::merge(&d, *shards)?;
                let tax = match &cfg.taxonomy.file {
                    Some(f) => pw_glan::taxonomy::Taxonomy::load(f)?,
                    None => pw_glan::taxonomy::Taxonomy::load(&d.join("taxonomy.toml"))?,
                };
                eprintln!("merged {shards} shards: {n} new answers");
                let k = glan::discipline_count(&cfg, &tax);
                glan::write_dataset(run, &cfg, &g.assets, None, k)
            })?;
            print_dataset(&d, &summary);
            Ok(())
        }
    }
}
