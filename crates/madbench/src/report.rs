//! The reproduction's claims, tables, plots and samples, from the measured answers only.

use crate::config::MadBenchConfig;
use crate::data::{BenchItem, Category};
use crate::evaluate::{Judged, accuracy_table, agreement, paired, paired_diff, pooled};
use crate::judge::{Accuracy, Variant, wilson};
use crate::prompts::BuildSummary;
use pw_core::plot::{Plot, PlotKind, Series};
use pw_core::report::{Block, Table};
use pw_core::{Claim, ClaimResult, Metrics, ReproOutcome};
use pw_llm::stage::StageStats;

pub fn claims() -> Vec<Claim> {
    vec![
        Claim {
            id: "deceptive_collapse",
            text: "Deceptive prompts collapse accuracy: models that answer the paired neutral \
                   prompts well fall far below on the deceptive ones. Held when, for every \
                   untuned model, neutral minus deceptive accuracy (paired, 95% interval) is \
                   above zero.",
            paper_figure: "GPT-4V 75.02%, every other model 5-35% (Table 1)",
        },
        Claim {
            id: "remedy",
            text: "The remedy paragraph raises accuracy on deceptive prompts and costs little \
                   on neutral ones. Held when, for the describe-then-answer model (the one \
                   with an instruction LLM that can follow it), deceptive + remedy minus \
                   deceptive is above zero (paired 95% interval) and neutral + remedy is at \
                   most 10 points below neutral.",
            paper_figure: "up to about double the accuracy on deceptive prompts (Section 5)",
        },
        Claim {
            id: "robust_tuning_does_not_transfer",
            text: "Robustness tuning on one kind of deception does not carry over to the \
                   others. Held when tuning raises the tuned category's deceptive accuracy \
                   (paired 95% interval above zero) while the other five categories' pooled \
                   gain stays below 10 points (upper end of its interval); undecided when \
                   the tuning did not raise its own category.",
            paper_figure: "LRV-Instruction and LLaVA-RLHF, tuned for robustness, are not \
                           effective (Table 1)",
        },
    ]
}

/// One model's answers, judged.
pub struct ModelResult {
    pub name: String,
    pub tag: String,
    pub judged: Vec<Judged>,
    pub stats: StageStats,
}

