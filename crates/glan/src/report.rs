//! The GLAN section of the report: the claims about the data (coverage, diversity, harder
//! two-session questions), the per-stage table, the dataset's filters and diversity figures.

use crate::claim::{ARM_GLAN, ARM_SELF_INSTRUCT, ClaimOutcome};
use crate::config::GlanConfig;
use crate::run::{self, DatasetSummary};
use crate::selfinstruct::SelfInstructData;
use crate::taxonomy::Taxonomy;
use pw_core::{Block, Claim, ClaimResult, Metrics, Plot, PlotKind, ReproOutcome, Series, Table};
use pw_llm::stage::StageStats;
use std::collections::BTreeMap;

pub const CLAIM_COVERAGE: &str = "coverage";
pub const CLAIM_DIVERSITY: &str = "diversity";
pub const CLAIM_HARDER: &str = "harder";
pub const CLAIM_CENTRAL: &str = "central";

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
        Claim {
            id: CLAIM_CENTRAL,
            text: "Instruction tuning on GLAN data alone improves a base model on disciplines it has no task-specific data for, more than the same budget of Self-Instruct data (in miniature: lower bits per byte of reference answers of held-out disciplines)",
            paper_figure: "Mistral-7B + 10M GLAN pairs beats seed-example-based models across MMLU disciplines, GSM8K, HumanEval (Sec. 3, Tables 1-2)",
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
        "prompt tok evaluated",
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
                s.prompt_evaluated.to_string(),
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
    } else if d.hand.as_ref().is_some_and(|h| !h.judge_informative) {
        quality.push_str(
            " The judge did not judge these pairs: on the hand-labelled sample it could not \
             tell good pairs from bad ones (kappa under judge.min_kappa), so it would have \
             removed nothing (judge.skip_uninformative = false judges them anyway).",
        );
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
    /// The central-claim experiment, when it is on: the Self-Instruct arm, the outcome (none
    /// when an arm had no kept pair) and GLAN's kept pairs.
    pub claim: Option<(&'a SelfInstructData, Option<&'a ClaimOutcome>, usize)>,
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
        claim,
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
    let mut claims = claims;
    claims.push(central_claim(claim));
    let mut metrics = Metrics::default();
    if let Some((si, c, _)) = claim {
        metrics.set("glan.claim", c);
        metrics.set("glan.self_instruct.removed", &si.removed);
    }
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
             (the judge's scores and reasons, when it judged the pairs), quality.jsonl (every pair's detector, \
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
             a 7B fine-tune on millions of pairs. The first three claims below are about \
             the data; the fourth is the central claim in miniature, with a byte-level model \
             tuned here (its own section below, when it ran)."
                .into(),
        ),
        Block::Table(stage_table(stats)),
        Block::Paragraph(prompt_reuse(stats)),
    ];
    blocks.extend(dataset_blocks(d));
    if let Some((si, Some(c), _)) = claim {
        blocks.extend(claim_blocks(cfg, si, c));
    }
    ReproOutcome {
        claims,
        metrics,
        blocks,
    }
}

/// What the stages' prompts cost: tokens sent, tokens the model evaluated (the rest came from
/// its KV cache: a syllabus or instruction shared with an earlier prompt), per completion token.
fn prompt_reuse(stats: &BTreeMap<String, StageStats>) -> String {
    let generated = stats.values().filter(|s| s.generated > 0);
    let (sent, evaluated, completion) = generated.fold((0, 0, 0), |(a, b, c), s| {
        (
            a + s.prompt_tokens,
            b + s.prompt_evaluated,
            c + s.completion_tokens,
        )
    });
    if sent == 0 || completion == 0 {
        return "No prompt was evaluated in this run (every answer came from the cache).".into();
    }
    let per = |x: u64| x as f64 / completion as f64;
    format!(
        "Prompt tokens: {sent} sent, {evaluated} evaluated by the model ({:.0}% reused from \
         its KV cache), i.e. {:.2} sent and {:.2} evaluated per completion token (stages \
         that generated; `prompt_evaluated` is 0 where the backend does not report it).",
        100.0 * sent.saturating_sub(evaluated) as f64 / sent as f64,
        per(sent),
        per(evaluated)
    )
}

