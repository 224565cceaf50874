//! Global and local refinement (the paper's "how").
//!
//! Training data, both from the same labelled rollouts:
//! - global: (question, incorrect rollout) -> a correct rollout of the same question;
//! - local: (question, incorrect rollout with `[BAD]` before its first SORM-negative step) ->
//!   the good prefix followed by a correct verifying continuation sampled from that prefix
//!   during SORM labelling (from the empty prefix: a correct rollout).
//!
//! With a trained refiner (the miniature) the local refiner's output is forced to start with
//! the draft's prefix before `[BAD]`. With any pw-llm generator (`paperworks glore refine`) the
//! same two prompts are written as chat messages.

use crate::label::{Labelled, Verification, prefix_id};
use crate::model::{lines_tokens, refine_prompt};
use crate::problem::Solution;
use crate::train::LmExample;
use crate::vocab::Vocab;
use pw_llm::ChatMessage;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashMap};

fn example(
    v: &Vocab,
    question: &str,
    draft: &[String],
    bad_at: Option<usize>,
    target: &[String],
) -> LmExample {
    let prompt = refine_prompt(v, question, draft, bad_at);
    let loss_from = prompt.len();
    let mut tokens = prompt;
    tokens.extend(lines_tokens(v, target, Some(v.eos())));
    LmExample { tokens, loss_from }
}

/// The first line whose SORM label is negative.
pub fn first_negative(l: &Labelled) -> Option<usize> {
    l.labels.iter().position(|&y| !y)
}

/// (incorrect -> correct) pairs per question, at most `per_question` of them, drawn at random.
pub fn global_examples(
    v: &Vocab,
    labelled: &[Labelled],
    per_question: usize,
    rng: &mut StdRng,
) -> Vec<LmExample> {
    let mut by_q: BTreeMap<&str, (Vec<&Labelled>, Vec<&Labelled>)> = BTreeMap::new();
    for l in labelled {
        let e = by_q.entry(l.question_id.as_str()).or_default();
        if l.correct { e.0.push(l) } else { e.1.push(l) }
    }
    let mut out = Vec::new();
    for (_, (right, wrong)) in by_q {
        if right.is_empty() || wrong.is_empty() {
            continue;
        }
        let mut pairs: Vec<(&Labelled, &Labelled)> = wrong
            .iter()
            .flat_map(|w| right.iter().map(move |r| (*w, *r)))
            .collect();
        pairs.shuffle(rng);
        for (w, r) in pairs.into_iter().take(per_question) {
            out.push(example(v, &w.question, &w.lines, None, &r.lines));
        }
    }
    out
}

/// Local-refiner examples: for each incorrect rollout, `[BAD]` before its first negative step,
/// the target a correct verifying trace from the last positive prefix.
pub fn local_examples(
    v: &Vocab,
    labelled: &[Labelled],
    verifications: &HashMap<String, Verification>,
    answers: &HashMap<String, String>,
    rng: &mut StdRng,
) -> Vec<LmExample> {
    let mut correct_rollouts: HashMap<&str, Vec<&Labelled>> = HashMap::new();
    for l in labelled.iter().filter(|l| l.correct) {
        correct_rollouts
            .entry(l.question_id.as_str())
            .or_default()
            .push(l);
    }
    let mut out = Vec::new();
    for l in labelled.iter().filter(|l| !l.correct) {
        let Some(f) = first_negative(l) else { continue };
        let Some(gold) = answers.get(&l.question_id) else {
            continue;
        };
        // The reasoning lines only: the answer line is never part of a verified prefix.
        let steps: Vec<String> = Solution::parse(&l.lines.join("\n")).steps;
        let prefix: Vec<String> = steps[..f.min(steps.len())].to_vec();
        let target = if prefix.is_empty() {
            match correct_rollouts.get(l.question_id.as_str()) {
                Some(rs) if !rs.is_empty() => rs[rng.random_range(0..rs.len())].lines.clone(),
                _ => continue,
            }
        } else {
            let Some(ver) = verifications.get(&prefix_id(&l.question_id, &prefix)) else {
                continue;
            };
            let good: Vec<&String> = ver
                .continuations
                .iter()
                .filter(|c| Solution::parse(c).is_correct(gold))
                .collect();
            if good.is_empty() {
                continue;
            }
            let cont = Solution::parse(good[rng.random_range(0..good.len())]);
            let mut t = prefix.clone();
            t.extend(cont.lines());
            t
        };
        out.push(example(v, &l.question, &l.lines, Some(f), &target));
    }
    out
}

