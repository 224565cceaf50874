//! GLoRe (Havrilla et al., ICML 2024): when, where and how to refine LLM reasoning.
//!
//! The paper trains a student by SFT + Expert Iteration, labels the student's own rollouts
//! with an ORM (is the final answer right?) and a stepwise ORM, the SORM (can the student
//! still reach the gold answer from this step prefix? K = 8 verifying rollouts per prefix),
//! trains a global refiner (wrong rollout -> right rollout) and a local refiner (wrong rollout
//! with `[BAD]` before its first SORM-negative step -> a right continuation), and at inference
//! lets the ORM decide *when* to refine, the SORM *where*, and the ORM rerank
//! {draft, global, local}.
//!
//! Where each step lives (the file roles every paper crate shares):
//! - [`config`]: the miniature's configuration, sizes and range checks;
//! - [`data`]: the GSM8K-style problem generator (templates, 2-6 steps, difficulty knobs) and
//!   the splits; [`problem`]: GSM8K-format problems and solutions, exact step truth;
//!   [`vocab`]: the student's tokenizer;
//! - [`model`]: sequence formats, the causal LM (student and refiners), the ORM/SORM value
//!   model; [`train`]: their training loops and checkpointed training stages;
//!   [`student`]: SFT and Expert Iteration;
//! - [`policy`]: the [`policy::Policy`] interface, the student (sampled by pw-nn's KV-cached
//!   decoder) and any pw-llm generator;
//! - [`label`]: rollouts and K verifying rollouts per step prefix (resumable ledgers), ORM
//!   and SORM labels; [`postprocess`]: the SORM label rules and the paper's three
//!   post-processing rules; [`export`]: TRL PRM and Math-Shepherd formats;
//! - [`refine`]: refiner training data, refinement with the trained refiners or any generator;
//! - [`curve`]: the ORM's learning curve (rollouts per question, questions, initialisation)
//!   and the choice of the reproduction's ORM on validation;
//! - [`evaluate`]: greedy, best-of-3 + ORM rerank, global/local/combined refinement, step-level
//!   accuracy of ORM and SORM;
//! - [`report`]: claims, tables, the threshold plot and the diagnosis of a failed claim;
//!   [`reproduce`]: the miniature's orchestration; [`run`]: the real-use entry points.

pub mod config;
pub mod curve;
pub mod data;
pub mod evaluate;
pub mod export;
pub mod label;
pub mod model;
pub mod policy;
pub mod postprocess;
pub mod problem;
pub mod refine;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod student;
pub mod train;
pub mod vocab;
