//! The SORM label of each step from its K verifying rollouts (hard: any reaches the gold
//! answer; soft: the share that do) and the paper's post-processing (Sec. 3.2): 1. once a step
//! is positive every earlier step is ([`monotone`]); 2. a success counts only when the
//! continuation uses the step's intermediate result ([`uses_result`]); 3. training keeps equally
//! many positive and negative labels at every step index ([`balance`]).

use crate::label::{LabelConfig, Labelled, Rollout, Verification, prefix_id};
use crate::problem::{Problem, Solution, Step, prefix_truth};
use pw_core::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashMap};

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
