//! The whole pipeline: taxonomy -> subjects -> syllabus -> homework -> answers -> filters ->
//! JSONL + Parquet, resumable at every step, `--shard I/N` over disciplines, `merge` of shards.

use crate::config::GlanConfig;
use crate::dataset;
use crate::pipeline;
use crate::taxonomy::{self, Taxonomy};
use pw_core::{Error, Ledger, Result, Shard};
use pw_llm::stage::{StageOptions, StageRecord, StageStats, default_check, run_stage};
use pw_llm::{Cache, Cached, Generator, LlmConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const STAGES: [&str; 4] = ["subjects", "syllabus", "homework", "answers"];

pub const ALL_STAGES: [&str; 5] = ["taxonomy", "subjects", "syllabus", "homework", "answers"];

/// The models of the stages, behind one shared response cache.
pub struct Models {
    /// The default model (`model`).
    pub question: Arc<dyn Generator>,
    /// The answer model (`answer_model`, else `model`).
    pub answer: Arc<dyn Generator>,
    /// Per-stage overrides (`models.<stage>`).
    pub per_stage: BTreeMap<String, Arc<dyn Generator>>,
    pub cache: Option<Arc<Cache>>,
}

impl Models {
    pub fn for_stage(&self, stage: &str) -> &dyn Generator {
        match self.per_stage.get(stage) {
            Some(g) => g.as_ref(),
            None if stage == "answers" => self.answer.as_ref(),
            None => self.question.as_ref(),
        }
    }
}

fn with_default_model(mut m: LlmConfig, assets: &Path) -> LlmConfig {
    if !m.uses_http() && m.embedded.model.as_os_str().is_empty() {
        m.embedded.model = pw_data::assets::default_model(assets);
    }
    m.cache = None;
    m
}

pub fn open_models(cfg: &GlanConfig, dir: &Path, assets: &Path) -> Result<Models> {
    let cache = if cfg.no_cache {
        None
    } else {
        Some(Arc::new(Cache::open(dir.join("cache.redb"))?))
    };
    let wrap = |g: Arc<dyn Generator>| -> Arc<dyn Generator> {
        match &cache {
            Some(c) => Arc::new(Cached::new(g, c.clone())),
            None => g,
        }
    };
    let q = wrap(pw_llm::backend::open(&with_default_model(
        cfg.model.clone(),
        assets,
    ))?);
    let a = match &cfg.answer_model {
        Some(m) => wrap(pw_llm::backend::open(&with_default_model(
            m.clone(),
            assets,
        ))?),
        None => q.clone(),
    };
    let mut per_stage = BTreeMap::new();
    for (stage, m) in &cfg.models {
        if !ALL_STAGES.contains(&stage.as_str()) {
            return Err(Error::Other(format!(
                "[glan.models.{stage}]: no such stage (stages: {})",
                ALL_STAGES.join(", ")
            )));
        }
        per_stage.insert(
            stage.clone(),
            wrap(pw_llm::backend::open(&with_default_model(
                m.clone(),
                assets,
            ))?),
        );
    }
    Ok(Models {
        question: q,
        answer: a,
        per_stage,
        cache,
    })
}

/// The taxonomy: the configured file, else `<dir>/taxonomy.toml` from an earlier run (or a
/// review), else generated and saved there.
pub fn taxonomy(cfg: &GlanConfig, dir: &Path, g: &dyn Generator, seed: u64) -> Result<Taxonomy> {
    if let Some(f) = &cfg.taxonomy.file {
        return Taxonomy::load(f);
    }
    let p = dir.join("taxonomy.toml");
    if p.exists() {
        return Taxonomy::load(&p);
    }
    let t = taxonomy::generate(g, &cfg.taxonomy, seed, cfg.retries)?;
    t.save(&p)?;
    Ok(t)
}

/// What the stage ledgers of a run in `dir` are made from: the taxonomy file and the settings
/// that change what is asked or how it is sampled (models, stage sizes, sampling, seed). For
/// [`pw_core::RunDir::check_inputs`], so a rerun with other inputs is refused instead of
/// resuming from ledgers they did not make. Filters, concurrency, cache and shard are left
/// out: the dataset is filtered anew from the ledgers on every run, and the others do not
/// change an answer.
pub fn input_print(cfg: &GlanConfig, dir: &Path, seed: u64) -> (PathBuf, serde_json::Value) {
    let taxonomy = cfg
        .taxonomy
        .file
        .clone()
        .unwrap_or_else(|| dir.join("taxonomy.toml"));
    let stages: BTreeMap<&String, serde_json::Value> =
        cfg.models.iter().map(|(k, m)| (k, m.identity())).collect();
    let settings = serde_json::json!({
        "seed": seed,
        "model": cfg.model.identity(),
        "answer_model": cfg.answer_model.as_ref().map(|m| m.identity()),
        "stage_models": stages,
        "subjects": cfg.subjects,
        "syllabus": cfg.syllabus,
        "homework": cfg.homework,
        "answers": cfg.answers,
        "max_disciplines": cfg.max_disciplines,
    });
    (taxonomy, settings)
}

fn ledger_path(dir: &Path, stage: &str, shard: Shard) -> PathBuf {
    dir.join(format!("{stage}{}.jsonl", shard.suffix()))
}

fn rejects_path(dir: &Path, stage: &str, shard: Shard) -> PathBuf {
    dir.join(format!("{stage}.rejects{}.jsonl", shard.suffix()))
}

/// Runs steps 2-5 for this shard's disciplines, stopping after `until` when given; returns
/// the per-stage statistics of the stages that ran.
pub fn generate_stages(
    cfg: &GlanConfig,
    dir: &Path,
    models: &Models,
    tax: &Taxonomy,
    seed: u64,
    shard: Shard,
    until: Option<&str>,
) -> Result<BTreeMap<String, StageStats>> {
    cfg.check()
        .map_err(|e| Error::Other(format!("glan config: {e}")))?;
    if let Some(u) = until
        && !STAGES.contains(&u)
    {
        return Err(Error::Other(format!(
            "--until {u}: no such stage (stages: {})",
            STAGES.join(", ")
        )));
    }
    let mut ds = tax.disciplines();
    if cfg.max_disciplines > 0 {
        ds.truncate(cfg.max_disciplines);
    }
    ds.retain(|d| shard.owns(&d.id));
    let mut stats = BTreeMap::new();
    let mut stage = |name: &str, g: &dyn Generator, items| -> Result<Vec<StageRecord>> {
        let out = ledger_path(dir, name, shard);
        let opts = StageOptions {
            retries: cfg.retries,
            label: format!("glan {name}"),
            ..Default::default()
        };
        let s = run_stage(
            g,
            items,
            &default_check,
            &out,
            &rejects_path(dir, name, shard),
            &opts,
        )?;
        tracing::info!(
            "glan {name}: {} done, {} rejected, {} from earlier runs, {} generated, {} cached, {:.1} tokens/s",
            s.done,
            s.rejected,
            s.already_done,
            s.generated,
            s.cached,
            s.tokens_per_s()
        );
        stats.insert(name.to_string(), s);
        Ledger::read_all(&out)
    };
    let q = models.question.as_ref();
    let stop = |name: &str| until == Some(name);
    let subj = stage("subjects", q, pipeline::subject_items(&ds, cfg, seed))?;
    if stop("subjects") {
        return Ok(stats);
    }
    let subjects = pipeline::subjects(&subj)?;
    let syl = stage(
        "syllabus",
        q,
        pipeline::syllabus_items(&subjects, cfg, seed),
    )?;
    if stop("syllabus") {
        return Ok(stats);
    }
    let hw = stage("homework", q, pipeline::homework_items(&syl, cfg, seed)?)?;
    if stop("homework") {
        return Ok(stats);
    }
    stage(
        "answers",
        models.answer.as_ref(),
        pipeline::answer_items(&hw, cfg, seed),
    )?;
    Ok(stats)
}

/// What the finished dataset looks like.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub disciplines: usize,
    pub answered: usize,
    pub kept: usize,
    pub removed: BTreeMap<String, usize>,
    pub rejected: BTreeMap<String, usize>,
    pub per_discipline: BTreeMap<String, usize>,
    pub distinct_2: f64,
    pub distinct_3: f64,
    pub mean_pairwise_similarity: f64,
    pub mean_question_words: BTreeMap<String, f64>,
}

