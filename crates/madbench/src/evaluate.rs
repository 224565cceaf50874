//! The runner and the scoring: every (item, variant) asked of a model through a resumable
//! ledger (pw-llm's stage: a killed run resumes without losing or repeating an answer), the
//! answers judged (exact judge from the premise, and/or any Generator as LLM judge through a
//! second ledger), and accuracies per model, category and variant with Wilson intervals.

use crate::data::{BenchItem, Category};
use crate::judge::{self, Accuracy, Variant, Verdict};
use crate::prompts::REMEDY;
use pw_core::{Ledger, Result};
use pw_llm::stage::{StageItem, StageOptions, StageRecord, StageStats, run_stage};
use pw_llm::{ChatMessage, Content, ContentPart, GenParams, Generator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The text a model reads for an item under a variant; `None` when the item has no neutral
/// prompt (the official release).
pub fn variant_text(item: &BenchItem, v: Variant) -> Option<String> {
    let base = match v {
        Variant::Deceptive | Variant::Remedy => item.prompt.clone(),
        Variant::Neutral | Variant::NeutralRemedy => item.neutral_prompt.clone()?,
    };
    Some(if v.remedy() {
        format!("{REMEDY}\n\n{base}")
    } else {
        base
    })
}

/// The ledger id of an answer.
pub fn answer_id(item: &str, v: Variant) -> String {
    format!("{item}/{}", v.tag())
}

/// One answer as the results JSONL holds it: the official notebook's fields (`question_id`,
/// `prompt`, `text`) and ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerRow {
    pub question_id: String,
    pub prompt: String,
    pub text: String,
    pub item: String,
    pub variant: Variant,
    pub category: Category,
    pub image: String,
    pub model: String,
}

/// Options of [`answer`].
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    pub variants: Vec<Variant>,
    pub max_tokens: u32,
    pub stage: StageOptions,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions {
            variants: Variant::ALL.to_vec(),
            max_tokens: 64,
            stage: StageOptions {
                retries: 0,
                chunk: 32,
                label: "answering".into(),
                ..StageOptions::default()
            },
        }
    }
}

/// What [`answer`] did and where the files are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerSummary {
    pub stats: StageStats,
    pub ledger: PathBuf,
    pub rejects: PathBuf,
    pub results: PathBuf,
    /// The answers, in item then variant order (what results.jsonl holds).
    pub rows: Vec<AnswerRow>,
}

/// Asks `model` every item under every variant it has (resumable: `dir/answers.jsonl`), then
/// writes `dir/results.jsonl` from the ledger in item order.
pub fn answer(
    model: &dyn Generator,
    items: &[BenchItem],
    dir: &Path,
    opts: &AnswerOptions,
) -> Result<AnswerSummary> {
    std::fs::create_dir_all(dir).map_err(|e| pw_core::Error::io(dir, e))?;
    let mut stage_items = Vec::new();
    for it in items {
        for &v in &opts.variants {
            let Some(text) = variant_text(it, v) else {
                continue;
            };
            stage_items.push(StageItem {
                id: answer_id(&it.id, v),
                messages: vec![ChatMessage::user(Content::Parts(vec![
                    ContentPart::image(it.image.clone()),
                    ContentPart::text(text),
                ]))],
                params: GenParams {
                    seed: Some(0),
                    ..GenParams::greedy(opts.max_tokens)
                },
                meta: serde_json::json!({"item": it.id, "variant": v.tag()}),
            });
        }
    }
    let ledger = dir.join("answers.jsonl");
    let rejects = dir.join("answer-rejects.jsonl");
    let stats = run_stage(
        model,
        stage_items,
        &pw_llm::stage::default_check,
        &ledger,
        &rejects,
        &opts.stage,
    )?;
    let rows = results(items, &ledger, &model.model())?;
    let results = dir.join("results.jsonl");
    pw_core::jsonl::write_jsonl(&results, &rows)?;
    Ok(AnswerSummary {
        stats,
        ledger,
        rejects,
        results,
        rows,
    })
}

