//! The miniature's sizes. The paper evaluates 19 models on 850 (release: 1000) deceptive
//! prompts; here a tiny VLM is trained on truthful QA about synthetic scenes (as the paper's
//! open models were trained on ordinary instruction data), and evaluated with a
//! describe-then-answer pipeline (the tiny VLM describes, an instruction LLM answers) on the
//! same prompts built from the scenes' COCO annotations.

use crate::data::Category;
use crate::model::VlmConfig;
use pw_core::{ReproConfig, Size};
use pw_llm::embedded::requant::WeightFormat;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 900,
            batch: 32,
            lr: 2e-3,
            warmup: 60,
        }
    }
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MadBenchConfig {
    /// Synthetic scenes per split: the tiny VLM trains on `train`, its checkpoint is chosen
    /// on `validation` (neutral accuracy), every claim is measured on `test`.
    pub train_scenes: usize,
    pub validation_scenes: usize,
    pub test_scenes: usize,
    /// Test items per category asked of the LLM pipelines (the tiny VLMs answer all).
    pub llm_items_per_category: usize,
    pub vlm: VlmConfig,
    pub train: TrainConfig,
    /// Validation accuracy is read every this many steps; the best step's model is kept.
    pub eval_every: usize,
    /// Robustness tuning (claim c): continued training on truthful QA mixed with deceptive
    /// prompts of one category answered with their truth sentence.
    pub robust_category: Category,
    pub robust: TrainConfig,
    /// Share of robustness-tuning examples that are deceptive.
    pub robust_share: f64,
    /// The answerer and judge GGUFs, relative to the assets folder when relative (default:
    /// the Qwen2.5-Coder-0.5B-Instruct that setup fetches, else SmolLM2).
    pub answerer: Option<String>,
    pub judge: Option<String>,
    /// The format their weights run in (`q8_0` by default: see `WeightFormat::BATCHED`;
    /// `keep` runs the files as they are).
    pub weights: WeightFormat,
    /// Answers the LLM judge grades (a seeded sample of the test answers; 0: none).
    pub judge_rows: usize,
    /// Sequences the embedded LLM decodes together (16: Qwen2.5-Coder-0.5B on 2 cores decodes
    /// 74.5 tokens/s in all with 16, 64 with 8).
    pub parallel: usize,
}

impl Default for MadBenchConfig {
    fn default() -> Self {
        MadBenchConfig {
            train_scenes: 1500,
            validation_scenes: 150,
            test_scenes: 300,
            llm_items_per_category: 8,
            vlm: VlmConfig::default(),
            train: TrainConfig::default(),
            eval_every: 150,
            robust_category: Category::NonExistent,
            robust: TrainConfig {
                steps: 250,
                batch: 32,
                lr: 1e-3,
                warmup: 20,
            },
            robust_share: 0.3,
            answerer: None,
            judge: None,
            weights: WeightFormat::BATCHED,
            judge_rows: 48,
            parallel: 16,
        }
    }
}

impl ReproConfig for MadBenchConfig {
    fn for_size(size: Size) -> Self {
        match size {
            Size::Quick => MadBenchConfig::default(),
            Size::Full => MadBenchConfig {
                train_scenes: 6000,
                validation_scenes: 400,
                test_scenes: 1200,
                llm_items_per_category: 40,
                train: TrainConfig {
                    steps: 4000,
                    ..TrainConfig::default()
                },
                eval_every: 400,
                robust: TrainConfig {
                    steps: 800,
                    batch: 32,
                    lr: 1e-3,
                    warmup: 40,
                },
                judge_rows: 240,
                ..MadBenchConfig::default()
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.vlm.validate()?;
        if self.train_scenes < 20 || self.validation_scenes < 5 || self.test_scenes < 5 {
            return Err("train_scenes >= 20, validation_scenes >= 5, test_scenes >= 5".into());
        }
        if self.train.steps == 0 || self.train.batch == 0 {
            return Err("train.steps and train.batch must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.robust_share) {
            return Err("robust_share must be in [0, 1]".into());
        }
        if !Category::PAPER.contains(&self.robust_category) {
            return Err("robust_category must be one of the paper's six categories".into());
        }
        if self.eval_every == 0 || self.parallel == 0 {
            return Err("eval_every and parallel must be positive".into());
        }
        Ok(())
    }
}
