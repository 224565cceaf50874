//! The whole pipeline: taxonomy -> subjects -> syllabus -> homework -> answers -> filters ->
//! JSONL + Parquet, resumable at every step, `--shard I/N` over disciplines, `merge` of shards.

use crate::config::GlanConfig;
use crate::dataset::{self, Candidate, Filters, JudgeOutcome};
use crate::pipeline;
use crate::quality::{Agreement, DetectorLimits, Dictionary, Verdict, detect};
use crate::taxonomy::{self, Taxonomy};
use pw_core::{Error, Ledger, Result, Shard};
use pw_llm::stage::{StageOptions, StageRecord, StageStats, default_check, run_stage};
use pw_llm::{Cache, Cached, Generator, LlmConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const STAGES: [&str; 5] = ["subjects", "syllabus", "homework", "answers", "judge"];

pub const ALL_STAGES: [&str; 6] = [
    "taxonomy", "subjects", "syllabus", "homework", "answers", "judge",
];

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
        m.embedded.model = pw_data::assets::instruct_model(assets);
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
/// Models are named as resolved (an empty embedded path is the assets' default model), so a
/// rerun after the default changed is refused too.
pub fn input_print(
    cfg: &GlanConfig,
    dir: &Path,
    assets: &Path,
    seed: u64,
) -> (PathBuf, serde_json::Value) {
    let taxonomy = cfg
        .taxonomy
        .file
        .clone()
        .unwrap_or_else(|| dir.join("taxonomy.toml"));
    let id = |m: &LlmConfig| with_default_model(m.clone(), assets).identity();
    let stages: BTreeMap<&String, serde_json::Value> =
        cfg.models.iter().map(|(k, m)| (k, id(m))).collect();
    let settings = serde_json::json!({
        "seed": seed,
        "model": id(&cfg.model),
        "answer_model": cfg.answer_model.as_ref().map(id),
        "judge": cfg.judge,
        "stage_models": stages,
        "subjects": cfg.subjects,
        "syllabus": cfg.syllabus,
        "homework": cfg.homework,
        "answers": cfg.answers,
        "max_disciplines": cfg.max_disciplines,
    });
    (taxonomy, settings)
}

pub(crate) fn ledger_path(dir: &Path, stage: &str, shard: Shard) -> PathBuf {
    dir.join(format!("{stage}{}.jsonl", shard.suffix()))
}

pub(crate) fn rejects_path(dir: &Path, stage: &str, shard: Shard) -> PathBuf {
    dir.join(format!("{stage}.rejects{}.jsonl", shard.suffix()))
}

/// Runs one stage into `<name>.jsonl` (and its rejects) in `dir`, logs what it did, and
/// returns that with every record of the ledger (earlier runs' included).
pub(crate) fn run_glan_stage(
    cfg: &GlanConfig,
    dir: &Path,
    name: &str,
    shard: Shard,
    g: &dyn Generator,
    items: Vec<pw_llm::stage::StageItem>,
    check: &dyn Fn(
        &pw_llm::stage::StageItem,
        &str,
    ) -> std::result::Result<serde_json::Value, String>,
) -> Result<(StageStats, Vec<StageRecord>)> {
    let out = ledger_path(dir, name, shard);
    let opts = StageOptions {
        retries: cfg.retries,
        label: format!("glan {name}"),
        ..Default::default()
    };
    let s = run_stage(
        g,
        items,
        check,
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
    Ok((s, Ledger::read_all(&out)?))
}

/// Items a stage of `dir` rejected after their retries (0 before it ran).
pub(crate) fn rejected_count(dir: &Path, stage: &str) -> Result<usize> {
    let p = rejects_path(dir, stage, Shard::ALL);
    Ok(if p.exists() {
        Ledger::open(&p)?.len()
    } else {
        0
    })
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
        let (s, records) = run_glan_stage(cfg, dir, name, shard, g, items, &default_check)?;
        stats.insert(name.to_string(), s);
        Ok(records)
    };
    let m = |name: &str| models.for_stage(name);
    let stop = |name: &str| until == Some(name);
    let subj = stage(
        "subjects",
        m("subjects"),
        pipeline::subject_items(&ds, cfg, seed),
    )?;
    if stop("subjects") {
        return Ok(stats);
    }
    let subjects = pipeline::subjects(&subj)?;
    let syl = stage(
        "syllabus",
        m("syllabus"),
        pipeline::syllabus_items(&subjects, cfg, seed),
    )?;
    if stop("syllabus") {
        return Ok(stats);
    }
    let hw = stage(
        "homework",
        m("homework"),
        pipeline::homework_items(&syl, cfg, seed)?,
    )?;
    if stop("homework") {
        return Ok(stats);
    }
    let answers = stage(
        "answers",
        m("answers"),
        pipeline::answer_items(&hw, cfg, seed),
    )?;
    if stop("answers") || !cfg.judge.enabled {
        return Ok(stats);
    }
    let calibration = if cfg.judge.calibrate && shard == Shard::ALL {
        Some(judge_hand_labelled(cfg, dir, m("judge"), seed)?)
    } else {
        None
    };
    let uninformative = match &calibration {
        Some(_) => hand_agreement(cfg, dir, &DetectorLimits::from(&cfg.filters), None)?
            .filter(|h| !h.judge_informative),
        None => None,
    };
    match uninformative {
        Some(h) if cfg.judge.skip_uninformative => tracing::info!(
            "judge: not judging the {} pairs: on the hand-labelled sample its kappa is {} \
             (judge.min_kappa {}), so it would remove nothing (judge.skip_uninformative = \
             false judges them anyway)",
            answers.len(),
            h.judge
                .kappa()
                .map_or_else(|| "undefined".to_string(), |k| format!("{k:.2}")),
            cfg.judge.min_kappa
        ),
        _ => {
            stage(
                "judge",
                m("judge"),
                pipeline::judge_items(&answers, cfg, seed),
            )?;
        }
    }
    if let Some(c) = calibration {
        stats.insert(CALIBRATION_STAGE.into(), c);
    }
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
    /// Answered pairs that pass every cheap detector (question form, repetition, echo,
    /// dictionary words).
    pub detectors_pass: usize,
    /// Answered pairs with a judge verdict, and those of them that pass it.
    pub judged: usize,
    pub judge_pass: usize,
    /// The detectors (first) against the judge (second), over the judged pairs.
    pub detectors_vs_judge: Agreement,
    /// The detectors and the judge against the hand-labelled sample, when it was judged.
    pub hand: Option<HandLabelledAgreement>,
    /// The judge removed pairs (on, and informative on the hand-labelled sample when judged).
    pub judge_filters: bool,
    /// Random kept pairs and removed pairs (chosen by a stable hash of their ids).
    pub samples_kept: Vec<Sample>,
    pub samples_removed: Vec<Sample>,
    /// Sizes of the SFT export's train and test splits.
    pub sft_train: usize,
    pub sft_test: usize,
}

/// Every quality signal of one answered pair (`quality.jsonl`), whichever filter removed it:
/// `filtered.jsonl` names only the first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Signals {
    pub id: String,
    /// The answer stopped at `answers.max_tokens`.
    pub truncated: bool,
    /// The first cheap detector that fails it, with the reason.
    pub detector: Option<String>,
    /// The judge's verdict passes `judge.min_score` (`None`: no verdict).
    pub judge_pass: Option<bool>,
    /// The judge's lowest score.
    pub judge_lowest: Option<u32>,
}