pub struct Measured {
    pub cfg: MadBenchConfig,
    pub build_test: BuildSummary,
    pub build_train: BuildSummary,
    pub train_examples: usize,
    pub vocab: usize,
    pub validation_curve: Vec<(usize, f64)>,
    pub models: Vec<ModelResult>,
    pub answerer: String,
    pub judge: String,
    pub test_items: Vec<BenchItem>,
    pub times: Vec<(String, f64)>,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn ci(a: &Accuracy) -> String {
    let (lo, hi) = wilson(a.correct, a.rows());
    format!(
        "{} [{:.0}, {:.0}]",
        pct(a.over_all()),
        100.0 * lo,
        100.0 * hi
    )
}

fn diff(d: (f64, f64, f64)) -> String {
    format!(
        "{:+.1} pts [{:+.1}, {:+.1}]",
        100.0 * d.0,
        100.0 * d.1,
        100.0 * d.2
    )
}

pub fn outcome(m: &Measured) -> ReproOutcome {
    let mut metrics = Metrics::default();
    let mut blocks = Vec::new();
    let find = |tag: &str| m.models.iter().find(|r| r.tag == tag);
    let all = Category::PAPER.to_vec();

    blocks.push(Block::Paragraph(format!(
        "Synthetic scenes (64x64: objects with a shape, colour and size on one of five scene \
         backgrounds; a third have a poster showing an object that is not really there) are \
         written as COCO files; the builder turns the test split's {} images into {} \
         deceptive prompts, each with a paired neutral prompt and a truth sentence. A tiny \
         VLM (ViT over 8x8 patches, {}-layer decoder, {} words) learns {} truthful QA pairs \
         only (as the paper's open models learned ordinary instruction data); its step is \
         chosen on validation neutral accuracy. The describe-then-answer model lets the tiny \
         VLM describe the image and an instruction LLM ({}) answer from the description. The \
         exact judge decides from the annotations; an LLM judge ({}) grades a sample.",
        m.build_test.images,
        m.build_test.items,
        m.cfg.vlm.n_layers,
        m.vocab,
        m.train_examples,
        file_name(&m.answerer),
        file_name(&m.judge),
    )));

    // Accuracy per model and variant.
    let mut t = Table::new([
        "model",
        "items",
        "neutral",
        "deceptive",
        "deceptive + remedy",
        "neutral + remedy",
    ]);
    for r in &m.models {
        let table = accuracy_table(&r.judged, true);
        let items = r
            .judged
            .iter()
            .map(|j| j.item.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let mut row = vec![r.name.clone(), items.to_string()];
        for v in Variant::ALL {
            let a = pooled(&table, v);
            metrics.set(
                format!("madbench.{}.{}.accuracy", r.tag, v.tag()),
                a.over_all(),
            );
            row.push(ci(&a));
        }
        t.row(row);
    }
    blocks.push(Block::Heading(
        3,
        "Accuracy (exact judge, 95% Wilson intervals)".into(),
    ));
    blocks.push(Block::Table(t));

    for r in &m.models {
        blocks.extend(model_blocks(&r.name, &r.tag, &r.judged, true));
    }

    // Claim (a).
    let untuned: Vec<&ModelResult> = m
        .models
        .iter()
        .filter(|r| r.tag != "tiny-vlm-robust")
        .collect();
    // each model's paired difference against the half-width of its 95% interval; the claim
    // is decided by the weakest model
    let mut a_margins: Vec<(f64, f64)> = Vec::new();
    let mut a_text = Vec::new();
    for r in &untuned {
        let d = paired_diff(&paired(
            &r.judged,
            Variant::Deceptive,
            Variant::Neutral,
            &all,
        ));
        metrics.set(format!("madbench.{}.neutral_minus_deceptive", r.tag), d.0);
        let table = accuracy_table(&r.judged, true);
        a_text.push(format!(
            "{}: neutral {} vs deceptive {}, difference {}",
            r.name,
            pct(pooled(&table, Variant::Neutral).over_all()),
            pct(pooled(&table, Variant::Deceptive).over_all()),
            diff(d)
        ));
        a_margins.push((d.0, d.0 - d.1));
    }

    // Claim (b).
    let (b_res, b_text) = match find("describe-then-answer") {
        Some(r) => {
            let up = paired_diff(&paired(
                &r.judged,
                Variant::Deceptive,
                Variant::Remedy,
                &all,
            ));
            let cost = paired_diff(&paired(
                &r.judged,
                Variant::NeutralRemedy,
                Variant::Neutral,
                &all,
            ));
            metrics.set("madbench.remedy_gain", up.0);
            metrics.set("madbench.remedy_neutral_cost", cost.0);
            let tiny = find("tiny-vlm").map(|t| {
                paired_diff(&paired(
                    &t.judged,
                    Variant::Deceptive,
                    Variant::Remedy,
                    &all,
                ))
            });
            (
                // the remedy's gain against its interval, provided it costs the neutral
                // prompts at most 10 points
                Some((up.0, up.0 - up.1, cost.0 <= 0.10)),
                format!(
                    "{}: deceptive + remedy minus deceptive {}; neutral minus neutral + remedy \
                     {}{}",
                    r.name,
                    diff(up),
                    diff(cost),
                    tiny.map(|d| format!(
                        "; the tiny VLM alone (the remedy's words are new to it): {}",
                        diff(d)
                    ))
                    .unwrap_or_default()
                ),
            )
        }
        None => (
            None,
            "the describe-then-answer model did not run".to_string(),
        ),
    };

    // Claim (c).
    let rc = m.cfg.robust_category;
    let (c_held, c_text) = match (find("tiny-vlm"), find("tiny-vlm-robust")) {
        (Some(base), Some(tuned)) => {
            let gain = |cats: &[Category]| {
                let a: std::collections::BTreeMap<&str, bool> =
                    deceptive_outcomes(&base.judged, cats);
                let b = deceptive_outcomes(&tuned.judged, cats);
                let pairs: Vec<(bool, bool)> = a
                    .iter()
                    .filter_map(|(k, x)| b.get(k).map(|y| (*x, *y)))
                    .collect();
                paired_diff(&pairs)
            };
            let own = gain(&[rc]);
            let others: Vec<Category> = all.iter().copied().filter(|c| *c != rc).collect();
            let rest = gain(&others);
            metrics.set("madbench.robust_gain_tuned", own.0);
            metrics.set("madbench.robust_gain_others", rest.0);
            let held = if own.1 <= 0.0 {
                None
            } else {
                Some(rest.2 < 0.10)
            };
            (
                held,
                format!(
                    "tuned on {}: its deceptive accuracy {}; the other five categories {}",
                    rc.name(),
                    diff(own),
                    diff(rest)
                ),
            )
        }
        _ => (None, "the tuned model did not run".into()),
    };

    // Judge validity.
    if let Some(r) = find("describe-then-answer") {
        let ag = agreement(&r.judged);
        metrics.set(
            "madbench.judge_agreement",
            ag.agree as f64 / ag.rows.max(1) as f64,
        );
        metrics.set("madbench.judge_kappa", ag.kappa);
        let llm = accuracy_table(&r.judged, false);
        let mut over = Accuracy::default();
        for a in llm.values() {
            over.correct += a.correct;
            over.incorrect += a.incorrect;
            over.errors += a.errors;
        }
        let mut t = Table::new([
            "judged answers",
            "agree with exact",
            "Cohen's kappa",
            "judge errors",
            "LLM-judge accuracy (all rows)",
            "(decided rows)",
        ]);
        t.row([
            ag.rows.to_string(),
            pct(ag.agree as f64 / ag.rows.max(1) as f64),
            format!("{:.2}", ag.kappa),
            ag.errors.to_string(),
            pct(over.over_all()),
            pct(over.over_decided()),
        ]);
        blocks.push(Block::Heading(
            3,
            "Judge validity: the LLM judge against the exact judge".into(),
        ));
        blocks.push(Block::Table(t));
    }

    // What the builder made.
    let mut t = Table::new([
        "category",
        "test items",
        "test images without support",
        "train items",
    ]);
    for c in &all {
        t.row([
            c.name().to_string(),
            m.build_test
                .per_category
                .get(c.name())
                .copied()
                .unwrap_or(0)
                .to_string(),
            m.build_test
                .unsupported
                .get(c.name())
                .copied()
                .unwrap_or(0)
                .to_string(),
            m.build_train
                .per_category
                .get(c.name())
                .copied()
                .unwrap_or(0)
                .to_string(),
        ]);
    }
    blocks.push(Block::Heading(3, "Built prompts".into()));
    blocks.push(Block::Table(t));

    // Samples: the first test item of each category, with every model's answers.
    blocks.push(Block::Heading(3, "Samples".into()));
    let mut text = String::new();
    for c in &all {
        let Some(it) = m
            .test_items
            .iter()
            .find(|i| {
                i.category == *c
                    && m.models
                        .iter()
                        .all(|r| r.judged.iter().any(|j| j.item == i.id))
            })
            .or_else(|| m.test_items.iter().find(|i| i.category == *c))
        else {
            continue;
        };
        text.push_str(&format!(
            "[{}] image {}\n  deceptive: {}\n  neutral:   {}\n  truth:     {}\n",
            c.name(),
            file_name(&it.image),
            it.prompt,
            it.neutral_prompt.as_deref().unwrap_or("-"),
            it.truth.as_deref().unwrap_or("-"),
        ));
        for r in &m.models {
            for j in r.judged.iter().filter(|j| j.item == it.id) {
                if matches!(
                    j.variant,
                    Variant::Neutral | Variant::Deceptive | Variant::Remedy
                ) {
                    text.push_str(&format!(
                        "  {} / {}: {:?} [{}]\n",
                        r.tag,
                        j.variant.name(),
                        j.text,
                        j.exact.map(|v| format!("{v:?}")).unwrap_or_default()
                    ));
                }
            }
        }
        text.push('\n');
    }
    blocks.push(Block::Code(text));

    if !m.validation_curve.is_empty() {
        let best = m
            .validation_curve
            .iter()
            .copied()
            .fold((0, f64::MIN), |b, x| if x.1 > b.1 { x } else { b });
        blocks.push(Block::Paragraph(format!(
            "Tiny VLM validation neutral accuracy by step: {}; kept step {} ({}).",
            m.validation_curve
                .iter()
                .map(|(s, a)| format!("{s}: {}", pct(*a)))
                .collect::<Vec<_>>()
                .join(", "),
            best.0,
            pct(best.1)
        )));
    }
    blocks.push(Block::Table(pw_core::stopwatch::stage_table(&m.times)));
    for r in &m.models {
        metrics.set(format!("madbench.{}.answers", r.tag), r.judged.len());
        metrics.set(format!("madbench.{}.wall_s", r.tag), r.stats.wall_s);
    }

    ReproOutcome {
        claims: vec![
            match (!a_margins.is_empty()).then(|| pw_core::weakest_margin(a_margins)) {
                Some((margin, half)) => {
                    ClaimResult::by_margin("deceptive_collapse", a_text.join("; "), margin, half)
                }
                None => ClaimResult {
                    id: "deceptive_collapse".into(),
                    held: None,
                    measured: "no untuned model ran".into(),
                    resolution: None,
                },
            },
            match b_res {
                Some((margin, half, cheap)) => {
                    let mut c = ClaimResult::by_margin("remedy", b_text, margin, half);
                    if !cheap {
                        c.held = Some(false);
                    }
                    c
                }
                None => ClaimResult {
                    id: "remedy".into(),
                    held: None,
                    measured: b_text,
                    resolution: None,
                },
            },
            ClaimResult {
                id: "robust_tuning_does_not_transfer".into(),
                held: c_held,
                measured: c_text,
                resolution: None,
            },
        ],
        metrics,
        blocks,
    }
}

fn deceptive_outcomes<'a>(
    judged: &'a [Judged],
    cats: &[Category],
) -> std::collections::BTreeMap<&'a str, bool> {
    judged
        .iter()
        .filter(|j| j.variant == Variant::Deceptive && cats.contains(&j.category))
        .filter_map(|j| Some((j.item.as_str(), j.exact?.correct())))
        .collect()
}