/// System prompt of a refiner behind a chat model.
pub const REFINER_SYSTEM: &str = "You check and correct solutions to math word problems. Write \
one short step per line and end with a last line `#### <number>` holding only the final answer.";

/// Global refinement as chat messages: the draft, and a request for a new whole solution.
pub fn global_messages(question: &str, draft: &[String]) -> Vec<ChatMessage> {
    let user = format!(
        "Question: {question}\n\nA draft solution, which may be wrong:\n{}\n\nWrite a new, correct \
         solution from the start.",
        draft.join("\n")
    );
    vec![ChatMessage::system(REFINER_SYSTEM), ChatMessage::user(user)]
}

/// Local refinement as chat messages: `[BAD]` before the first wrong step, and a request to
/// rewrite from there on (the lines before it are kept).
pub fn local_messages(question: &str, draft: &[String], bad_at: usize) -> Vec<ChatMessage> {
    let marked: Vec<String> = draft
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == bad_at {
                format!("[BAD] {l}")
            } else {
                l.clone()
            }
        })
        .collect();
    let user = format!(
        "Question: {question}\n\nA draft solution; the step marked [BAD] is its first wrong step:\n{}\n\n\
         Keep the steps before [BAD] and write the rest of the solution again from that step, \
         correctly. Write only the new steps.",
        marked.join("\n")
    );
    vec![ChatMessage::system(REFINER_SYSTEM), ChatMessage::user(user)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn lab(id: &str, lines: &[&str], labels: &[bool], correct: bool) -> Labelled {
        Labelled {
            id: id.into(),
            question_id: "q".into(),
            question: "Ann has 5 apples. She buys 3 more. How many apples does Ann have now?"
                .into(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
            correct,
            raw: labels.to_vec(),
            soft: vec![0.0; labels.len()],
            labels: labels.to_vec(),
            soft_labels: vec![0.0; labels.len()],
            keep: vec![true; labels.len()],
            truth: None,
        }
    }

    #[test]
    fn local_examples_mark_the_first_negative_step_and_continue_from_the_good_prefix() {
        let v = Vocab::domain();
        let wrong = lab(
            "q/r0",
            &["5 + 3 = 8", "8 + 1 = 10", "#### 10"],
            &[true, false, false],
            false,
        );
        let right = lab(
            "q/r1",
            &["5 + 3 = 8", "8 + 1 = 9", "#### 9"],
            &[true, true, true],
            true,
        );
        let prefix = vec!["5 + 3 = 8".to_string()];
        let ver = Verification {
            id: prefix_id("q", &prefix),
            question_id: "q".into(),
            prefix_len: 1,
            continuations: vec!["8 + 2 = 10\n#### 10".into(), "8 + 1 = 9\n#### 9".into()],
        };
        let vers: HashMap<_, _> = [(ver.id.clone(), ver)].into_iter().collect();
        let answers: HashMap<_, _> = [("q".to_string(), "9".to_string())].into_iter().collect();
        let mut rng = StdRng::seed_from_u64(0);
        let ex = local_examples(
            &v,
            &[wrong.clone(), right.clone()],
            &vers,
            &answers,
            &mut rng,
        );
        assert_eq!(ex.len(), 1);
        let text = v.decode(&ex[0].tokens);
        assert!(text.contains("[BAD] 8 + 1 = 10"), "{text}");
        assert!(text.ends_with("5 + 3 = 8\n8 + 1 = 9\n#### 9"), "{text}");
        let g = global_examples(&v, &[wrong, right], 4, &mut rng);
        assert_eq!(g.len(), 1);
        assert!(
            v.decode(&g[0].tokens[g[0].loss_from..])
                .starts_with("5 + 3 = 8\n8 + 1 = 9")
        );
    }
}

/// One refinement by a chat model, as written to `refinements.jsonl`: the chat messages with
/// the model's answer appended (OpenAI format, ready for fine-tuning a refiner when `correct`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Refinement {
    pub rollout_id: String,
    pub question_id: String,
    /// `global` or `local`.
    pub mode: String,
    pub bad_at: Option<usize>,
    pub messages: Vec<ChatMessage>,
    /// The whole refined solution (for local: the kept prefix, then the model's new steps).
    pub solution: String,
    pub correct: bool,
}

