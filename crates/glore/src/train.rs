//! Training: the masked language-model loss of the student and both refiners, the binary
//! cross-entropy of the ORM and SORM at step ends, one random-batch loop for both, and the
//! reproduction's training stages, each a checkpoint in the run directory so a killed run
//! resumes after its last finished model. SFT and Expert Iteration are in [`crate::student`].

use crate::config::TrainConfig;
use crate::model::ValueModel;
use crate::student::EiRound;
use pw_core::Result;
use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::activation::{log_sigmoid, log_softmax};
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::checkpoint::load_or_train;
use pw_nn::train::{LengthGroupedBatches, StepOutput, train_loop};
use pw_nn::transformer::CausalLm;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A training sequence: the loss covers the predictions of `tokens[loss_from..]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmExample {
    pub tokens: Vec<u32>,
    pub loss_from: usize,
}

/// A value-model training sequence with a 0/1 (or soft) label at each step end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueExample {
    pub tokens: Vec<u32>,
    pub positions: Vec<usize>,
    pub labels: Vec<f32>,
}

/// A training sequence's length in tokens: what a batch is padded to and grouped by.
trait Tokens {
    fn tokens(&self) -> usize;
}

impl Tokens for LmExample {
    fn tokens(&self) -> usize {
        self.tokens.len()
    }
}

impl Tokens for ValueExample {
    fn tokens(&self) -> usize {
        self.tokens.len()
    }
}

/// `cfg.steps` steps on random batches of `examples` that fit the model's context of
/// `max_len` tokens (longer ones, e.g. a rambling draft in a refiner pair, cannot be trained
/// on); `loss` maps a batch to (mean loss, supervised positions). Returns the model and its
/// loss curve.
fn train_on<M: Module, E: Tokens>(
    model: M,
    examples: &[E],
    max_len: usize,
    cfg: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
    loss: impl Fn(&M, &[&E]) -> (Tensor<1>, usize),
) -> (M, Vec<(usize, f32)>) {
    let examples: Vec<&E> = examples.iter().filter(|e| e.tokens() <= max_len).collect();
    assert!(!examples.is_empty(), "{label}: no training examples");
    let mut batches = LengthGroupedBatches::new(
        examples.iter().map(|e| e.tokens()).collect(),
        cfg.batch,
        cfg.length_group,
    );
    let (model, logs) = train_loop(
        model,
        cfg.steps,
        &cfg.optim(),
        label,
        25,
        |m, _| {
            let batch: Vec<&E> = batches
                .next_batch(rng)
                .into_iter()
                .map(|i| examples[i])
                .collect();
            let (loss, items) = loss(m, &batch);
            StepOutput { loss, items }
        },
        |_| true,
    );
    let curve: Vec<(usize, f32)> = logs.iter().map(|l| (l.step, l.loss)).collect();
    if let Some((step, loss)) = curve.last() {
        tracing::info!("{label}: loss {loss:.4} at step {step}");
    }
    (model, curve)
}

/// Fine-tunes `model` on `examples` (random batches, padded to the batch's longest, the loss
/// masked to the target tokens). Returns the model and its loss curve.
pub fn train_lm(
    model: CausalLm,
    examples: &[LmExample],
    cfg: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
) -> (CausalLm, Vec<(usize, f32)>) {
    let max_len = model.trunk.max_len;
    let device = model.head.weight.val().device();
    train_on(model, examples, max_len, cfg, rng, label, |m, batch| {
        let (x, y, mask, count) = lm_batch(batch, &device);
        let [b, t] = x.dims();
        let logp = log_softmax(m.forward(x), 2);
        let picked = logp.gather(2, y.reshape([b, t, 1])).reshape([b, t]);
        (-(picked * mask).sum() / count as f32, count)
    })
}

/// Trains a value model with binary cross-entropy at the labelled positions.
pub fn train_value(
    model: ValueModel,
    examples: &[ValueExample],
    cfg: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
) -> (ValueModel, Vec<(usize, f32)>) {
    let max_len = model.trunk.max_len;
    let device = model.head.linear.weight.val().device();
    train_on(model, examples, max_len, cfg, rng, label, |m, batch| {
        let (x, y, mask, count) = value_batch(batch, &device);
        let z = m.forward(x);
        let bce = -(y.clone() * log_sigmoid(z.clone()) + (y.ones_like() - y) * log_sigmoid(-z));
        ((bce * mask).sum() / count as f32, count)
    })
}

/// Rows padded to the longest: (tokens, per-position targets, mask, supervised positions).
type Batch<T> = (Tensor<2, Int>, Tensor<2, T>, Tensor<2>, usize);

fn lm_batch(batch: &[&LmExample], device: &Device) -> Batch<Int> {
    let t = batch
        .iter()
        .map(|e| e.tokens.len() - 1)
        .max()
        .unwrap_or(1)
        .max(1);
    let b = batch.len();
    let mut x = vec![0i64; b * t];
    let mut y = vec![0i64; b * t];
    let mut mask = vec![0f32; b * t];
    let mut count = 0;
    for (r, e) in batch.iter().enumerate() {
        for p in 0..e.tokens.len() - 1 {
            x[r * t + p] = e.tokens[p] as i64;
            y[r * t + p] = e.tokens[p + 1] as i64;
            if p + 1 >= e.loss_from {
                mask[r * t + p] = 1.0;
                count += 1;
            }
        }
    }
    (
        Tensor::from_data(TensorData::new(x, [b, t]), device),
        Tensor::from_data(TensorData::new(y, [b, t]), device),
        Tensor::from_data(TensorData::new(mask, [b, t]), device),
        count.max(1),
    )
}

fn value_batch(ex: &[&ValueExample], device: &Device) -> Batch<pw_nn::burn::tensor::Float> {
    let t = ex.iter().map(|e| e.tokens.len()).max().unwrap_or(1).max(1);
    let b = ex.len();
    let mut x = vec![0i64; b * t];
    let mut y = vec![0f32; b * t];
    let mut mask = vec![0f32; b * t];
    let mut count = 0;
    for (r, e) in ex.iter().enumerate() {
        for (p, &tok) in e.tokens.iter().enumerate() {
            x[r * t + p] = tok as i64;
        }
        for (&p, &l) in e.positions.iter().zip(&e.labels) {
            y[r * t + p] = l;
            mask[r * t + p] = 1.0;
            count += 1;
        }
    }
    (
        Tensor::from_data(TensorData::new(x, [b, t]), device),
        Tensor::from_data(TensorData::new(y, [b, t]), device),
        Tensor::from_data(TensorData::new(mask, [b, t]), device),
        count.max(1),
    )
}

/// What the student stage measured, kept beside its checkpoint so a resumed run reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudentSummary {
    pub val_accuracy: Vec<(String, f64)>,
    pub ei: Vec<EiRound>,
    pub train_s: f64,
}

/// The ORM or SORM: loaded from `path`, or trained from `template()` (the student's trunk
/// with a fresh head, or a from-scratch trunk) on `examples`.
pub fn value_model_stage(
    path: &Path,
    template: impl Fn() -> ValueModel,
    examples: &[ValueExample],
    cfg: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
) -> Result<ValueModel> {
    if examples.is_empty() && !path.exists() {
        // Nothing to learn from (e.g. every label of a tiny run negative): the untrained head
        // stands, and the report's figures show it.
        tracing::warn!("{label}: no training labels; the model is left untrained");
        return Ok(template());
    }
    load_or_train(path, &template, || {
        Ok(train_value(template(), examples, cfg, rng, label).0)
    })
}

/// A refiner: loaded from `path`, or fine-tuned from the student on its pairs.
pub fn refiner_stage(
    path: &Path,
    student: &CausalLm,
    examples: &[LmExample],
    cfg: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
) -> Result<CausalLm> {
    if examples.is_empty() && !path.exists() {
        // No question had both a wrong and a right rollout: the refiner is the student itself
        // (the report shows the pair counts).
        tracing::warn!("{label}: no training pairs; the student stands in for it");
        return Ok(student.clone());
    }
    load_or_train(
        path,
        || student.clone(),
        || Ok(train_lm(student.clone(), examples, cfg, rng, label).0),
    )
}
