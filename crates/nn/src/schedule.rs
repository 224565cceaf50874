//! AdamW with linear warmup then cosine decay, the usual recipe for small transformers.

use crate::fused::FusedOps;
use burn::backend::Dispatch;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub lr: f64,
    pub warmup_steps: usize,
    /// The cosine ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub weight_decay: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    /// Global gradient-norm clipping; `None` disables it.
    pub grad_clip: Option<f32>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 3e-4,
            warmup_steps: 100,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            beta_1: 0.9,
            beta_2: 0.95,
            grad_clip: Some(1.0),
        }
    }
}

/// AdamW's epsilon (burn's default; PyTorch's is the same).
const EPSILON: f32 = 1e-8;

impl OptimConfig {
    /// AdamW over every parameter of a module, with this config's betas, weight decay and
    /// gradient clipping (burn's `AdamWConfig`, its update fused on the CPU: [`FusedAdamW`]).
    pub fn adamw(&self) -> ModuleOptimizer {
        let config = AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(EPSILON)
            .with_weight_decay(self.weight_decay);
        let fused = FusedAdamW {
            burn: config.build(),
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: EPSILON,
            weight_decay: self.weight_decay,
        };
        let optim = ModuleOptimizer::from(fused);
        match self.grad_clip {
            Some(norm) => optim.with_grad_clipping(GradientClippingConfig::Norm(norm).init()),
            None => optim,
        }
    }

    /// Learning rate at `step` (0-based) of `total` steps.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if self.warmup_steps > 0 && step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = total.saturating_sub(self.warmup_steps).max(1);
        let p = ((step - self.warmup_steps.min(step)) as f64 / decay as f64).min(1.0);
        let min = self.lr * self.min_lr_ratio;
        min + 0.5 * (self.lr - min) * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// burn's AdamW, its update one parallel pass over each parameter on the CPU backend.
///
/// burn composes the step from a dozen whole-tensor ops (two moment updates, two bias
/// corrections, a square root, a division, the decay), each a pass over memory on one thread: in
/// the benchmark transformer that was about 16 ms of a 490 ms step with one core idle. The fused
/// kernel ([`FusedOps::adamw_step`]) does the same f32 arithmetic in the same order, so the
/// parameters and moments are bitwise burn's; backends without the kernel take burn's step. The
/// state is burn's `AdamWState`.
#[derive(Clone)]
pub struct FusedAdamW {
    burn: AdamW,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        let shape = tensor.shape();
        let n = shape.num_elements();
        let (m, v, time) = match &state {
            Some(s) => (
                s.momentum.moment_1.clone(),
                s.momentum.moment_2.clone(),
                s.momentum.time + 1,
            ),
            // burn starts from m = g (1 - b1), v = g² (1 - b2): the same values as the update
            // from zero moments.
            None => (grad.zeros_like(), grad.zeros_like(), 1),
        };
        let flat = |t: Tensor<D>| t.reshape([n]).into_dispatch();
        let packed = Tensor::<1>::from_dispatch(<Dispatch as FusedOps>::adamw_step(
            flat(tensor.clone()),
            flat(grad.clone()),
            flat(m),
            flat(v),
            self.beta_1,
            self.beta_2,
            self.epsilon,
            1f32 - self.beta_1.powi(time as i32),
            1f32 - self.beta_2.powi(time as i32),
            (1.0 - lr * self.weight_decay as f64) as f32,
            lr as f32,
        ));
        if packed.dims()[0] != 3 * n {
            return self.burn.step(lr, tensor, grad, state);
        }
        let part = |i: usize| {
            packed
                .clone()
                .slice(i * n..(i + 1) * n)
                .reshape(shape.clone())
        };
        let momentum = AdaptiveMomentumState {
            time,
            moment_1: part(1),
            moment_2: part(2),
            max_moment_2: None,
        };
        (part(0), Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: AdamWState<D>, device: &Device) -> AdamWState<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused step gives burn's AdamW's parameters bit for bit, from the first step (no
    /// state) on, with weight decay and gradient clipping.
    #[test]
    fn the_fused_adamw_step_is_bitwise_burns() {
        use burn::nn::{Linear, LinearConfig};
        use burn::optim::GradientsParams;
        use burn::tensor::TensorData;
        let device = crate::device(crate::DeviceKind::Cpu, true).unwrap();
        let cfg = OptimConfig {
            weight_decay: 0.1,
            grad_clip: Some(0.5),
            ..Default::default()
        };
        let mut fused = cfg.adamw();
        let mut plain = AdamWConfig::new()
            .with_beta_1(cfg.beta_1)
            .with_beta_2(cfg.beta_2)
            .with_epsilon(1e-8)
            .with_weight_decay(cfg.weight_decay)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(0.5)))
            .init();
        // 300 x 200 weights: more than one parallel chunk of the kernel
        let model: Linear = LinearConfig::new(300, 200).init(&device);
        let (mut a, mut b) = (model.clone(), model);
        let weights = |m: &Linear| -> Vec<u32> {
            let mut v: Vec<u32> = m
                .weight
                .val()
                .into_data()
                .iter::<f32>()
                .map(f32::to_bits)
                .collect();
            v.extend(
                m.bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .iter::<f32>()
                    .map(f32::to_bits),
            );
            v
        };
        for step in 0..6 {
            let x: Vec<f32> = (0..16 * 300)
                .map(|i| ((i * 7 + step * 13) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [16, 300]), &device);
            let loss = |m: &Linear| m.forward(x.clone()).powi_scalar(2).mean();
            let ga = GradientsParams::from_grads(loss(&a).backward(), &a);
            let gb = GradientsParams::from_grads(loss(&b).backward(), &b);
            let lr = cfg.lr_at(step, 6) * 100.0;
            a = fused.step(lr, a, ga);
            b = plain.step(lr, b, gb);
            assert!(
                weights(&a) == weights(&b),
                "step {step}: the parameters differ"
            );
        }
    }

    #[test]
    fn warmup_rises_linearly_then_cosine_falls_to_the_floor() {
        let c = OptimConfig {
            lr: 1.0,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        assert!((c.lr_at(0, 110) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(9, 110) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(10, 110) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(60, 110) - 0.55).abs() < 1e-9);
        assert!((c.lr_at(110, 110) - 0.1).abs() < 1e-12);
        let lrs: Vec<f64> = (10..110).map(|s| c.lr_at(s, 110)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }
}
