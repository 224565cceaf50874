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

/// The tensor names of the parameter subset p-diff trains and generates, in a fixed order.
pub const SUBSET: [&str; 4] = ["ln1.gamma", "ln1.beta", "ln2.gamma", "ln2.beta"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_names_exist_and_hold_1536_values() {
        let m = Cnn::new(&Device::flex());
        let t = pw_nn::checkpoint::module_tensors(&m);
        let n: usize = SUBSET.iter().map(|k| t[*k].1.len()).sum();
        assert_eq!(n, 2 * H1 + 2 * H2);
        assert_eq!(n, 1536);
    }
}
