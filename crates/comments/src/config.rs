//! The miniature's sizes. The paper continues the pre-training of 7B code models on ~10^10
//! augmented tokens; here a byte-level transformer is pre-trained on raw Python standard
//! library code, then continued-trained at equal steps on one set of functions in each form
//! (raw, commented, commented + implicit filter; high- vs low-density halves), and evaluated
//! on held-out functions and HumanEval.

use pw_core::{ReproConfig, Size};
use serde::{Deserialize, Serialize};

pub use pw_llm::embedded::requant::WeightFormat;
pub use pw_nn::bytelm::{LmConfig, TrainConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommentsConfig {
    /// Functions of the training files commented by the generator (the continued-training
    /// set; drawn before anything is measured).
    pub augment_functions: usize,
    /// Bytes of raw training-split code the base model is pre-trained on (the augmented
    /// functions' files excluded).
    pub pretrain_bytes: usize,
    pub lm: LmConfig,
    pub pretrain: TrainConfig,
    /// Continued training of every variant (equal steps, equal batch: equal compute).
    pub cont: TrainConfig,
    /// Validation NL-conditioned loss is read every this many steps of continued training;
    /// each variant is scored at its best validation step.
    pub eval_every: usize,
    /// Held-out functions for the NL-conditioned metric, at most: validation (read at every
    /// check, so it is the smaller) and test (read once per variant).
    pub validation_functions: usize,
    pub test_functions: usize,
    /// Line-constrained generation: sequences decoded together and the comment bias.
    pub parallel: usize,
    pub bias: f32,
    /// The comment generator's GGUF, relative to the assets folder when relative (default:
    /// the Qwen2.5-Coder-0.5B that setup fetches, else SmolLM2).
    pub generator: Option<String>,
    /// The format the generator's weights run in (`q8_0` by default: see
    /// `WeightFormat::BATCHED`; `keep` runs the file as it is).
    pub generator_weights: WeightFormat,
    /// Files per corpus for the density table, a seeded sample (0: every file).
    pub density_files: usize,
    /// The implicit filter's lowest density after augmentation (fixed here, before any
    /// result; 0 keeps every unit the generator commented at all).
    pub min_density_after: f64,
}

impl ReproConfig for CommentsConfig {
    fn for_size(size: Size) -> Self {
        match size {
            Size::Quick => CommentsConfig::default(),
            Size::Full => CommentsConfig {
                augment_functions: 1200,
                pretrain_bytes: 8_000_000,
                lm: LmConfig {
                    d_model: 192,
                    n_heads: 6,
                    n_layers: 4,
                    max_len: 512,
                },
                pretrain: TrainConfig {
                    steps: 4000,
                    batch: 32,
                    ..TrainConfig::default()
                },
                cont: TrainConfig {
                    steps: 800,
                    batch: 32,
                    lr: 1e-3,
                    warmup: 50,
                },
                eval_every: 100,
                validation_functions: 300,
                test_functions: 600,
                density_files: 0,
                ..CommentsConfig::default()
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.augment_functions < 8 {
            return Err("augment_functions must be at least 8".into());
        }
        self.lm.check("lm")?;
        if self.pretrain.steps == 0 || self.cont.steps == 0 || self.eval_every == 0 {
            return Err("pretrain.steps, cont.steps and eval_every must be positive".into());
        }
        if self.parallel == 0 {
            return Err("parallel must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for CommentsConfig {
    fn default() -> Self {
        CommentsConfig {
            augment_functions: 96,
            pretrain_bytes: 1_500_000,
            lm: LmConfig::default(),
            pretrain: TrainConfig::default(),
            // 96 functions are about 60 KB: continued training overfits them within ~50 steps
            // (measured on validation), so it is short and read often.
            cont: TrainConfig {
                steps: 70,
                batch: 16,
                lr: 5e-4,
                warmup: 10,
            },
            eval_every: 14,
            validation_functions: 100,
            test_functions: 200,
            parallel: 8,
            bias: 1.5,
            generator: None,
            generator_weights: WeightFormat::BATCHED,
            density_files: 6000,
            min_density_after: 0.0,
        }
    }
}
