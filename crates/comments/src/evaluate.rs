//! The miniature's metrics: NL-conditioned code likelihood, i.e. the bits per byte of a
//! function's body (comments removed) given its signature and docstring, on held-out
//! standard-library functions and on HumanEval's prompts and canonical solutions; paired
//! differences between two models with a 95% interval over the examples.

use crate::model::{BOS, PAD, encode};
use pw_nn::burn::tensor::activation::log_softmax;
use pw_nn::burn::tensor::{Int, Tensor, TensorData};
use pw_nn::transformer::CausalLm;
use serde::{Deserialize, Serialize};

/// A natural-language-conditioned example: the model reads `prompt`, is scored on `body`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NlExample {
    pub id: String,
    pub prompt: String,
    pub body: String,
}

/// Bits per byte of each example's body given its prompt.
pub fn bits_per_byte(model: &CausalLm, examples: &[NlExample], batch: usize) -> Vec<f64> {
    let device = model.head.weight.val().device();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch.max(1)) {
        let seqs: Vec<(Vec<u32>, usize)> = chunk
            .iter()
            .map(|e| {
                let mut s = vec![BOS];
                s.extend(encode(&e.prompt));
                let from = s.len();
                s.extend(encode(&e.body));
                (s, from)
            })
            .collect();
        let t = seqs
            .iter()
            .map(|(s, _)| s.len() - 1)
            .max()
            .unwrap_or(1)
            .max(1);
        let b = seqs.len();
        let mut x = vec![PAD as i64; b * t];
        let mut y = vec![0i64; b * t];
        let mut mask = vec![0f32; b * t];
        for (r, (s, from)) in seqs.iter().enumerate() {
            for p in 0..s.len() - 1 {
                x[r * t + p] = s[p] as i64;
                y[r * t + p] = s[p + 1] as i64;
                if p + 1 >= *from {
                    mask[r * t + p] = 1.0;
                }
            }
        }
        let xt = Tensor::<2, Int>::from_data(TensorData::new(x, [b, t]), &device);
        let yt = Tensor::<2, Int>::from_data(TensorData::new(y, [b, t]), &device);
        let mt = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &device);
        let logp = log_softmax(model.forward(xt), 2);
        let nll = -(logp.gather(2, yt.reshape([b, t, 1])).reshape([b, t]) * mt).sum_dim(1);
        let v: Vec<f32> = nll.into_data().try_to_vec().expect("f32 losses");
        for (k, e) in chunk.iter().enumerate() {
            out.push(v[k] as f64 / std::f64::consts::LN_2 / e.body.len().max(1) as f64);
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
}