fn benchmarks(cfg: &GlanConfig, assets: &Path) -> Result<Vec<(PathBuf, String)>> {
    if cfg.filters.benchmarks.is_empty() {
        let he = assets.join(pw_data::assets::paths::HUMANEVAL);
        pw_data::require_asset(&he)?;
        Ok(vec![(he, "prompt".into())])
    } else {
        Ok(cfg
            .filters
            .benchmarks
            .iter()
            .map(|b| (b.path.clone(), b.field.clone()))
            .collect())
    }
}

/// Filters the answered pairs and writes `glan.jsonl`, `glan.parquet` and `filtered.jsonl`.
pub fn finalize(
    cfg: &GlanConfig,
    dir: &Path,
    assets: &Path,
    disciplines: usize,
) -> Result<DatasetSummary> {
    let answers: Vec<StageRecord> = Ledger::read_all(ledger_path(dir, "answers", Shard::ALL))?;
    let pairs = dataset::pairs(&answers);
    let bench = dataset::contamination_index(&benchmarks(cfg, assets)?, cfg.filters.ngram)?;
    let answered = pairs.len();
    let (kept, removed, counts) = dataset::filter(pairs, &cfg.filters, &bench);
    pw_core::jsonl::write_jsonl(&dir.join(DATASET_JSONL), &kept)?;
    dataset::write_parquet(&dir.join(DATASET_PARQUET), &kept)?;
    pw_core::jsonl::write_jsonl(&dir.join("filtered.jsonl"), &removed)?;
    let mut rejected = BTreeMap::new();
    for s in STAGES {
        let p = rejects_path(dir, s, Shard::ALL);
        rejected.insert(
            s.to_string(),
            if p.exists() {
                Ledger::open(&p)?.len()
            } else {
                0
            },
        );
    }
    let mut per_discipline = BTreeMap::new();
    let mut words: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for p in &kept {
        *per_discipline.entry(p.discipline.clone()).or_default() += 1;
        let e = words.entry(p.difficulty.clone()).or_default();
        e.0 += pw_data::dedup::words(&p.messages[0].text()).len() as f64;
        e.1 += 1;
    }
    Ok(DatasetSummary {
        disciplines,
        answered,
        kept: kept.len(),
        removed: counts,
        rejected,
        per_discipline,
        distinct_2: dataset::distinct_n(&kept, 2),
        distinct_3: dataset::distinct_n(&kept, 3),
        mean_pairwise_similarity: dataset::mean_pairwise_similarity(&kept),
        mean_question_words: words
            .into_iter()
            .map(|(k, (s, n))| (k, s / n as f64))
            .collect(),
    })
}

