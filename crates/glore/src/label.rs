//! Rollouts, ORM labels and SORM labels (the paper's section on SORM data).
//!
//! 1. **rollouts**: `rollouts` sampled solutions per question; the ORM label of a rollout is
//!    whether its final answer is the gold one.
//! 2. **verify**: from every step prefix P_i of every rollout, K verifying continuations (each
//!    distinct prefix of a question is verified once). Hard estimation: P_i is positive when
//!    any of the K reaches the gold answer; soft: the fraction that does.
//! 3. **post-processing**, each rule switchable: consistency (a success counts only when the
//!    continuation uses step i's intermediate result, else it is a false positive), monotone
//!    (once a step is positive every earlier one is), and per-prefix-length balancing (which
//!    labels the SORM trains on: as many positives as negatives at every step index).
//!
//! Both sampling stages write resumable ledgers (`rollouts.jsonl`, `verify.jsonl`); the labels
//! are recomputed from them on every run (`labels.jsonl`) and exported in the TRL PRM format
//! (`prm_trl.jsonl`) and the Math-Shepherd / OpenRLHF format (`math_shepherd.jsonl`).

use crate::policy::{ContinueRequest, Policy};
use crate::problem::{Problem, Solution, Step, prefix_truth};
use pw_core::{Error, Ledger, Result, Shard};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Estimation {
    /// Positive when any of the K continuations reaches the gold answer (the paper's choice).
    Hard,
    /// The fraction of the K that do.
    Soft,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelConfig {
    /// Sampled solutions per question.
    pub rollouts: usize,
    /// Verifying continuations per step prefix (K = 8 in the paper).
    pub k: usize,
    /// Sampling temperature of rollouts and verifications.
    pub temperature: f32,
    pub estimation: Estimation,
    /// Post-processing rule 1: once a step is positive, every earlier step is positive.
    pub monotone: bool,
    /// Rule 2: a success counts only when the continuation uses the step's intermediate result.
    pub consistency: bool,
    /// Rule 3: train on equally many positive and negative labels at every step index.
    pub balance: bool,
    /// Requests per batch (and per ledger flush).
    pub chunk: usize,
}

impl LabelConfig {
    /// The ranges labelling relies on; `Err` names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.rollouts == 0 || self.k == 0 {
            return Err(format!(
                "rollouts {} and k {} must be at least 1",
                self.rollouts, self.k
            ));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!("temperature {} must be >= 0", self.temperature));
        }
        if self.chunk == 0 {
            return Err("chunk must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig {
            rollouts: 4,
            k: 8,
            temperature: 1.0,
            estimation: Estimation::Hard,
            monotone: true,
            consistency: true,
            balance: true,
            chunk: 256,
        }
    }
}

/// One sampled solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub question_id: String,
    pub text: String,
    pub correct: bool,
}

/// The rollouts of one question (one ledger record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSet {
    pub question_id: String,
    pub rollouts: Vec<Rollout>,
}

/// The K continuations of one distinct prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub id: String,
    pub question_id: String,
    pub prefix_len: usize,
    pub continuations: Vec<String>,
}

/// A rollout with its labels: one per line (reasoning lines, then the answer line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labelled {
    pub id: String,
    pub question_id: String,
    pub question: String,
    pub lines: Vec<String>,
    /// ORM label: the final answer is the gold one.
    pub correct: bool,
    /// Hard labels straight from the K continuations, before post-processing.
    pub raw: Vec<bool>,
    /// Fraction of the K continuations that succeeded (consistent ones when that rule is on).
    pub soft: Vec<f32>,
    /// SORM labels after the consistency and monotone rules.
    pub labels: Vec<bool>,
    /// Soft labels after the same rules (used when estimation is soft).
    pub soft_labels: Vec<f32>,
    /// Which labels the SORM trains on (rule 3); all true when balancing is off.
    pub keep: Vec<bool>,
    /// Exact step truth when the problem comes from the generated domain.
    pub truth: Option<Vec<bool>>,
}

impl Labelled {
    /// The SORM training target of each line under `estimation`.
    pub fn targets(&self, estimation: Estimation) -> Vec<f32> {
        match estimation {
            Estimation::Hard => self.labels.iter().map(|&b| b as u8 as f32).collect(),
            Estimation::Soft => self.soft_labels.clone(),
        }
    }
}