/// A pair shown in the report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    pub id: String,
    pub question: String,
    pub answer: String,
    /// Removed pairs: the filter and its reason.
    pub filter: Option<String>,
    pub reason: Option<String>,
}

/// How many samples of each kind the report shows.
pub const SAMPLES: usize = 5;

fn pick<T>(items: &[T], id: impl Fn(&T) -> &str, n: usize) -> Vec<&T> {
    let mut order: Vec<(u64, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, x)| (pw_core::seed::mix(pw_core::shard::stable_hash(id(x))), i))
        .collect();
    order.sort();
    order.into_iter().take(n).map(|(_, i)| &items[i]).collect()
}

/// The dictionary of the dictionary detector, when it is on.
pub fn dictionary(cfg: &GlanConfig) -> Result<Option<Dictionary>> {
    if cfg.filters.min_dictionary_share > 0.0 {
        Dictionary::load(&cfg.filters.dictionary).map(Some)
    } else {
        Ok(None)
    }
}

/// The judge's verdicts (ledger) and rejects of `dir`, by pair id.
fn judge_outcomes(cfg: &GlanConfig, dir: &Path) -> Result<BTreeMap<String, JudgeOutcome>> {
    let mut out = BTreeMap::new();
    if !cfg.judge.enabled {
        return Ok(out);
    }
    let rej = rejects_path(dir, "judge", Shard::ALL);
    if rej.exists() {
        let recs: Vec<pw_llm::stage::RejectRecord> = Ledger::read_all(&rej)?;
        for r in recs {
            out.insert(r.id, JudgeOutcome::Rejected(r.reason));
        }
    }
    let led = ledger_path(dir, "judge", Shard::ALL);
    if led.exists() {
        for (id, v) in read_verdicts(&led)? {
            out.insert(id, JudgeOutcome::Verdict(v));
        }
    }
    Ok(out)
}

