//! The paper's central claim in miniature: instruction tuning on GLAN data alone improves a
//! base model across disciplines, with no task-specific data, more than data from a
//! seed-example method.
//!
//! 1. Base model: pw-nn's byte-level causal LM pre-trained on text on disk, WordNet's noun
//!    glosses (Debian's `wordnet-base`) as one sentence per synset, so it knows English words
//!    and facts across disciplines but has never seen a question answered.
//! 2. Two arms at the same budget, the same number of pairs: GLAN's kept pairs and Self-Instruct
//!    pairs (`selfinstruct.rs`) that passed the same filters; each tunes the base for the same
//!    steps (`Question: ...\nAnswer: ...`, loss on the answer bytes only), `seeds` times.
//! 3. Scored by the bits per byte of hand-written reference answers (`data/references.jsonl`):
//!    every run keeps its checkpoint with the lowest bits per byte on the validation
//!    disciplines, and is judged on the test disciplines. Neither split's disciplines are in
//!    the reproduction's taxonomy (the "seen" split's are, for comparison).
//!
//! The verdict's rule, fixed before any run: held when the GLAN-tuned model's bits per byte on
//! the test disciplines is below both the Self-Instruct-tuned model's and the base model's, each
//! with a paired 95% interval (over reference answers, seeds averaged) wholly below zero and a
//! mean gap larger than the larger tuning-seed spread.

use crate::config::ClaimConfig;
use crate::dataset::Pair;
use pw_core::{Error, Result};
use pw_nn::burn::module::Module;
use pw_nn::bytelm::{self, NlExample, PairedDiff};
use pw_nn::checkpoint::{load_module, load_or_train, save_module};
use pw_nn::train::{StepOutput, train_loop};
use pw_nn::transformer::CausalLm;
use pw_nn::{seed_everything, train_device};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The reference answers shipped with the crate, written for this experiment before any run:
/// 5 per discipline; `seen`: the two disciplines of the quick taxonomy; `validation`: chemistry,
/// astronomy, economics, psychology; `test`: geology, statistics, computer science, human
/// physiology, geography, music theory.
pub const REFERENCES: &str = include_str!("../data/references.jsonl");

pub const ARM_GLAN: &str = "glan";
pub const ARM_SELF_INSTRUCT: &str = "self-instruct";
pub const SPLITS: [&str; 3] = ["seen", "validation", "test"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub split: String,
    pub discipline: String,
    pub question: String,
    pub answer: String,
}

/// The reference answers of `path`, or the crate's own; every split must have some.
pub fn references(path: Option<&Path>) -> Result<Vec<Reference>> {
    let (text, name) = file_or_shipped(path, REFERENCES, "data/references.jsonl")?;
    let mut out: Vec<Reference> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Reference = serde_json::from_str(line)
            .map_err(|e| Error::Other(format!("{name} line {}: {e}", i + 1)))?;
        if !SPLITS.contains(&r.split.as_str()) {
            return Err(Error::Other(format!(
                "{name} line {}: split {:?} is not one of {}",
                i + 1,
                r.split,
                SPLITS.join(", ")
            )));
        }
        if r.question.trim().is_empty() || r.answer.trim().is_empty() {
            return Err(Error::Other(format!(
                "{name} line {}: empty question or answer",
                i + 1
            )));
        }
        out.push(r);
    }
    for s in ["validation", "test"] {
        if !out.iter().any(|r| r.split == s) {
            return Err(Error::Other(format!("{name}: no {s} references")));
        }
    }
    Ok(out)
}

/// The text of the user's file at `path`, or the crate's shipped copy, with the name errors
/// give.
pub fn file_or_shipped(
    path: Option<&Path>,
    shipped: &str,
    shipped_name: &str,
) -> Result<(String, String)> {
    Ok(match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?,
            p.display().to_string(),
        ),
        None => (shipped.to_string(), shipped_name.to_string()),
    })
}

/// What the model reads before an answer, in training and in scoring.
pub fn prompt(question: &str) -> String {
    format!("Question: {}\nAnswer: ", question.trim())
}