/// What a labelling run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabelStats {
    pub questions: usize,
    pub rollouts: usize,
    pub rollouts_correct: usize,
    pub prefixes_verified: usize,
    pub continuations: usize,
    pub labels: usize,
    pub positive: usize,
    pub kept_for_training: usize,
    /// Against the exact truth (generated problems only): hard labels before and after the
    /// post-processing rules.
    pub raw_label_accuracy: Option<f64>,
    pub label_accuracy: Option<f64>,
    pub wall_s: f64,
}

pub struct LabelOutput {
    pub labelled: Vec<Labelled>,
    pub verifications: HashMap<String, Verification>,
    pub stats: LabelStats,
    /// `labels<shard>.jsonl`: every labelled rollout.
    pub labels_file: std::path::PathBuf,
}

/// The id of the verification of `question_id`'s prefix `prefix` (shared by every rollout that
/// has that exact prefix).
pub fn prefix_id(question_id: &str, prefix: &[String]) -> String {
    let h = pw_core::shard::stable_hash(&prefix.join("\n"));
    format!("{question_id}/p{}/{h:016x}", prefix.len())
}

/// Runs (or resumes) the labelling of `problems` with `policy` into `dir`.
pub fn run(
    policy: &dyn Policy,
    problems: &[Problem],
    cfg: &LabelConfig,
    dir: &Path,
    seed: u64,
    shard: Shard,
) -> Result<LabelOutput> {
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    cfg.validate()
        .map_err(|e| Error::Other(format!("label: {e}")))?;
    let problems: Vec<&Problem> = problems.iter().filter(|p| shard.owns(&p.id)).collect();
    let sfx = shard.suffix();
    let by_id: HashMap<&str, &Problem> = problems.iter().map(|p| (p.id.as_str(), *p)).collect();

    // 1. rollouts
    let rollout_path = dir.join(format!("rollouts{sfx}.jsonl"));
    let mut ledger = Ledger::open(&rollout_path)?;
    let pending: Vec<ContinueRequest> = problems
        .iter()
        .filter(|p| !ledger.contains(&p.id))
        .map(|p| ContinueRequest::from_start(p))
        .collect();
    sample_into(
        policy,
        &mut ledger,
        pending,
        cfg.rollouts,
        cfg,
        seed,
        "rollouts",
        |req, outs| {
            let p = by_id[req.id.as_str()];
            let rs: Vec<Rollout> = outs
                .iter()
                .enumerate()
                .map(|(j, text)| Rollout {
                    id: format!("{}/r{j}", p.id),
                    question_id: p.id.clone(),
                    text: text.clone(),
                    correct: Solution::parse(text).is_correct(&p.answer),
                })
                .collect();
            serde_json::to_value(RolloutSet {
                question_id: p.id.clone(),
                rollouts: rs,
            })
            .expect("serialisable")
        },
    )?;
    drop(ledger);
    let rollouts: Vec<Rollout> = Ledger::read_all::<RolloutSet>(&rollout_path)?
        .into_iter()
        .flat_map(|s| s.rollouts)
        .filter(|r| by_id.contains_key(r.question_id.as_str()))
        .collect();

    // 2. verification of every distinct prefix
    let verify_path = dir.join(format!("verify{sfx}.jsonl"));
    let mut ledger = Ledger::open(&verify_path)?;
    let mut wanted: BTreeMap<String, ContinueRequest> = BTreeMap::new();
    for r in &rollouts {
        let sol = Solution::parse(&r.text);
        for i in 1..=sol.steps.len() {
            let prefix = sol.steps[..i].to_vec();
            let id = prefix_id(&r.question_id, &prefix);
            if !ledger.contains(&id) {
                let q = by_id[r.question_id.as_str()];
                wanted.entry(id.clone()).or_insert(ContinueRequest {
                    id,
                    question: q.question.clone(),
                    prefix,
                });
            }
        }
    }
    let pending: Vec<ContinueRequest> = wanted.into_values().collect();
    sample_into(
        policy,
        &mut ledger,
        pending,
        cfg.k,
        cfg,
        seed ^ 0x5eed,
        "verifying prefixes",
        |req, outs| {
            serde_json::to_value(Verification {
                id: req.id.clone(),
                question_id: req.id.split("/p").next().unwrap_or_default().to_string(),
                prefix_len: req.prefix.len(),
                continuations: outs.to_vec(),
            })
            .expect("serialisable")
        },
    )?;
    drop(ledger);
    let verifications: HashMap<String, Verification> =
        Ledger::read_all::<Verification>(&verify_path)?
            .into_iter()
            .map(|v| (v.id.clone(), v))
            .collect();

    // 3. labels
    let mut labelled: Vec<Labelled> = rollouts
        .iter()
        .map(|r| label_rollout(by_id[r.question_id.as_str()], r, &verifications, cfg))
        .collect::<Result<_>>()?;
    balance(&mut labelled, cfg.balance, seed);
    let stats = stats_of(
        &labelled,
        problems.len(),
        &verifications,
        t0.elapsed().as_secs_f64(),
    );
    let labels_file = dir.join(format!("labels{sfx}.jsonl"));
    pw_core::jsonl::write_jsonl(&labels_file, &labelled)?;
    Ok(LabelOutput {
        labelled,
        verifications,
        stats,
        labels_file,
    })
}

