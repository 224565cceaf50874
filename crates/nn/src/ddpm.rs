//! Denoising diffusion (Ho et al. 2020) over [b, channels, length] tensors, as p-diff uses it on
//! autoencoder latents (§3.3): T = 1000 steps, linear beta 1e-4 .. 2e-2, epsilon prediction with
//! an MSE loss, ancestral sampling, and EMA weights for sampling.
//!
//! The denoiser is a residual 1-D conv net. Its timestep embedding is computed per sample and
//! added per sample (the official p-diff code broadcasts the first sample's embedding to the
//! whole batch; a test here guards against that).

use crate::checkpoint::{NamedTensors, assign_tensors, module_tensors};
use crate::fused::{conv1d, group_norm, silu};
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The noise schedule: `betas[t]`, `alpha_bar[t] = prod_{s<=t} (1 - beta_s)`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alpha_bar: Vec<f64>,
}

impl Schedule {
    /// Linear betas from `beta_1` to `beta_t` over `steps` (paper: 1000, 1e-4, 2e-2).
    pub fn linear(steps: usize, beta_1: f64, beta_t: f64) -> Self {
        let betas: Vec<f64> = (0..steps)
            .map(|i| beta_1 + (beta_t - beta_1) * i as f64 / (steps.max(2) - 1) as f64)
            .collect();
        let mut acc = 1.0;
        let alpha_bar = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        Schedule { betas, alpha_bar }
    }

    pub fn steps(&self) -> usize {
        self.betas.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DenoiserConfig {
    /// Channels of the data (the latent channels).
    pub channels: usize,
    pub hidden: usize,
    pub blocks: usize,
    pub kernel: usize,
}

impl Default for DenoiserConfig {
    fn default() -> Self {
        DenoiserConfig {
            channels: 4,
            hidden: 64,
            blocks: 4,
            kernel: 3,
        }
    }
}

/// Sinusoidal embedding of integer timesteps, one row per sample: [b, dim].
pub fn timestep_embedding(t: &[usize], dim: usize, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let mut v = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        for i in 0..dim {
            let f = (-(10_000f64.ln()) * (i % half) as f64 / half as f64).exp();
            let a = ti as f64 * f;
            v.push(if i < half { a.sin() } else { a.cos() } as f32);
        }
    }
    Tensor::from_data(TensorData::new(v, [t.len(), dim]), device)
}

#[derive(Module, Debug)]
pub struct ResBlock {
    pub norm: GroupNorm,
    pub conv: Conv1d,
    /// Projects the timestep embedding to a per-channel shift.
    pub time: Linear,
}

#[derive(Module, Debug)]
pub struct Denoiser {
    pub input: Conv1d,
    pub time1: Linear,
    pub time2: Linear,
    pub blocks: Vec<ResBlock>,
    pub out_norm: GroupNorm,
    pub output: Conv1d,
    pub hidden: usize,
}

impl Denoiser {
    pub fn new(cfg: &DenoiserConfig, device: &Device) -> Self {
        let p = cfg.kernel / 2;
        let conv = |a, b| {
            Conv1dConfig::new(a, b, cfg.kernel)
                .with_padding(PaddingConfig1d::Explicit(p, p))
                .init(device)
        };
        let groups = if cfg.hidden.is_multiple_of(8) { 8 } else { 1 };
        Denoiser {
            input: conv(cfg.channels, cfg.hidden),
            time1: LinearConfig::new(cfg.hidden, cfg.hidden).init(device),
            time2: LinearConfig::new(cfg.hidden, cfg.hidden).init(device),
            blocks: (0..cfg.blocks)
                .map(|_| ResBlock {
                    norm: GroupNormConfig::new(groups, cfg.hidden).init(device),
                    conv: conv(cfg.hidden, cfg.hidden),
                    time: LinearConfig::new(cfg.hidden, cfg.hidden).init(device),
                })
                .collect(),
            out_norm: GroupNormConfig::new(groups, cfg.hidden).init(device),
            output: conv(cfg.hidden, cfg.channels),
            hidden: cfg.hidden,
        }
    }

