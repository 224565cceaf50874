//! The GLAN section of the report: the claims about the data (coverage, diversity, harder
//! two-session questions), the per-stage table, the dataset's filters and diversity figures.

use crate::config::GlanConfig;
use crate::run::{self, DatasetSummary};
use crate::taxonomy::Taxonomy;
use pw_core::{Block, Claim, ClaimResult, Metrics, Plot, PlotKind, ReproOutcome, Series, Table};
use pw_llm::stage::StageStats;
use std::collections::BTreeMap;

pub const CLAIM_COVERAGE: &str = "coverage";
pub const CLAIM_DIVERSITY: &str = "diversity";
pub const CLAIM_HARDER: &str = "harder";

/// Decided before any run: at most this share of pairs removed as exact or near duplicates.
pub const MAX_DUPLICATE_SHARE: f64 = 0.10;

/// The paper's claims about the data, in its words.
pub fn claims() -> Vec<Claim> {
    vec![
        Claim {
            id: CLAIM_COVERAGE,
            text: "From the taxonomy alone (no seed examples), every discipline yields instruction-answer pairs",
            paper_figure: "126 disciplines -> 10M pairs across all of them (Sec. 3.1)",
        },
        Claim {
            id: CLAIM_DIVERSITY,
            text: "Sampling sessions and 1-5 key concepts per question gives distinct questions: under 10% removed as exact or near duplicates",
            paper_figure: "qualitative: diversity from the syllabus sampling (Sec. 2.4); threshold ours, set before running",
        },
        Claim {
            id: CLAIM_HARDER,
            text: "Questions combining two class sessions are more elaborate than one-session questions (longer on average)",
            paper_figure: "qualitative: two sessions give harder questions (Sec. 2.4)",
        },
    ]
}

pub fn stage_table(stats: &BTreeMap<String, StageStats>) -> Table {
    let mut t = Table::new([
        "stage",
        "items",
        "done",
        "rejected",
        "earlier runs",
        "generated",
        "cached",
        "retries",
        "prompt tok",
        "completion tok",
        "wall s",
        "tokens/s",
    ]);
    for name in run::STAGES.iter().chain([&run::CALIBRATION_STAGE]) {
        if let Some(s) = stats.get(*name) {
            t.row([
                name.to_string(),
                s.items.to_string(),
                s.done.to_string(),
                s.rejected.to_string(),
                s.already_done.to_string(),
                s.generated.to_string(),
                s.cached.to_string(),
                s.retries.to_string(),
                s.prompt_tokens.to_string(),
                s.completion_tokens.to_string(),
                format!("{:.1}", s.wall_s),
                format!("{:.1}", s.tokens_per_s()),
            ]);
        }
    }
    t
}

