//! AdamW with linear warmup then cosine decay, the usual recipe for small transformers.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer};
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

impl OptimConfig {
    pub fn adamw(&self) -> ModuleOptimizer {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(1e-8)
            .with_weight_decay(self.weight_decay)
            .with_grad_clipping(self.grad_clip.map(GradientClippingConfig::Norm))
            .init()
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

#[cfg(test)]
mod tests {
    use super::*;

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