    /// Predicts the noise in `x_t` ([b, c, l]) at per-sample timesteps `t` (len b).
    pub fn forward(&self, x: Tensor<3>, t: &[usize]) -> Tensor<3> {
        let [b, _, _] = x.dims();
        assert_eq!(t.len(), b, "one timestep per sample");
        let emb = timestep_embedding(t, self.hidden, &x.device());
        let emb = self.time2.forward(silu(self.time1.forward(emb))); // [b, hidden]
        let mut h = conv1d(&self.input, x);
        for blk in &self.blocks {
            let shift = blk.time.forward(emb.clone()).reshape([b, self.hidden, 1]);
            h = h.clone() + conv1d(&blk.conv, silu(group_norm(&blk.norm, h) + shift));
        }
        conv1d(&self.output, silu(group_norm(&self.out_norm, h)))
    }
}

/// Training loss at random timesteps: MSE between the true and predicted noise.
pub fn ddpm_loss(
    model: &Denoiser,
    schedule: &Schedule,
    x0: Tensor<3>,
    rng: &mut impl Rng,
) -> Tensor<1> {
    let [b, _, _] = x0.dims();
    let device = x0.device();
    let t: Vec<usize> = (0..b)
        .map(|_| rng.random_range(0..schedule.steps()))
        .collect();
    let (sa, sb): (Vec<f32>, Vec<f32>) = t
        .iter()
        .map(|&ti| {
            (
                schedule.alpha_bar[ti].sqrt() as f32,
                (1.0 - schedule.alpha_bar[ti]).sqrt() as f32,
            )
        })
        .unzip();
    let col = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [b, 1, 1]), &device);
    let eps = Tensor::<3>::random(x0.shape(), Distribution::Normal(0.0, 1.0), &device);
    let xt = x0 * col(sa) + eps.clone() * col(sb);
    (model.forward(xt, &t) - eps).powi_scalar(2).mean()
}

/// Ancestral sampling of `n` tensors of shape [channels, length] (sigma_t^2 = beta_t).
pub fn ddpm_sample(
    model: &Denoiser,
    schedule: &Schedule,
    n: usize,
    shape: [usize; 2],
    device: &Device,
) -> Tensor<3> {
    let mut x = Tensor::<3>::random(
        [n, shape[0], shape[1]],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let bar = pw_core::progress::bar(schedule.steps() as u64, "sampling");
    for t in (0..schedule.steps()).rev() {
        let beta = schedule.betas[t];
        let eps = model.forward(x.clone(), &vec![t; n]);
        let coef = beta / (1.0 - schedule.alpha_bar[t]).sqrt();
        let mean = (x - eps * coef) / (1.0 - beta).sqrt();
        x = if t > 0 {
            mean.clone()
                + Tensor::random(mean.shape(), Distribution::Normal(0.0, beta.sqrt()), device)
        } else {
            mean
        };
        bar.inc(1);
    }
    bar.finish_and_clear();
    x
}

/// Exponential moving average of a module's parameters, kept on the host.
pub struct Ema {
    pub decay: f32,
    shadow: NamedTensors,
}

impl Ema {
    pub fn new<M: Module>(model: &M, decay: f32) -> Self {
        Ema {
            decay,
            shadow: module_tensors(model),
        }
    }

    /// shadow = decay * shadow + (1 - decay) * model.
    pub fn update<M: Module>(&mut self, model: &M) {
        let d = self.decay;
        for (name, (_, values)) in module_tensors(model) {
            if let Some((_, s)) = self.shadow.get_mut(&name) {
                s.iter_mut()
                    .zip(&values)
                    .for_each(|(s, v)| *s = d * *s + (1.0 - d) * v);
            }
        }
    }

    /// `template` with the averaged weights.
    pub fn apply<M: Module>(&self, template: M) -> pw_core::Result<M> {
        assign_tensors(template, &self.shadow, std::path::Path::new("<ema>"))
    }
}
