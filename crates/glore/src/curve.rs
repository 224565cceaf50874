//! The ORM's learning curve: ORMs trained on more or fewer rollouts per question, on more or
//! fewer questions, from the student (as the paper) or from scratch, each measured on the
//! validation split (final-answer accuracy, and the accuracy of the inference it drives), and
//! the reproduction's ORM chosen among them on validation only.
//!
//! ORM data is cheap (a sampled solution and its final answer; no verifying rollouts), so the
//! curve samples its own rollouts once, as many per question as its largest point needs, and
//! every point trains on a prefix of them (the points are nested).

use crate::config::TrainConfig;
use crate::evaluate::{
    Bounds, Item, Strategy, accuracy, bounds, final_answer_accuracy, pick_threshold,
};
use crate::label::Rollout;
use crate::model::{ModelConfig, value_tokens};
use crate::problem::Solution;
use crate::train::ValueExample;
use crate::vocab::Vocab;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where an ORM's trunk starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The student's weights (the paper's choice: the ORM starts from the policy).
    #[default]
    Student,
    /// Random weights.
    Scratch,
}

/// One ORM of the curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    /// The first `questions` training questions (all of them when there are fewer).
    pub questions: usize,
    /// Sampled solutions per question.
    pub rollouts: usize,
    #[serde(default)]
    pub init: Init,
    /// The shape of a from-scratch ORM (the student's when absent; a student-initialised ORM
    /// always has the student's shape).
    #[serde(default)]
    pub model: Option<ModelConfig>,
}

impl CurvePoint {
    pub fn new(questions: usize, rollouts: usize) -> CurvePoint {
        CurvePoint {
            questions,
            rollouts,
            init: Init::Student,
            model: None,
        }
    }

    pub fn scratch(questions: usize, rollouts: usize, model: Option<ModelConfig>) -> CurvePoint {
        CurvePoint {
            init: Init::Scratch,
            model,
            ..CurvePoint::new(questions, rollouts)
        }
    }

    /// The point with its question count clamped to the `available` training questions.
    pub fn clamped(self, available: usize) -> CurvePoint {
        CurvePoint {
            questions: self.questions.min(available),
            ..self
        }
    }

    /// The ORM's shape: the student's unless a from-scratch point names another.
    pub fn shape(&self, student: &ModelConfig) -> ModelConfig {
        match (self.init, self.model) {
            (Init::Scratch, Some(m)) => m,
            _ => *student,
        }
    }

    /// A file-name key: `q1000-r8-student`, `q1000-r8-scratch-d64-l2`.
    pub fn key(&self, student: &ModelConfig) -> String {
        let m = self.shape(student);
        match self.init {
            Init::Student => format!("q{}-r{}-student", self.questions, self.rollouts),
            Init::Scratch => format!(
                "q{}-r{}-scratch-d{}-l{}",
                self.questions, self.rollouts, m.d_model, m.n_layers
            ),
        }
    }

    pub fn describe(&self, student: &ModelConfig) -> String {
        let m = self.shape(student);
        let init = match self.init {
            Init::Student => "from the student".to_string(),
            Init::Scratch => format!("from scratch, d={} L={}", m.d_model, m.n_layers),
        };
        format!(
            "{} questions x {} rollouts, {init}",
            self.questions, self.rollouts
        )
    }
}

/// The curve's points and how long each ORM trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrmConfig {
    /// The learning curve; the reproduction's ORM is the point whose global + local + ORM
    /// rerank is most accurate on validation (ties: the higher final-answer accuracy on
    /// validation, then the earlier point).
    pub curve: Vec<CurvePoint>,
    /// Passes over a point's rollouts: steps = passes x rollouts / batch, within
    /// [min_steps, max_steps], so a point with more data also trains longer.
    pub passes: f64,
    pub min_steps: usize,
    pub max_steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    /// As [`TrainConfig::length_group`].
    pub length_group: usize,
}

impl Default for OrmConfig {
    fn default() -> Self {
        OrmConfig {
            curve: vec![CurvePoint::new(1000, 8)],
            passes: 3.0,
            min_steps: 100,
            max_steps: 2000,
            batch: 32,
            lr: 1e-3,
            warmup: 30,
            length_group: 8,
        }
    }
}

