//! The models of the miniature: the student (a causal LM, also the shape of both refiners) and
//! the ORM/SORM value models (the student's trunk with a scalar head on every step end), their
//! sequence formats and their training loops.
//!
//! Formats (token level):
//! - solve: `<bos> question <sep> line \n line \n ... #### N <eos>`
//! - value: `<bos> question <sep> line \n ... #### N \n`, scored at every `\n` (one per prefix)
//! - refine: `<bos> question <sep> draft lines <ref> new lines <eos>`; the local refiner's draft
//!   has `[BAD]` before the first bad line, and its output starts with the draft's good prefix.

use crate::vocab::Vocab;
use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::activation::{log_sigmoid, log_softmax};
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::heads::ValueHead;
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use pw_nn::transformer::{CausalLm, Transformer, TransformerConfig};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// The student's shape (the refiners and value models share it: they start from its weights).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub max_len: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            max_len: 256,
        }
    }
}

impl ModelConfig {
    pub fn transformer(&self, vocab: usize) -> TransformerConfig {
        TransformerConfig {
            vocab_size: vocab,
            max_len: self.max_len,
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_layers: self.n_layers,
            mlp_ratio: 4,
            causal: true,
        }
    }
}

/// How long and how hard to train one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 400,
            batch: 32,
            lr: 1e-3,
            warmup: 40,
        }
    }
}

impl TrainConfig {
    fn optim(&self) -> OptimConfig {
        OptimConfig {
            lr: self.lr,
            warmup_steps: self.warmup.min(self.steps / 2),
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            grad_clip: Some(1.0),
            ..Default::default()
        }
    }
}

// ---- sequence formats ----

/// Tokens of solution lines: each line then `\n`, except the last, which ends with `end`.
pub fn lines_tokens(v: &Vocab, lines: &[String], end: Option<u32>) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        out.extend(v.encode(l));
        if i + 1 < lines.len() || end.is_none() {
            out.push(v.newline());
        } else if let Some(e) = end {
            out.push(e);
        }
    }
    out
}

/// `<bos> question <sep>` followed by `prefix` lines, each ended by `\n`.
pub fn solve_prompt(v: &Vocab, question: &str, prefix: &[String]) -> Vec<u32> {
    let mut t = vec![v.bos()];
    t.extend(v.encode(question));
    t.push(v.sep());
    t.extend(lines_tokens(v, prefix, None));
    t
}

/// The value-model sequence of a solution and the positions of its step ends.
pub fn value_tokens(v: &Vocab, question: &str, lines: &[String]) -> (Vec<u32>, Vec<usize>) {
    let t = solve_prompt(v, question, lines);
    let start = t.len() - lines_tokens(v, lines, None).len();
    let ends = (start..t.len()).filter(|&i| t[i] == v.newline()).collect();
    (t, ends)
}

/// `<bos> question <sep> draft <ref>`, with `[BAD]` before draft line `bad_at` when given.
pub fn refine_prompt(
    v: &Vocab,
    question: &str,
    draft: &[String],
    bad_at: Option<usize>,
) -> Vec<u32> {
    let mut t = vec![v.bos()];
    t.extend(v.encode(question));
    t.push(v.sep());
    for (i, l) in draft.iter().enumerate() {
        if bad_at == Some(i) {
            t.push(v.bad());
        }
        t.extend(v.encode(l));
        t.push(v.newline());
    }
    t.push(v.refine());
    t
}

// ---- language-model training (student, refiners) ----

