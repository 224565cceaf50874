//! The final dataset: question + answer pairs as OpenAI/TRL chat `messages` with provenance,
//! the quality filters (length, language, exact and near duplicates, benchmark contamination),
//! and the JSONL / Parquet writers.

use crate::config::FilterConfig;
use crate::quality::Verdict;
use pw_core::{Error, Result};
use pw_data::dedup::{Contamination, Duplicate, NearDuplicates, words};
use pw_llm::ChatMessage;
use pw_llm::stage::StageRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One instruction-answer pair. The Parquet file has the same columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub id: String,
    pub messages: Vec<ChatMessage>,
    pub field: String,
    pub subfield: String,
    pub discipline: String,
    pub subject: String,
    pub level: String,
    pub difficulty: String,
    pub sessions: Vec<String>,
    pub key_concepts: Vec<String>,
    pub question_model: String,
    pub answer_model: String,
    pub question_seed: Option<u64>,
    pub answer_seed: Option<u64>,
}

/// Pairs from the answers stage's records (the question and its provenance travel in `meta`).
pub fn pairs(answers: &[StageRecord]) -> Vec<Pair> {
    answers
        .iter()
        .map(|r| {
            let m = &r.meta;
            let hw = &m["homework"];
            let subj = &hw["subject"];
            let d = &subj["discipline"];
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            let list = |v: &serde_json::Value| {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            };
            Pair {
                id: r.id.clone(),
                messages: vec![
                    ChatMessage::user(s(&m["question"])),
                    ChatMessage::assistant(r.text.trim()),
                ],
                field: s(&d["field"]),
                subfield: s(&d["subfield"]),
                discipline: s(&d["name"]),
                subject: s(&subj["name"]),
                level: s(&subj["level"]),
                difficulty: s(&hw["difficulty"]),
                sessions: list(&hw["sessions"]),
                key_concepts: list(&hw["key_concepts"]),
                question_model: s(&m["question_model"]),
                answer_model: r.model.clone(),
                question_seed: m["question_seed"].as_u64(),
                answer_seed: r.seed,
            }
        })
        .collect()
}

/// A pair the filters removed, and why (with its texts, so `filtered.jsonl` shows what went).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Removed {
    pub id: String,
    pub filter: String,
    pub reason: String,
    #[serde(default)]
    pub question: String,
    #[serde(default)]
    pub answer: String,
}

/// What the judge stage said of a pair.
#[derive(Clone, Debug, PartialEq)]
pub enum JudgeOutcome {
    /// The judge stage is off.
    Off,
    Verdict(Verdict),
    /// The judge's replies did not parse or validate after the retries: the reject's reason.
    Rejected(String),
    /// No verdict and no reject (the stage has not run on this pair).
    Missing,
}

/// An answered pair with what the filters need beyond its texts.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub pair: Pair,
    /// The answer stopped at `answers.max_tokens`.
    pub truncated: bool,
    /// The first cheap detector that fails it, with the reason (see [`detect`]).
    pub detector: Option<(&'static str, String)>,
    pub judge: JudgeOutcome,
}

/// The filters' settings and the resources they read.
pub struct Filters<'a> {
    pub cfg: &'a FilterConfig,
    pub bench: &'a Contamination,
    /// `judge.min_score`.
    pub judge_min: u32,
}

/// The filters in the order they apply; `filtered.jsonl` names them.
pub const FILTERS: [&str; 11] = [
    "length",
    "language",
    "truncated",
    "question_form",
    "repetition",
    "echo",
    "dictionary",
    "contamination",
    "judge",
    "exact_duplicate",
    "near_duplicate",
];

/// Loads the benchmark texts (`field` of each JSONL line; .gz allowed) into one index.
pub fn contamination_index(
    benchmarks: &[(std::path::PathBuf, String)],
    n: usize,
) -> Result<Contamination> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for (path, field) in benchmarks {
        let raw = pw_data::read_maybe_gz(path)?;
        let text = String::from_utf8(raw).map_err(|_| Error::invalid(path, "not UTF-8"))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::corrupt(path, i + 1, format!("not JSON ({e})")))?;
            let t = v
                .get(field)
                .and_then(|x| x.as_str())
                .ok_or_else(|| Error::corrupt(path, i + 1, format!("no string field {field:?}")))?;
            let name = path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            texts.push((format!("{name}:{}", i + 1), t.to_string()));
        }
    }
    Ok(Contamination::new(
        texts.iter().map(|(id, t)| (id.clone(), t.as_str())),
        n,
    ))
}

