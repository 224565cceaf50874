//! Inference strategies and their evaluation (the paper's "when, where and how").
//!
//! For every problem: a greedy draft; 3 samples (best-of-3 baseline, reranked by the ORM); the
//! ORM's score of the draft (*when*: refine when it is below a threshold picked on the
//! validation split); the SORM's values of the draft's prefixes (*where*: `[BAD]` before the
//! first step below 0.5); a global and a local refinement; the ORM reranks the candidates.
//! Step-level accuracy of ORM and SORM is measured against the exact truth of the generated
//! domain and against each other's labels.

use crate::label::Labelled;
use crate::model::{ValueModel, score, value_tokens};
use crate::policy::{ContinueRequest, Policy, RefineItem, StudentPolicy};
use crate::problem::{Problem, Solution};
use crate::vocab::Vocab;
use pw_core::Result;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Samples of the best-of-n baseline (3 in the paper).
    pub samples: usize,
    /// Temperatures tried for the best-of-n samples; the best on the validation split is used.
    pub sample_temperatures: Vec<f32>,
    /// The temperature in use (set from the validation split by the reproduction).
    pub sample_temperature: f32,
    /// A draft step whose SORM value is below this is where the local refiner starts (0.5).
    pub where_threshold: f32,
    /// Value-model scoring batch.
    pub score_batch: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            samples: 3,
            sample_temperatures: vec![0.3, 0.5, 0.7, 1.0],
            sample_temperature: 0.7,
            where_threshold: 0.5,
            score_batch: 64,
        }
    }
}

/// A candidate solution with the ORM's final score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub text: String,
    pub correct: bool,
    pub orm: f32,
}

/// Everything computed for one problem; strategies are decisions over it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub draft: Candidate,
    /// The SORM's value of each draft prefix (lines, then the answer line).
    pub draft_sorm: Vec<f32>,
    pub samples: Vec<Candidate>,
    pub global: Candidate,
    /// Where `[BAD]` went (None: the SORM flagged no step, no local refinement).
    pub bad_at: Option<usize>,
    pub local: Option<Candidate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    Greedy,
    BestOfN,
    Global,
    Local,
    GlobalLocal,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Greedy,
        Strategy::BestOfN,
        Strategy::Global,
        Strategy::Local,
        Strategy::GlobalLocal,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Greedy => "greedy",
            Strategy::BestOfN => "best-of-3 + ORM rerank",
            Strategy::Global => "global refinement + ORM rerank",
            Strategy::Local => "local refinement + ORM rerank",
            Strategy::GlobalLocal => "global + local + ORM rerank",
        }
    }
    fn uses_threshold(self) -> bool {
        matches!(
            self,
            Strategy::Global | Strategy::Local | Strategy::GlobalLocal
        )
    }
}

