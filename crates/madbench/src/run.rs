//! The real-use entry points the CLI calls: render scenes, build a benchmark from COCO
//! annotations, run any model on a benchmark, judge the answers, and report.

use crate::data::{BenchItem, Category, Coco, ScenesSummary, read_captions};
use crate::evaluate::{AnswerOptions, AnswerRow, AnswerSummary, JudgeOptions, Judged};
use crate::judge::Variant;
use crate::model::{TinyVlm, VlmConfig, Vocab};
use crate::models::TinyVlmGenerator;
use crate::prompts::{BuildOptions, BuildSummary};
use pw_core::{Error, IoContext, Report, Result};
use pw_llm::Generator;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `madbench scenes`: `n` synthetic scenes as PNGs plus COCO instances and captions files.
pub fn scenes(dir: &Path, n: usize, seed: u64) -> Result<ScenesSummary> {
    crate::data::write_scenes(dir, n, 1, seed)
}

/// What `madbench build` reads.
#[derive(Debug, Clone)]
pub struct BuildInput {
    pub coco: PathBuf,
    pub captions: Option<PathBuf>,
    pub attributes: Option<PathBuf>,
    pub images: PathBuf,
    pub out: PathBuf,
    pub categories: Vec<Category>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildOutput {
    pub summary: BuildSummary,
    pub out: PathBuf,
}

/// `madbench build`: deceptive + neutral prompts with their truth, one JSONL row per item
/// (written atomically: a failed build leaves any earlier file as it was).
pub fn build(input: &BuildInput) -> Result<BuildOutput> {
    let mut coco = Coco::read(&input.coco)?;
    if let Some(a) = &input.attributes {
        coco.merge_attributes(a)?;
    }
    let caps = input.captions.as_deref().map(read_captions).transpose()?;
    let (items, summary) = crate::prompts::build(
        &coco,
        caps.as_ref(),
        &input.images,
        &BuildOptions {
            categories: input.categories.clone(),
            seed: input.seed,
            source: input.coco.display().to_string(),
        },
    )?;
    if items.is_empty() {
        return Err(Error::invalid(
            &input.coco,
            "no prompt could be built (no image has the annotations any category needs)",
        ));
    }
    // Image paths relative to the bench file's folder when the images are below it (the
    // pair moves together), absolute otherwise: either way `read_bench` finds them.
    let base = input
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).at(base)?;
    let mut items = items;
    for it in &mut items {
        let abs = std::fs::canonicalize(&it.image).at(&it.image)?;
        it.image = match abs.strip_prefix(&base) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => abs.display().to_string(),
        };
    }
    pw_core::jsonl::write_jsonl(&input.out, &items)?;
    Ok(BuildOutput {
        summary,
        out: input.out.clone(),
    })
}

/// A tiny VLM trained by the reproduction: `dir` holds `model.safetensors`, `vocab.json` and
/// `config.json` (the reproduction's `madbench/vlm`; the tuned one shares the vocabulary and
/// config of `vlm` beside it).
pub fn load_tiny(dir: &Path) -> Result<TinyVlmGenerator> {
    let find = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
        let q = dir.with_file_name("vlm").join(name);
        if q.is_file() {
            return Ok(q);
        }
        Err(Error::invalid(
            dir,
            format!(
                "not a tiny VLM folder: no {name} (train one with `paperworks reproduce --only madbench`)"
            ),
        ))
    };
    let vocab_path = find("vocab.json")?;
    let vocab: Vocab = serde_json::from_slice(&std::fs::read(&vocab_path).at(&vocab_path)?)
        .map_err(|e| Error::invalid(&vocab_path, format!("not a vocabulary: {e}")))?;
    let vocab = vocab.reindex();
    let cfg_path = find("config.json")?;
    let cfg: VlmConfig = serde_json::from_slice(&std::fs::read(&cfg_path).at(&cfg_path)?)
        .map_err(|e| Error::invalid(&cfg_path, format!("not a tiny VLM config: {e}")))?;
    cfg.validate().map_err(|e| Error::invalid(&cfg_path, e))?;
    let device = pw_nn::train_device(false)?;
    let weights = dir.join("model.safetensors");
    let model = pw_nn::checkpoint::load_module(TinyVlm::new(&cfg, vocab.len(), &device), &weights)?;
    let name = format!(
        "tiny-vlm:{}",
        dir.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    TinyVlmGenerator::new(name, cfg, vocab, model)
}

