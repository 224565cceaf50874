//! Code Needs Comments (arXiv 2402.13013): comment density measures how well code is aligned
//! with natural language; a generator that may only *insert* comments (the code lines are
//! fixed) raises it without changing a byte of code; code the generator leaves uncommented is
//! dropped (the implicit filter); the model trained on round r's data comments round r+1's.
//!
//! - `lang.rs`: the one table of everything language-specific (grammar, comment nodes, ...).
//! - `density.rs`: comment density of one text from its tree-sitter parse.
//! - `data.rs`: corpora (source trees, JSONL in The Stack's format), skip reasons, parallel
//!   density over many inputs.
//! - `verify.rs`: the no-code-change guarantee (alignment, rebuilt parse, comment stripping)
//!   and function extraction.

pub mod data;
pub mod density;
pub mod lang;
pub mod run;
pub mod verify;

pub use data::{Density, ReadOptions};
pub use density::{Analyzer, Counts, Docstrings};
pub use lang::Lang;