pub fn dataset_blocks(d: &DatasetSummary) -> Vec<Block> {
    let mut f = Table::new(["filter", "removed"]);
    for (k, v) in &d.removed {
        f.row([k.clone(), v.to_string()]);
    }
    let mut r = Table::new(["stage", "rejected after retries"]);
    for (k, v) in &d.rejected {
        r.row([k.clone(), v.to_string()]);
    }
    let per: Vec<(f64, f64)> = d
        .per_discipline
        .values()
        .enumerate()
        .map(|(i, &n)| (i as f64, n as f64))
        .collect();
    let names: Vec<String> = d
        .per_discipline
        .keys()
        .enumerate()
        .map(|(i, k)| format!("{}: {k}", i + 1))
        .collect();
    let share = |n: usize, of: usize| {
        if of == 0 {
            "n/a".to_string()
        } else {
            format!("{:.0}%", 100.0 * n as f64 / of as f64)
        }
    };
    let mut quality = format!(
        "Quality: {} of {} answered pairs ({}) pass the cheap detectors (question form, \
         repetition, echo of the question, dictionary words).",
        d.detectors_pass,
        d.answered,
        share(d.detectors_pass, d.answered)
    );
    if d.judged > 0 {
        quality.push_str(&format!(
            " {} of {} judged pairs ({}) pass the judge (every criterion at least the \
             configured score). Detectors against the judge: {}.{}",
            d.judge_pass,
            d.judged,
            share(d.judge_pass, d.judged),
            d.detectors_vs_judge.describe(),
            if d.judge_filters {
                ""
            } else {
                " The judge removed nothing: on the hand-labelled sample it could not tell good \
                 pairs from bad ones (kappa under judge.min_kappa); its verdicts are in \
                 judge.jsonl."
            }
        ));
    }
    quality.push_str(&format!(
        " SFT export (sft/train.jsonl, sft/test.jsonl; `messages` only, for TRL and \
         axolotl): {} train, {} test.",
        d.sft_train, d.sft_test
    ));
    let mut blocks = vec![
        Block::Paragraph(format!(
            "{} answered pairs, {} kept after the filters, from {} disciplines. Diversity of the \
             kept questions: distinct-2 {:.3}, distinct-3 {:.3}, mean pairwise word-set Jaccard \
             {:.3}. Mean question length by difficulty (words): {}.",
            d.answered,
            d.kept,
            d.disciplines,
            d.distinct_2,
            d.distinct_3,
            d.mean_pairwise_similarity,
            d.mean_question_words
                .iter()
                .map(|(k, v)| format!("{k} {v:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Block::Paragraph(quality),
    ];
    if let Some(h) = &d.hand {
        blocks.push(hand_labelled_block(h));
    }
    blocks.extend([
        Block::Table(f),
        Block::Table(r),
        Block::Plot(Plot {
            id: "glan_per_discipline".into(),
            title: "GLAN pairs per discipline".into(),
            x_label: "discipline (numbered as listed below)".into(),
            y_label: "kept pairs".into(),
            kind: PlotKind::Bars,
            series: vec![Series::new("kept pairs", per)],
            log_y: false,
            x_labels: (1..=d.per_discipline.len())
                .map(|i| i.to_string())
                .collect(),
        }),
        Block::Paragraph(format!("Disciplines: {}.", names.join("; "))),
    ]);
    if !d.samples_kept.is_empty() {
        blocks.push(Block::Paragraph(format!(
            "{} kept pairs, chosen at random (by a hash of their ids):",
            d.samples_kept.len()
        )));
        blocks.push(Block::Code(samples_text(&d.samples_kept)));
    }
    if !d.samples_removed.is_empty() {
        blocks.push(Block::Paragraph(format!(
            "{} removed pairs, chosen the same way, with the filter that removed them:",
            d.samples_removed.len()
        )));
        blocks.push(Block::Code(samples_text(&d.samples_removed)));
    }
    blocks
}

/// Longest answer text shown per sample (characters).
const SAMPLE_CHARS: usize = 600;

fn clip(s: &str, n: usize) -> String {
    let t = s.trim();
    if t.chars().count() <= n {
        t.to_string()
    } else {
        format!("{} [...]", t.chars().take(n).collect::<String>().trim_end())
    }
}

fn samples_text(samples: &[run::Sample]) -> String {
    samples
        .iter()
        .map(|s| {
            let mut t = format!("[{}]", s.id);
            if let (Some(f), Some(r)) = (&s.filter, &s.reason) {
                t.push_str(&format!(" removed by {f}: {}", clip(r, 200)));
            }
            format!(
                "{t}\nuser: {}\nassistant: {}",
                clip(&s.question, SAMPLE_CHARS),
                clip(&s.answer, SAMPLE_CHARS)
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The paragraph on the hand-labelled sample.
pub fn hand_labelled_block(h: &run::HandLabelledAgreement) -> Block {
    Block::Paragraph(format!(
        "Hand-labelled sample ({} pairs shipped in crates/glan/data/hand_labelled.jsonl, {} \
         labelled good: hand-written reference pairs; real SmolLM2 and Qwen outputs and \
         hand-written failures labelled bad). The cheap detectors pass {} of the good and {} \
         of the bad; against the labels: {}. The judge passes {} of the good and {} of the \
         bad; against the labels: {}{}. {}",
        h.pairs,
        h.good,
        h.detectors.both_pass,
        h.detectors.second_only,
        h.detectors.describe(),
        h.judge.both_pass,
        h.judge.second_only,
        h.judge.describe(),
        if h.judge_rejected > 0 {
            format!("; {} replies rejected after retries", h.judge_rejected)
        } else {
            String::new()
        },
        if h.judge_informative {
            "The judge filters."
        } else {
            "Under judge.min_kappa: the judge does not filter."
        }
    ))
}

/// What one reproduction run measured.
pub struct Measured<'a> {
    pub cfg: &'a GlanConfig,
    pub tax: &'a Taxonomy,
    /// Disciplines taken from the taxonomy.
    pub n_disc: usize,
    pub stats: &'a BTreeMap<String, StageStats>,
    pub dataset: &'a DatasetSummary,
    pub wall: f64,
    /// (question model, answer model).
    pub models: (String, String),
    /// Response-cache (hits, misses), when a cache was used.
    pub cache: Option<(u64, u64)>,
}

/// Claims, metrics and the report section of a reproduction run.
pub fn outcome(m: Measured) -> ReproOutcome {
    let Measured {
        cfg,
        tax,
        n_disc,
        stats,
        dataset: d,
        wall,
        models,
        cache,
    } = m;
    let completion: u64 = stats.values().map(|s| s.completion_tokens).sum();
    let gen_wall: f64 = stats.values().map(|s| s.wall_s).sum();

    let covered = d.per_discipline.len();
    let dup = d.removed.get("exact_duplicate").copied().unwrap_or(0)
        + d.removed.get("near_duplicate").copied().unwrap_or(0);
    let dup_share = if d.answered > 0 {
        dup as f64 / d.answered as f64
    } else {
        1.0
    };
    let (hard, basic) = (
        d.mean_question_words.get("hard").copied(),
        d.mean_question_words.get("basic").copied(),
    );
    let claims = vec![
        ClaimResult {
            id: CLAIM_COVERAGE.into(),
            held: Some(covered == n_disc && d.kept > 0),
            measured: format!(
                "{covered} of {n_disc} disciplines have kept pairs ({} pairs)",
                d.kept
            ),
            resolution: None,
        },
        ClaimResult {
            id: CLAIM_DIVERSITY.into(),
            held: Some(d.answered > 0 && dup_share < MAX_DUPLICATE_SHARE),
            measured: format!(
                "{dup} of {} pairs removed as duplicates ({:.1}%); distinct-2 {:.3}",
                d.answered,
                100.0 * dup_share,
                d.distinct_2
            ),
            resolution: None,
        },
        ClaimResult {
            id: CLAIM_HARDER.into(),
            held: match (hard, basic) {
                (Some(h), Some(b)) => Some(h > b),
                _ => None,
            },
            measured: format!(
                "mean question words: two-session {}, one-session {}",
                hard.map_or("n/a".into(), |h| format!("{h:.1}")),
                basic.map_or("n/a".into(), |b| format!("{b:.1}"))
            ),
            resolution: None,
        },
    ];
    let mut metrics = Metrics::default();
    metrics.set("glan.stages", stats);
    metrics.set("glan.dataset", d);
    metrics.set("glan.wall_s", wall);
    metrics.set("glan.completion_tokens", completion);
    metrics.set("glan.tokens_per_s", completion as f64 / gen_wall.max(1e-9));
    if let Some((h, m)) = cache {
        metrics.set("glan.cache", serde_json::json!({"hits": h, "misses": m}));
    }
    let mut blocks = vec![
        Block::Paragraph(format!(
            "Model {} (answers: {}; judge: the question model unless configured). Wall {wall:.1} s; {completion} completion tokens \
             generated at {:.1} tokens/s over the generation stages. Outputs: glan.jsonl and \
             glan.parquet (chat `messages` + provenance), sft/ (the SFT export), \
             filtered.jsonl (removed pairs with the filter, reason and texts), judge.jsonl \
             (the judge's scores and reasons), quality.jsonl (every pair's detector, \
             truncation and judge signals), <stage>.rejects.jsonl (items that failed their schema \
             after {} retries), taxonomy.toml.",
            models.0,
            models.1,
            completion as f64 / gen_wall.max(1e-9),
            cfg.retries
        )),
        Block::Paragraph(format!(
            "Taxonomy: {} (the reproduction's reviewed taxonomy unless overridden; the \
             paper's humans reviewed the model's taxonomy, and `paperworks glan taxonomy` \
             writes the model's own proposal for review).",
            tax.disciplines()
                .iter()
                .take(n_disc)
                .map(|d| format!("{} > {} > {}", d.field, d.subfield, d.name))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Block::Paragraph(
            "Not reproduced: the paper's downstream result (Mistral-7B fine-tuned on 10M \
             GLAN pairs: GSM8K 43.4 -> 80.8, HumanEval 28.0 -> 48.8, MMLU 62.3 -> 62.9) needs \
             a 7B fine-tune on millions of pairs. The claims below are about the data."
                .into(),
        ),
        Block::Table(stage_table(stats)),
    ];
    blocks.extend(dataset_blocks(d));
    ReproOutcome {
        claims,
        metrics,
        blocks,
    }
}
