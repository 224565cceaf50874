//! The Code Needs Comments section of the report: the paper's claims decided from the
//! measured figures (by rules fixed before any run), comment density per corpus and language,
//! what augmentation did (with samples of commented and dropped functions), the variants'
//! NL-conditioned bits per byte, and validation curves.

use crate::config::CommentsConfig;
use crate::density::Counts;
use crate::evaluate::{PairedDiff, mean, paired_diff};
use crate::export::AugRecord;
use crate::reproduce::{AUGMENTED, FILTERED, HIGH, LOW, RAW, ROUND2, Round2};
use crate::run::AugmentSummary;
use pw_core::{Block, Claim, ClaimResult, Metrics, Plot, PlotKind, ReproOutcome, Series, Table};
use pw_llm::stage::RejectRecord;
use serde::{Deserialize, Serialize};

const CLAIM_DENSITY: &str = "density_varies";
const CLAIM_ALIGNED: &str = "dense_is_aligned";
const CLAIM_AUGMENT: &str = "augmentation_helps";
const CLAIM_FILTER: &str = "filter_helps";
const CLAIM_SELF: &str = "self_augmentation";

pub fn claims() -> Vec<Claim> {
    vec![
        Claim {
            id: CLAIM_DENSITY,
            text: "Comment density differs strongly between corpora and languages (the densest (corpus, language) cell with at least 20 files has at least 1.5x the density of the sparsest)",
            paper_figure: "density differs across pre-training corpora and correlates with their models' code ability (Fig. 1)",
        },
        Claim {
            id: CLAIM_ALIGNED,
            text: "Within one corpus the high-density part is better aligned: continued training on the high-density half gives lower NL-conditioned bits per byte on held-out functions than the low-density half (paired 95% interval below 0)",
            paper_figure: "higher comment density, better NL-code alignment (Sec. 2)",
        },
        Claim {
            id: CLAIM_AUGMENT,
            text: "Continued training on comment-augmented code beats the same training on the raw code on NL-conditioned code likelihood (held-out functions; paired 95% interval below 0)",
            paper_figure: "consistent HumanEval / MBPP gains on Llama 2, Code Llama and InternLM2 (Table 2)",
        },
        Claim {
            id: CLAIM_FILTER,
            text: "The implicit filter (dropping what the generator left uncommented) helps further",
            paper_figure: "filtered data improves over unfiltered (Table 3)",
        },
        Claim {
            id: CLAIM_SELF,
            text: "A second self-augmentation round (the model trained on round 1 comments round 2) helps again",
            paper_figure: "self-augmentation improves over the comment generator (Table 4)",
        },
    ]
}

/// Density of one (corpus, language) cell.
#[derive(Clone, Debug)]
pub struct DensityCell {
    pub corpus: String,
    pub lang: String,
    pub counts: Counts,
}

/// One continued-training variant, scored at its best validation step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub functions: usize,
    pub bytes: usize,
    pub best_step: usize,
    pub validation: f64,
    /// Bits per byte per test / HumanEval example (paired across variants).
    pub test: Vec<f64>,
    pub humaneval: Vec<f64>,
    pub validation_curve: Vec<(usize, f64)>,
    pub final_loss: f32,
}

pub struct Measured {
    pub cells: Vec<DensityCell>,
    pub corpus_files: usize,
    pub decontaminated_files: usize,
    pub pretrain_bytes: usize,
    pub augment: AugmentSummary,
    pub records: Vec<AugRecord>,
    pub rejects: Vec<RejectRecord>,
    pub base_validation: f64,
    pub base_test: Vec<f64>,
    pub base_humaneval: Vec<f64>,
    pub validation_n: usize,
    pub humaneval_total: usize,
    pub variants: Vec<Variant>,
    pub round2: Round2,
    pub cfg: CommentsConfig,
    pub stdlib: String,
    pub times: Vec<(String, f64)>,
}

fn diff_text(d: &PairedDiff) -> String {
    format!(
        "{:+.4} bits/byte [95% {:+.4}, {:+.4}], n = {}",
        d.mean, d.lo, d.hi, d.n
    )
}

