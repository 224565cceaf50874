//! Step labels in the formats PRM trainers read, so a PRM can be trained elsewhere on a large
//! model from `paperworks glore label` output.
//!
//! - TRL's stepwise supervision (`PRMTrainer`, last shipped in TRL 1.13 under
//!   `trl.experimental.prm`): `{"prompt": question, "completions": [step, ...], "labels":
//!   [bool, ...]}`.
//! - Math-Shepherd / OpenRLHF: `{"input": "...step ки\n...", "label": "...step +\n...",
//!   "value": ["+", "-", ...]}`: every step ends with the tag `ки`; `label` is Math-Shepherd's
//!   string form (the tag replaced by `+` or `-`), `value` the list form OpenRLHF's
//!   `ProcessRewardDataset` asserts (`--input_key input --label_key value --placeholder_token ки
//!   --reward_tokens + -`, as its Math-Shepherd example).
//!
//! Both carry `kept`: per step, whether the SORM's class balancing kept it for our own
//! training (every step's label is exported; a trainer that wants the balanced set masks the
//! others). A rollout whose question and steps repeat another's (greedy-like samples) is
//! exported once.

use crate::label::Labelled;
use pw_core::Result;
use pw_core::jsonl::write_jsonl;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const STEP_TAG: &str = "ки";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrlRow {
    pub prompt: String,
    pub completions: Vec<String>,
    pub labels: Vec<bool>,
    #[serde(default)]
    pub kept: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShepherdRow {
    pub input: String,
    pub label: String,
    #[serde(default)]
    pub value: Vec<String>,
    #[serde(default)]
    pub kept: Vec<bool>,
}

pub fn trl_row(l: &Labelled) -> TrlRow {
    TrlRow {
        prompt: l.question.clone(),
        completions: l.lines.clone(),
        labels: l.labels.clone(),
        kept: l.keep.clone(),
    }
}

/// Math-Shepherd's layout: the question, then each step followed by ` ки`, one per line.
pub fn shepherd_row(question: &str, steps: &[String], labels: &[bool]) -> ShepherdRow {
    let mut input = question.to_string();
    let mut label = question.to_string();
    for (s, &y) in steps.iter().zip(labels) {
        input.push('\n');
        label.push('\n');
        input.push_str(s);
        label.push_str(s);
        input.push(' ');
        label.push(' ');
        input.push_str(STEP_TAG);
        label.push(if y { '+' } else { '-' });
    }
    ShepherdRow {
        input,
        label,
        value: labels[..steps.len().min(labels.len())]
            .iter()
            .map(|&y| if y { "+" } else { "-" }.to_string())
            .collect(),
        kept: Vec::new(),
    }
}

/// (question, steps, labels) back from a Math-Shepherd row; errors say what is malformed.
pub fn parse_shepherd(
    row: &ShepherdRow,
) -> std::result::Result<(String, Vec<String>, Vec<bool>), String> {
    let mut lines = row.input.split('\n');
    let mut labels_lines = row.label.split('\n');
    let question = lines.next().unwrap_or_default().to_string();
    if labels_lines.next() != Some(question.as_str()) {
        return Err("label does not start with the input's question".into());
    }
    let (mut steps, mut labels) = (Vec::new(), Vec::new());
    for (l, y) in lines.zip(labels_lines) {
        let step = l
            .strip_suffix(STEP_TAG)
            .and_then(|s| s.strip_suffix(' '))
            .ok_or_else(|| format!("step {l:?} does not end with {STEP_TAG}"))?;
        let tag = y.strip_prefix(step).map(str::trim);
        labels.push(match tag {
            Some("+") => true,
            Some("-") => false,
            _ => return Err(format!("label line {y:?} does not end with + or -")),
        });
        steps.push(step.to_string());
    }
    Ok((question, steps, labels))
}

/// The exported files of one labelling run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exports {
    /// TRL `PRMTrainer` rows (`prompt`, `completions`, `labels`).
    pub prm_trl: std::path::PathBuf,
    /// Math-Shepherd / OpenRLHF rows (steps tagged `ки`, labels `+`/`-`).
    pub math_shepherd: std::path::PathBuf,
}