/// Samples `n` continuations for each pending request through the ledger's resumable chunked
/// stage (one record per request, keyed by its id, flushed per chunk).
#[allow(clippy::too_many_arguments)] // one stage's inputs
fn sample_into(
    policy: &dyn Policy,
    ledger: &mut Ledger,
    pending: Vec<ContinueRequest>,
    n: usize,
    cfg: &LabelConfig,
    seed: u64,
    label: &str,
    record: impl Fn(&ContinueRequest, &[String]) -> serde_json::Value,
) -> Result<()> {
    ledger.fill_in_chunks(
        &pending,
        cfg.chunk,
        label,
        |r| r.id.as_str(),
        |chunk| {
            let outs = policy
                .continue_batch(chunk, n, cfg.temperature, seed)
                .map_err(|e| Error::Other(format!("{label} with {}: {e}", policy.name())))?;
            Ok(chunk.iter().zip(&outs).map(|(r, o)| record(r, o)).collect())
        },
    )
}

/// The number a step line produces: `c` of `a op b = c`, else the line's last number.
pub fn intermediate_result(line: &str) -> Option<String> {
    if let Some(s) = Step::parse(line) {
        return Some(s.c.to_string());
    }
    numbers(line).last().cloned()
}

fn numbers(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .map(|w| w.trim_matches(|c| c == '.' || c == ','))
        .filter(|w| !w.is_empty() && w.chars().any(|c| c.is_ascii_digit()))
        .map(crate::problem::normalize_answer)
        .collect()
}

/// Does `continuation` build on `result` (mention it as a number)?
pub fn uses_result(continuation: &str, result: &str) -> bool {
    numbers(continuation).iter().any(|n| n == result)
}

/// The labels of one rollout from its verifications, with the consistency and monotone rules.
pub fn label_rollout(
    problem: &Problem,
    r: &Rollout,
    verifications: &HashMap<String, Verification>,
    cfg: &LabelConfig,
) -> Result<Labelled> {
    let sol = Solution::parse(&r.text);
    let lines = sol.lines();
    let mut raw = Vec::with_capacity(lines.len());
    let mut soft = Vec::with_capacity(lines.len());
    let mut cons = Vec::with_capacity(lines.len());
    for i in 1..=sol.steps.len() {
        let id = prefix_id(&problem.id, &sol.steps[..i]);
        let v = verifications.get(&id).ok_or_else(|| {
            Error::Other(format!("label: no verification {id} (stage incomplete)"))
        })?;
        let result = intermediate_result(&sol.steps[i - 1]);
        let (mut any, mut consistent) = (0usize, 0usize);
        for c in &v.continuations {
            if Solution::parse(c).is_correct(&problem.answer) {
                any += 1;
                if result.as_deref().is_none_or(|x| uses_result(c, x)) {
                    consistent += 1;
                }
            }
        }
        let k = v.continuations.len().max(1) as f32;
        raw.push(any > 0);
        let used = if cfg.consistency { consistent } else { any };
        cons.push(used > 0);
        soft.push(used as f32 / k);
    }
    if sol.answer.is_some() {
        raw.push(r.correct);
        cons.push(r.correct);
        soft.push(r.correct as u8 as f32);
    }
    let (labels, soft_labels) = if cfg.monotone {
        monotone(&cons, &soft)
    } else {
        (cons, soft.clone())
    };
    Ok(Labelled {
        id: r.id.clone(),
        question_id: problem.id.clone(),
        question: problem.question.clone(),
        keep: vec![true; lines.len()],
        lines,
        correct: r.correct,
        raw,
        soft,
        labels,
        soft_labels,
        truth: prefix_truth(problem, &sol),
    })
}