/// Is the answer `s` picks for `item` right, refining when the draft's ORM score is below `tau`?
pub fn decide(item: &Item, s: Strategy, tau: f32) -> bool {
    match s {
        Strategy::Greedy => item.draft.correct,
        Strategy::BestOfN => best(&item.samples.iter().collect::<Vec<_>>()),
        _ if item.draft.orm >= tau => item.draft.correct,
        Strategy::Global => best(&[&item.draft, &item.global]),
        Strategy::Local => best(
            &[Some(&item.draft), item.local.as_ref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        ),
        Strategy::GlobalLocal => best(
            &[Some(&item.draft), Some(&item.global), item.local.as_ref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        ),
    }
}

/// Accuracy of best-of-n + ORM rerank over each problem's samples (for picking the baseline's
/// temperature on the validation split).
pub fn best_of_n(samples: &[Vec<Candidate>]) -> f64 {
    let right = samples
        .iter()
        .filter(|g| best(&g.iter().collect::<Vec<_>>()))
        .count();
    right as f64 / samples.len().max(1) as f64
}

/// Is the candidate the ORM ranks highest right? (false when there is none)
fn best(cands: &[&Candidate]) -> bool {
    cands
        .iter()
        .max_by(|a, b| a.orm.total_cmp(&b.orm))
        .is_some_and(|c| c.correct)
}

pub fn accuracy(items: &[Item], s: Strategy, tau: f32) -> f64 {
    items.iter().filter(|i| decide(i, s, tau)).count() as f64 / items.len().max(1) as f64
}

/// The "when" threshold maximising `s`'s accuracy on `items` (the validation split): every
/// distinct draft score is a candidate; ties go to the lowest (refine least).
pub fn pick_threshold(items: &[Item], s: Strategy) -> f32 {
    if !s.uses_threshold() {
        return 0.0;
    }
    let mut cands: Vec<f32> = items.iter().map(|i| i.draft.orm).collect();
    cands.push(0.0);
    cands.push(1.0 + f32::EPSILON);
    cands.sort_by(f32::total_cmp);
    cands.dedup();
    let mut best = (f64::MIN, 0.0);
    for c in cands {
        // Refine drafts scoring strictly below the threshold: try just above each score.
        let tau = c + 1e-6;
        let a = accuracy(items, s, tau);
        if a > best.0 {
            best = (a, tau);
        }
    }
    best.1
}

/// A strategy's result on the test split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StrategyResult {
    pub strategy: String,
    pub threshold: Option<f32>,
    pub accuracy: f64,
    /// Share of wrong drafts made right, and of right drafts made wrong.
    pub fixed: f64,
    pub broken: f64,
}

pub fn strategy_result(items: &[Item], s: Strategy, tau: f32) -> StrategyResult {
    let wrong = items.iter().filter(|i| !i.draft.correct).count().max(1) as f64;
    let right = items.iter().filter(|i| i.draft.correct).count().max(1) as f64;
    let fixed = items
        .iter()
        .filter(|i| !i.draft.correct && decide(i, s, tau))
        .count() as f64
        / wrong;
    let broken = items
        .iter()
        .filter(|i| i.draft.correct && !decide(i, s, tau))
        .count() as f64
        / right;
    StrategyResult {
        strategy: s.name().into(),
        threshold: s.uses_threshold().then_some(tau),
        accuracy: accuracy(items, s, tau),
        fixed,
        broken,
    }
}

/// Of the wrong drafts: the share each refiner's output gets right (no ORM involved), and the
/// share either does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefinerAlone {
    pub wrong_drafts: usize,
    pub global_fixes: f64,
    pub local_fixes: f64,
    pub either_fixes: f64,
}

pub fn refiner_alone(items: &[Item]) -> RefinerAlone {
    let wrong: Vec<&Item> = items.iter().filter(|i| !i.draft.correct).collect();
    let n = wrong.len().max(1) as f64;
    let g = |i: &Item| i.global.correct;
    let l = |i: &Item| i.local.as_ref().is_some_and(|c| c.correct);
    RefinerAlone {
        wrong_drafts: wrong.len(),
        global_fixes: wrong.iter().filter(|i| g(i)).count() as f64 / n,
        local_fixes: wrong.iter().filter(|i| l(i)).count() as f64 / n,
        either_fixes: wrong.iter().filter(|i| g(i) || l(i)).count() as f64 / n,
    }
}

/// How much of the gap is the ORM's (issue 19): the paper's inference as written and two
/// oracles, on the same items as the strategies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Refine every draft and let the ORM rerank {draft, global, local}, no threshold: the
    /// paper's inference as written.
    pub refine_all_orm_rerank: f64,
    /// An oracle "when" (refine exactly the wrong drafts), the ORM reranks.
    pub oracle_when_orm_rerank: f64,
    /// An oracle rerank: right when any of {draft, global, local} is (the refiners' ceiling;
    /// with an oracle rerank, "when" no longer matters).
    pub oracle_rerank: f64,
}

