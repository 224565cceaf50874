//! MAD-Bench (arXiv 2402.13220): a deceptive prompt presupposes something false about the
//! image ("What colour is the dog on the sofa?" with no dog); a robust model points out the
//! mismatch, a fooled one goes along. The paper builds such prompts in six categories, runs
//! multimodal models, grades the answers with a GPT judge, and tries a remedy paragraph.
//!
//! - `data.rs`: COCO-format annotations, benchmark items (our JSONL, the official release's
//!   JSON), the synthetic scene world of the miniature and its renderer.
//! - `prompts.rs`: the builder (deceptive prompt + paired neutral prompt + truth per
//!   category), the truthful QA the tiny model learns, the remedy paragraph.
//! - `judge.rs`: variants (neutral / deceptive / + remedy), the exact judge, the LLM judge's
//!   rubric and reply parsing, both of the notebook's accuracies.
//! - `model.rs`: the tiny VLM (ViT patches as a prefix to a small decoder);
//!   `models.rs`: the models under test behind one Generator interface (the tiny VLM,
//!   describe-then-answer; endpoints come from pw-llm).
//! - `evaluate.rs`: the resumable runner, judging, accuracies, paired differences.
//! - The miniature: `config.rs`, `train.rs`, `report.rs`, `reproduce.rs`; `run.rs` holds the
//!   CLI's entry points.

pub mod config;
pub mod data;
pub mod evaluate;
pub mod judge;
pub mod model;
pub mod models;
pub mod prompts;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod train;

pub use data::{BenchItem, Category, Premise};
pub use judge::{Variant, Verdict};
