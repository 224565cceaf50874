//! The models of the miniature: the student (a causal LM, also the shape of both refiners) and
//! the ORM/SORM value models (the student's trunk with a scalar head on every step end) and
//! their sequence formats. Their training loops are in [`crate::train`].
//!
//! Formats (token level):
//! - solve: `<bos> question <sep> line \n line \n ... #### N <eos>`
//! - value: `<bos> question <sep> line \n ... #### N \n`, scored at every `\n` (one per prefix)
//! - refine: `<bos> question <sep> draft lines <ref> new lines <eos>`; the local refiner's draft
//!   has `[BAD]` before the first bad line, and its output starts with the draft's good prefix.

use crate::vocab::Vocab;
use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::heads::ValueHead;
use pw_nn::transformer::{CausalLm, Transformer, TransformerConfig};
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

    /// A random trunk of shape `cfg` with a fresh head.
    pub fn scratch(cfg: &TransformerConfig, device: &Device) -> ValueModel {
        ValueModel {
            trunk: Transformer::new(cfg, device),
            head: ValueHead::new(cfg.d_model, device),
        }
    }

    /// Logits [b, t].
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        self.head.forward(self.trunk.forward(tokens, None))
    }
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
