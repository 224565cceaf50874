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
//! Where each step lives:
//! - [`problem`]: GSM8K-format problems/solutions, exact step truth of the generated domain;
//!   [`generate`]: the problem generator (templates, 2-6 steps, difficulty knobs);
//! - [`vocab`], [`model`]: the student's tokenizer, sequence formats, the causal LM (student and
//!   refiners) and the ORM/SORM value model with their training loops;
//! - [`engine`]: the KV-cached CPU sampler behind every rollout;
//! - [`policy`]: the [`policy::Policy`] interface, the student and any pw-llm generator;
//! - [`label`]: rollouts, ORM and SORM labels, the three post-processing rules (resumable
//!   ledgers); [`export`]: TRL PRM and Math-Shepherd formats;
//! - [`refine`]: refiner training data, refinement with the trained refiners or any generator;
//! - [`evaluate`]: greedy, best-of-3 + ORM rerank, global/local/combined refinement, step-level
//!   accuracy of ORM and SORM;
//! - [`student`]: SFT and Expert Iteration; [`reproduce`]: the miniature reproduction.

pub mod engine;
pub mod evaluate;
pub mod export;
pub mod generate;
pub mod label;
pub mod model;
pub mod policy;
pub mod problem;
pub mod refine;
pub mod reproduce;
pub mod student;
pub mod vocab;