/// The claim "a has fewer bits per byte than b" as a margin (b - a) against the half-width of
/// its 95% interval: held when the interval of (a - b) is below 0, not held when above, else
/// not resolved at this size.
fn resolution(d: &PairedDiff) -> (f64, f64) {
    (-d.mean, (d.hi - d.lo) / 2.0)
}

fn clip(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    if lines.len() <= n {
        s.to_string()
    } else {
        format!(
            "{}\n… ({} more lines)",
            lines[..n].join("\n"),
            lines.len() - n
        )
    }
}

pub fn outcome(m: &Measured) -> ReproOutcome {
    let mut metrics = Metrics::default();
    let mut blocks = Vec::new();
    let find = |name: &str| m.variants.iter().find(|v| v.name == name);

    // (a) density across corpora.
    let sized: Vec<&DensityCell> = m.cells.iter().filter(|c| c.counts.files >= 20).collect();
    let dens = |c: &DensityCell| c.counts.density_chars();
    let densest = sized.iter().max_by(|a, b| dens(a).total_cmp(&dens(b)));
    let sparsest = sized.iter().min_by(|a, b| dens(a).total_cmp(&dens(b)));
    let density_claim = match (densest, sparsest) {
        (Some(hi), Some(lo)) => {
            let ratio = dens(hi) / dens(lo).max(1e-9);
            metrics.set("comments.density_ratio", ratio);
            ClaimResult {
                id: CLAIM_DENSITY.into(),
                held: Some(ratio >= 1.5),
                measured: format!(
                    "densest {} / {} {:.1}% vs sparsest {} / {} {:.1}% of characters ({ratio:.2}x, {} cells of >= 20 files)",
                    hi.corpus,
                    hi.lang,
                    dens(hi) * 100.0,
                    lo.corpus,
                    lo.lang,
                    dens(lo) * 100.0,
                    sized.len()
                ),
                resolution: None,
            }
        }
        _ => ClaimResult {
            id: CLAIM_DENSITY.into(),
            held: None,
            measured: "no (corpus, language) cell with 20 files".into(),
            resolution: None,
        },
    };
    let compare = |id: &str, a: &str, b: &str, what: &str| -> ClaimResult {
        match (find(a), find(b)) {
            (Some(x), Some(y)) => {
                let d = paired_diff(&x.test, &y.test);
                let h = paired_diff(&x.humaneval, &y.humaneval);
                // A variant whose best validation step is 0 is the pre-trained base itself.
                let base_side = match (x.best_step, y.best_step) {
                    (0, 0) => {
                        "; both variants' best validation step is 0, so both are the pre-trained base: continued training on either set never lowered validation bits per byte (the bodies scored carry no comments)"
                    }
                    (0, _) => {
                        "; the first variant's best validation step is 0: it is the pre-trained base (training on its set never lowered validation bits per byte)"
                    }
                    (_, 0) => {
                        "; the second variant's best validation step is 0: it is the pre-trained base"
                    }
                    _ => "",
                };
                let (margin, resolves) = resolution(&d);
                ClaimResult::by_margin(
                    id,
                    format!(
                        "{what}: test {:.4} vs {:.4} bits/byte, difference {}; HumanEval {:.4} vs {:.4} ({}){base_side}",
                        mean(&x.test),
                        mean(&y.test),
                        diff_text(&d),
                        mean(&x.humaneval),
                        mean(&y.humaneval),
                        diff_text(&h)
                    ),
                    margin,
                    resolves,
                )
            }
            _ => ClaimResult {
                id: id.into(),
                held: None,
                measured: "a variant is missing".into(),
                resolution: None,
            },
        }
    };
    let claims = vec![
        density_claim,
        compare(CLAIM_ALIGNED, HIGH, LOW, "high- vs low-density half"),
        compare(CLAIM_AUGMENT, AUGMENTED, RAW, "commented vs raw"),
        compare(
            CLAIM_FILTER,
            FILTERED,
            AUGMENTED,
            "filtered vs all commented",
        ),
        if find(ROUND2).is_some() {
            compare(
                CLAIM_SELF,
                ROUND2,
                FILTERED,
                "round 2 (commented by the round-1 model) vs round 1 (commented by the generator), both filtered",
            )
        } else {
            ClaimResult {
                id: CLAIM_SELF.into(),
                held: Some(false),
                measured: format!(
                    "the round-1 model left all {} round-2 functions uncommented ({} rejected): nothing to train round 2 on",
                    m.round2.records.len(),
                    m.round2.rejects.len()
                ),
                resolution: None,
            }
        },
    ];

    blocks.push(Block::Heading(
        3,
        "Comment density of the corpora on this machine".into(),
    ));
    let mut t = Table::new([
        "corpus",
        "language",
        "files",
        "lines",
        "comment lines",
        "only",
        "mixed",
        "docstring",
        "density (lines)",
        "density (chars)",
    ]);
    for c in &m.cells {
        let k = &c.counts;
        t.row([
            c.corpus.clone(),
            c.lang.clone(),
            k.files.to_string(),
            k.lines.to_string(),
            k.comment.to_string(),
            k.comment_only.to_string(),
            k.mixed.to_string(),
            k.docstring.to_string(),
            format!("{:.1}%", k.density_lines() * 100.0),
            format!("{:.1}%", k.density_chars() * 100.0),
        ]);
    }
    blocks.push(Block::Table(t));

    let a = &m.augment;
    blocks.push(Block::Heading(
        3,
        "Line-constrained comment augmentation".into(),
    ));
    blocks.push(Block::Paragraph(format!(
        "{} training functions of the standard library ({}; {} files, {} left out for sharing a 13-word n-gram with HumanEval) were commented by {} ({}): {} accepted, {} rejected, the implicit filter kept {} and dropped {} left uncommented; {} comment lines inserted; mean comment density (characters) {:.1}% -> {:.1}%; {:.0} s. Every accepted output was checked: removing what the generator added gives back the original byte for byte.",
        a.units,
        m.stdlib,
        m.corpus_files,
        m.decontaminated_files,
        a.model,
        a.method,
        a.accepted,
        a.rejected,
        a.kept,
        a.dropped_by_filter,
        a.inserted_lines,
        a.mean_density_before * 100.0,
        a.mean_density_after * 100.0,
        a.wall_s
    )));
    metrics.set("comments.augment.accepted", a.accepted);
    metrics.set("comments.augment.kept", a.kept);
    metrics.set("comments.augment.inserted_lines", a.inserted_lines);
    // Two samples from different files, of typical (median) insertion counts.
    let mut kept: Vec<&AugRecord> = m.records.iter().filter(|r| r.kept).collect();
    kept.sort_by_key(|r| std::cmp::Reverse(r.inserted_lines));
    let mid: Vec<&AugRecord> = kept.iter().skip(kept.len() / 3).copied().collect();
    let second = mid
        .iter()
        .find(|r| mid.first().is_some_and(|f| f.path != r.path));
    for r in mid.first().into_iter().chain(second) {
        blocks.push(Block::Paragraph(format!(
            "A commented function ({}, {} lines inserted, density {:.1}% -> {:.1}%):",
            r.id,
            r.inserted_lines,
            r.density_before * 100.0,
            r.density_after * 100.0
        )));
        blocks.push(Block::Code(clip(&r.content, 30)));
    }
    if let Some(r) = m.records.iter().find(|r| !r.kept) {
        blocks.push(Block::Paragraph(format!(
            "A function the implicit filter dropped ({}: {}):",
            r.id,
            r.filter_reason.as_deref().unwrap_or("")
        )));
        blocks.push(Block::Code(clip(&r.content, 15)));
    }
    for r in m.rejects.iter().take(3) {
        blocks.push(Block::Paragraph(format!("Rejected {}: {}", r.id, r.reason)));
    }

    let r2 = &m.round2;
    let kept2: Vec<&AugRecord> = r2.records.iter().filter(|r| r.kept).collect();
    let mean_of =
        |f: fn(&AugRecord) -> f64| mean(&r2.records.iter().map(f).collect::<Vec<_>>()) * 100.0;
    blocks.push(Block::Heading(3, "Self-augmentation, round 2".into()));
    blocks.push(Block::Paragraph(format!(
        "The round-1 model (the byte-level code model after its continued training on the generator's commented + filtered functions, last step) commented {} other training functions under the same line constraint (its probability of `#` against the next code byte at each allowed line boundary, bias {:+}; greedy comment text up to the newline): {} accepted, {} rejected, the implicit filter kept {}; {} comment lines inserted; mean comment density (characters) {:.1}% -> {:.1}%; {:.0} s.",
        r2.records.len() + r2.rejects.len(),
        m.cfg.bias,
        r2.records.len(),
        r2.rejects.len(),
        kept2.len(),
        r2.records.iter().map(|r| r.inserted_lines).sum::<usize>(),
        mean_of(|r| r.density_before),
        mean_of(|r| r.density_after),
        r2.wall_s
    )));
    metrics.set("comments.round2.kept", kept2.len());
    metrics.set(
        "comments.round2.inserted_lines",
        r2.records.iter().map(|r| r.inserted_lines).sum::<usize>(),
    );
    let mut by_inserted = kept2.clone();
    by_inserted.sort_by_key(|r| std::cmp::Reverse(r.inserted_lines));
    for r in by_inserted.iter().skip(by_inserted.len() / 3).take(2) {
        blocks.push(Block::Paragraph(format!(
            "Commented in round 2 ({}, {} lines inserted):",
            r.id, r.inserted_lines
        )));
        blocks.push(Block::Code(clip(&r.content, 25)));
    }
    for r in r2.rejects.iter().take(2) {
        blocks.push(Block::Paragraph(format!(
            "Rejected in round 2 {}: {}",
            r.id, r.reason
        )));
    }

    blocks.push(Block::Heading(
        3,
        "Continued training at equal steps".into(),
    ));
    blocks.push(Block::Paragraph(format!(
        "A byte-level transformer (d {}, {} layers, {} heads, windows of {} bytes) was pre-trained for {} steps on {:.1} MB of raw training-split code, then trained on for {} steps (batch {}) on each variant; each is scored at its best validation step (NL-conditioned bits per byte of {} validation functions, read every {} steps) on {} test functions (body given signature + docstring, comments removed) and on the {} of {} HumanEval tasks that fit the window (canonical solution given the prompt). Before continued training: validation {:.4}, test {:.4}, HumanEval {:.4} bits/byte.",
        m.cfg.lm.d_model,
        m.cfg.lm.n_layers,
        m.cfg.lm.n_heads,
        m.cfg.lm.max_len,
        m.cfg.pretrain.steps,
        m.pretrain_bytes as f64 / 1e6,
        m.cfg.cont.steps,
        m.cfg.cont.batch,
        m.validation_n,
        m.cfg.eval_every,
        m.base_test.len(),
        m.base_humaneval.len(),
        m.humaneval_total,
        m.base_validation,
        mean(&m.base_test),
        mean(&m.base_humaneval)
    )));
    let mut t = Table::new([
        "variant",
        "functions",
        "MB",
        "best step",
        "validation bits/byte",
        "test bits/byte",
        "HumanEval bits/byte",
    ]);
    for v in &m.variants {
        t.row([
            v.name.clone(),
            v.functions.to_string(),
            format!("{:.3}", v.bytes as f64 / 1e6),
            v.best_step.to_string(),
            format!("{:.4}", v.validation),
            format!("{:.4}", mean(&v.test)),
            format!("{:.4}", mean(&v.humaneval)),
        ]);
        metrics.set(format!("comments.{}.test_bpb", v.name), mean(&v.test));
        metrics.set(
            format!("comments.{}.humaneval_bpb", v.name),
            mean(&v.humaneval),
        );
    }
    blocks.push(Block::Table(t));
    let series: Vec<Series> = m
        .variants
        .iter()
        .map(|v| {
            Series::new(
                v.name.clone(),
                v.validation_curve
                    .iter()
                    .map(|&(s, b)| (s as f64, b))
                    .collect(),
            )
        })
        .collect();
    blocks.push(Block::Plot(Plot {
        id: "comments_validation".into(),
        title: "Continued training: NL-conditioned bits per byte on validation".into(),
        x_label: "step".into(),
        y_label: "bits per byte".into(),
        kind: PlotKind::Line,
        series,
        log_y: false,
        x_labels: Vec::new(),
    }));
    blocks.push(Block::Table(pw_core::stopwatch::stage_table(&m.times)));
    ReproOutcome {
        claims,
        metrics,
        blocks,
    }
}
