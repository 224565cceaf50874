//! The final dataset: question + answer pairs as OpenAI/TRL chat `messages` with provenance,
//! the quality filters (length, language, exact and near duplicates, benchmark contamination),
//! and the JSONL / Parquet writers.

use crate::config::FilterConfig;
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

/// A pair the filters removed, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Removed {
    pub id: String,
    pub filter: String,
    pub reason: String,
}

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

/// Applies the filters in order (length, language, duplicates, contamination); returns the
/// kept pairs, the removed ones with reasons, and counts per filter.
pub fn filter(
    pairs: Vec<Pair>,
    cfg: &FilterConfig,
    bench: &Contamination,
) -> (Vec<Pair>, Vec<Removed>, BTreeMap<String, usize>) {
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    let mut counts: BTreeMap<String, usize> = [
        "length",
        "language",
        "exact_duplicate",
        "near_duplicate",
        "contamination",
    ]
    .iter()
    .map(|k| (k.to_string(), 0))
    .collect();
    let mut dups = NearDuplicates::new(cfg.near_duplicate);
    for p in pairs {
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
        } else if let Some(b) = bench.matches(q).or_else(|| bench.matches(a)) {
            Some((
                "contamination",
                format!("shares a {}-gram with {b}", cfg.ngram),
            ))
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
            Some((f, reason)) => {
                *counts.entry(f.to_string()).or_default() += 1;
                removed.push(Removed {
                    id: p.id,
                    filter: f.into(),
                    reason,
                });
            }
        }
    }
    (kept, removed, counts)
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
        let (kept, removed, counts) = filter(rows, &FilterConfig::default(), &bench);
        let kept_ids: Vec<&str> = kept.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(kept_ids, ["d#q0/s0/h0", "d#q0/s0/h1", "d#q0/s0/h7"]);
        for (f, n) in [
            ("exact_duplicate", 1),
            ("near_duplicate", 1),
            ("contamination", 1),
            ("length", 1),
            ("language", 1),
        ] {
            assert_eq!(counts[f], n, "{f}: {counts:?}");
        }
        assert_eq!(removed.len(), 5);
        assert!(
            removed
                .iter()
                .any(|r| r.filter == "contamination" && r.reason.contains("HumanEval.jsonl:1"))
        );
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