/// Rule 1: every step before a positive one is positive (soft: a running maximum from the end).
pub fn monotone(hard: &[bool], soft: &[f32]) -> (Vec<bool>, Vec<f32>) {
    let mut h = hard.to_vec();
    if let Some(last) = h.iter().rposition(|&b| b) {
        h[..=last].iter_mut().for_each(|b| *b = true);
    }
    let mut s = soft.to_vec();
    for i in (0..s.len().saturating_sub(1)).rev() {
        s[i] = s[i].max(s[i + 1]);
    }
    (h, s)
}

/// Rule 3: at each step index keep all labels of the rarer class and as many (randomly
/// chosen, seeded) of the other; with `on` false every label is kept.
pub fn balance(labelled: &mut [Labelled], on: bool, seed: u64) {
    for l in labelled.iter_mut() {
        l.keep = vec![true; l.labels.len()];
    }
    if !on {
        return;
    }
    // step index -> (positive, negative) label slots as (rollout, step)
    type Slots = (Vec<(usize, usize)>, Vec<(usize, usize)>);
    let mut by_index: BTreeMap<usize, Slots> = BTreeMap::new();
    for (r, l) in labelled.iter().enumerate() {
        for (i, &y) in l.labels.iter().enumerate() {
            let e = by_index.entry(i).or_default();
            if y {
                e.0.push((r, i))
            } else {
                e.1.push((r, i))
            }
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xba1a);
    for (_, (mut pos, mut neg)) in by_index {
        let n = pos.len().min(neg.len());
        pos.shuffle(&mut rng);
        neg.shuffle(&mut rng);
        for &(r, i) in pos[n..].iter().chain(&neg[n..]) {
            labelled[r].keep[i] = false;
        }
    }
}

fn stats_of(
    l: &[Labelled],
    questions: usize,
    v: &HashMap<String, Verification>,
    wall_s: f64,
) -> LabelStats {
    let mut s = LabelStats {
        questions,
        rollouts: l.len(),
        rollouts_correct: l.iter().filter(|x| x.correct).count(),
        prefixes_verified: v.len(),
        continuations: v.values().map(|x| x.continuations.len()).sum(),
        wall_s,
        ..Default::default()
    };
    let (mut n, mut raw_ok, mut ok) = (0usize, 0usize, 0usize);
    for x in l {
        s.labels += x.labels.len();
        s.positive += x.labels.iter().filter(|&&b| b).count();
        s.kept_for_training += x.keep.iter().filter(|&&b| b).count();
        if let Some(t) = &x.truth {
            for ((&truth, &raw), &label) in t.iter().zip(&x.raw).zip(&x.labels) {
                n += 1;
                raw_ok += (raw == truth) as usize;
                ok += (label == truth) as usize;
            }
        }
    }
    if n > 0 {
        s.raw_label_accuracy = Some(raw_ok as f64 / n as f64);
        s.label_accuracy = Some(ok as f64 / n as f64);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LabelConfig {
        LabelConfig::default()
    }

    fn problem() -> Problem {
        Problem {
            id: "q".into(),
            question: "Ann has 5 apples. She buys 3 more. Then the number of apples Ann has grows 2 times. How many apples does Ann have now?".into(),
            steps: vec!["5 + 3 = 8".into(), "8 * 2 = 16".into()],
            answer: "16".into(),
        }
    }

    fn verif(prefix: &[&str], conts: &[&str]) -> (String, Verification) {
        let p: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        let id = prefix_id("q", &p);
        (
            id.clone(),
            Verification {
                id,
                question_id: "q".into(),
                prefix_len: p.len(),
                continuations: conts.iter().map(|s| s.to_string()).collect(),
            },
        )
    }

    #[test]
    fn sorm_labels_are_monotone_after_postprocessing() {
        assert_eq!(
            monotone(&[false, true, false, true, false], &[0.0; 5]).0,
            vec![true, true, true, true, false]
        );
        assert_eq!(monotone(&[false, false], &[0.0; 2]).0, vec![false, false]);
        let (_, s) = monotone(&[false; 3], &[0.1, 0.5, 0.2]);
        assert_eq!(s, vec![0.5, 0.5, 0.2]);
    }

    #[test]
    fn a_success_that_ignores_the_steps_result_is_a_false_positive() {
        // Step 1 is wrong (5 + 3 = 9); one continuation recovers without using 9.
        let r = Rollout {
            id: "q/r0".into(),
            question_id: "q".into(),
            text: "5 + 3 = 9\n9 * 2 = 18\n#### 18".into(),
            correct: false,
        };
        let v: HashMap<_, _> = [
            verif(
                &["5 + 3 = 9"],
                &["8 * 2 = 16\n#### 16", "9 * 2 = 18\n#### 18"],
            ),
            verif(&["5 + 3 = 9", "9 * 2 = 18"], &["#### 18", "#### 18"]),
        ]
        .into_iter()
        .collect();
        let l = label_rollout(&problem(), &r, &v, &cfg()).unwrap();
        assert_eq!(l.raw, vec![true, false, false]);
        assert_eq!(l.labels, vec![false, false, false]);
        assert_eq!(l.truth, Some(vec![false, false, false]));
        // With the rule off the false positive stays.
        let off = LabelConfig {
            consistency: false,
            ..cfg()
        };
        assert_eq!(
            label_rollout(&problem(), &r, &v, &off).unwrap().labels,
            vec![true, false, false]
        );
    }

    #[test]
    fn a_late_positive_makes_earlier_steps_positive_and_soft_labels_count_successes() {
        let r = Rollout {
            id: "q/r0".into(),
            question_id: "q".into(),
            text: "5 + 3 = 8\n8 * 2 = 16\n#### 16".into(),
            correct: true,
        };
        let v: HashMap<_, _> = [
            verif(
                &["5 + 3 = 8"],
                &[
                    "8 * 2 = 17\n#### 17",
                    "8 * 2 = 18\n#### 18",
                    "8 + 8 = 16\n#### 16",
                    "x\n#### 3",
                ],
            ),
            verif(&["5 + 3 = 8", "8 * 2 = 16"], &["#### 16"; 4]),
        ]
        .into_iter()
        .collect();
        let l = label_rollout(&problem(), &r, &v, &cfg()).unwrap();
        assert_eq!(l.labels, vec![true, true, true]);
        assert_eq!(l.soft, vec![0.25, 1.0, 1.0]);
        let hard_only = LabelConfig {
            monotone: false,
            ..cfg()
        };
        let v2: HashMap<_, _> = [
            verif(&["5 + 3 = 8"], &["#### 3"; 4]),
            verif(&["5 + 3 = 8", "8 * 2 = 16"], &["#### 16"; 4]),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            label_rollout(&problem(), &r, &v2, &hard_only)
                .unwrap()
                .labels,
            vec![false, true, true]
        );
        assert_eq!(
            label_rollout(&problem(), &r, &v2, &cfg()).unwrap().labels,
            vec![true, true, true]
        );
    }

    #[test]
    fn balancing_keeps_equal_positives_and_negatives_at_every_step_index() {
        let mk = |labels: Vec<bool>| Labelled {
            id: String::new(),
            question_id: String::new(),
            question: String::new(),
            lines: vec![String::new(); labels.len()],
            correct: false,
            raw: labels.clone(),
            soft: vec![0.0; labels.len()],
            soft_labels: vec![0.0; labels.len()],
            keep: vec![],
            truth: None,
            labels,
        };
        let mut ls = vec![
            mk(vec![true, true, true]),
            mk(vec![true, true, false]),
            mk(vec![true, false, false]),
            mk(vec![false, false, false]),
            mk(vec![true, true, true]),
        ];
        balance(&mut ls, true, 1);
        for i in 0..3 {
            let (mut p, mut n) = (0, 0);
            for l in &ls {
                if l.keep[i] {
                    if l.labels[i] { p += 1 } else { n += 1 }
                }
            }
            assert_eq!(p, n, "step index {i}");
        }
        // index 0: 4 positive, 1 negative -> 1 + 1 kept
        assert_eq!(ls.iter().filter(|l| l.keep[0]).count(), 2);
        balance(&mut ls, false, 1);
        assert!(ls.iter().all(|l| l.keep.iter().all(|&k| k)));
    }

    #[test]
    fn intermediate_results_come_from_steps_or_the_last_number() {
        assert_eq!(intermediate_result("12 + 7 = 19").as_deref(), Some("19"));
        assert_eq!(
            intermediate_result("She has 48/2 = <<48/2=24>>24 clips.").as_deref(),
            Some("24")
        );
        assert_eq!(intermediate_result("no numbers"), None);
        assert!(uses_result("19 - 5 = 14\n#### 14", "19"));
        assert!(!uses_result("119 - 5 = 114", "19"));
    }
}
