//! The Self-Instruct arm of the central-claim experiment (Wang et al. 2023, the seed-example
//! method GLAN sets itself against): each new instruction is prompted from a few human-written
//! seed tasks (`data/self_instruct_seeds.jsonl`), then answered by the same answer model and
//! settings as GLAN's homework. Two resumable pw-llm stages, like GLAN's own.
//!
//! Self-Instruct's filter is kept: a new instruction whose ROUGE-L with a seed task, with the
//! prompt's own request, or with an earlier kept instruction is 0.7 or more is dropped (a copy
//! of a seed is retried with a new sample, then rejected). Self-Instruct also feeds its earlier
//! instructions back into the prompts; here every prompt draws from the seeds only.

use crate::config::GlanConfig;
use crate::dataset::Pair;
use crate::pipeline::params;
use pw_core::{Error, Result};
use pw_llm::ChatMessage;
use pw_llm::stage::{StageItem, StageRecord};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;

/// The seed tasks shipped with the crate: twelve everyday requests of the kinds Self-Instruct's
/// 175 seeds hold (advice, rewriting, classification, letters, explanation, lists, summary,
/// opinion, arithmetic, verse), written for this experiment.
/// What a Self-Instruct pair's `discipline` says (it has none).
pub const DISCIPLINE: &str = "self-instruct";

pub const SEEDS: &str = include_str!("../data/self_instruct_seeds.jsonl");

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTask {
    pub id: String,
    pub instruction: String,
}

/// The seed tasks of `path`, or the crate's own.
pub fn seed_tasks(path: Option<&Path>) -> Result<Vec<SeedTask>> {
    let (text, name) =
        crate::claim::file_or_shipped(path, SEEDS, "data/self_instruct_seeds.jsonl")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let t: SeedTask = serde_json::from_str(line)
            .map_err(|e| Error::Other(format!("{name} line {}: {e}", i + 1)))?;
        if t.instruction.trim().is_empty() {
            return Err(Error::Other(format!(
                "{name} line {}: empty instruction",
                i + 1
            )));
        }
        out.push(t);
    }
    if out.is_empty() {
        return Err(Error::Other(format!("{name}: no seed tasks")));
    }
    Ok(out)
}

pub fn instruction_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"instruction": {"type": "string", "maxLength": 1000}},
        "required": ["instruction"], "additionalProperties": false
    })
}

/// Self-Instruct's similarity bound: ROUGE-L of 0.7 or more with an existing task is a copy.
pub const MAX_ROUGE_L: f64 = 0.7;

/// The request every instruction prompt ends with (an instruction that repeats it is a copy).
pub const REQUEST: &str = "Invent one more task like these, on a new topic. Reply in JSON with \
                           the task in \"instruction\".";