/// What `paperworks glore refine` measured.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RefineStats {
    pub wrong_drafts: usize,
    pub global_fixed: usize,
    pub local_fixed: usize,
    pub either_fixed: usize,
    pub wall_s: f64,
}

/// The ledger of [`refine_with_generator`] (chat messages, answer, correctness per refinement).
pub const REFINEMENTS_FILE: &str = "refinements.jsonl";

/// Global and local refinement of every incorrect labelled rollout by `generator`, `[BAD]` at
/// its first SORM-negative step; resumable (`refinements.jsonl` is a ledger keyed by
/// `<rollout>/<mode>`).
#[allow(clippy::too_many_arguments)] // one stage's inputs
pub fn refine_with_generator(
    generator: &dyn pw_llm::Generator,
    labelled: &[Labelled],
    answers: &HashMap<String, String>,
    dir: &std::path::Path,
    seed: u64,
    max_tokens: u32,
    temperature: f32,
    chunk: usize,
) -> pw_core::Result<RefineStats> {
    use pw_llm::{GenParams, Request};
    let t0 = std::time::Instant::now();
    let path = dir.join(REFINEMENTS_FILE);
    let mut ledger = pw_core::Ledger::open(&path)?;
    // (request, rollout, mode, [BAD] position, kept prefix lines)
    type Todo<'a> = (
        Request,
        &'a Labelled,
        &'static str,
        Option<usize>,
        Vec<String>,
    );
    let mut todo: Vec<Todo> = Vec::new();
    for l in labelled
        .iter()
        .filter(|l| !l.correct && answers.contains_key(&l.question_id))
    {
        let steps = Solution::parse(&l.lines.join("\n")).steps;
        let params = |id: &str| GenParams {
            temperature,
            max_tokens,
            seed: Some(crate::policy::seed_for(seed, id)),
            ..Default::default()
        };
        let gid = format!("{}/global", l.id);
        if !ledger.contains(&gid) {
            let req = Request::new(
                gid.clone(),
                global_messages(&l.question, &l.lines),
                params(&gid),
            );
            todo.push((req, l, "global", None, vec![]));
        }
        if let Some(f) = first_negative(l) {
            let lid = format!("{}/local", l.id);
            if !ledger.contains(&lid) {
                let req = Request::new(
                    lid.clone(),
                    local_messages(&l.question, &l.lines, f),
                    params(&lid),
                );
                todo.push((
                    req,
                    l,
                    "local",
                    Some(f),
                    steps[..f.min(steps.len())].to_vec(),
                ));
            }
        }
    }
    ledger.fill_in_chunks(
        &todo,
        chunk,
        "refining",
        |(req, ..)| req.id.as_str(),
        |batch| {
            let reqs: Vec<Request> = batch.iter().map(|(r, ..)| r.clone()).collect();
            let results = pw_llm::generate_all(generator, reqs);
            batch
                .iter()
                .zip(results)
                .map(|((req, l, mode, bad_at, kept), res)| {
                    let c = res.map_err(|e| {
                        pw_core::Error::Other(format!("refining with {}: {e}", generator.model()))
                    })?;
                    let out = c.text().to_string();
                    let solution = crate::policy::join_lines(kept, &out);
                    let mut messages = req.messages.clone();
                    messages.push(ChatMessage::assistant(out));
                    Ok(Refinement {
                        rollout_id: l.id.clone(),
                        question_id: l.question_id.clone(),
                        mode: mode.to_string(),
                        bad_at: *bad_at,
                        correct: Solution::parse(&solution).is_correct(&answers[&l.question_id]),
                        messages,
                        solution,
                    })
                })
                .collect()
        },
    )?;
    drop(ledger);
    let all: Vec<Refinement> = pw_core::Ledger::read_all(&path)?;
    let mut by_rollout: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for r in &all {
        let e = by_rollout.entry(r.rollout_id.as_str()).or_default();
        if r.mode == "global" {
            e.0 |= r.correct
        } else {
            e.1 |= r.correct
        }
    }
    Ok(RefineStats {
        wrong_drafts: by_rollout.len(),
        global_fixed: by_rollout.values().filter(|v| v.0).count(),
        local_fixed: by_rollout.values().filter(|v| v.1).count(),
        either_fixed: by_rollout.values().filter(|v| v.0 || v.1).count(),
        wall_s: t0.elapsed().as_secs_f64(),
    })
}
