//! A byte-level language model and its two uses shared by paper crates: next-byte training on
//! random windows of a packed corpus, and the bits per byte of a text given a prompt.
//!
//! The model is [`CausalLm`] over 256 byte tokens plus BOS, EOS and PAD: no tokenizer to train,
//! and bits per byte compare across any two models and texts.

use crate::schedule::OptimConfig;
use crate::train::{StepOutput, train_loop};
use crate::transformer::{CausalLm, TransformerConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub const BOS: u32 = 256;
pub const EOS: u32 = 257;
pub const PAD: u32 = 258;
pub const VOCAB: usize = 259;

/// The shape of a byte-level model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    /// Bytes per training window and most bytes of an evaluated text (prompt + body).
    pub max_len: usize,
}

impl Default for LmConfig {
    fn default() -> Self {
        LmConfig {
            d_model: 128,
            n_heads: 4,
            n_layers: 3,
            max_len: 512,
        }
    }
}

impl LmConfig {
    /// Range checks; `key` prefixes the setting named in the error (e.g. `lm`).
    pub fn check(&self, key: &str) -> Result<(), String> {
        for (k, v) in [
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("n_layers", self.n_layers),
        ] {
            if v == 0 {
                return Err(format!("{key}.{k} must be at least 1"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(format!(
                "{key}.d_model {} is not a multiple of {key}.n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if self.max_len < 64 {
            return Err(format!(
                "{key}.max_len {} must be at least 64 (a prompt and the start of its text)",
                self.max_len
            ));
        }
        Ok(())
    }
}

/// One training run's length and optimiser (AdamW, warmup then cosine decay to 10%).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
            batch: 16,
            lr: 2e-3,
            warmup: 50,
        }
    }
}

impl TrainConfig {
    pub fn optim(&self) -> OptimConfig {
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

/// The bytes of `text` as token ids.
pub fn encode(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

pub fn transformer_config(cfg: &LmConfig) -> TransformerConfig {
    TransformerConfig {
        vocab_size: VOCAB,
        max_len: cfg.max_len,
        d_model: cfg.d_model,
        n_heads: cfg.n_heads,
        n_layers: cfg.n_layers,
        mlp_ratio: 4,
        causal: true,
    }
}

pub fn new_lm(cfg: &LmConfig, device: &Device) -> CausalLm {
    CausalLm::new(&transformer_config(cfg), device)
}

/// The texts packed into one token stream, each framed by BOS ... EOS.
pub fn pack(texts: &[String]) -> Vec<u32> {
    let mut s = Vec::with_capacity(texts.iter().map(|t| t.len() + 2).sum());
    for t in texts {
        s.push(BOS);
        s.extend(encode(t));
        s.push(EOS);
    }
    s
}

/// Trains on random windows of `stream`; every `eval_every` steps (and after the last)
/// `eval(model, step)` sees the model, e.g. to keep the best on validation. Returns the
/// model and the loss curve.
pub fn train_windows(
    model: CausalLm,
    stream: &[u32],
    cfg: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
    eval_every: Option<usize>,
    eval: &mut dyn FnMut(&CausalLm, usize),
) -> (CausalLm, Vec<(usize, f32)>) {
    let max_len = model.trunk.max_len;
    let device = model.head.weight.val().device();
    let win = max_len.min(stream.len().saturating_sub(1)).max(2);
    let (model, logs) = train_loop(
        model,
        cfg.steps,
        &cfg.optim(),
        label,
        25,
        |m, step| {
            if let Some(e) = eval_every
                && step > 0
                && step % e == 0
            {
                eval(m, step);
            }
            let mut x = Vec::with_capacity(cfg.batch * win);
            let mut y = Vec::with_capacity(cfg.batch * win);
            for _ in 0..cfg.batch {
                let start = rng.random_range(0..stream.len() - win);
                x.extend(stream[start..start + win].iter().map(|&t| t as i64));
                y.extend(stream[start + 1..start + win + 1].iter().map(|&t| t as i64));
            }
            let x = Tensor::<2, Int>::from_data(TensorData::new(x, [cfg.batch, win]), &device);
            let y = Tensor::<2, Int>::from_data(TensorData::new(y, [cfg.batch, win]), &device);
            let logp = log_softmax(m.forward(x), 2);
            let picked = logp.gather(2, y.reshape([cfg.batch, win, 1]));
            StepOutput {
                loss: -picked.mean(),
                items: cfg.batch * win,
            }
        },
        |_| true,
    );
    if eval_every.is_some() {
        eval(&model, cfg.steps);
    }
    (model, logs.iter().map(|l| (l.step, l.loss)).collect())
}

/// A prompt-conditioned example: the model reads `prompt`, is scored on `body`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NlExample {
    pub id: String,
    pub prompt: String,
    pub body: String,
}

/// One padded batch of BOS + prompt + body sequences: inputs, next-byte targets and a mask
/// that is 1 where the target is a byte of the body (or the EOS after it, with `eos`).
/// Sequences longer than `max_len + 1` keep their first `max_len + 1` tokens (`usize::MAX`:
/// no limit).
pub fn prompt_body_batch(
    pairs: &[(&str, &str)],
    eos: bool,
    max_len: usize,
) -> (Vec<i64>, Vec<i64>, Vec<f32>, [usize; 2]) {
    let seqs: Vec<(Vec<u32>, usize)> = pairs
        .iter()
        .map(|(p, b)| {
            let mut s = vec![BOS];
            s.extend(encode(p));
            let from = s.len();
            s.extend(encode(b));
            if eos {
                s.push(EOS);
            }
            s.truncate(max_len.saturating_add(1));
            (s, from)
        })
        .collect();
    let t = seqs
        .iter()
        .map(|(s, _)| s.len().saturating_sub(1))
        .max()
        .unwrap_or(1)
        .max(1);
    let b = seqs.len();
    let mut x = vec![PAD as i64; b * t];
    let mut y = vec![0i64; b * t];
    let mut mask = vec![0f32; b * t];
    for (r, (s, from)) in seqs.iter().enumerate() {
        for p in 0..s.len().saturating_sub(1) {
            x[r * t + p] = s[p] as i64;
            y[r * t + p] = s[p + 1] as i64;
            if p + 1 >= *from {
                mask[r * t + p] = 1.0;
            }
        }
    }
    (x, y, mask, [b, t])
}

/// The summed negative log-likelihood (nats) of each row's masked targets.
pub fn masked_nll(
    model: &CausalLm,
    x: Vec<i64>,
    y: Vec<i64>,
    mask: Vec<f32>,
    shape: [usize; 2],
) -> Tensor<1> {
    let device = model.head.weight.val().device();
    let [b, t] = shape;
    let xt = Tensor::<2, Int>::from_data(TensorData::new(x, [b, t]), &device);
    let yt = Tensor::<2, Int>::from_data(TensorData::new(y, [b, t]), &device);
    let mt = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &device);
    let logp = log_softmax(model.forward(xt), 2);
    (-(logp.gather(2, yt.reshape([b, t, 1])).reshape([b, t]) * mt).sum_dim(1)).reshape([b])
}

/// Bits per byte of each example's body given its prompt; of the bytes that fit the model's
/// context when the example is longer. Run it on a model off the autodiff device: a forward
/// pass there records a graph that no backward frees.
pub fn bits_per_byte(model: &CausalLm, examples: &[NlExample], batch: usize) -> Vec<f64> {
    let max_len = model.trunk.max_len;
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch.max(1)) {
        let pairs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|e| (e.prompt.as_str(), e.body.as_str()))
            .collect();
        let (x, y, mask, shape) = prompt_body_batch(&pairs, false, max_len);
        let scored: Vec<f32> = mask
            .chunks(shape[1])
            .map(|r| r.iter().sum::<f32>())
            .collect();
        let nll = masked_nll(model, x, y, mask, shape);
        let v: Vec<f32> = nll.into_data().try_to_vec().expect("f32 losses");
        for k in 0..chunk.len() {
            out.push(v[k] as f64 / std::f64::consts::LN_2 / scored[k].max(1.0) as f64);
        }
    }
    out
}

pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Mean of `a - b` over paired examples and its 95% interval (normal approximation).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PairedDiff {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

pub fn paired_diff(a: &[f64], b: &[f64]) -> PairedDiff {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    let m = mean(&d);
    let var = if n > 1 {
        d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let se = (var / n.max(1) as f64).sqrt();
    PairedDiff {
        mean: m,
        lo: m - 1.96 * se,
        hi: m + 1.96 * se,
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_interval_brackets_a_constant_shift() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [0.5, 1.4, 2.6, 3.5];
        let d = paired_diff(&a, &b);
        assert!((d.mean - 0.5).abs() < 1e-9 && d.lo < 0.5 && d.hi > 0.5 && d.lo > 0.0);
    }

    #[test]
    fn the_mask_covers_the_body_and_eos_only_and_long_rows_are_cut() {
        let (x, y, m, [b, t]) = prompt_body_batch(&[("ab", "cd"), ("a", "b")], true, 16);
        assert_eq!([b, t], [2, 5]);
        // row 0: BOS a b c d EOS -> targets a b c d EOS, scored on c d EOS
        assert_eq!(&x[..5], &[BOS as i64, 97, 98, 99, 100]);
        assert_eq!(&y[..5], &[97, 98, 99, 100, EOS as i64]);
        assert_eq!(&m[..5], &[0.0, 0.0, 1.0, 1.0, 1.0]);
        // row 1: BOS a b EOS, padded
        assert_eq!(&m[5..], &[0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(x[8], PAD as i64);
        let (_, _, m, [_, t]) = prompt_body_batch(&[("ab", "cdefgh")], true, 4);
        assert_eq!(t, 4);
        assert_eq!(m, vec![0.0, 0.0, 1.0, 1.0]);
    }
}