/// The verdicts of a judge ledger, by pair id.
fn read_verdicts(path: &Path) -> Result<BTreeMap<String, Verdict>> {
    Ledger::read_all::<StageRecord>(path)?
        .into_iter()
        .map(|r| {
            let v = serde_json::from_value(r.output).map_err(|e| {
                Error::invalid(path, format!("record {}: not a verdict ({e})", r.id))
            })?;
            Ok((r.id, v))
        })
        .collect()
}

pub(crate) fn benchmarks(cfg: &GlanConfig, assets: &Path) -> Result<Vec<(PathBuf, String)>> {
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
    let dict = dictionary(cfg)?;
    let mut judged = judge_outcomes(cfg, dir)?;
    let limits = DetectorLimits::from(&cfg.filters);
    let hand = hand_agreement(cfg, dir, &limits, dict.as_ref())?;
    let judge_filters = cfg.judge.enabled && hand.as_ref().is_none_or(|h| h.judge_informative);
    let answered = pairs.len();
    let filters = Filters {
        cfg: &cfg.filters,
        bench: &bench,
        judge_min: cfg.judge.min_score,
    };
    let (mut detectors_pass, mut n_judged, mut judge_pass) = (0, 0, 0);
    let mut agreement = Agreement::default();
    let mut signals = Vec::new();
    let candidates: Vec<Candidate> = pairs
        .into_iter()
        .zip(&answers)
        .map(|(pair, rec)| {
            let judge = if cfg.judge.enabled {
                judged.remove(&pair.id).unwrap_or(JudgeOutcome::Missing)
            } else {
                JudgeOutcome::Off
            };
            let detector = detect(
                &limits,
                dict.as_ref(),
                &pair.messages[0].text(),
                &pair.messages[1].text(),
            );
            let passes = detector.is_none();
            detectors_pass += passes as usize;
            let truncated = rec.usage.completion_tokens >= cfg.answers.max_tokens as u64;
            let mut judge_pass_pair = None;
            if let JudgeOutcome::Verdict(v) = &judge {
                n_judged += 1;
                let ok = v.passes(cfg.judge.min_score);
                judge_pass += ok as usize;
                agreement.add(passes, ok);
                judge_pass_pair = Some(ok);
            }
            signals.push(Signals {
                id: pair.id.clone(),
                truncated,
                detector: detector.as_ref().map(|(f, r)| format!("{f}: {r}")),
                judge_pass: judge_pass_pair,
                judge_lowest: match &judge {
                    JudgeOutcome::Verdict(v) => Some(v.lowest()),
                    _ => None,
                },
            });
            Candidate {
                truncated,
                detector,
                judge: if judge_filters {
                    judge
                } else {
                    JudgeOutcome::Off
                },
                pair,
            }
        })
        .collect();
    pw_core::jsonl::write_jsonl(&dir.join(QUALITY_JSONL), &signals)?;
    let (kept, removed, counts) = dataset::filter(candidates, &filters);
    pw_core::jsonl::write_jsonl(&dir.join(DATASET_JSONL), &kept)?;
    dataset::write_parquet(&dir.join(DATASET_PARQUET), &kept)?;
    pw_core::jsonl::write_jsonl(&dir.join("filtered.jsonl"), &removed)?;
    let (sft_train, sft_test) = dataset::write_sft(&dir.join(SFT_DIR), &kept, cfg.sft_test_share)?;
    let samples_kept = pick(&kept, |p| &p.id, SAMPLES)
        .into_iter()
        .map(|p| Sample {
            id: p.id.clone(),
            question: p.messages[0].text().to_string(),
            answer: p.messages[1].text().to_string(),
            filter: None,
            reason: None,
        })
        .collect();
    let samples_removed = pick(&removed, |r| &r.id, SAMPLES)
        .into_iter()
        .map(|r| Sample {
            id: r.id.clone(),
            question: r.question.clone(),
            answer: r.answer.clone(),
            filter: Some(r.filter.clone()),
            reason: Some(r.reason.clone()),
        })
        .collect();
    let mut rejected = BTreeMap::new();
    for s in STAGES {
        rejected.insert(s.to_string(), rejected_count(dir, s)?);
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
        detectors_pass,
        judged: n_judged,
        judge_pass,
        detectors_vs_judge: agreement,
        hand,
        judge_filters,
        samples_kept,
        samples_removed,
        sft_train,
        sft_test,
    })
}

