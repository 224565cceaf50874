//! Heads on top of a transformer trunk: a classifier over a pooled sequence and a scalar value
//! head that scores every position (what an ORM/SORM-style value model needs).

use crate::fused::linear;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

/// Mean-pools the hidden states (ignoring padding) and maps them to class logits.
#[derive(Module, Debug)]
pub struct ClassifierHead {
    pub linear: Linear,
}

impl ClassifierHead {
    pub fn new(d_model: usize, n_classes: usize, device: &Device) -> Self {
        ClassifierHead {
            linear: LinearConfig::new(d_model, n_classes).init(device),
        }
    }

    /// `hidden`: [b, t, d]; `keep`: [b, t] with 1.0 for real tokens, 0.0 for padding.
    /// Returns logits [b, n_classes].
    pub fn forward(&self, hidden: Tensor<3>, keep: Option<Tensor<2>>) -> Tensor<2> {
        let [b, t, d] = hidden.dims();
        let pooled = match keep {
            Some(k) => {
                let w = k.reshape([b, t, 1]);
                let n = w.clone().sum_dim(1).clamp_min(1.0);
                (hidden * w).sum_dim(1) / n
            }
            None => hidden.mean_dim(1),
        };
        linear(&self.linear, pooled.reshape([b, d]))
    }
}

/// One scalar per position: the value (e.g. probability of eventually being correct) of the
/// prefix ending there.
#[derive(Module, Debug)]
pub struct ValueHead {
    pub linear: Linear,
}

impl ValueHead {
    pub fn new(d_model: usize, device: &Device) -> Self {
        ValueHead {
            linear: LinearConfig::new(d_model, 1).init(device),
        }
    }

    /// Logits [b, t] (apply `sigmoid` for probabilities).
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, _] = hidden.dims();
        linear(&self.linear, hidden).reshape([b, t])
    }

    pub fn probabilities(&self, hidden: Tensor<3>) -> Tensor<2> {
        sigmoid(self.forward(hidden))
    }
}
