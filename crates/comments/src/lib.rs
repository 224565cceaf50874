//! Code Needs Comments (arXiv 2402.13013): comment density measures how well code is aligned
//! with natural language; a generator that may only *insert* comments (the code lines are
//! fixed) raises it without changing a byte of code; code the generator leaves uncommented is
//! dropped (the implicit filter); the model trained on round r's data comments round r+1's.
//!
//! - `lang.rs`: the one table of everything language-specific (grammar, comment nodes, ...).
//! - `density.rs`: comment density of one text from its tree-sitter parse.
//! - `scan.rs`: the same spans from a lexical scan at tokei's speed (the density default).
//! - `data.rs`: corpora (source trees, JSONL in The Stack's format), skip reasons, parallel
//!   density over many inputs.
//! - `verify.rs`: the no-code-change guarantee (alignment, rebuilt parse, comment stripping)
//!   and function extraction.
//! - `augment.rs`: comment augmentation, line-constrained (forced code tokens on a local
//!   GGUF) or generate-and-verify (any generator).
//! - `selfaug.rs`: self-augmentation, the byte-level model trained on round r commenting
//!   round r + 1 under the same line constraint.
//! - `export.rs`: augmented records, the implicit filter, JSONL / Parquet exports.
//! - `run.rs`: the entry points the CLI calls (density, augment).
//! - The miniature: `config.rs` (sizes), `model.rs` (a byte-level code model), `train.rs`
//!   (pre-training and continued training), `evaluate.rs` (NL-conditioned bits per byte),
//!   `report.rs` (claims, tables, samples), `reproduce.rs` (orchestration).

pub mod augment;
pub mod config;
pub mod data;
pub mod density;
pub mod evaluate;
pub mod export;
pub mod lang;
pub mod model;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod scan;
pub mod selfaug;
pub mod train;
pub mod verify;

pub use data::{Density, Engine, ReadOptions};
pub use density::{Analyzer, Counts, Docstrings};
pub use lang::Lang;