pub fn bounds(items: &[Item]) -> Bounds {
    let n = items.len().max(1) as f64;
    let share = |f: &dyn Fn(&Item) -> bool| items.iter().filter(|i| f(i)).count() as f64 / n;
    let rerank_all = |i: &Item| decide(i, Strategy::GlobalLocal, f32::INFINITY);
    Bounds {
        refine_all_orm_rerank: share(&rerank_all),
        oracle_when_orm_rerank: share(&|i| i.draft.correct || rerank_all(i)),
        oracle_rerank: share(&|i| {
            i.draft.correct || i.global.correct || i.local.as_ref().is_some_and(|c| c.correct)
        }),
    }
}

/// `items` with every candidate's ORM score taken from `orm` instead (the candidates' texts do
/// not depend on the ORM, so one pipeline run serves every ORM of the learning curve).
pub fn rescore(
    vocab: &Vocab,
    orm: &ValueModel,
    problems: &[Problem],
    items: &[Item],
    batch: usize,
) -> Vec<Item> {
    let question: std::collections::HashMap<&str, &str> = problems
        .iter()
        .map(|p| (p.id.as_str(), p.question.as_str()))
        .collect();
    let sols: Vec<(&str, &str)> = items
        .iter()
        .flat_map(|it| {
            let q = question.get(it.id.as_str()).copied().unwrap_or_default();
            candidates_of(it).map(move |c| (q, c.text.as_str()))
        })
        .collect();
    let mut scores = values(vocab, orm, &sols, batch).into_iter();
    let mut next = |c: &Candidate| Candidate {
        orm: scores.next().and_then(|v| v.last().copied()).unwrap_or(0.0),
        ..c.clone()
    };
    items
        .iter()
        .map(|it| Item {
            draft: next(&it.draft),
            samples: it.samples.iter().map(&mut next).collect(),
            global: next(&it.global),
            local: it.local.as_ref().map(&mut next),
            ..it.clone()
        })
        .collect()
}

/// The value of every line prefix of each (question, solution text).
fn values(vocab: &Vocab, model: &ValueModel, sols: &[(&str, &str)], batch: usize) -> Vec<Vec<f32>> {
    let seqs: Vec<(Vec<u32>, Vec<usize>)> = sols
        .iter()
        .map(|(q, t)| value_tokens(vocab, q, &Solution::parse(t).lines()))
        .collect();
    score(model, &seqs, batch)
}

/// Every candidate of an item, in the order [`rescore`] scores them.
pub fn candidates_of(it: &Item) -> impl Iterator<Item = &Candidate> {
    std::iter::once(&it.draft)
        .chain(&it.samples)
        .chain(std::iter::once(&it.global))
        .chain(&it.local)
}

/// How often the ORM's verdict (value >= 0.5) agrees with the final answer's correctness over
/// every candidate of `items` (drafts, samples and refinements).
pub fn final_answer_accuracy(items: &[Item]) -> f64 {
    let (mut n, mut ok) = (0usize, 0usize);
    for c in items.iter().flat_map(candidates_of) {
        n += 1;
        ok += ((c.orm >= 0.5) == c.correct) as usize;
    }
    ok as f64 / n.max(1) as f64
}

/// The trained models of the pipeline.
pub struct Pipeline<'a> {
    pub vocab: &'a Vocab,
    pub student: &'a StudentPolicy,
    pub orm: &'a ValueModel,
    pub sorm: &'a ValueModel,
    pub global: &'a StudentPolicy,
    pub local: &'a StudentPolicy,
}