fn ascii_letter_share(text: &str) -> f64 {
    let (mut letters, mut ascii) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        if c.is_ascii() {
            ascii += 1;
        }
    }
    if letters == 0 {
        0.0
    } else {
        ascii as f64 / letters as f64
    }
}

/// Applies the filters in the order of [`FILTERS`]; returns the kept pairs, the removed ones
/// with reasons, and counts per filter. The judge comes after the cheap filters and before the
/// duplicate check, so a pair the judge removes does not make a later, better copy a duplicate.
pub fn filter(
    candidates: Vec<Candidate>,
    f: &Filters,
) -> (Vec<Pair>, Vec<Removed>, BTreeMap<String, usize>) {
    let cfg = f.cfg;
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    let mut counts: BTreeMap<String, usize> = FILTERS.iter().map(|k| (k.to_string(), 0)).collect();
    let mut dups = NearDuplicates::new(cfg.near_duplicate);
    for c in candidates {
        let p = c.pair;
        let q = &p.messages[0].text();
        let a = &p.messages[1].text();
        let (qw, aw) = (words(q).len(), words(a).len());
        let verdict: Option<(&str, String)> = if qw < cfg.min_question_words
            || qw > cfg.max_question_words
            || aw < cfg.min_answer_words
            || aw > cfg.max_answer_words
        {
            Some(("length", format!("question {qw} words, answer {aw} words")))
        } else if ascii_letter_share(q) < cfg.min_ascii_letters
            || ascii_letter_share(a) < cfg.min_ascii_letters
        {
            Some(("language", "too few ASCII letters for English".into()))
        } else if cfg.drop_truncated && c.truncated {
            Some((
                "truncated",
                "the answer stopped at answers.max_tokens".into(),
            ))
        } else if let Some(d) = c.detector {
            Some(d)
        } else if let Some(b) = f.bench.matches(q).or_else(|| f.bench.matches(a)) {
            Some((
                "contamination",
                format!("shares a {}-gram with {b}", cfg.ngram),
            ))
        } else if let Some(why) = judge_fails(&c.judge, f.judge_min) {
            Some(("judge", why))
        } else {
            match dups.check(&p.id, q) {
                Ok(()) => None,
                Err(Duplicate::Exact { of }) => {
                    Some(("exact_duplicate", format!("same question as {of}")))
                }
                Err(Duplicate::Near { of, similarity }) => Some((
                    "near_duplicate",
                    format!("similarity {similarity:.2} with {of}"),
                )),
            }
        };
        match verdict {
            None => kept.push(p),
            Some((name, reason)) => {
                *counts.entry(name.to_string()).or_default() += 1;
                removed.push(Removed {
                    question: q.to_string(),
                    answer: a.to_string(),
                    id: p.id,
                    filter: name.into(),
                    reason,
                });
            }
        }
    }
    (kept, removed, counts)
}

/// Why the judge removes a pair, if it does.
pub fn judge_fails(j: &JudgeOutcome, min_score: u32) -> Option<String> {
    match j {
        JudgeOutcome::Off => None,
        JudgeOutcome::Verdict(v) if v.passes(min_score) => None,
        JudgeOutcome::Verdict(v) => Some(format!(
            "scored under {min_score}: {} ({})",
            v.failing(min_score),
            v.reason
        )),
        JudgeOutcome::Rejected(r) => {
            Some(format!("no verdict: the judge's reply was rejected ({r})"))
        }
        JudgeOutcome::Missing => Some("no verdict: the judge stage has not scored it".into()),
    }
}

/// One row of the SFT export: the chat messages only, the shape TRL's `SFTTrainer` and
/// axolotl's `chat_template` datasets read.
#[derive(Serialize, Deserialize)]
pub struct SftRow {
    pub messages: Vec<ChatMessage>,
}

/// Splits the kept pairs into train and test by a stable hash of their ids (`test_share` of
/// them in test, at least one when there are two pairs or more) and writes
/// `<dir>/train.jsonl` and `<dir>/test.jsonl`. Returns (train, test) sizes.
pub fn write_sft(dir: &std::path::Path, kept: &[Pair], test_share: f64) -> Result<(usize, usize)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cut = (test_share.clamp(0.0, 1.0) * 10_000.0) as u64;
    let bucket = |p: &Pair| pw_core::seed::mix(pw_core::shard::stable_hash(&p.id)) % 10_000;
    let mut test: Vec<bool> = kept.iter().map(|p| bucket(p) < cut).collect();
    if kept.len() >= 2
        && test_share > 0.0
        && !test.iter().any(|&t| t)
        && let Some(i) = (0..kept.len()).min_by_key(|&i| bucket(&kept[i]))
    {
        test[i] = true;
    }
    let row = |p: &Pair| SftRow {
        messages: p.messages.clone(),
    };
    let train: Vec<SftRow> = kept
        .iter()
        .zip(&test)
        .filter(|(_, t)| !**t)
        .map(|(p, _)| row(p))
        .collect();
    let tst: Vec<SftRow> = kept
        .iter()
        .zip(&test)
        .filter(|(_, t)| **t)
        .map(|(p, _)| row(p))
        .collect();
    pw_core::jsonl::write_jsonl(&dir.join("train.jsonl"), &train)?;
    pw_core::jsonl::write_jsonl(&dir.join("test.jsonl"), &tst)?;
    Ok((train.len(), tst.len()))
}