/// The answers of a ledger as result rows, in item then variant order.
pub fn results(items: &[BenchItem], ledger: &Path, model: &str) -> Result<Vec<AnswerRow>> {
    let recs: Vec<StageRecord> = Ledger::read_all(ledger)?;
    let by_id: BTreeMap<&str, &StageRecord> = recs.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut rows = Vec::new();
    for it in items {
        for v in Variant::ALL {
            let id = answer_id(&it.id, v);
            if let (Some(r), Some(prompt)) = (by_id.get(id.as_str()), variant_text(it, v)) {
                rows.push(AnswerRow {
                    question_id: id,
                    prompt,
                    text: r.text.clone(),
                    item: it.id.clone(),
                    variant: v,
                    category: it.category,
                    image: it.image.clone(),
                    model: if r.model.is_empty() {
                        model.to_string()
                    } else {
                        r.model.clone()
                    },
                });
            }
        }
    }
    Ok(rows)
}

/// A judged answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Judged {
    pub question_id: String,
    pub item: String,
    pub variant: Variant,
    pub category: Category,
    pub text: String,
    /// From the premise's facts (items the builder made).
    pub exact: Option<Verdict>,
    /// From the LLM judge, with its reason.
    pub llm: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Options of [`judge_answers`].
#[derive(Clone)]
pub struct JudgeOptions<'a> {
    pub judge: Option<&'a dyn Generator>,
    /// Give the LLM judge the image (vision judges) or the truth sentence (text judges).
    pub with_image: bool,
    /// Judge only these answer ids with the LLM (`None`: all).
    pub only: Option<std::collections::HashSet<String>>,
    pub stage: StageOptions,
}

/// Judges `rows`: exact verdicts where the item has a premise; LLM verdicts through a
/// resumable ledger `dir/judgments.jsonl` when a judge is given. A reply that is neither
/// Correct nor Incorrect is kept as [`Verdict::Error`] (the notebook's errors).
pub fn judge_answers(
    items: &[BenchItem],
    rows: &[AnswerRow],
    dir: &Path,
    opts: &JudgeOptions,
) -> Result<Vec<Judged>> {
    let by_item: BTreeMap<&str, &BenchItem> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut llm: BTreeMap<String, (Verdict, String)> = BTreeMap::new();
    if let Some(j) = opts.judge {
        std::fs::create_dir_all(dir).map_err(|e| pw_core::Error::io(dir, e))?;
        let mut stage_items = Vec::new();
        for r in rows {
            if opts
                .only
                .as_ref()
                .is_some_and(|o| !o.contains(&r.question_id))
            {
                continue;
            }
            let it = by_item[r.item.as_str()];
            stage_items.push(StageItem {
                id: r.question_id.clone(),
                messages: judge::judge_messages(
                    r.category,
                    r.variant,
                    // The judge sees the question without the remedy paragraph.
                    &variant_text(
                        it,
                        if r.variant.deceptive() {
                            Variant::Deceptive
                        } else {
                            Variant::Neutral
                        },
                    )
                    .unwrap_or_default(),
                    &r.text,
                    opts.with_image.then_some(it.image.as_str()),
                    if opts.with_image {
                        None
                    } else {
                        it.truth.as_deref()
                    },
                ),
                params: GenParams {
                    json_schema: Some(judge::verdict_schema()),
                    seed: Some(0),
                    ..GenParams::greedy(160)
                },
                meta: serde_json::json!({"item": r.item, "variant": r.variant.tag()}),
            });
        }
        // Any reply is stored; what it says is read afterwards (an unreadable one is an
        // error verdict, as in the notebook, not a retry).
        let keep_text = |_: &StageItem, t: &str| Ok(serde_json::Value::String(t.to_string()));
        let ledger = dir.join("judgments.jsonl");
        run_stage(
            j,
            stage_items,
            &keep_text,
            &ledger,
            &dir.join("judge-rejects.jsonl"),
            &opts.stage,
        )?;
        for r in Ledger::read_all::<StageRecord>(&ledger)? {
            let (v, reason) = judge::parse_verdict(&r.text);
            llm.insert(r.id, (v, reason));
        }
    }
    Ok(rows
        .iter()
        .map(|r| {
            let it = by_item[r.item.as_str()];
            let (l, reason) = match llm.get(&r.question_id) {
                Some((v, why)) => (Some(*v), Some(why.clone())),
                None => (None, None),
            };
            Judged {
                question_id: r.question_id.clone(),
                item: r.item.clone(),
                variant: r.variant,
                category: r.category,
                text: r.text.clone(),
                exact: it.premise.as_ref().map(|p| judge::exact(p, &r.text)),
                llm: l,
                reason,
            }
        })
        .collect())
}