/// The detectors and the judge against the hand-labelled sample ([`crate::quality::hand_labelled`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HandLabelledAgreement {
    pub pairs: usize,
    /// Pairs labelled good.
    pub good: usize,
    /// The label (first) against the cheap detectors (second).
    pub detectors: Agreement,
    /// The label (first) against the judge (second), over the pairs with a verdict.
    pub judge: Agreement,
    /// Pairs whose judge reply was rejected after the retries.
    pub judge_rejected: usize,
    /// The judge's kappa with the labels reaches `judge.min_kappa`: it filters.
    pub judge_informative: bool,
}

const HAND_LEDGER: &str = "judge.hand.jsonl";

/// The stage-table name of the judge's run over the hand-labelled sample.
pub const CALIBRATION_STAGE: &str = "judge (hand-labelled)";

/// Judges the hand-labelled sample: a resumable stage of its own (`judge.hand.jsonl`).
pub fn judge_hand_labelled(
    cfg: &GlanConfig,
    dir: &Path,
    judge: &dyn Generator,
    seed: u64,
) -> Result<StageStats> {
    let items = crate::quality::hand_labelled()
        .iter()
        .map(|l| {
            pipeline::judge_item(
                &l.id,
                &l.discipline,
                &l.key_concepts,
                &l.question,
                &l.answer,
                cfg,
                seed,
            )
        })
        .collect();
    let opts = StageOptions {
        retries: cfg.retries,
        label: "glan judge (hand-labelled sample)".into(),
        ..Default::default()
    };
    run_stage(
        judge,
        items,
        &default_check,
        &dir.join(HAND_LEDGER),
        &dir.join("judge.hand.rejects.jsonl"),
        &opts,
    )
}

/// The judge and the detectors against the hand-labelled sample, from `judge.hand.jsonl`
/// (`None` when the sample was not judged).
pub fn hand_agreement(
    cfg: &GlanConfig,
    dir: &Path,
    limits: &DetectorLimits,
    dict: Option<&Dictionary>,
) -> Result<Option<HandLabelledAgreement>> {
    let out = dir.join(HAND_LEDGER);
    if !cfg.judge.enabled || !out.exists() {
        return Ok(None);
    }
    let sample = crate::quality::hand_labelled();
    let verdicts = read_verdicts(&out)?;
    let mut a = HandLabelledAgreement {
        pairs: sample.len(),
        ..Default::default()
    };
    for l in &sample {
        a.good += l.good as usize;
        let det = detect(limits, dict, &l.question, &l.answer).is_none();
        a.detectors.add(l.good, det);
        match verdicts.get(&l.id) {
            Some(v) => a.judge.add(l.good, v.passes(cfg.judge.min_score)),
            None => a.judge_rejected += 1,
        }
    }
    a.judge_informative = a.judge.kappa().unwrap_or(0.0) >= cfg.judge.min_kappa;
    Ok(Some(a))
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
                    // the judge stage may be off
                    if kind == "out" && s != "judge" {
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
/// Every answered pair's quality signals (see [`Signals`]).
pub const QUALITY_JSONL: &str = "quality.jsonl";
/// The SFT export's folder (`train.jsonl`, `test.jsonl`: `messages` only).
pub const SFT_DIR: &str = "sft";