impl Pipeline<'_> {
    fn candidates(&self, problems: &[&Problem], texts: &[String], batch: usize) -> Vec<Candidate> {
        let pairs: Vec<(&str, &str)> = problems
            .iter()
            .zip(texts)
            .map(|(p, t)| (p.question.as_str(), t.as_str()))
            .collect();
        let v = values(self.vocab, self.orm, &pairs, batch);
        texts
            .iter()
            .zip(problems)
            .zip(v)
            .map(|((t, p), v)| Candidate {
                text: t.clone(),
                correct: Solution::parse(t).is_correct(&p.answer),
                orm: v.last().copied().unwrap_or(0.0),
            })
            .collect()
    }

    /// Runs every model over `problems`.
    pub fn run(&self, problems: &[Problem], cfg: &EvalConfig, seed: u64) -> Result<Vec<Item>> {
        let reqs: Vec<ContinueRequest> = problems.iter().map(ContinueRequest::from_start).collect();
        let err = pw_core::Error::Other;
        let drafts: Vec<String> = self
            .student
            .continue_batch(&reqs, 1, 0.0, seed)
            .map_err(err)?
            .into_iter()
            .map(|mut v| v.remove(0))
            .collect();
        let mut samples_it = self.samples(problems, cfg, seed)?.into_iter();
        let all: Vec<&Problem> = problems.iter().collect();
        let draft_c = self.candidates(&all, &drafts, cfg.score_batch);
        let pairs: Vec<(&str, &str)> = problems
            .iter()
            .zip(&drafts)
            .map(|(p, t)| (p.question.as_str(), t.as_str()))
            .collect();
        let draft_sorm = values(self.vocab, self.sorm, &pairs, cfg.score_batch);

        // Global refinement of every draft; the strategies decide which ones are used.
        let draft_lines: Vec<Vec<String>> =
            drafts.iter().map(|t| Solution::parse(t).lines()).collect();
        let g_items: Vec<_> = problems
            .iter()
            .zip(&draft_lines)
            .map(|(p, d)| RefineItem {
                id: format!("g/{}", p.id),
                question: p.question.clone(),
                draft: d.clone(),
                bad_at: None,
                forced: vec![],
            })
            .collect();
        let g_texts = self.global.refine_batch(&g_items, 0.0, seed);
        let global_c = self.candidates(&all, &g_texts, cfg.score_batch);

        // Local refinement where the SORM flags a step.
        let bad: Vec<Option<usize>> = draft_sorm
            .iter()
            .map(|v| v.iter().position(|&x| x < cfg.where_threshold))
            .collect();
        let mut l_items = Vec::new();
        let mut l_probs = Vec::new();
        for ((p, d), b) in problems.iter().zip(&draft_lines).zip(&bad) {
            if let Some(f) = *b {
                let steps = Solution::parse(&d.join("\n")).steps;
                let forced = steps[..f.min(steps.len())].to_vec();
                l_items.push(RefineItem {
                    id: format!("l/{}", p.id),
                    question: p.question.clone(),
                    draft: d.clone(),
                    bad_at: Some(f),
                    forced,
                });
                l_probs.push(p);
            }
        }
        let l_texts = self.local.refine_batch(&l_items, 0.0, seed);
        let mut local_c = self
            .candidates(&l_probs, &l_texts, cfg.score_batch)
            .into_iter();

        let mut items = Vec::with_capacity(problems.len());
        for (i, p) in problems.iter().enumerate() {
            items.push(Item {
                id: p.id.clone(),
                draft: draft_c[i].clone(),
                draft_sorm: draft_sorm[i].clone(),
                samples: samples_it.next().unwrap_or_default(),
                global: global_c[i].clone(),
                bad_at: bad[i],
                local: bad[i].and_then(|_| local_c.next()),
            });
        }
        Ok(items)
    }

    /// The best-of-n samples of each problem at `cfg.sample_temperature`, scored by the ORM
    /// (the same samples [`Pipeline::run`] draws with this seed).
    pub fn samples(
        &self,
        problems: &[Problem],
        cfg: &EvalConfig,
        seed: u64,
    ) -> Result<Vec<Vec<Candidate>>> {
        let reqs: Vec<ContinueRequest> = problems.iter().map(ContinueRequest::from_start).collect();
        let samples = self
            .student
            .continue_batch(&reqs, cfg.samples, cfg.sample_temperature, seed ^ 1)
            .map_err(pw_core::Error::Other)?;
        let flat_p: Vec<&Problem> = problems
            .iter()
            .flat_map(|p| std::iter::repeat_n(p, cfg.samples))
            .collect();
        let flat_s: Vec<String> = samples.into_iter().flatten().collect();
        let c = self.candidates(&flat_p, &flat_s, cfg.score_batch);
        Ok(c.chunks(cfg.samples.max(1)).map(|g| g.to_vec()).collect())
    }

    /// Step-level accuracy of ORM and SORM on labelled rollouts.
    pub fn step_metrics(&self, labelled: &[Labelled], cfg: &EvalConfig) -> StepMetrics {
        let pairs: Vec<(&str, String)> = labelled
            .iter()
            .map(|l| (l.question.as_str(), l.lines.join("\n")))
            .collect();
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(q, t)| (*q, t.as_str())).collect();
        let orm = values(self.vocab, self.orm, &refs, cfg.score_batch);
        let sorm = values(self.vocab, self.sorm, &refs, cfg.score_batch);
        let mut m = StepMetrics::default();
        let mut c = [[0usize; 3]; 2];
        let mut fin = [0usize; 2];
        for (l, (o, s)) in labelled.iter().zip(orm.iter().zip(&sorm)) {
            let Some(truth) = &l.truth else { continue };
            let n = l.lines.len().min(o.len()).min(truth.len());
            for i in 0..n {
                m.steps += 1;
                for (k, v) in [o, s].iter().enumerate() {
                    let pred = v[i] >= 0.5;
                    c[k][0] += (pred == truth[i]) as usize;
                    c[k][1] += (pred == l.correct) as usize;
                    c[k][2] += (pred == l.labels[i]) as usize;
                }
            }
            if n > 0
                && l.lines
                    .last()
                    .is_some_and(|x| x.starts_with(crate::problem::ANSWER_MARK))
            {
                m.finals += 1;
                fin[0] += ((o[n - 1] >= 0.5) == l.correct) as usize;
                fin[1] += ((s[n - 1] >= 0.5) == l.correct) as usize;
            }
        }
        let r = |x: usize, n: usize| x as f64 / n.max(1) as f64;
        m.orm_vs_truth = r(c[0][0], m.steps);
        m.orm_vs_orm_labels = r(c[0][1], m.steps);
        m.orm_vs_sorm_labels = r(c[0][2], m.steps);
        m.sorm_vs_truth = r(c[1][0], m.steps);
        m.sorm_vs_orm_labels = r(c[1][1], m.steps);
        m.sorm_vs_sorm_labels = r(c[1][2], m.steps);
        m.orm_final = r(fin[0], m.finals);
        m.sorm_final = r(fin[1], m.finals);
        m
    }
}