/// ROUGE-L F-measure of two texts over their lower-cased words (longest common subsequence).
pub fn rouge_l(a: &str, b: &str) -> f64 {
    let (x, y) = (pw_data::dedup::words(a), pw_data::dedup::words(b));
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0usize; y.len() + 1];
    for xi in &x {
        let mut cur = vec![0usize; y.len() + 1];
        for (j, yj) in y.iter().enumerate() {
            cur[j + 1] = if xi == yj {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    let lcs = prev[y.len()] as f64;
    let (p, r) = (lcs / x.len() as f64, lcs / y.len() as f64);
    if lcs == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// The stage check of the instruction stage: the schema, then Self-Instruct's bound against the
/// seed tasks and the request.
pub fn instruction_check(
    seeds: &[SeedTask],
) -> impl Fn(&StageItem, &str) -> std::result::Result<Value, String> + '_ {
    move |item, text| {
        let v = pw_llm::stage::default_check(item, text)?;
        let inst = v["instruction"].as_str().unwrap_or_default();
        for (what, other) in seeds
            .iter()
            .map(|t| (t.id.as_str(), t.instruction.as_str()))
            .chain(std::iter::once(("the request", REQUEST)))
        {
            let r = rouge_l(inst, other);
            if r >= MAX_ROUGE_L {
                return Err(format!(
                    "a copy of {what} (ROUGE-L {r:.2}, bound {MAX_ROUGE_L})"
                ));
            }
        }
        Ok(v)
    }
}

/// `n` instruction requests, each showing `examples` seed tasks drawn by its own seed.
pub fn instruction_items(
    seeds: &[SeedTask],
    n: usize,
    cfg: &GlanConfig,
    seed: u64,
) -> Vec<StageItem> {
    let c = &cfg.claim.self_instruct;
    let schema = instruction_schema();
    (0..n)
        .map(|i| {
            let id = format!("self-instruct#i{i}");
            let mut rng = rand::rngs::StdRng::seed_from_u64(pw_core::seed::derive(seed, &id));
            let shown: Vec<&SeedTask> = seeds
                .choose_multiple(&mut rng, c.examples.min(seeds.len()))
                .collect();
            let list: String = shown
                .iter()
                .map(|t| format!("- {}", t.instruction))
                .collect::<Vec<_>>()
                .join("\n");
            StageItem {
                messages: vec![
                    ChatMessage::system("You invent tasks for an AI assistant."),
                    ChatMessage::user(format!(
                        "Examples of tasks people give an AI assistant:\n{list}\n\n{REQUEST}"
                    )),
                ],
                params: params(
                    &c.sampling,
                    pw_core::seed::derive(seed, &id),
                    Some(schema.clone()),
                ),
                meta: json!({"seed_tasks": shown.iter().map(|t| t.id.clone()).collect::<Vec<_>>()}),
                id,
            }
        })
        .collect()
}

/// An answer per instruction, by the answer model at GLAN's answer settings; the system message
/// asks for the same length as GLAN's (see [`crate::pipeline::answer_items`]).
pub fn answer_items(recs: &[StageRecord], cfg: &GlanConfig, seed: u64) -> Vec<StageItem> {
    let words = crate::pipeline::answer_words(cfg);
    recs.iter()
        .filter_map(|r| {
            let q = r.output["instruction"].as_str()?.trim().to_string();
            Some(StageItem {
                id: r.id.clone(),
                messages: vec![
                    ChatMessage::system(format!(
                        "You are a helpful assistant. Carry out the task correctly and \
                         completely, in at most {words} words.",
                    )),
                    ChatMessage::user(q.clone()),
                ],
                params: params(
                    &cfg.answers,
                    pw_core::seed::derive(seed, &format!("{}/a", r.id)),
                    None,
                ),
                meta: json!({"question": q, "question_model": r.model,
                             "question_seed": r.seed, "homework": {"subject": {"discipline": {"name": DISCIPLINE}}}}),
            })
        })
        .collect()
}

/// The Self-Instruct arm's stages and filtered pairs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SelfInstructData {
    pub stats: std::collections::BTreeMap<String, pw_llm::stage::StageStats>,
    pub answered: usize,
    pub kept: Vec<Pair>,
    /// Pairs removed, per filter (`rouge_l`: Self-Instruct's bound among new instructions).
    pub removed: std::collections::BTreeMap<String, usize>,
    /// Instructions rejected after their retries (a copy of a seed or of the request, or not
    /// JSON).
    pub rejected: usize,
}

/// The stage names (ledgers `<name>.jsonl` in the run directory).
pub const STAGE_INSTRUCTIONS: &str = "self_instruct";
pub const STAGE_ANSWERS: &str = "self_instruct_answers";

/// Generates (or resumes) the Self-Instruct arm in `dir` with GLAN's question and answer
/// models, and filters its pairs as GLAN's are filtered, less the question-form detector (a
/// task need not be a question) and the judge (which does not filter here: see the report).
/// Kept pairs go to `claim/self_instruct.jsonl`, removed ones to
/// `claim/self_instruct.filtered.jsonl`.
pub fn generate(
    cfg: &GlanConfig,
    dir: &Path,
    models: &crate::run::Models,
    assets: &Path,
    seed: u64,
) -> Result<SelfInstructData> {
    use crate::run::{ledger_path, rejected_count, run_glan_stage};
    use pw_core::{Ledger, Shard};
    let c = &cfg.claim.self_instruct;
    let n = if c.instructions > 0 {
        c.instructions
    } else {
        let hw = ledger_path(dir, "homework", Shard::ALL);
        if hw.exists() {
            Ledger::open(&hw)?.len()
        } else {
            0
        }
    };
    if n == 0 {
        return Err(Error::Other(
            "claim: no homework questions to match the Self-Instruct budget to (set \
             claim.self_instruct.instructions)"
                .into(),
        ));
    }
    let seeds = seed_tasks(c.seeds.as_deref())?;
    let mut data = SelfInstructData::default();
    type Check<'c> = dyn Fn(&StageItem, &str) -> std::result::Result<Value, String> + 'c;
    let mut stage =
        |name: &str, g: &dyn pw_llm::Generator, items, check: &Check| -> Result<Vec<StageRecord>> {
            let (st, records) = run_glan_stage(cfg, dir, name, Shard::ALL, g, items, check)?;
            data.stats.insert(name.to_string(), st);
            Ok(records)
        };
    let check = instruction_check(&seeds);
    let inst = stage(
        STAGE_INSTRUCTIONS,
        models.for_stage("homework"),
        instruction_items(&seeds, n, cfg, seed),
        &check,
    )?;
    // Self-Instruct's bound among the new instructions, in id order (the ledger holds them in
    // the order they finished)
    let index = |r: &StageRecord| -> usize {
        r.id.rsplit_once("#i")
            .and_then(|(_, i)| i.parse().ok())
            .unwrap_or(usize::MAX)
    };
    let mut inst = inst;
    inst.sort_by_key(|r| (index(r), r.id.clone()));
    let mut kept_inst: Vec<String> = Vec::new();
    let mut similar = 0usize;
    let inst: Vec<StageRecord> = inst
        .into_iter()
        .filter(|r| {
            let t = r.output["instruction"].as_str().unwrap_or_default();
            let copy = kept_inst.iter().any(|k| rouge_l(t, k) >= MAX_ROUGE_L);
            if copy {
                similar += 1;
            } else {
                kept_inst.push(t.to_string());
            }
            !copy
        })
        .collect();
    let answers = stage(
        STAGE_ANSWERS,
        models.for_stage("answers"),
        answer_items(&inst, cfg, seed),
        &pw_llm::stage::default_check,
    )?;
    let pairs = crate::dataset::pairs(&answers);
    data.answered = pairs.len();
    let bench = crate::dataset::contamination_index(
        &crate::run::benchmarks(cfg, assets)?,
        cfg.filters.ngram,
    )?;
    let dict = crate::run::dictionary(cfg)?;
    let limits = crate::quality::DetectorLimits {
        question_form: false,
        ..crate::quality::DetectorLimits::from(&cfg.filters)
    };
    let candidates = pairs
        .into_iter()
        .zip(&answers)
        .map(|(pair, rec)| crate::dataset::Candidate {
            truncated: rec.usage.completion_tokens >= cfg.answers.max_tokens as u64,
            detector: crate::quality::detect(
                &limits,
                dict.as_ref(),
                &pair.messages[0].text(),
                &pair.messages[1].text(),
            ),
            judge: crate::dataset::JudgeOutcome::Off,
            pair,
        })
        .collect();
    let (kept, removed, counts) = crate::dataset::filter(
        candidates,
        &crate::dataset::Filters {
            cfg: &cfg.filters,
            bench: &bench,
            judge_min: cfg.judge.min_score,
        },
    );
    let cdir = crate::claim::claim_dir(dir);
    std::fs::create_dir_all(&cdir).map_err(|e| Error::io(&cdir, e))?;
    pw_core::jsonl::write_jsonl(&cdir.join("self_instruct.jsonl"), &kept)?;
    pw_core::jsonl::write_jsonl(&cdir.join("self_instruct.filtered.jsonl"), &removed)?;
    data.kept = kept;
    data.removed = counts.into_iter().filter(|(_, v)| *v > 0).collect();
    if similar > 0 {
        data.removed.insert("rouge_l".into(), similar);
    }
    data.rejected = rejected_count(dir, STAGE_INSTRUCTIONS)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_show_distinct_seed_tasks_and_differ_by_item() {
        let seeds = seed_tasks(None).unwrap();
        assert_eq!(seeds.len(), 12);
        let cfg = GlanConfig::default();
        let items = instruction_items(&seeds, 4, &cfg, 7);
        assert_eq!(items.len(), 4);
        let shown = |i: &StageItem| -> Vec<String> {
            serde_json::from_value(i.meta["seed_tasks"].clone()).unwrap()
        };
        let a = shown(&items[0]);
        assert_eq!(a.len(), 3);
        let mut d = a.clone();
        d.dedup();
        assert_eq!(d.len(), 3);
        assert!(
            items.iter().any(|i| shown(i) != a),
            "each item draws its own seeds"
        );
        assert_eq!(
            items[0].messages,
            instruction_items(&seeds, 1, &cfg, 7)[0].messages
        );
    }

    #[test]
    fn rouge_l_sees_copies_of_seeds_and_of_the_request() {
        assert!((rouge_l("a b c d", "a b c d") - 1.0).abs() < 1e-12);
        // LCS "a c d" of 4 and 5 words: P 3/4, R 3/5
        let f = rouge_l("a b c d", "a x c d y");
        assert!((f - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-12, "{f}");
        assert_eq!(rouge_l("", "a"), 0.0);
        let seeds = seed_tasks(None).unwrap();
        let item = &instruction_items(&seeds, 1, &GlanConfig::default(), 1)[0];
        let check = instruction_check(&seeds);
        let reply = |t: &str| serde_json::json!({"instruction": t}).to_string();
        let e = check(
            item,
            &reply("Write a four-line poem about the first snow of winter."),
        )
        .unwrap_err();
        assert!(e.contains("seed10") && e.contains("ROUGE-L 1.00"), "{e}");
        let e = check(
            item,
            &reply("Invent one more task like these, on a new topic."),
        )
        .unwrap_err();
        assert!(e.contains("the request"), "{e}");
        assert!(
            check(
                item,
                &reply("Plan a three-day trip to Lisbon on a small budget.")
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_seed_files_are_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(&p, "{\"id\":\"a\",\"instruction\":\"x\"}\nnot json\n").unwrap();
        let e = seed_tasks(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