fn file_name(p: &str) -> String {
    std::path::Path::new(p)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.to_string())
}

/// A model's accuracy by category and variant (exact judge, or the LLM judge with both of the
/// notebook's accuracies), and its bar chart.
pub fn model_blocks(name: &str, tag: &str, judged: &[Judged], exact: bool) -> Vec<Block> {
    let all = Category::PAPER
        .iter()
        .copied()
        .chain([Category::TextRecognition])
        .filter(|c| judged.iter().any(|j| j.category == *c))
        .collect::<Vec<_>>();
    let table = accuracy_table(judged, exact);
    let variants: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|v| table.keys().any(|k| k.1 == *v))
        .collect();
    let mut headers = vec!["category".to_string()];
    headers.extend(variants.iter().map(|v| v.name().to_string()));
    let mut t = Table::new(headers);
    for c in &all {
        let mut row = vec![c.name().to_string()];
        for v in &variants {
            row.push(
                table
                    .get(&(*c, *v))
                    .map(|a| {
                        if exact {
                            ci(a)
                        } else {
                            format!("{} (decided {})", ci(a), pct(a.over_decided()))
                        }
                    })
                    .unwrap_or_else(|| "-".into()),
            );
        }
        t.row(row);
    }
    let judge = if exact { "exact judge" } else { "LLM judge" };
    let plot = Plot {
        id: format!("madbench-{tag}-{}", if exact { "exact" } else { "llm" }),
        title: format!("{name}: accuracy by category"),
        x_label: "category".into(),
        y_label: format!("accuracy ({judge})"),
        kind: PlotKind::Bars,
        series: variants
            .iter()
            .map(|v| {
                Series::new(
                    v.name(),
                    all.iter()
                        .enumerate()
                        .filter_map(|(i, c)| table.get(&(*c, *v)).map(|a| (i as f64, a.over_all())))
                        .collect(),
                )
            })
            .collect(),
        log_y: false,
        x_labels: all
            .iter()
            .map(|c| c.name().split('_').next().unwrap_or("").to_string())
            .collect(),
    };
    vec![
        Block::Heading(
            3,
            format!("{name} by category ({judge}, 95% Wilson intervals)"),
        ),
        Block::Table(t),
        Block::Plot(plot),
    ]
}