impl OrmConfig {
    /// The training schedule of a point with `examples` rollouts.
    pub fn train(&self, examples: usize) -> TrainConfig {
        let steps = (self.passes * examples as f64 / self.batch.max(1) as f64).ceil() as usize;
        TrainConfig {
            steps: steps.clamp(self.min_steps, self.max_steps.max(self.min_steps)),
            batch: self.batch,
            lr: self.lr,
            warmup: self.warmup,
            length_group: self.length_group,
        }
    }

    /// The points that will be trained with `available` training questions: clamped, in
    /// order, without repeats.
    pub fn points(&self, available: usize) -> Vec<CurvePoint> {
        let mut out: Vec<CurvePoint> = Vec::new();
        for p in &self.curve {
            let p = p.clamped(available);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.curve.is_empty() {
            return Err("orm.curve needs at least one point".into());
        }
        for p in &self.curve {
            if p.questions == 0 || p.rollouts == 0 {
                return Err(format!(
                    "orm.curve point questions {} rollouts {}: both must be at least 1",
                    p.questions, p.rollouts
                ));
            }
            if p.init == Init::Student && p.model.is_some() {
                return Err(
                    "orm.curve: a student-initialised point has the student's shape; `model` is for init = \"scratch\""
                        .into(),
                );
            }
            if let Some(m) = p.model
                && (m.d_model == 0 || m.n_heads == 0 || !m.d_model.is_multiple_of(m.n_heads))
            {
                return Err(format!(
                    "orm.curve model: d_model {} must be a positive multiple of n_heads {}",
                    m.d_model, m.n_heads
                ));
            }
        }
        if !(self.passes.is_finite() && self.passes > 0.0) {
            return Err(format!("orm.passes {} must be > 0", self.passes));
        }
        if self.batch == 0 || self.max_steps == 0 {
            return Err("orm.batch and orm.max_steps must be at least 1".into());
        }
        Ok(())
    }
}

/// The ORM training sequences of `point`: its questions' first `rollouts` solutions, each
/// labelled at every step end with whether its final answer is right.
pub fn examples(
    vocab: &Vocab,
    point: &CurvePoint,
    questions: &[(String, String)],
    rollouts: &HashMap<String, Vec<Rollout>>,
) -> Vec<ValueExample> {
    let mut out = Vec::new();
    for (id, question) in questions.iter().take(point.questions) {
        for r in rollouts.get(id).into_iter().flatten().take(point.rollouts) {
            let (tokens, positions) =
                value_tokens(vocab, question, &Solution::parse(&r.text).lines());
            let labels = vec![r.correct as u8 as f32; positions.len()];
            out.push(ValueExample {
                tokens,
                positions,
                labels,
            });
        }
    }
    out
}

/// What one ORM of the curve measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurveResult {
    pub key: String,
    pub point: CurvePoint,
    pub describe: String,
    /// Rollouts trained on, and the share with a right final answer.
    pub examples: usize,
    pub positive: f64,
    pub steps: usize,
    /// ORM verdict (value >= 0.5) against final-answer correctness over every candidate
    /// (drafts, samples, refinements) of the split.
    pub val_final: f64,
    pub test_final: f64,
    /// The "when" threshold of global + local + ORM rerank, picked on validation.
    pub threshold: f32,
    pub val_global_local: f64,
    /// Best-of-3 + this ORM's rerank, on the samples of the configured temperature (before
    /// the reproduction picks the baseline's temperature on validation).
    pub val_best_of_3: f64,
    pub test_global_local: f64,
    pub test_best_of_3: f64,
    pub test_bounds: Bounds,
    pub selected: bool,
}

/// Measures one ORM: `val` and `test` are the pipeline's items rescored by it.
pub fn measure(
    key: String,
    point: CurvePoint,
    describe: String,
    train: (&[ValueExample], usize),
    val: &[Item],
    test: &[Item],
) -> CurveResult {
    let (ex, steps) = train;
    let positive = ex
        .iter()
        .filter(|e| e.labels.first().is_some_and(|&y| y > 0.5))
        .count() as f64
        / ex.len().max(1) as f64;
    let tau = pick_threshold(val, Strategy::GlobalLocal);
    CurveResult {
        key,
        point,
        describe,
        examples: ex.len(),
        positive,
        steps,
        val_final: final_answer_accuracy(val),
        test_final: final_answer_accuracy(test),
        threshold: tau,
        val_global_local: accuracy(val, Strategy::GlobalLocal, tau),
        val_best_of_3: accuracy(val, Strategy::BestOfN, 0.0),
        test_global_local: accuracy(test, Strategy::GlobalLocal, tau),
        test_best_of_3: accuracy(test, Strategy::BestOfN, 0.0),
        test_bounds: bounds(test),
        selected: false,
    }
}