/// One WordNet data-file line as a sentence: "Heartwood is the older inactive central wood of
/// a tree ...", a leading "(domain)" as "In domain, ...", then the gloss's quoted examples as
/// sentences of their own. `None` for the licence header and lines without a gloss.
pub fn wordnet_sentence(line: &str) -> Option<String> {
    if line.starts_with(' ') {
        return None;
    }
    let (head, gloss) = line.split_once(" | ")?;
    let f: Vec<&str> = head.split_whitespace().collect();
    let lemma = f.get(4)?.replace('_', " ");
    let lemma = lemma
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if lemma.is_empty() {
        return None;
    }
    let gloss = gloss.trim();
    let (def, rest) = match gloss.find("; \"") {
        Some(i) => (&gloss[..i], &gloss[i + 2..]),
        None => (gloss, ""),
    };
    let def = def.trim().trim_end_matches(';').trim();
    if def.is_empty() {
        return None;
    }
    let mut s = match def.strip_prefix('(').and_then(|d| d.split_once(')')) {
        Some((domain, d)) if !d.trim().is_empty() => {
            format!("In {}, {lemma} is {}.", domain.trim(), d.trim())
        }
        _ => format!("{} is {def}.", capitalise(&lemma)),
    };
    for ex in rest.split('"').skip(1).step_by(2) {
        let ex = ex.trim();
        if ex.len() > 3 {
            s.push(' ');
            s.push_str(&capitalise(ex));
            if !ex.ends_with(['.', '!', '?']) {
                s.push('.');
            }
        }
    }
    Some(s)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The pre-training sentences: the corpus's, in a seeded order, up to `bytes` in all.
pub fn pretraining_text(path: &Path, bytes: usize, seed: u64) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Other(format!(
            "claim.corpus {}: {e} (the base model's text: Debian's wordnet-base, which \
             scripts/setup.sh installs)",
            path.display()
        ))
    })?;
    let mut all: Vec<String> = text.lines().filter_map(wordnet_sentence).collect();
    if all.is_empty() {
        return Err(Error::invalid(
            path,
            "no WordNet gloss lines ('... | gloss')",
        ));
    }
    all.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut n = 0usize;
    Ok(all
        .into_iter()
        .take_while(|s| {
            let go = n < bytes;
            n += s.len() + 2;
            go
        })
        .collect())
}

use rand::SeedableRng;

/// One model's bits per byte on every reference split.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scores {
    /// Per reference, in `references()` order within each split.
    pub by_split: BTreeMap<String, Vec<f64>>,
}

impl Scores {
    pub fn mean(&self, split: &str) -> f64 {
        self.by_split
            .get(split)
            .map_or(f64::NAN, |v| bytelm::mean(v))
    }
}

fn examples(refs: &[Reference], split: &str) -> Vec<NlExample> {
    refs.iter()
        .filter(|r| r.split == split)
        .enumerate()
        .map(|(i, r)| NlExample {
            id: format!("{split}{i}"),
            prompt: prompt(&r.question),
            body: r.answer.trim().to_string(),
        })
        .collect()
}

pub fn score(model: &CausalLm, refs: &[Reference]) -> Scores {
    Scores {
        by_split: SPLITS
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    bytelm::bits_per_byte(model, &examples(refs, s), 16),
                )
            })
            .collect(),
    }
}

/// One tuning run: the checkpoint it kept, and its validation curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneRun {
    pub arm: String,
    pub seed: usize,
    /// (step, validation bits per byte) at every check.
    pub curve: Vec<(usize, f64)>,
    /// The step of the kept checkpoint (lowest validation bits per byte).
    pub kept_step: usize,
    pub scores: Scores,
    pub wall_s: f64,
}

/// What the experiment measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimOutcome {
    /// Pairs each arm was tuned on (the smaller arm's kept count).
    pub pairs: usize,
    /// Pairs each arm had after its filters.
    pub available: BTreeMap<String, usize>,
    /// Bytes of the tuning text (questions + answers) of each arm.
    pub tuning_bytes: BTreeMap<String, usize>,
    pub pretrain_bytes: usize,
    pub pretrain_wall_s: f64,
    pub base: Scores,
    pub runs: Vec<TuneRun>,
    /// Test disciplines' bits per byte, GLAN-tuned minus Self-Instruct-tuned (seeds averaged).
    pub glan_vs_self_instruct: PairedDiff,
    pub glan_vs_base: PairedDiff,
    pub self_instruct_vs_base: PairedDiff,
    /// The tuning-seed spread (sd of the runs' test means) of each arm.
    pub seed_sd: BTreeMap<String, f64>,
    pub held: bool,
    /// The test references' disciplines, in order.
    pub test_disciplines: Vec<String>,
}

impl ClaimOutcome {
    /// An arm's per-reference scores on `split`, averaged over its seeds.
    pub fn arm_mean(&self, arm: &str, split: &str) -> Vec<f64> {
        arm_mean(&self.runs, arm, split)
    }
}

