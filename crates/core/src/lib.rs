//! pw-core: the mechanisms every paperworks command shares.
//!
//! - [`rundir`]: run directories with `manifest.json` and `metrics.json`;
//! - [`ledger`]: the append-only JSONL ledger that makes long stages resumable;
//! - [`atomic`]: crash-safe whole-file writes (checkpoints, reports, configs);
//! - [`cpath`]: UTF-8 names for files C libraries open (file names need not be UTF-8);
//! - [`report`] and [`plot`]: `report.md` + self-contained `report.html` with embedded plots;
//! - [`repro`]: the `Reproduction` interface the paper crates implement;
//! - [`error`]: typed errors that print as one line naming the file at fault;
//! - [`progress`]: progress bars that stay out of logs and `--quiet` runs;
//! - [`shard`]: `--shard I/N`, a stable split of per-item stages over processes or machines;
//! - [`jsonl`]: JSON Lines files users hand us or keep; [`seed`]: stable hashes and seed
//!   derivation; [`stopwatch`]: stage wall times for the report.

pub mod atomic;
pub mod cpath;
pub mod error;
pub mod jsonl;
pub mod ledger;
pub mod plot;
pub mod progress;
pub mod report;
pub mod repro;
pub mod rundir;
pub mod samples;
pub mod seed;
pub mod shard;
pub mod stopwatch;

pub use atomic::{write_atomic, write_json_atomic};
pub use error::{Error, IoContext, Result, one_line, read_toml};
pub use ledger::Ledger;
pub use plot::{Plot, PlotKind, Series};
pub use report::{Block, Report, Table};
pub use repro::{
    Claim, ClaimResult, ReproConfig, ReproContext, ReproOutcome, Reproduction, Resolution, Size,
    apply_overrides, resolve_config, run_reproductions, two_se_of_accuracy_difference,
    weakest_margin,
};
pub use rundir::{InputPrint, Metrics, RunDir, versions};
pub use shard::Shard;
pub use stopwatch::{Stopwatch, pct};
