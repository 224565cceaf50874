//! VideoPrism's configuration: the paper's choices where the miniature keeps them (factorized
//! encoder, MAP pooling, two stages, tube masking at 0.65, equal loss weights, cosine
//! distillation, frozen-encoder attention probes; §3) and the quick / full sizes chosen for a
//! 2-core CPU (32x32 frames, 8 frames, patch 8: 16 tokens per frame, 128 per clip).

use crate::data::SplitSizes;
use crate::model::ModelConfig;
use pw_core::{ReproConfig, Size};
use pw_data::synthvideo::SynthSpec;
use pw_nn::vivit::VivitConfig;
use serde::{Deserialize, Serialize};

/// Steps, batch and peak learning rate of one training stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
}

impl StageConfig {
    fn validate(&self, name: &str) -> Result<(), String> {
        if self.steps == 0 || self.batch < 2 {
            return Err(format!("{name}: steps must be >= 1 and batch >= 2"));
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return Err(format!("{name}: lr {} must be in (0, 1)", self.lr));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoPrismConfig {
    pub video: SynthSpec,
    pub model: ModelConfig,
    pub splits: SplitSizes,
    /// Share of the stage-1 pairs whose only text is the noisy (ASR-like) caption.
    pub noisy_share: f64,
    pub stage1: StageConfig,
    /// Stage-1 batches are built from groups of this many clips sharing their whole appearance
    /// (colour, shape, texture, size), so captions in a batch also differ by motion. A
    /// synthetic corpus has only 96 appearances; with uniform batches (1) the contrastive loss
    /// is solved from appearance alone and never needs motion, unlike web captions.
    pub stage1_group: usize,
    pub stage2: StageConfig,
    /// Tube masking ratio of stage 2 (paper: 0.65).
    pub mask_ratio: f64,
    pub probe: StageConfig,
    /// Probe validation checks per probe run (the best is kept).
    pub probe_evals: usize,
    /// Probe seeds per encoder and task (their spread is reported).
    pub probe_seeds: usize,
    /// Pre-training seeds: the whole ladder is trained this many times.
    pub seeds: usize,
}

impl ReproConfig for VideoPrismConfig {
    fn for_size(size: Size) -> Self {
        let model = ModelConfig {
            encoder: VivitConfig {
                patch: 8,
                d_model: 64,
                n_heads: 4,
                spatial_layers: 2,
                temporal_layers: 2,
                mlp_dim: 128,
                grid: (4, 4),
                frames: 8,
                logit_cap: 50.0,
            },
            aux_layers: 1,
            text_layers: 2,
            max_text_len: 16,
            decoder_layers: 2,
        };
        match size {
            Size::Quick => VideoPrismConfig {
                video: SynthSpec::default(),
                model,
                splits: SplitSizes {
                    pairs: 2000,
                    video_only: 2000,
                    probe_train: 1000,
                    probe_val: 300,
                    probe_test: 600,
                },
                noisy_share: 0.5,
                stage1: StageConfig {
                    steps: 800,
                    batch: 32,
                    lr: 1e-3,
                },
                stage1_group: 4,
                stage2: StageConfig {
                    steps: 400,
                    batch: 32,
                    lr: 1e-3,
                },
                mask_ratio: 0.65,
                probe: StageConfig {
                    steps: 2000,
                    batch: 64,
                    lr: 2e-3,
                },
                probe_evals: 10,
                probe_seeds: 2,
                seeds: 1,
            },
            Size::Full => VideoPrismConfig {
                video: SynthSpec::default(),
                model,
                splits: SplitSizes {
                    pairs: 4000,
                    video_only: 4000,
                    probe_train: 2000,
                    probe_val: 500,
                    probe_test: 1000,
                },
                noisy_share: 0.5,
                stage1: StageConfig {
                    steps: 2000,
                    batch: 32,
                    lr: 1e-3,
                },
                stage1_group: 4,
                stage2: StageConfig {
                    steps: 800,
                    batch: 32,
                    lr: 1e-3,
                },
                mask_ratio: 0.65,
                probe: StageConfig {
                    steps: 2500,
                    batch: 64,
                    lr: 2e-3,
                },
                probe_evals: 10,
                probe_seeds: 2,
                seeds: 3,
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        let e = &self.model.encoder;
        if !self.video.size.is_multiple_of(e.patch) {
            return Err(format!(
                "video.size {} is not a multiple of the patch size {}",
                self.video.size, e.patch
            ));
        }
        if self.video.frames == 0 {
            return Err("video.frames must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.video.noise) {
            return Err(format!(
                "video.noise {} must be in [0, 1]",
                self.video.noise
            ));
        }
        if !(0.0..=1.0).contains(&self.noisy_share) {
            return Err(format!(
                "noisy_share {} must be in [0, 1]",
                self.noisy_share
            ));
        }
        if self.stage1_group == 0 || self.stage1_group > self.stage1.batch {
            return Err(format!(
                "stage1_group {} must be in 1..=stage1.batch ({})",
                self.stage1_group, self.stage1.batch
            ));
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return Err(format!("mask_ratio {} must be in (0, 1)", self.mask_ratio));
        }
        self.stage1.validate("stage1")?;
        self.stage2.validate("stage2")?;
        self.probe.validate("probe")?;
        let s = &self.splits;
        if s.pairs < self.stage1.batch {
            return Err(format!(
                "splits.pairs {} is smaller than stage1.batch",
                s.pairs
            ));
        }
        if s.probe_train < 2 || s.probe_val < 1 || s.probe_test < 5 {
            return Err("splits: probe_train >= 2, probe_val >= 1, probe_test >= 5".into());
        }
        if self.probe_evals == 0 || self.probe_seeds == 0 || self.seeds == 0 {
            return Err("probe_evals, probe_seeds and seeds must be at least 1".into());
        }
        Ok(())
    }
}

impl VideoPrismConfig {
    /// Patch grid and tokens per clip.
    pub fn grid(&self) -> (usize, usize) {
        let g = self.video.size / self.model.encoder.patch;
        (g, g)
    }
    pub fn tokens(&self) -> usize {
        let (gh, gw) = self.grid();
        gh * gw * self.video.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_validate_and_bad_values_are_named() {
        for s in [Size::Quick, Size::Full] {
            VideoPrismConfig::for_size(s).validate().unwrap();
        }
        let mut c = VideoPrismConfig::for_size(Size::Quick);
        c.mask_ratio = 1.0;
        assert!(c.validate().unwrap_err().contains("mask_ratio"));
        let mut c = VideoPrismConfig::for_size(Size::Quick);
        c.video.size = 30;
        assert!(c.validate().unwrap_err().contains("patch"));
    }
}