fn arm_mean(runs: &[TuneRun], arm: &str, split: &str) -> Vec<f64> {
    let rs: Vec<&Vec<f64>> = runs
        .iter()
        .filter(|r| r.arm == arm)
        .filter_map(|r| r.scores.by_split.get(split))
        .collect();
    let n = rs.first().map_or(0, |v| v.len());
    (0..n)
        .map(|i| rs.iter().map(|v| v[i]).sum::<f64>() / rs.len() as f64)
        .collect()
}

fn sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = bytelm::mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// The verdict rule of the module doc: `d` is GLAN minus the other, `spread` the larger seed sd.
pub fn beats(d: &PairedDiff, spread: f64) -> bool {
    d.n > 0 && d.hi < 0.0 && -d.mean > spread
}

/// The same number of pairs from each arm, chosen by a stable hash of their ids.
fn take(pairs: &[Pair], n: usize) -> Vec<(String, String)> {
    let mut v: Vec<&Pair> = pairs.iter().collect();
    v.sort_by_key(|p| pw_core::seed::mix(pw_core::seed::fnv1a(p.id.as_bytes())));
    v.into_iter()
        .take(n)
        .map(|p| {
            (
                p.messages[0].text().to_string(),
                p.messages[1].text().to_string(),
            )
        })
        .collect()
}

/// A tuning run's kept model, its validation curve and the kept step.
type Tuned = (CausalLm, Vec<(usize, f64)>, usize);

fn tune(
    base: &Path,
    cfg: &ClaimConfig,
    data: &[(String, String)],
    refs: &[Reference],
    seed: u64,
    label: &str,
) -> Result<Tuned> {
    let ad = train_device(true)?;
    let mut rng = seed_everything(&ad, seed);
    let model = load_module(bytelm::new_lm(&cfg.lm, &ad), base)?;
    let val = examples(refs, "validation");
    let prompts: Vec<String> = data.iter().map(|(q, _)| prompt(q)).collect();
    let max_len = cfg.lm.max_len;
    let c = &cfg.sft;
    let mut curve = Vec::new();
    let mut best: Option<(f64, usize, CausalLm)> = None;
    let mut check = |m: &CausalLm, step: usize| {
        let frozen = m.valid();
        let v = bytelm::mean(&bytelm::bits_per_byte(&frozen, &val, 16));
        curve.push((step, v));
        if best.as_ref().is_none_or(|(b, _, _)| v < *b) {
            best = Some((v, step, frozen));
        }
    };
    let (model, _) = train_loop(
        model,
        c.steps,
        &c.optim(),
        label,
        25,
        |m, step| {
            if step > 0 && step % cfg.eval_every == 0 {
                check(m, step);
            }
            let batch: Vec<(&str, &str)> = (0..c.batch)
                .map(|_| {
                    let i = rng.random_range(0..data.len());
                    (prompts[i].as_str(), data[i].1.as_str())
                })
                .collect();
            let (x, y, mask, shape) = bytelm::prompt_body_batch(&batch, true, max_len);
            let scored: f32 = mask.iter().sum();
            let nll = bytelm::masked_nll(m, x, y, mask, shape);
            StepOutput {
                loss: nll.sum() / scored.max(1.0),
                items: scored as usize,
            }
        },
        |_| true,
    );
    check(&model, c.steps);
    let (_, step, kept) = best.expect("at least the last check ran");
    Ok((kept, curve, step))
}