/// Distinct-n: distinct word n-grams over all n-grams of the questions.
pub fn distinct_n(pairs: &[Pair], n: usize) -> f64 {
    let mut all = 0usize;
    let mut set = std::collections::HashSet::new();
    for p in pairs {
        let w = words(&p.messages[0].text());
        for g in w.windows(n) {
            all += 1;
            set.insert(g.join(" "));
        }
    }
    if all == 0 {
        0.0
    } else {
        set.len() as f64 / all as f64
    }
}

/// Mean Jaccard similarity of the questions' word sets over all pairs (up to 400 questions,
/// the first ones).
pub fn mean_pairwise_similarity(pairs: &[Pair]) -> f64 {
    let sets: Vec<std::collections::HashSet<String>> = pairs
        .iter()
        .take(400)
        .map(|p| words(&p.messages[0].text()).into_iter().collect())
        .collect();
    let (mut sum, mut n) = (0.0, 0usize);
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            let inter = sets[i].intersection(&sets[j]).count();
            let uni = sets[i].union(&sets[j]).count();
            if uni > 0 {
                sum += inter as f64 / uni as f64;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

pub use crate::parquet::{read as read_parquet, schema as parquet_schema, write as write_parquet};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::{DetectorLimits, detect};

    fn pair(i: usize, q: &str) -> Pair {
        Pair {
            id: format!("d#q0/s0/h{i}"),
            messages: vec![
                ChatMessage::user(q),
                ChatMessage::assistant(format!("An answer with several words number {i}.")),
            ],
            field: "Natural Sciences".into(),
            subfield: "Physics".into(),
            discipline: "Mechanics".into(),
            subject: "Kinematics".into(),
            level: "high school".into(),
            difficulty: if i.is_multiple_of(2) { "basic" } else { "hard" }.into(),
            sessions: vec!["Velocity".into(), "Acceleration".into()],
            key_concepts: vec!["speed".into()],
            question_model: "m1".into(),
            answer_model: "m2".into(),
            question_seed: Some(i as u64),
            answer_seed: if i == 3 { None } else { Some(7) },
        }
    }

    #[test]
    fn parquet_reads_back_the_same_rows_as_the_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Pair> = (0..5)
            .map(|i| {
                pair(
                    i,
                    &format!(
                        "How far does a car travel in {i} hours at 60 km/h? Explain — ünïcode ok."
                    ),
                )
            })
            .collect();
        pw_core::jsonl::write_jsonl(&dir.path().join("d.jsonl"), &rows).unwrap();
        write_parquet(&dir.path().join("d.parquet"), &rows).unwrap();
        let a: Vec<Pair> = pw_core::Ledger::read_all(dir.path().join("d.jsonl")).unwrap();
        let b = read_parquet(&dir.path().join("d.parquet")).unwrap();
        assert_eq!(a, rows);
        assert_eq!(b, rows);
        std::fs::write(dir.path().join("bad.parquet"), b"PAR1 nope").unwrap();
        let e = read_parquet(&dir.path().join("bad.parquet"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.parquet"), "{e}");
    }

    #[test]
    fn planted_duplicates_and_benchmark_prompts_are_removed_and_counted() {
        let humaneval = "Check if in given list of numbers, are any two numbers closer to each other than given threshold.";
        let bench = Contamination::new([("HumanEval.jsonl:1".to_string(), humaneval)], 13);
        let mut rows = vec![
            pair(
                0,
                "Explain how a lever multiplies force, using the idea of torque about a pivot.",
            ),
            pair(
                1,
                "Describe the water cycle and the role of evaporation and condensation in it.",
            ),
            pair(
                2,
                "explain how a LEVER multiplies force; using the idea of torque about a pivot!",
            ), // exact
            pair(
                3,
                "Describe the water cycle and the role of evaporation and condensation in it, briefly.",
            ), // near
            pair(4, &format!("Homework: {humaneval} Then test it.")), // contaminated
            pair(5, "Too short?"),                                    // length
            pair(
                6,
                "Объясните закон сохранения энергии на примере маятника и трения.",
            ), // language
            pair(
                7,
                "Compare mitosis and meiosis, and say why meiosis halves the chromosome number.",
            ),
        ];
        rows[1].messages[1].content =
            "Water evaporates, condenses into clouds and falls as rain.".into();
        rows.push(pair(
            8,
            "10, Device: Precious Heart: electronic device and Solar Power",
        ));
        rows.push(pair(
            9,
            "Explain why the boiling point of water drops at high altitude.",
        ));
        rows.push(pair(
            10,
            "Explain how a lever multiplies force, using the idea of torque about a pivot, step by step.",
        ));
        let verdict = |s: u32| {
            JudgeOutcome::Verdict(Verdict {
                reason: "r".into(),
                scores: crate::quality::Scores {
                    is_question: 9,
                    answerable: 9,
                    uses_key_concepts: 9,
                    answer_correct: s,
                },
            })
        };
        let cfg = FilterConfig {
            min_dictionary_share: 0.0,
            ..Default::default()
        };
        let cands: Vec<Candidate> = rows
            .into_iter()
            .map(|p| {
                let n: usize = p.id.rsplit('h').next().unwrap().parse().unwrap();
                Candidate {
                    truncated: n == 7,
                    detector: detect(
                        &DetectorLimits::from(&cfg),
                        None,
                        &p.messages[0].text(),
                        &p.messages[1].text(),
                    ),
                    judge: match n {
                        9 => verdict(2),
                        10 => JudgeOutcome::Rejected("output is not JSON".into()),
                        _ => verdict(8),
                    },
                    pair: p,
                }
            })
            .collect();
        let f = Filters {
            cfg: &cfg,
            bench: &bench,
            judge_min: 6,
        };
        let (kept, removed, counts) = filter(cands, &f);
        let kept_ids: Vec<&str> = kept.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(kept_ids, ["d#q0/s0/h0", "d#q0/s0/h1"]);
        for (f, n) in [
            ("exact_duplicate", 1),
            ("near_duplicate", 1),
            ("contamination", 1),
            ("length", 1),
            ("language", 1),
            ("truncated", 1),
            ("question_form", 1),
            ("judge", 2),
        ] {
            assert_eq!(counts[f], n, "{f}: {counts:?}");
        }
        assert_eq!(removed.len(), 9);
        let why = |id: &str| {
            removed
                .iter()
                .find(|r| r.id.ends_with(id))
                .map(|r| r.reason.clone())
                .unwrap()
        };
        assert!(why("h9").contains("answer_correct 2"), "{}", why("h9"));
        assert!(why("h10").contains("output is not JSON"), "{}", why("h10"));
        assert!(
            removed
                .iter()
                .all(|r| !r.question.is_empty() && !r.answer.is_empty())
        );
        assert!(
            removed
                .iter()
                .any(|r| r.filter == "contamination" && r.reason.contains("HumanEval.jsonl:1"))
        );
    }

    #[test]
    fn sft_export_splits_by_id_and_holds_only_messages() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Pair> = (0..40)
            .map(|i| pair(i, &format!("Question number {i} about levers?")))
            .collect();
        let (train, test) = write_sft(dir.path(), &rows, 0.1).unwrap();
        assert_eq!(train + test, 40);
        assert!((1..=10).contains(&test), "{test}");
        let again = tempfile::tempdir().unwrap();
        assert_eq!(write_sft(again.path(), &rows, 0.1).unwrap(), (train, test));
        let text = std::fs::read_to_string(dir.path().join("test.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first.as_object().unwrap().len(), 1, "{first}");
        assert_eq!(first["messages"][0]["role"], "user");
        assert!(first["messages"][1]["content"].is_string());
        // two pairs: one of them goes to test even when the hash puts none there
        assert_eq!(write_sft(dir.path(), &rows[..2], 0.0001).unwrap(), (1, 1));
    }

    #[test]
    fn diversity_figures_see_repetition() {
        let same: Vec<Pair> = (0..4)
            .map(|i| pair(i, "What is the speed of light in vacuum?"))
            .collect();
        let varied = vec![
            pair(0, "What is the speed of light in vacuum?"),
            pair(1, "Why do metals conduct electricity well?"),
            pair(2, "How does a vaccine train the immune system?"),
        ];
        assert!(distinct_n(&same, 2) < 0.3);
        assert!(distinct_n(&varied, 2) > 0.9);
        assert!(mean_pairwise_similarity(&same) > 0.99);
        assert!(mean_pairwise_similarity(&varied) < 0.3);
    }
}
