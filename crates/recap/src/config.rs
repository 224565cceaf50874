//! The miniature's sizes. The paper trains on Ego4D-HCap (8,267 videos, clips every 4 s,
//! segments every 3 min, one summary per video of up to 2 h); here every video has
//! `segments` segments of `clips_per_segment` clips, the frozen features come from a small
//! VideoPrism stage-1 encoder trained on synthetic captioned clips, and each level's
//! captioner is trained as the paper's curriculum says, its step chosen on validation CIDEr.

use crate::model::ModelConfig;
use pw_core::{ReproConfig, Size};
use pw_data::synthvideo::SynthSpec;
use serde::{Deserialize, Serialize};

/// One training run of a level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
}

impl TrainConfig {
    pub fn optim(&self) -> pw_nn::schedule::OptimConfig {
        pw_nn::schedule::OptimConfig {
            lr: self.lr,
            warmup_steps: self.warmup.min(self.steps / 2),
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            grad_clip: Some(1.0),
            ..Default::default()
        }
    }

    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.steps == 0 || self.batch == 0 || !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("{what}: steps, batch and lr must be positive"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecapConfig {
    /// Clips of the synthetic videos (frames, frame size, noise of the encoder's captions).
    pub video: SynthSpec,
    pub segments: usize,
    pub clips_per_segment: usize,
    pub train_videos: usize,
    pub validation_videos: usize,
    pub test_videos: usize,
    /// Videos with clip captions only: the LLM writes their segment descriptions and
    /// summaries (pseudo-labels).
    pub pseudo_videos: usize,
    /// Steps of the VideoPrism stage-1 encoder that gives the frozen features, and the
    /// synthetic pairs it learns from.
    pub encoder_steps: usize,
    pub encoder_pairs: usize,
    pub model: ModelConfig,
    pub clip: TrainConfig,
    pub segment: TrainConfig,
    pub video_level: TrainConfig,
    /// Validation CIDEr is measured this many times per training run; the best step is kept.
    pub evals: usize,
    /// The pseudo-label writer: a GGUF under the assets (default: SmolLM2, the paper's
    /// "any LLM" at the size that fits the quick run).
    pub llm: Option<String>,
    /// Sequences the embedded LLM decodes together (16: SmolLM2 on 2 cores decodes 326
    /// tokens/s in all with 16, 304 with 8).
    pub parallel: usize,
}

impl ReproConfig for RecapConfig {
    fn for_size(size: Size) -> Self {
        let quick = RecapConfig {
            video: SynthSpec::default(),
            segments: 3,
            clips_per_segment: 4,
            train_videos: 400,
            validation_videos: 80,
            test_videos: 200,
            pseudo_videos: 96,
            encoder_steps: 600,
            encoder_pairs: 2000,
            model: ModelConfig::default(),
            clip: TrainConfig {
                steps: 1000,
                batch: 32,
                lr: 2e-3,
                warmup: 50,
            },
            segment: TrainConfig {
                steps: 500,
                batch: 32,
                lr: 1e-3,
                warmup: 30,
            },
            video_level: TrainConfig {
                steps: 400,
                batch: 32,
                lr: 1e-3,
                warmup: 30,
            },
            evals: 4,
            llm: None,
            parallel: 16,
        };
        match size {
            Size::Quick => quick,
            Size::Full => RecapConfig {
                train_videos: 1200,
                validation_videos: 150,
                test_videos: 400,
                pseudo_videos: 300,
                encoder_steps: 1500,
                encoder_pairs: 4000,
                clip: TrainConfig {
                    steps: 3000,
                    ..quick.clip
                },
                segment: TrainConfig {
                    steps: 1500,
                    ..quick.segment
                },
                video_level: TrainConfig {
                    steps: 1200,
                    ..quick.video_level
                },
                evals: 6,
                ..quick
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        if self.segments < 2 || self.clips_per_segment < 2 {
            return Err("segments and clips_per_segment must be at least 2".into());
        }
        if self.train_videos < 4 || self.validation_videos < 2 || self.test_videos < 2 {
            return Err("train_videos >= 4, validation_videos >= 2, test_videos >= 2".into());
        }
        if self.video.frames == 0 || !self.video.size.is_multiple_of(8) {
            return Err("video.frames >= 1 and video.size a multiple of 8 (the patch)".into());
        }
        if self.encoder_steps == 0 || self.encoder_pairs < 32 {
            return Err("encoder_steps >= 1 and encoder_pairs >= 32".into());
        }
        self.clip.validate("clip")?;
        self.segment.validate("segment")?;
        self.video_level.validate("video_level")?;
        if self.evals == 0 || self.parallel == 0 {
            return Err("evals and parallel must be positive".into());
        }
        Ok(())
    }
}