/// Runs the experiment in a folder of `dir` ([`experiment_dir`]; checkpoints and per-run scores
/// are kept there, so a killed run resumes after its last finished model); `glan` and `self_instruct` are the arms' kept pairs.
pub fn run(
    cfg: &ClaimConfig,
    dir: &Path,
    glan: &[Pair],
    self_instruct: &[Pair],
    seed: u64,
) -> Result<ClaimOutcome> {
    let refs = references(cfg.references.as_deref())?;
    if let Some(r) = refs
        .iter()
        .find(|r| 1 + prompt(&r.question).len() + r.answer.trim().len() > cfg.lm.max_len)
    {
        return Err(Error::Other(format!(
            "claim.lm.max_len {} is shorter than a reference question and its answer ({} bytes: \
             {:?}); scores would cover part of some answers only",
            cfg.lm.max_len,
            1 + prompt(&r.question).len() + r.answer.trim().len(),
            r.question
        )));
    }
    let n = glan.len().min(self_instruct.len());
    if n == 0 {
        return Err(Error::Other(format!(
            "claim: an arm has no pairs to tune on (GLAN {}, Self-Instruct {})",
            glan.len(),
            self_instruct.len()
        )));
    }
    let arms: Vec<(&str, Vec<(String, String)>)> = vec![
        (ARM_GLAN, take(glan, n)),
        (ARM_SELF_INSTRUCT, take(self_instruct, n)),
    ];
    let t0 = std::time::Instant::now();
    let text = pretraining_text(&cfg.corpus, cfg.pretrain_bytes, seed)?;
    let (base_path, wall_file) = base_files(dir, cfg, seed);
    let dir = &experiment_dir(dir, cfg, &arms, &refs, seed);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let pretrain_bytes: usize = text.iter().map(|s| s.len()).sum();
    let ad = train_device(true)?;
    let base = load_or_train(
        &base_path,
        || bytelm::new_lm(&cfg.lm, &ad),
        || {
            let mut rng = seed_everything(&ad, pw_core::seed::derive(seed, "glan/claim/base"));
            let (m, _) = bytelm::train_windows(
                bytelm::new_lm(&cfg.lm, &ad),
                &bytelm::pack(&text),
                &cfg.pretrain,
                &mut rng,
                "claim: pre-training the base model",
                None,
                &mut |_, _| {},
            );
            Ok(m)
        },
    )?;
    // the pre-training time of the model in use, also when a resumed run loaded it
    let pretrain_wall_s = match std::fs::read_to_string(&wall_file)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
    {
        Some(w) => w,
        None => {
            let w = t0.elapsed().as_secs_f64();
            pw_core::write_atomic(&wall_file, format!("{w}\n").as_bytes())?;
            w
        }
    };
    let base_scores = score(&base.valid(), &refs);
    drop(base);
    let mut runs = Vec::new();
    for (arm, data) in &arms {
        for k in 0..cfg.seeds {
            let stem = format!("{arm}-s{k}");
            let json = dir.join(format!("{stem}.json"));
            if json.exists() {
                let raw = std::fs::read(&json).map_err(|e| Error::io(&json, e))?;
                let r: TuneRun = serde_json::from_slice(&raw)
                    .map_err(|e| Error::invalid(&json, format!("not a tuning run ({e})")))?;
                runs.push(r);
                continue;
            }
            let t = std::time::Instant::now();
            let (kept, curve, kept_step) = tune(
                &base_path,
                cfg,
                data,
                &refs,
                pw_core::seed::derive(seed, &format!("glan/claim/{stem}")),
                &format!("claim: tuning on {arm} pairs, seed {k}"),
            )?;
            save_module(&kept, &dir.join(format!("{stem}.safetensors")))?;
            let r = TuneRun {
                arm: arm.to_string(),
                seed: k,
                curve,
                kept_step,
                scores: score(&kept, &refs),
                wall_s: t.elapsed().as_secs_f64(),
            };
            pw_core::write_atomic(
                &json,
                serde_json::to_string_pretty(&r)
                    .expect("serialisable")
                    .as_bytes(),
            )?;
            runs.push(r);
        }
    }
    let g = arm_mean(&runs, ARM_GLAN, "test");
    let s = arm_mean(&runs, ARM_SELF_INSTRUCT, "test");
    let b = base_scores.by_split["test"].clone();
    let seed_sd: BTreeMap<String, f64> = [ARM_GLAN, ARM_SELF_INSTRUCT]
        .iter()
        .map(|arm| {
            let means: Vec<f64> = runs
                .iter()
                .filter(|r| r.arm == *arm)
                .map(|r| r.scores.mean("test"))
                .collect();
            (arm.to_string(), sd(&means))
        })
        .collect();
    let spread = seed_sd.values().cloned().fold(0.0, f64::max);
    let glan_vs_self_instruct = bytelm::paired_diff(&g, &s);
    let glan_vs_base = bytelm::paired_diff(&g, &b);
    let held = beats(&glan_vs_self_instruct, spread) && beats(&glan_vs_base, spread);
    Ok(ClaimOutcome {
        pairs: n,
        available: [
            (ARM_GLAN.to_string(), glan.len()),
            (ARM_SELF_INSTRUCT.to_string(), self_instruct.len()),
        ]
        .into(),
        tuning_bytes: arms
            .iter()
            .map(|(a, d)| {
                (
                    a.to_string(),
                    d.iter().map(|(q, x)| q.len() + x.len()).sum(),
                )
            })
            .collect(),
        pretrain_bytes,
        pretrain_wall_s,
        base: base_scores,
        glan_vs_self_instruct,
        glan_vs_base,
        self_instruct_vs_base: bytelm::paired_diff(&s, &b),
        seed_sd,
        held,
        test_disciplines: refs
            .iter()
            .filter(|r| r.split == "test")
            .map(|r| r.discipline.clone())
            .collect(),
        runs,
    })
}

/// Where the experiment keeps its files inside a GLAN run directory (the Self-Instruct pairs;
/// each configuration's models in a folder of their own, see [`run`]).
pub fn claim_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("claim")
}

