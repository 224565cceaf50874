//! GLAN (Generalized Instruction Tuning, arXiv 2402.13064): synthetic instruction data from a
//! taxonomy of human knowledge, with no seed examples.
//!
//! 1. taxonomy: fields -> sub-fields -> disciplines, generated or read from a reviewed TOML
//!    (`taxonomy.rs`);
//! 2. subjects per discipline (10 queries, T 1.0, top-p 0.95), 3. a syllabus per subject
//!    (class sessions with key concepts), 4. homework questions from one session (basic) or two
//!    (harder) and 1-5 of their key concepts, 5. answers by a separately chosen model
//!    (`pipeline.rs`), each a resumable pw-llm stage with JSON schemas, retries and rejects;
//! 6. a judge stage (ours): a model scores each pair 1-10 on four criteria (`pipeline.rs`,
//!    `quality.rs`);
//! 7. filters (length, language, truncation, cheap detectors: question form, repetition, echo,
//!    dictionary words; contamination, the judge, exact/near duplicates; `quality.rs`) and the
//!    JSONL / Parquet dataset in chat `messages` form with provenance, plus the SFT export
//!    (`sft/train.jsonl`, `sft/test.jsonl`) for TRL and axolotl (`dataset.rs`);
//!    the real-use entry points (stages, shards, merge, the dataset and its report) in
//!    `run.rs`; the claims and report section in `report.rs`; the miniature's orchestration
//!    in `reproduce.rs`; configuration (paper values as defaults, sizes) in `config.rs`.
//! 8. the paper's central claim in miniature (reproduction only): a byte-level base model
//!    pre-trained on WordNet glosses, instruction-tuned on GLAN pairs and on the same number of
//!    Self-Instruct pairs (`selfinstruct.rs`: new tasks prompted from seed tasks), scored on
//!    hand-written reference answers of held-out disciplines (`claim.rs`).
//!
//! Of the file roles every paper crate shares, GLAN has no `model.rs` or `train.rs`: its data
//! models are any pw-llm generator, and the one model it trains, the claim's byte-level LM, is
//! pw-nn's `bytelm`, trained and scored in `claim.rs`. Its data steps are `taxonomy.rs`,
//! `pipeline.rs` and `dataset.rs` rather than one `data.rs`.

pub mod claim;
pub mod config;
pub mod dataset;
pub mod parquet;
pub mod pipeline;
pub mod quality;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod selfinstruct;
pub mod taxonomy;

pub use config::GlanConfig;
pub use reproduce::GlanReproduction;