/// The index of the ORM the reproduction uses: the best global + local + ORM rerank on
/// validation, then the best final-answer accuracy on validation, then the earliest point.
/// Test figures play no part.
pub fn select(results: &[CurveResult]) -> usize {
    let mut best = 0;
    for (i, r) in results.iter().enumerate().skip(1) {
        let b = &results[best];
        if (r.val_global_local, r.val_final) > (b.val_global_local, b.val_final) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(val_gl: f64, val_final: f64, test_gl: f64) -> CurveResult {
        let b = Bounds {
            refine_all_orm_rerank: 0.0,
            oracle_when_orm_rerank: 0.0,
            oracle_rerank: 0.0,
        };
        CurveResult {
            key: String::new(),
            point: CurvePoint::new(1, 1),
            describe: String::new(),
            examples: 0,
            positive: 0.0,
            steps: 0,
            val_final,
            test_final: 0.0,
            threshold: 0.0,
            val_global_local: val_gl,
            val_best_of_3: 0.0,
            test_global_local: test_gl,
            test_best_of_3: 0.0,
            test_bounds: b,
            selected: false,
        }
    }

    #[test]
    fn selection_uses_validation_only() {
        // The third point is best on test, but validation decides.
        let r = [
            result(0.50, 0.70, 0.50),
            result(0.55, 0.70, 0.40),
            result(0.52, 0.90, 0.90),
        ];
        assert_eq!(select(&r), 1);
        // A tie on the downstream accuracy goes to the better final-answer accuracy, then to
        // the earlier point.
        let r = [result(0.5, 0.7, 0.0), result(0.5, 0.8, 0.0)];
        assert_eq!(select(&r), 1);
        let r = [result(0.5, 0.8, 0.0), result(0.5, 0.8, 1.0)];
        assert_eq!(select(&r), 0);
    }

    #[test]
    fn steps_grow_with_the_data_within_bounds() {
        let c = OrmConfig {
            passes: 2.0,
            batch: 10,
            min_steps: 50,
            max_steps: 300,
            ..Default::default()
        };
        assert_eq!(c.train(100).steps, 50);
        assert_eq!(c.train(1000).steps, 200);
        assert_eq!(c.train(10_000).steps, 300);
    }

    #[test]
    fn points_are_clamped_and_deduplicated_and_keys_name_them() {
        let student = ModelConfig::default();
        let c = OrmConfig {
            curve: vec![
                CurvePoint::new(1000, 8),
                CurvePoint::new(500, 8),
                CurvePoint::scratch(1000, 8, None),
            ],
            ..Default::default()
        };
        let p = c.points(500);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].key(&student), "q500-r8-student");
        assert_eq!(p[1].key(&student), "q500-r8-scratch-d128-l4");
        assert!(c.validate().is_ok());
        let bad = OrmConfig {
            curve: vec![CurvePoint {
                model: Some(student),
                ..CurvePoint::new(10, 2)
            }],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("scratch"));
        let bad = OrmConfig {
            curve: vec![],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn examples_take_nested_prefixes_of_the_rollouts() {
        let v = Vocab::domain();
        let qs: Vec<(String, String)> = (0..3)
            .map(|i| (format!("q{i}"), "Tom has 3 apples.".to_string()))
            .collect();
        let mut rs = HashMap::new();
        for (id, _) in &qs {
            rs.insert(
                id.clone(),
                (0..4)
                    .map(|j| Rollout {
                        id: format!("{id}/r{j}"),
                        question_id: id.clone(),
                        text: "3 + 1 = 4\n#### 4".into(),
                        correct: j % 2 == 0,
                    })
                    .collect(),
            );
        }
        let e = examples(&v, &CurvePoint::new(2, 3), &qs, &rs);
        assert_eq!(e.len(), 6);
        assert_eq!(e[0].labels.len(), e[0].positions.len());
        assert_eq!(e[1].labels[0], 0.0);
        assert_eq!(e[2].labels[0], 1.0);
    }
}