/// The base model's checkpoint and its pre-training time, named by a hash of what the base
/// depends on (its shape, its pre-training, the corpus, the seed): experiments that differ in
/// their tuning only share it.
pub fn base_files(dir: &Path, cfg: &ClaimConfig, seed: u64) -> (PathBuf, PathBuf) {
    let key = serde_json::json!({
        "lm": cfg.lm, "pretrain": cfg.pretrain, "bytes": cfg.pretrain_bytes,
        "corpus": cfg.corpus, "seed": seed,
    });
    let h = pw_core::seed::fnv1a(key.to_string().as_bytes());
    (
        dir.join(format!("base-{h:016x}.safetensors")),
        dir.join(format!("base-{h:016x}.wall_s")),
    )
}

/// The folder of one experiment: named by a hash of everything its models depend on (the
/// settings, the seed, both arms' pairs, the references), so a changed setting or dataset trains anew instead
/// of reusing models that no longer match, and earlier results stay where they were.
pub fn experiment_dir(
    dir: &Path,
    cfg: &ClaimConfig,
    arms: &[(&str, Vec<(String, String)>)],
    refs: &[Reference],
    seed: u64,
) -> PathBuf {
    let mut c = cfg.clone();
    c.enabled = true;
    let key = serde_json::json!({"claim": c, "seed": seed, "arms": arms, "references": refs});
    let h = pw_core::seed::fnv1a(key.to_string().as_bytes());
    dir.join(format!("{h:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordnet_lines_become_sentences() {
        let l = "13097752 20 n 02 heartwood 0 duramen 0 002 @ 15098161 n 0000 #s 13104059 n 0000 | the older inactive central wood of a tree or woody plant; usually darker and denser than the surrounding sapwood  ";
        assert_eq!(
            wordnet_sentence(l).unwrap(),
            "Heartwood is the older inactive central wood of a tree or woody plant; usually darker and denser than the surrounding sapwood."
        );
        let l = "03643491 06 n 02 laser-guided_bomb 0 LGB 0 002 @ 04245847 n 0000 | a smart bomb that seeks the laser light; \"laser-guided bombs cannot be used in cloudy weather\"  ";
        assert_eq!(
            wordnet_sentence(l).unwrap(),
            "Laser-guided bomb is a smart bomb that seeks the laser light. Laser-guided bombs cannot be used in cloudy weather."
        );
        let l = "11512345 19 n 01 work 0 001 @ 1 n 0000 | (physics) a manifestation of energy; the transfer of energy  ";
        assert_eq!(
            wordnet_sentence(l).unwrap(),
            "In physics, work is a manifestation of energy; the transfer of energy."
        );
        assert_eq!(wordnet_sentence("  1 This software and database is"), None);
        assert_eq!(wordnet_sentence("00001740 03 n 01 entity 0 003"), None);
    }

    #[test]
    fn the_shipped_references_cover_every_split_with_disciplines_outside_the_taxonomy() {
        let refs = references(None).unwrap();
        let tax: crate::taxonomy::Taxonomy =
            toml::from_str(crate::reproduce::REVIEWED_TAXONOMY).unwrap();
        let taught: Vec<String> = tax.disciplines().iter().map(|d| d.name.clone()).collect();
        for r in &refs {
            let inside = taught.contains(&r.discipline);
            assert_eq!(inside, r.split == "seen", "{} ({})", r.discipline, r.split);
        }
        assert_eq!(refs.iter().filter(|r| r.split == "test").count(), 30);
        assert_eq!(refs.iter().filter(|r| r.split == "validation").count(), 20);
    }

    #[test]
    fn bad_reference_files_are_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        std::fs::write(
            &p,
            "{\"split\":\"test\",\"discipline\":\"x\",\"question\":\"q\",\"answer\":\"a\"}\n\
             {\"split\":\"dev\",\"discipline\":\"x\",\"question\":\"q\",\"answer\":\"a\"}\n",
        )
        .unwrap();
        let e = references(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("dev"), "{e}");
    }

    #[test]
    fn a_win_must_clear_the_interval_and_the_seed_spread() {
        let d = |mean: f64, hi: f64| PairedDiff {
            mean,
            lo: mean - 0.1,
            hi,
            n: 30,
        };
        assert!(beats(&d(-0.2, -0.05), 0.1));
        assert!(!beats(&d(-0.2, 0.01), 0.1), "interval crosses zero");
        assert!(!beats(&d(-0.2, -0.05), 0.3), "within the seed spread");
        assert!(!beats(&d(0.2, 0.3), 0.0), "worse");
    }
}