/// Merges the ledgers of shards 0..n into the unsharded ones (by id; a record present in two
/// shards is kept once).
pub fn merge(dir: &Path, n: u32) -> Result<usize> {
    let mut total = 0;
    for s in STAGES {
        for (kind, path_of) in [
            ("out", ledger_path as fn(&Path, &str, Shard) -> PathBuf),
            ("rejects", rejects_path),
        ] {
            let mut merged = Ledger::open(path_of(dir, s, Shard::ALL))?;
            for i in 0..n {
                let p = path_of(dir, s, Shard { index: i, count: n });
                if !p.exists() {
                    if kind == "out" {
                        return Err(Error::invalid(
                            &p,
                            format!("shard {i}/{n} has not written its {s} stage; run it first"),
                        ));
                    }
                    continue;
                }
                let recs: Vec<serde_json::Value> = Ledger::read_all(&p)?;
                for r in recs {
                    let id = r["id"].as_str().unwrap_or_default().to_string();
                    if merged.append(&id, &r)? && kind == "out" && s == "answers" {
                        total += 1;
                    }
                }
            }
            merged.flush()?;
        }
    }
    Ok(total)
}

/// Filters the answered pairs into the dataset (see [`finalize`]), then writes the run's
/// `metrics.json` and its report (stage table when `stats` is given, filters, diversity,
/// pairs per discipline). Returns the dataset's summary.
pub fn write_dataset(
    run: &pw_core::RunDir,
    cfg: &GlanConfig,
    assets: &Path,
    stats: Option<&BTreeMap<String, StageStats>>,
    disciplines: usize,
) -> Result<DatasetSummary> {
    let summary = finalize(cfg, run.root(), assets, disciplines)?;
    let mut metrics = pw_core::Metrics::default();
    metrics.set("glan.dataset", &summary);
    let mut report = pw_core::Report::new("GLAN dataset");
    if let Some(s) = stats {
        metrics.set("glan.stages", s);
        report.table(crate::report::stage_table(s));
    }
    report.extend(crate::report::dataset_blocks(&summary));
    run.write_metrics(&metrics)?;
    report.write(run.root())?;
    Ok(summary)
}

/// The disciplines a run takes from `tax` (all, or the first `max_disciplines`).
pub fn discipline_count(cfg: &GlanConfig, tax: &Taxonomy) -> usize {
    let n = tax.disciplines().len();
    if cfg.max_disciplines > 0 {
        n.min(cfg.max_disciplines)
    } else {
        n
    }
}

/// The dataset files of a finished run.
pub const DATASET_JSONL: &str = "glan.jsonl";
pub const DATASET_PARQUET: &str = "glan.parquet";