/// Step-level and final-answer accuracy of the two value models (prediction: value >= 0.5).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepMetrics {
    pub steps: usize,
    pub finals: usize,
    pub orm_vs_truth: f64,
    pub sorm_vs_truth: f64,
    pub orm_vs_orm_labels: f64,
    pub sorm_vs_orm_labels: f64,
    pub orm_vs_sorm_labels: f64,
    pub sorm_vs_sorm_labels: f64,
    pub orm_final: f64,
    pub sorm_final: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(correct: bool, orm: f32) -> Candidate {
        Candidate {
            text: String::new(),
            correct,
            orm,
        }
    }

    fn item(draft: Candidate, global: Candidate, local: Option<Candidate>) -> Item {
        Item {
            id: String::new(),
            draft,
            draft_sorm: vec![],
            samples: vec![c(false, 0.2), c(true, 0.9), c(false, 0.5)],
            global,
            bad_at: local.as_ref().map(|_| 0),
            local,
        }
    }

    #[test]
    fn the_orm_decides_when_to_refine_and_reranks_the_candidates() {
        let wrong_low = item(c(false, 0.1), c(true, 0.6), Some(c(false, 0.3)));
        assert!(!decide(&wrong_low, Strategy::Greedy, 0.5));
        assert!(decide(&wrong_low, Strategy::BestOfN, 0.5));
        assert!(decide(&wrong_low, Strategy::Global, 0.5));
        assert!(!decide(&wrong_low, Strategy::Local, 0.5));
        assert!(decide(&wrong_low, Strategy::GlobalLocal, 0.5));
        // Above the threshold the draft stands.
        assert!(!decide(&wrong_low, Strategy::GlobalLocal, 0.05));
        // No SORM flag: local-only keeps the draft.
        let no_flag = item(c(true, 0.2), c(false, 0.9), None);
        assert!(decide(&no_flag, Strategy::Local, 0.5));
        assert!(!decide(&no_flag, Strategy::GlobalLocal, 0.5));
    }

    #[test]
    fn oracle_bounds_bracket_the_orm_rerank() {
        let c = |correct: bool, orm: f32| Candidate {
            text: String::new(),
            correct,
            orm,
        };
        let item = |draft: Candidate, global: Candidate, local: Option<Candidate>| Item {
            id: String::new(),
            draft,
            draft_sorm: vec![],
            samples: vec![],
            global,
            bad_at: None,
            local,
        };
        let items = [
            // A right draft the ORM would swap for a wrong global refinement.
            item(c(true, 0.2), c(false, 0.9), None),
            // A wrong draft the ORM fixes with the local refinement.
            item(c(false, 0.1), c(false, 0.3), Some(c(true, 0.8))),
            // A wrong draft a refiner fixes but the ORM prefers the draft.
            item(c(false, 0.9), c(true, 0.4), None),
            // Nothing right.
            item(c(false, 0.5), c(false, 0.5), None),
        ];
        let b = bounds(&items);
        assert_eq!(b.refine_all_orm_rerank, 0.25);
        assert_eq!(b.oracle_when_orm_rerank, 0.5);
        assert_eq!(b.oracle_rerank, 0.75);
    }

    #[test]
    fn rescoring_gives_every_candidate_the_new_orms_score_of_its_own_text() {
        use crate::data::{GenConfig, generate_problems};
        use crate::model::ModelConfig;
        use pw_nn::train_device;
        let d = train_device(false).unwrap();
        let vocab = Vocab::domain();
        let orm = ValueModel::scratch(
            &ModelConfig {
                d_model: 16,
                n_layers: 1,
                n_heads: 2,
                max_len: 256,
            }
            .transformer(vocab.len()),
            &d,
        );
        let problems = generate_problems(&GenConfig::default(), 3, 7, "r");
        // Distinct texts in every slot, so a misordered score shows.
        let text = |p: &Problem, k: usize| {
            let mut lines = p.steps[..k.min(p.steps.len())].to_vec();
            lines.push(format!("#### {}", k + 1));
            lines.join("\n")
        };
        let cand = |p: &Problem, k: usize| Candidate {
            text: text(p, k),
            correct: false,
            orm: -1.0,
        };
        let items: Vec<Item> = problems
            .iter()
            .enumerate()
            .map(|(i, p)| Item {
                id: p.id.clone(),
                draft: cand(p, 0),
                draft_sorm: vec![],
                samples: vec![cand(p, 1), cand(p, 2)],
                global: cand(p, 3),
                bad_at: None,
                // one item without a local refinement
                local: (i != 1).then(|| cand(p, 4)),
            })
            .collect();
        let out = rescore(&vocab, &orm, &problems, &items, 2);
        for (it, p) in out.iter().zip(&problems) {
            assert_eq!(
                candidates_of(it).count(),
                if it.local.is_some() { 5 } else { 4 }
            );
            for c in candidates_of(it) {
                let seq = value_tokens(&vocab, &p.question, &Solution::parse(&c.text).lines());
                let want = *score(&orm, &[seq], 1)[0].last().unwrap();
                assert!((c.orm - want).abs() < 1e-5, "{} vs {want}", c.orm);
            }
        }
    }

    #[test]
    fn the_threshold_is_the_best_one_on_the_given_items() {
        let items = vec![
            item(c(false, 0.1), c(true, 0.6), None),
            item(c(true, 0.4), c(false, 0.9), None),
            item(c(true, 0.8), c(false, 0.95), None),
        ];
        let tau = pick_threshold(&items, Strategy::Global);
        assert!(tau > 0.1 && tau <= 0.4, "{tau}");
        assert_eq!(accuracy(&items, Strategy::Global, tau), 1.0);
        let r = strategy_result(&items, Strategy::Global, tau);
        assert_eq!((r.fixed, r.broken), (1.0, 0.0));
    }
}
