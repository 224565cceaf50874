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

/// The tensor names of the default parameter subset (the last two normalisation layers), in
/// PyTorch's naming, as every checkpoint file of this crate is written.
pub const SUBSET: [&str; 4] = ["ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"];

/// The CNN's normalisation modules (burn names their affine parameters `gamma` / `beta`,
/// PyTorch `weight` / `bias`) and its linear modules (burn stores the weight as [in, out],
/// PyTorch as [out, in]).
const NORMS: [&str; 4] = ["gn1", "gn2", "ln1", "ln2"];
const LINEARS: [&str; 3] = ["fc1", "fc2", "fc3"];

/// A parameter's module and field: `ln1.gamma` -> (`ln1`, `gamma`).
fn split_name(name: &str) -> (&str, &str) {
    name.rsplit_once('.').unwrap_or(("", name))
}

fn transpose(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (shape[0], shape[1]);
    if r * c != values.len() {
        // not a matrix of this shape: left as it is, for the shape check to name it
        return (shape.to_vec(), values.to_vec());
    }
    let mut out = vec![0.0; values.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = values[i * c + j];
        }
    }
    (vec![c, r], out)
}

/// burn's and PyTorch's names for a norm's affine parameters.
const NORM_FIELDS: [(&str, &str); 2] = [("gamma", "weight"), ("beta", "bias")];

/// A parameter's name in the other convention (`to_torch` gives the direction): only norms'
/// affine parameters are named differently.
fn rename(name: &str, to_torch: bool) -> String {
    let (module, field) = split_name(name);
    if !NORMS.contains(&module) {
        return name.to_string();
    }
    let renamed = NORM_FIELDS
        .iter()
        .find_map(|&(burn, torch)| match to_torch {
            true if field == burn => Some(torch),
            false if field == torch => Some(burn),
            _ => None,
        })
        .unwrap_or(field);
    format!("{module}.{renamed}")
}

/// burn's name for the parameter PyTorch calls `torch`.
pub fn burn_name(torch: &str) -> String {
    rename(torch, false)
}

/// One parameter renamed and re-laid out between burn's convention and PyTorch's (`to_torch`
/// gives the direction); a linear weight's transpose is its own inverse.
fn convert_one(
    name: &str,
    t: &(Vec<usize>, Vec<f32>),
    to_torch: bool,
) -> (String, (Vec<usize>, Vec<f32>)) {
    let (module, field) = split_name(name);
    let value = if LINEARS.contains(&module) && field == "weight" && t.0.len() == 2 {
        transpose(&t.0, &t.1)
    } else {
        t.clone()
    };
    (rename(name, to_torch), value)
}

/// One parameter in PyTorch's name and layout (from burn's): the name `nn.Module` would give it
/// in an equivalent PyTorch model, so `load_state_dict` takes this crate's checkpoints.
pub fn to_torch_one(name: &str, t: &(Vec<usize>, Vec<f32>)) -> (String, (Vec<usize>, Vec<f32>)) {
    convert_one(name, t, true)
}

/// The inverse of [`to_torch_one`]: a PyTorch-named parameter in burn's name and layout.
pub fn from_torch_one(name: &str, t: &(Vec<usize>, Vec<f32>)) -> (String, (Vec<usize>, Vec<f32>)) {
    convert_one(name, t, false)
}

/// The PyTorch shape of the parameter burn calls `name` with `shape`.
pub fn torch_shape(name: &str, shape: &[usize]) -> Vec<usize> {
    let (module, field) = split_name(name);
    if LINEARS.contains(&module) && field == "weight" && shape.len() == 2 {
        vec![shape[1], shape[0]]
    } else {
        shape.to_vec()
    }
}

/// Every tensor of `t` (burn's names and layout) in PyTorch's.
pub fn to_torch(t: &pw_nn::checkpoint::NamedTensors) -> pw_nn::checkpoint::NamedTensors {
    t.iter().map(|(k, v)| to_torch_one(k, v)).collect()
}

/// Every tensor of `t` (PyTorch's names and layout) in burn's.
pub fn from_torch(t: &pw_nn::checkpoint::NamedTensors) -> pw_nn::checkpoint::NamedTensors {
    t.iter().map(|(k, v)| from_torch_one(k, v)).collect()
}

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
    /// The subset's tensors, by their PyTorch names.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Subset::LastTwoNorms => &SUBSET,
            Subset::LastNorm => &["ln2.weight", "ln2.bias"],
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
        let t = to_torch(&pw_nn::checkpoint::module_tensors(&m));
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

    /// PyTorch's names and layout: norms hold weight/bias, linear weights are [out, in], conv
    /// weights are as burn has them; and the conversion round-trips.
    #[test]
    fn torch_layout_names_and_shapes_and_round_trip() {
        let m = Cnn::new(&Device::flex());
        let burn = pw_nn::checkpoint::module_tensors(&m);
        let torch = to_torch(&burn);
        let shape = |k: &str| torch[k].0.clone();
        assert_eq!(shape("fc1.weight"), vec![H1, 32 * 7 * 7]);
        assert_eq!(shape("fc3.weight"), vec![10, H2]);
        assert_eq!(shape("conv1.weight"), vec![16, 1, 3, 3]);
        assert_eq!(shape("gn1.weight"), vec![16]);
        assert_eq!(shape("ln2.bias"), vec![H2]);
        assert!(
            !torch
                .keys()
                .any(|k| k.ends_with("gamma") || k.ends_with("beta"))
        );
        // element [o, i] of PyTorch's weight is element [i, o] of burn's
        let (b, t) = (&burn["fc2.weight"], &torch["fc2.weight"]);
        assert_eq!(t.1[3 * H1 + 7], b.1[7 * H2 + 3]);
        assert_eq!(from_torch(&torch), burn);
    }
}