fn bpb_diff(d: &pw_nn::bytelm::PairedDiff) -> String {
    format!("{:+.3} [{:+.3}, {:+.3}]", d.mean, d.lo, d.hi)
}

/// The central claim's verdict (rule in `claim.rs`, fixed before any run).
pub fn central_claim(
    claim: Option<(&SelfInstructData, Option<&ClaimOutcome>, usize)>,
) -> ClaimResult {
    let undecided = |why: String| ClaimResult {
        id: CLAIM_CENTRAL.into(),
        held: None,
        measured: why,
        resolution: None,
    };
    let c = match claim {
        None => return undecided("not run (claim.enabled = false)".into()),
        Some((si, None, glan)) => {
            return undecided(format!(
                "not run: an arm has no kept pair to tune on (GLAN {glan}, Self-Instruct {} of \
                 {} answered)",
                si.kept.len(),
                si.answered
            ));
        }
        Some((_, Some(c), _)) => c,
    };
    let spread = c.seed_sd.values().cloned().fold(0.0, f64::max);
    let g = pw_nn::bytelm::mean(&c.arm_mean(ARM_GLAN, "test"));
    let s = pw_nn::bytelm::mean(&c.arm_mean(ARM_SELF_INSTRUCT, "test"));
    ClaimResult {
        id: CLAIM_CENTRAL.into(),
        held: Some(c.held),
        measured: format!(
            "held-out test disciplines, bits per byte of reference answers: GLAN-tuned {g:.3}, \
             Self-Instruct-tuned {s:.3}, base {:.3}; GLAN - Self-Instruct {} (95% interval over \
             {} answers), GLAN - base {}; tuning-seed spread ±{spread:.3}; {} pairs per arm",
            c.base.mean("test"),
            bpb_diff(&c.glan_vs_self_instruct),
            c.glan_vs_self_instruct.n,
            bpb_diff(&c.glan_vs_base),
            c.pairs
        ),
        resolution: None,
    }
}

