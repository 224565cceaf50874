//! The network whose parameters p-diff learns to generate: a small CNN for 28x28 grey images
//! with normalisation layers. p-diff keeps training only the last two normalisation layers
//! (here `ln1` and `ln2`: 2 x 512 + 2 x 256 = 1,536 values, the paper's ResNet-18 subset is
//! 2,048), so the network splits into a trunk that stays fixed ([`Cnn::features`]) and a head
//! that holds the generated parameters ([`Cnn::head`]). Evaluating a generated model then only
//! runs the head over cached features.

use pw_nn::burn;
use pw_nn::burn::module::Module;
use pw_nn::burn::nn::conv::{Conv2d, Conv2dConfig};
use pw_nn::burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use pw_nn::burn::nn::{
    GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use pw_nn::burn::tensor::activation::relu;
use pw_nn::burn::tensor::{Device, Tensor};

/// Width of the first hidden layer (`ln1`) and the second (`ln2`).
pub const H1: usize = 512;
pub const H2: usize = 256;

#[derive(Module, Debug)]
pub struct Cnn {
    pub conv1: Conv2d,
    pub gn1: GroupNorm,
    pub conv2: Conv2d,
    pub gn2: GroupNorm,
    pub pool: MaxPool2d,
    pub fc1: Linear,
    pub ln1: LayerNorm,
    pub fc2: Linear,
    pub ln2: LayerNorm,
    pub fc3: Linear,
}

impl Cnn {
    pub fn new(device: &Device) -> Self {
        let conv = |a, b| {
            Conv2dConfig::new([a, b], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Cnn {
            conv1: conv(1, 16),
            gn1: GroupNormConfig::new(4, 16).init(device),
            conv2: conv(16, 32),
            gn2: GroupNormConfig::new(8, 32).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(32 * 7 * 7, H1).init(device),
            ln1: LayerNormConfig::new(H1).init(device),
            fc2: LinearConfig::new(H1, H2).init(device),
            ln2: LayerNormConfig::new(H2).init(device),
            fc3: LinearConfig::new(H2, 10).init(device),
        }
    }

    /// Trunk: images [b, 1, 28, 28] -> pre-norm features [b, H1] (the input of `ln1`).
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = self
            .pool
            .forward(relu(self.gn1.forward(self.conv1.forward(x))));
        let h = self
            .pool
            .forward(relu(self.gn2.forward(self.conv2.forward(h))));
        let [b, c, hh, ww] = h.dims();
        self.fc1.forward(h.reshape([b, c * hh * ww]))
    }

    /// Head: features -> logits [b, 10]. Holds `ln1` and `ln2`, the parameters p-diff generates.
    pub fn head(&self, f: Tensor<2>) -> Tensor<2> {
        let h = relu(pw_nn::fused::layer_norm(&self.ln1, f));
        let h = relu(pw_nn::fused::layer_norm(&self.ln2, self.fc2.forward(h)));
        self.fc3.forward(h)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head(self.features(x))
    }
}

/// The tensor names of the default parameter subset (the last two normalisation layers).
pub const SUBSET: [&str; 4] = ["ln1.gamma", "ln1.beta", "ln2.gamma", "ln2.beta"];

/// Which parameters p-diff keeps training and generates. All live in the head, so cached trunk
/// features stay valid whichever is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// `ln1` and `ln2`: 1,536 values (the paper's choice: the last two normalisation layers).
    #[default]
    LastTwoNorms,
    /// `ln2` only: 512 values.
    LastNorm,
    /// The classifier `fc3`: 2,570 values.
    LastLinear,
}

impl Subset {
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Subset::LastTwoNorms => &SUBSET,
            Subset::LastNorm => &["ln2.gamma", "ln2.beta"],
            Subset::LastLinear => &["fc3.weight", "fc3.bias"],
        }
    }

    /// `m` with gradients recorded for this subset only; and the subset's parameter ids.
    pub fn trainable(self, m: Cnn) -> (Cnn, Vec<burn::module::ParamId>) {
        let mut m = m.no_grad();
        let mut ids = Vec::new();
        let norm = |ln: &mut LayerNorm, ids: &mut Vec<_>| {
            ln.gamma = ln.gamma.clone().set_require_grad(true);
            ln.beta = ln.beta.take().map(|b| b.set_require_grad(true));
            ids.push(ln.gamma.id);
            ids.extend(ln.beta.as_ref().map(|b| b.id));
        };
        match self {
            Subset::LastTwoNorms => {
                norm(&mut m.ln1, &mut ids);
                norm(&mut m.ln2, &mut ids);
            }
            Subset::LastNorm => norm(&mut m.ln2, &mut ids),
            Subset::LastLinear => {
                m.fc3.weight = m.fc3.weight.clone().set_require_grad(true);
                m.fc3.bias = m.fc3.bias.take().map(|b| b.set_require_grad(true));
                ids.push(m.fc3.weight.id);
                ids.extend(m.fc3.bias.as_ref().map(|b| b.id));
            }
        }
        (m, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_names_exist_with_their_sizes() {
        let m = Cnn::new(&Device::flex());
        let t = pw_nn::checkpoint::module_tensors(&m);
        let size = |s: Subset| s.names().iter().map(|k| t[*k].1.len()).sum::<usize>();
        assert_eq!(size(Subset::LastTwoNorms), 2 * H1 + 2 * H2);
        assert_eq!(size(Subset::LastTwoNorms), 1536);
        assert_eq!(size(Subset::LastNorm), 512);
        assert_eq!(size(Subset::LastLinear), 2570);
        for s in [Subset::LastTwoNorms, Subset::LastNorm, Subset::LastLinear] {
            assert_eq!(
                s.trainable(Cnn::new(&Device::flex().autodiff())).1.len(),
                s.names().len()
            );
        }
    }
}
