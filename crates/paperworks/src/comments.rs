//! `paperworks comments density`: flags to one pw-comments call each, and the printed
//! summary.

use crate::Global;
use clap::Subcommand;
use pw_comments::Docstrings;
use pw_comments::data::{JsonlFields, ReadOptions};
use pw_comments::run::{Format, Input, density, render};
use pw_core::{Error, Result};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum CommentsCommand {
    /// Comment density of source trees or of a JSONL corpus.
    ///
    /// Python, Rust, JavaScript, TypeScript/TSX, Go, Java, C and C++ are parsed with
    /// tree-sitter: comments are the grammar's comment nodes (strings that look like comments
    /// are not), Python docstrings count as comments unless --docstrings code. A line with code
    /// and a comment counts on both sides (and as `mixed`); tokei's "comments" are `only`.
    /// Density is comment lines over non-blank lines, and comment characters over non-space
    /// characters. Directories are walked as git sees them (.gitignore, hidden files left out),
    /// in parallel. Binary files, invalid UTF-8, files over --max-bytes and files tree-sitter
    /// cannot parse are skipped, one line each on stderr with the reason.
    ///
    /// Example: paperworks comments density src/ --format csv --per-file --out density.csv
    Density {
        /// Files and directories.
        #[arg(value_name = "PATH", required_unless_present = "jsonl")]
        paths: Vec<PathBuf>,
        /// A JSONL corpus instead (one record per line, The Stack's format).
        #[arg(long, value_name = "FILE", conflicts_with = "paths")]
        jsonl: Option<PathBuf>,
        /// Field holding the code in --jsonl records.
        #[arg(long, default_value = "content")]
        field: String,
        /// Field holding the language name ("Python", "C++", "rust", ...).
        #[arg(long, default_value = "lang")]
        lang_field: String,
        /// table, jsonl or csv.
        #[arg(long, default_value = "table")]
        format: Format,
        /// One row per file (per record) instead of per language.
        #[arg(long)]
        per_file: bool,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Python docstrings count as comment (default) or code (tokei's default).
        #[arg(long, default_value = "comment")]
        docstrings: Docstrings,
        /// Skip files larger than this many bytes.
        #[arg(long, default_value_t = 10 * 1024 * 1024)]
        max_bytes: u64,
        /// Skip a file whose syntax errors cover more than this share of its bytes.
        #[arg(long, default_value_t = 0.25)]
        max_error_share: f64,
        /// Print no skip lines (their count is still printed).
        #[arg(long)]
        no_skip_lines: bool,
    },
}

pub fn run(g: &Global, cmd: &CommentsCommand) -> Result<()> {
    match cmd {
        CommentsCommand::Density {
            paths,
            jsonl,
            field,
            lang_field,
            format,
            per_file,
            out,
            docstrings,
            max_bytes,
            max_error_share,
            no_skip_lines,
        } => {
            let input = match jsonl {
                Some(file) => Input::Jsonl {
                    file: file.clone(),
                    fields: JsonlFields {
                        content: field.clone(),
                        lang: lang_field.clone(),
                        ..JsonlFields::default()
                    },
                },
                None => Input::Paths(paths.clone()),
            };
            let opts = ReadOptions {
                max_bytes: *max_bytes,
                max_error_share: *max_error_share,
                docstrings: *docstrings,
            };
            let t0 = std::time::Instant::now();
            let d = density(&input, &opts)?;
            let secs = t0.elapsed().as_secs_f64();
            if !no_skip_lines && !g.quiet {
                for s in &d.skipped {
                    eprintln!("{}: {}", s.path, s.reason);
                }
            }
            let text = render(&d, *format, *per_file);
            match out {
                Some(p) => pw_core::write_atomic(p, text.as_bytes())?,
                None => print!("{text}"),
            }
            if !g.quiet {
                eprintln!(
                    "{} inputs counted, {} skipped, {} with syntax errors counted; {:.1} MB in {:.2} s ({:.1} MB/s){}",
                    d.total.files,
                    d.skipped.len(),
                    d.total.syntax_error_files,
                    d.total.bytes as f64 / 1e6,
                    secs,
                    d.total.bytes as f64 / 1e6 / secs.max(1e-9),
                    out.as_ref()
                        .map(|p| format!("; wrote {}", p.display()))
                        .unwrap_or_default()
                );
            }
            if d.total.files == 0 && !d.skipped.is_empty() {
                return Err(Error::Other(format!(
                    "nothing could be counted: all {} inputs were skipped",
                    d.skipped.len()
                )));
            }
            Ok(())
        }
    }
}
