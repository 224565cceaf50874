//! GLAN (Generalized Instruction Tuning, arXiv 2402.13064): synthetic instruction data from a
//! taxonomy of human knowledge, with no seed examples.
//!
//! 1. taxonomy: fields -> sub-fields -> disciplines, generated or read from a reviewed TOML
//!    (`taxonomy.rs`);
//! 2. subjects per discipline (10 queries, T 1.0, top-p 0.95), 3. a syllabus per subject
//!    (class sessions with key concepts), 4. homework questions from one session (basic) or two
//!    (harder) and 1-5 of their key concepts, 5. answers by a separately chosen model
//!    (`pipeline.rs`), each a resumable pw-llm stage with JSON schemas, retries and rejects;
//! 6. filters (length, language, exact/near duplicates, benchmark contamination) and the
//!    JSONL / Parquet dataset in chat `messages` form with provenance (`dataset.rs`);
//!    orchestration, shards and merge in `run.rs`; the miniature reproduction in
//!    `reproduce.rs`; configuration (paper values as defaults) in `config.rs`.

pub mod config;
pub mod dataset;
pub mod pipeline;
pub mod reproduce;
pub mod run;
pub mod taxonomy;

pub use config::GlanConfig;
pub use reproduce::GlanReproduction;