/// Writes both exports of `labelled` into `dir` (`prm_trl<suffix>.jsonl`,
/// `math_shepherd<suffix>.jsonl`; the suffix names a shard).
pub fn write_exports(dir: &Path, suffix: &str, labelled: &[Labelled]) -> Result<Exports> {
    let e = Exports {
        prm_trl: dir.join(format!("prm_trl{suffix}.jsonl")),
        math_shepherd: dir.join(format!("math_shepherd{suffix}.jsonl")),
    };
    write_trl(&e.prm_trl, labelled)?;
    write_math_shepherd(&e.math_shepherd, labelled)?;
    Ok(e)
}

/// The rollouts to export: the first of each (question, steps).
fn distinct(labelled: &[Labelled]) -> impl Iterator<Item = &Labelled> {
    let mut seen = std::collections::HashSet::new();
    labelled
        .iter()
        .filter(move |l| seen.insert((l.question.as_str(), l.lines.clone())))
}

pub fn write_trl(path: &Path, labelled: &[Labelled]) -> Result<()> {
    write_jsonl(path, distinct(labelled).map(trl_row))
}

pub fn write_math_shepherd(path: &Path, labelled: &[Labelled]) -> Result<()> {
    let rows: Vec<ShepherdRow> = distinct(labelled)
        .map(|l| ShepherdRow {
            kept: l.keep.clone(),
            ..shepherd_row(&l.question, &l.lines, &l.labels)
        })
        .collect();
    write_jsonl(path, rows)
}

/// Rows of a JSONL file we wrote (labels, TRL or Math-Shepherd rows); errors name the line.
pub fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    pw_core::jsonl::read_jsonl(path, "a row of this kind")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled() -> Labelled {
        Labelled {
            id: "q/r0".into(),
            question_id: "q".into(),
            question: "Ann has 5 apples. She buys 3 more. How many apples does Ann have now?"
                .into(),
            lines: vec!["5 + 3 = 9".into(), "#### 9".into()],
            correct: false,
            raw: vec![false, false],
            soft: vec![0.0, 0.0],
            labels: vec![false, false],
            soft_labels: vec![0.0, 0.0],
            keep: vec![true, true],
            truth: None,
        }
    }

    #[test]
    fn exported_trl_and_math_shepherd_rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut good = labelled();
        good.lines = vec!["5 + 3 = 8".into(), "#### 8".into()];
        good.labels = vec![true, true];
        let mut mixed = labelled();
        mixed.lines = vec!["5 + 3 = 9".into(), "So #### 9".into()];
        mixed.labels = vec![true, false];
        mixed.keep = vec![true, false];
        // a repeat of the first rollout (same question and steps) is exported once
        let all = vec![labelled(), good, mixed, labelled()];

        let trl = dir.path().join("trl.jsonl");
        write_trl(&trl, &all).unwrap();
        let rows: Vec<TrlRow> = read_rows(&trl).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].kept, vec![true, false]);
        let all = &all[..3];
        for (r, l) in rows.iter().zip(all) {
            assert_eq!(
                (&r.prompt, &r.completions, &r.labels),
                (&l.question, &l.lines, &l.labels)
            );
        }

        let ms = dir.path().join("ms.jsonl");
        write_math_shepherd(&ms, all).unwrap();
        let rows: Vec<ShepherdRow> = read_rows(&ms).unwrap();
        assert_eq!(rows.len(), 3);
        for (r, l) in rows.iter().zip(all) {
            assert_eq!(r.input.matches(STEP_TAG).count(), l.lines.len());
            assert!(!r.label.contains(STEP_TAG));
            let (q, steps, labels) = parse_shepherd(r).unwrap();
            assert_eq!(
                (q, steps, labels),
                (l.question.clone(), l.lines.clone(), l.labels.clone())
            );
        }
        assert_eq!(rows[2].label.lines().nth(1), Some("5 + 3 = 9 +"));
        assert_eq!(rows[2].input.lines().nth(2), Some("So #### 9 ки"));
        // OpenRLHF's list form beside Math-Shepherd's string form
        assert_eq!(rows[2].value, vec!["+", "-"]);
        assert_eq!(rows[2].kept, vec![true, false]);
        for r in &rows {
            assert_eq!(r.value.len(), r.input.matches(STEP_TAG).count());
        }
    }

    #[test]
    fn malformed_shepherd_rows_are_refused() {
        let r = ShepherdRow {
            input: "q\nstep".into(),
            label: "q\nstep +".into(),
            value: vec!["+".into()],
            kept: vec![true],
        };
        assert!(
            parse_shepherd(&r)
                .unwrap_err()
                .contains("does not end with")
        );
    }
}
