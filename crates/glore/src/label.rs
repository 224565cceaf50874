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
use crate::postprocess::{balance, label_rollout};
use crate::problem::{Problem, Solution};
use pw_core::{Error, Ledger, Result, Shard};
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
    let rollouts = sample_rollouts(
        policy,
        &problems,
        cfg.rollouts,
        cfg,
        &dir.join(format!("rollouts{sfx}.jsonl")),
        seed,
    )?;

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

/// `n` sampled solutions of each of `problems` with their final-answer (ORM) labels, through a
/// resumable ledger at `path` (one record per question).
pub fn sample_rollouts(
    policy: &dyn Policy,
    problems: &[&Problem],
    n: usize,
    cfg: &LabelConfig,
    path: &Path,
    seed: u64,
) -> Result<Vec<Rollout>> {
    let by_id: HashMap<&str, &Problem> = problems.iter().map(|p| (p.id.as_str(), *p)).collect();
    let mut ledger = Ledger::open(path)?;
    let pending: Vec<ContinueRequest> = problems
        .iter()
        .filter(|p| !ledger.contains(&p.id))
        .map(|p| ContinueRequest::from_start(p))
        .collect();
    sample_into(
        policy,
        &mut ledger,
        pending,
        n,
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
    Ok(Ledger::read_all::<RolloutSet>(path)?
        .into_iter()
        .flat_map(|s| s.rollouts)
        .filter(|r| by_id.contains_key(r.question_id.as_str()))
        .collect())
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