/// The experiment's section: the setup, the scores per split, the per-discipline test figures,
/// the validation curves, and Self-Instruct samples beside GLAN's.
pub fn claim_blocks(cfg: &GlanConfig, si: &SelfInstructData, c: &ClaimOutcome) -> Vec<Block> {
    let cc = &cfg.claim;
    let mut out = vec![
        Block::Heading(3, "The central claim in miniature".into()),
        Block::Paragraph(format!(
            "Base model: a byte-level transformer (d {} x {} layers, {} bytes of context) \
             pre-trained for {} steps of {} windows on {:.1} MB of WordNet noun glosses as \
             sentences ({}; {:.0} s). Each arm tunes it for {} steps of {} pairs (loss on the \
             answer bytes) on {} pairs: GLAN's kept pairs and Self-Instruct pairs (new tasks \
             each prompted from {} seed tasks, answered by the same model and settings, through \
             the same filters less question form and the judge), {} tuning seeds each; every run \
             keeps its checkpoint with the lowest bits per byte on the validation disciplines \
             (checked every {} steps). Tuning text: GLAN {} bytes, Self-Instruct {} bytes. \
             Self-Instruct: {} instructions rejected as copies of a seed or of the request \
             (ROUGE-L >= 0.7) after their retries; {} answered, {} kept (removed: {}).",
            cc.lm.d_model,
            cc.lm.n_layers,
            cc.lm.max_len,
            cc.pretrain.steps,
            cc.pretrain.batch,
            c.pretrain_bytes as f64 / 1e6,
            cc.corpus.display(),
            c.pretrain_wall_s,
            cc.sft.steps,
            cc.sft.batch,
            c.pairs,
            cc.self_instruct.examples,
            cc.seeds,
            cc.eval_every,
            c.tuning_bytes.get(ARM_GLAN).copied().unwrap_or(0),
            c.tuning_bytes.get(ARM_SELF_INSTRUCT).copied().unwrap_or(0),
            si.rejected,
            si.answered,
            si.kept.len(),
            if si.removed.is_empty() {
                "none".to_string()
            } else {
                si.removed
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )),
    ];
    let mut t = Table::new([
        "model",
        "seen disciplines (bits/byte)",
        "validation disciplines",
        "held-out test disciplines",
        "kept step (per seed)",
    ]);
    let row = |name: &str, seen: f64, val: f64, test: f64, steps: String| {
        vec![
            name.to_string(),
            format!("{seen:.3}"),
            format!("{val:.3}"),
            format!("{test:.3}"),
            steps,
        ]
    };
    t.rows.push(row(
        "base (pre-trained only)",
        c.base.mean("seen"),
        c.base.mean("validation"),
        c.base.mean("test"),
        "-".into(),
    ));
    for arm in [ARM_GLAN, ARM_SELF_INSTRUCT] {
        let runs: Vec<_> = c.runs.iter().filter(|r| r.arm == arm).collect();
        let m = |split: &str| pw_nn::bytelm::mean(&c.arm_mean(arm, split));
        t.rows.push(row(
            &format!(
                "{arm}-tuned (mean of {} seeds, sd ±{:.3})",
                runs.len(),
                c.seed_sd.get(arm).copied().unwrap_or(0.0)
            ),
            m("seen"),
            m("validation"),
            m("test"),
            runs.iter()
                .map(|r| r.kept_step.to_string())
                .collect::<Vec<_>>()
                .join(" / "),
        ));
    }
    out.push(Block::Table(t));
    out.push(Block::Paragraph(format!(
        "Paired differences on the held-out test disciplines (bits per byte, mean [95% \
         interval] over {} reference answers, seeds averaged; negative: the first is better): \
         GLAN - Self-Instruct {}, GLAN - base {}, Self-Instruct - base {}.",
        c.glan_vs_self_instruct.n,
        bpb_diff(&c.glan_vs_self_instruct),
        bpb_diff(&c.glan_vs_base),
        bpb_diff(&c.self_instruct_vs_base)
    )));
    // per test discipline
    let g = c.arm_mean(ARM_GLAN, "test");
    let s = c.arm_mean(ARM_SELF_INSTRUCT, "test");
    let b = c.base.by_split.get("test").cloned().unwrap_or_default();
    let mut by: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    for (i, d) in c.test_disciplines.iter().enumerate() {
        let e = by.entry(d.as_str()).or_default();
        if let (Some(x), Some(y), Some(z)) = (b.get(i), g.get(i), s.get(i)) {
            e[0].push(*x);
            e[1].push(*y);
            e[2].push(*z);
        }
    }
    let mut t = Table::new([
        "test discipline",
        "base",
        "GLAN-tuned",
        "Self-Instruct-tuned",
    ]);
    for (d, v) in &by {
        t.row([
            d.to_string(),
            format!("{:.3}", pw_nn::bytelm::mean(&v[0])),
            format!("{:.3}", pw_nn::bytelm::mean(&v[1])),
            format!("{:.3}", pw_nn::bytelm::mean(&v[2])),
        ]);
    }
    out.push(Block::Table(t));
    out.push(Block::Plot(Plot {
        id: "glan_claim_validation".into(),
        title: "Tuning: bits per byte of the validation disciplines' reference answers".into(),
        x_label: "tuning step".into(),
        y_label: "bits per byte".into(),
        kind: PlotKind::LinePoints,
        series: c
            .runs
            .iter()
            .map(|r| {
                Series::new(
                    format!("{} seed {}", r.arm, r.seed),
                    r.curve.iter().map(|&(x, y)| (x as f64, y)).collect(),
                )
            })
            .chain(std::iter::once(Series::new(
                "base model (no tuning)",
                vec![
                    (0.0, c.base.mean("validation")),
                    (cc.sft.steps as f64, c.base.mean("validation")),
                ],
            )))
            .collect(),
        log_y: false,
        x_labels: vec![],
    }));
    let mut shown: Vec<&crate::dataset::Pair> = si.kept.iter().collect();
    shown.sort_by_key(|p| pw_core::seed::mix(pw_core::seed::fnv1a(p.id.as_bytes())));
    let samples: Vec<String> = shown
        .into_iter()
        .take(3)
        .map(|p| {
            format!(
                "- `{}` -> `{}`",
                clip(&p.messages[0].text().replace(['\n', '`'], " "), 160),
                clip(&p.messages[1].text().replace(['\n', '`'], " "), 200)
            )
        })
        .collect();
    if !samples.is_empty() {
        out.push(Block::Paragraph(format!(
            "Three kept Self-Instruct pairs (chosen by a hash of their ids):\n{}",
            samples.join("\n")
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::{Scores, TuneRun};
    use pw_nn::bytelm::PairedDiff;

    fn scores(v: f64) -> Scores {
        Scores {
            by_split: ["seen", "validation", "test"]
                .iter()
                .map(|s| (s.to_string(), vec![v, v + 0.2]))
                .collect(),
        }
    }

    fn run(arm: &str, seed: usize, v: f64) -> TuneRun {
        TuneRun {
            arm: arm.into(),
            seed,
            curve: vec![(5, v + 0.1), (10, v)],
            kept_step: 10,
            scores: scores(v),
            wall_s: 1.0,
        }
    }

    #[test]
    fn the_central_claim_reads_its_figures_and_says_why_when_it_did_not_run() {
        let diff = |m: f64| PairedDiff {
            mean: m,
            lo: m - 0.05,
            hi: m + 0.05,
            n: 2,
        };
        let c = ClaimOutcome {
            pairs: 35,
            available: Default::default(),
            tuning_bytes: [
                (ARM_GLAN.to_string(), 100),
                (ARM_SELF_INSTRUCT.to_string(), 90),
            ]
            .into(),
            pretrain_bytes: 3_000_000,
            pretrain_wall_s: 200.0,
            base: scores(3.0),
            runs: vec![
                run(ARM_GLAN, 0, 2.0),
                run(ARM_GLAN, 1, 2.2),
                run(ARM_SELF_INSTRUCT, 0, 2.5),
            ],
            glan_vs_self_instruct: diff(-0.4),
            glan_vs_base: diff(-0.9),
            self_instruct_vs_base: diff(-0.5),
            seed_sd: [
                (ARM_GLAN.to_string(), 0.14),
                (ARM_SELF_INSTRUCT.to_string(), 0.0),
            ]
            .into(),
            held: true,
            test_disciplines: vec!["Geology".into(), "Statistics".into()],
        };
        let si = SelfInstructData {
            answered: 60,
            ..Default::default()
        };
        let r = central_claim(Some((&si, Some(&c), 35)));
        assert_eq!(r.held, Some(true));
        // GLAN's test mean over seeds: (2.0 + 2.2) / 2 per reference, then +0.2 on the second
        assert!(r.measured.contains("GLAN-tuned 2.200"), "{}", r.measured);
        assert!(
            r.measured.contains("Self-Instruct-tuned 2.600"),
            "{}",
            r.measured
        );
        assert!(r.measured.contains("base 3.100") && r.measured.contains("±0.140"));
        let r = central_claim(Some((&si, None, 0)));
        assert_eq!(r.held, None);
        assert!(
            r.measured.contains("GLAN 0, Self-Instruct 0 of 60"),
            "{}",
            r.measured
        );
        assert_eq!(central_claim(None).held, None);

        let blocks = claim_blocks(&GlanConfig::default(), &si, &c);
        let tables: Vec<&Table> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::Table(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(tables[0].rows.len(), 3, "base and the two arms");
        assert_eq!(tables[0].rows[1][4], "10 / 10", "kept step per seed");
        assert_eq!(tables[1].rows.len(), 2, "one row per test discipline");
        assert!(
            blocks
                .iter()
                .any(|b| matches!(b, Block::Plot(p) if p.series.len() == 4)),
            "a curve per run and the base model's level"
        );
    }
}