/// A training sequence: the loss covers the predictions of `tokens[loss_from..]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmExample {
    pub tokens: Vec<u32>,
    pub loss_from: usize,
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
    // Longer sequences than the model's context cannot be trained on (a rambling draft in a
    // refiner pair): they are left out.
    let examples: Vec<&LmExample> = examples
        .iter()
        .filter(|e| e.tokens.len() <= max_len)
        .collect();
    assert!(!examples.is_empty(), "{label}: no training examples");
    let device = model.head.weight.val().device();
    let (model, logs) = train_loop(
        model,
        cfg.steps,
        &cfg.optim(),
        label,
        25,
        |m, _| {
            let idx: Vec<usize> = (0..cfg.batch)
                .map(|_| rng.random_range(0..examples.len()))
                .collect();
            let batch: Vec<&LmExample> = idx.iter().map(|&i| examples[i]).collect();
            let (x, y, mask, count) = lm_batch(&batch, &device);
            let [b, t] = x.dims();
            let logp = log_softmax(m.forward(x), 2);
            let picked = logp.gather(2, y.reshape([b, t, 1])).reshape([b, t]);
            let loss = -(picked * mask).sum() / count as f32;
            StepOutput { loss, items: count }
        },
        |_| true,
    );
    let curve: Vec<(usize, f32)> = logs.iter().map(|l| (l.step, l.loss)).collect();
    tracing::info!("{label}: loss {:?}", curve.last());
    (model, curve)
}

fn lm_batch(
    batch: &[&LmExample],
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>, usize) {
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

// ---- value models (ORM, SORM) ----

/// A transformer trunk with a scalar head: the value of the prefix ending at each position.
#[derive(Module, Debug)]
pub struct ValueModel {
    pub trunk: Transformer,
    pub head: ValueHead,
}

impl ValueModel {
    /// Starts from the student's trunk (as the paper's ORM and SORM start from the policy).
    pub fn from_student(student: &CausalLm, device: &Device) -> ValueModel {
        let d = student.head.weight.val().dims()[0];
        ValueModel {
            trunk: student.trunk.clone(),
            head: ValueHead::new(d, device),
        }
    }

    /// Logits [b, t].
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        self.head.forward(self.trunk.forward(tokens, None))
    }
}

/// A value-model training sequence with a 0/1 (or soft) label at each step end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueExample {
    pub tokens: Vec<u32>,
    pub positions: Vec<usize>,
    pub labels: Vec<f32>,
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
    let examples: Vec<&ValueExample> = examples
        .iter()
        .filter(|e| e.tokens.len() <= max_len)
        .collect();
    assert!(!examples.is_empty(), "{label}: no training examples");
    let device = model.head.linear.weight.val().device();
    let (model, logs) = train_loop(
        model,
        cfg.steps,
        &cfg.optim(),
        label,
        25,
        |m, _| {
            let idx: Vec<usize> = (0..cfg.batch)
                .map(|_| rng.random_range(0..examples.len()))
                .collect();
            let refs: Vec<&ValueExample> = idx.iter().map(|&i| examples[i]).collect();
            let (x, y, mask, count) = value_batch(&refs, &device);
            let z = m.forward(x);
            let bce = -(y.clone() * log_sigmoid(z.clone()) + (y.ones_like() - y) * log_sigmoid(-z));
            let loss = (bce * mask).sum() / count as f32;
            StepOutput { loss, items: count }
        },
        |_| true,
    );
    (model, logs.iter().map(|l| (l.step, l.loss)).collect())
}

fn value_batch(
    ex: &[&ValueExample],
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2>, Tensor<2>, usize) {
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

/// The value (probability) at each requested position of each sequence, in batches. A
/// sequence longer than the model's context is cut there; positions past it score 0.
pub fn score(model: &ValueModel, seqs: &[(Vec<u32>, Vec<usize>)], batch: usize) -> Vec<Vec<f32>> {
    let device = model.head.linear.weight.val().device();
    let max_len = model.trunk.max_len;
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(batch.max(1)) {
        let t = chunk
            .iter()
            .map(|(s, _)| s.len().min(max_len))
            .max()
            .unwrap_or(1)
            .max(1);
        let b = chunk.len();
        let mut x = vec![0i64; b * t];
        for (r, (s, _)) in chunk.iter().enumerate() {
            for (p, &tok) in s.iter().take(max_len).enumerate() {
                x[r * t + p] = tok as i64;
            }
        }
        let z = model.forward(Tensor::from_data(TensorData::new(x, [b, t]), &device));
        let probs = pw_nn::burn::tensor::activation::sigmoid(z)
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 values");
        for (r, (_, pos)) in chunk.iter().enumerate() {
            out.push(
                pos.iter()
                    .map(|&p| if p < t { probs[r * t + p] } else { 0.0 })
                    .collect(),
            );
        }
    }
    out
}