/// `madbench run`: every item under every variant it has, through the resumable ledger.
pub fn run(
    model: &dyn Generator,
    items: &[BenchItem],
    out: &Path,
    variants: &[Variant],
    max_tokens: u32,
) -> Result<AnswerSummary> {
    crate::evaluate::answer(
        model,
        items,
        out,
        &AnswerOptions {
            variants: variants.to_vec(),
            max_tokens,
            ..AnswerOptions::default()
        },
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct JudgeOutput {
    pub judged: PathBuf,
    pub rows: usize,
    /// Exact-judge and LLM-judge accuracies over all rows, when available.
    pub exact_accuracy: Option<f64>,
    pub llm_accuracy: Option<f64>,
    pub llm_accuracy_decided: Option<f64>,
    pub agreement: Option<f64>,
}

/// `madbench judge`: reads `results.jsonl` of a run, judges every answer (exactly where the
/// items carry premises; by `judge` when given) and writes `judged.jsonl` beside it.
pub fn judge(
    items: &[BenchItem],
    results: &Path,
    judge: Option<&dyn Generator>,
    with_image: bool,
    out_dir: &Path,
) -> Result<JudgeOutput> {
    let rows: Vec<AnswerRow> = pw_core::jsonl::read_jsonl(results, "a results row")?;
    let known: std::collections::HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    if let Some(r) = rows.iter().find(|r| !known.contains(r.item.as_str())) {
        return Err(Error::invalid(
            results,
            format!(
                "answer {} is for item {}, which the benchmark does not have",
                r.question_id, r.item
            ),
        ));
    }
    let judged = crate::evaluate::judge_answers(
        items,
        &rows,
        out_dir,
        &JudgeOptions {
            judge,
            with_image,
            only: None,
            stage: pw_llm::stage::StageOptions {
                retries: 0,
                chunk: 16,
                label: "judging".into(),
                ..Default::default()
            },
        },
    )?;
    let path = out_dir.join("judged.jsonl");
    pw_core::jsonl::write_jsonl(&path, &judged)?;
    let acc = |exact: bool| {
        let t = crate::evaluate::accuracy_table(&judged, exact);
        let mut a = crate::judge::Accuracy::default();
        for x in t.values() {
            a.correct += x.correct;
            a.incorrect += x.incorrect;
            a.errors += x.errors;
        }
        (a.rows() > 0).then_some(a)
    };
    let ag = crate::evaluate::agreement(&judged);
    Ok(JudgeOutput {
        judged: path,
        rows: judged.len(),
        exact_accuracy: acc(true).map(|a| a.over_all()),
        llm_accuracy: acc(false).map(|a| a.over_all()),
        llm_accuracy_decided: acc(false).map(|a| a.over_decided()),
        agreement: (ag.rows > 0).then(|| ag.agree as f64 / ag.rows as f64),
    })
}

/// `madbench report`: accuracy tables and bar charts of judged files (one per model) into
/// `out/report.md` and `report.html`.
pub fn report(judged_files: &[PathBuf], out: &Path) -> Result<PathBuf> {
    let mut rep = Report::new("MAD-Bench results");
    for f in judged_files {
        let judged: Vec<Judged> = pw_core::jsonl::read_jsonl(f, "a judged row")?;
        let name = f
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| f.display().to_string());
        let tag: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        if judged.iter().any(|j| j.exact.is_some()) {
            rep.extend(crate::report::model_blocks(&name, &tag, &judged, true));
        }
        if judged.iter().any(|j| j.llm.is_some()) {
            rep.extend(crate::report::model_blocks(&name, &tag, &judged, false));
        }
    }
    std::fs::create_dir_all(out).at(out)?;
    rep.write(out)?;
    Ok(out.join("report.md"))
}