/// Accuracies of judged rows per (category, variant), by the exact judge when `exact`, by the
/// LLM judge otherwise.
pub fn accuracy_table(judged: &[Judged], exact: bool) -> BTreeMap<(Category, Variant), Accuracy> {
    let mut t: BTreeMap<(Category, Variant), Accuracy> = BTreeMap::new();
    for j in judged {
        let v = if exact { j.exact } else { j.llm };
        if let Some(v) = v {
            t.entry((j.category, j.variant)).or_default().add(v);
        }
    }
    t
}

/// Accuracy over every category of one variant.
pub fn pooled(t: &BTreeMap<(Category, Variant), Accuracy>, v: Variant) -> Accuracy {
    let mut a = Accuracy::default();
    for ((_, w), x) in t {
        if *w == v {
            a.correct += x.correct;
            a.incorrect += x.incorrect;
            a.errors += x.errors;
        }
    }
    a
}

/// Per item, whether variant `a` and variant `b` were judged correct (exact judge): the pairs
/// a paired difference is computed from.
pub fn paired(judged: &[Judged], a: Variant, b: Variant, cats: &[Category]) -> Vec<(bool, bool)> {
    let mut by: BTreeMap<&str, (Option<bool>, Option<bool>)> = BTreeMap::new();
    for j in judged {
        if !cats.contains(&j.category) {
            continue;
        }
        let Some(v) = j.exact else { continue };
        let e = by.entry(j.item.as_str()).or_default();
        if j.variant == a {
            e.0 = Some(v.correct());
        }
        if j.variant == b {
            e.1 = Some(v.correct());
        }
    }
    by.into_values()
        .filter_map(|(x, y)| Some((x?, y?)))
        .collect()
}

/// Mean of (b - a) over paired binary outcomes with a normal 95% interval.
pub fn paired_diff(pairs: &[(bool, bool)]) -> (f64, f64, f64) {
    let n = pairs.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let d: Vec<f64> = pairs
        .iter()
        .map(|&(a, b)| b as u8 as f64 - a as u8 as f64)
        .collect();
    let m = d.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let half = 1.96 * (var / n as f64).sqrt();
    (m, m - half, m + half)
}

/// How often the LLM judge agrees with the exact judge (rows with both), and Cohen's kappa.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Agreement {
    pub rows: usize,
    pub agree: usize,
    /// LLM judge replies that said neither Correct nor Incorrect.
    pub errors: usize,
    pub kappa: f64,
}

pub fn agreement(judged: &[Judged]) -> Agreement {
    let (mut n, mut agree, mut errors) = (0, 0, 0);
    let (mut e1, mut l1) = (0usize, 0usize);
    for j in judged {
        if let (Some(e), Some(l)) = (j.exact, j.llm) {
            n += 1;
            if l == Verdict::Error {
                errors += 1;
            }
            if e.correct() == l.correct() {
                agree += 1;
            }
            e1 += e.correct() as usize;
            l1 += l.correct() as usize;
        }
    }
    let po = agree as f64 / n.max(1) as f64;
    let (pe1, pl1) = (e1 as f64 / n.max(1) as f64, l1 as f64 / n.max(1) as f64);
    let pe = pe1 * pl1 + (1.0 - pe1) * (1.0 - pl1);
    let kappa = if pe < 1.0 {
        (po - pe) / (1.0 - pe)
    } else {
        0.0
    };
    Agreement {
        rows: n,
        agree,
        errors,
        kappa,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_difference_of_identical_outcomes_is_zero() {
        let p = vec![(true, true), (false, false), (true, true)];
        assert_eq!(paired_diff(&p), (0.0, 0.0, 0.0));
        let q = vec![(false, true); 10];
        assert_eq!(paired_diff(&q).0, 1.0);
    }
}
