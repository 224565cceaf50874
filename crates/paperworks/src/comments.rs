//! `paperworks comments density | augment`: flags to one pw-comments call each, and the
//! printed summary.

use crate::Global;
use crate::llm::BackendArgs;
use clap::{Args, Subcommand};
use pw_comments::augment::ConstrainedOptions;
use pw_comments::data::{JsonlFields, ReadOptions};
use pw_comments::export::FilterOptions;
use pw_comments::run::{
    AugmentOptions, Backend, Format, Input, UnitKind, UnitOptions, augment, collect_units, density,
    render,
};
use pw_comments::{Docstrings, Engine};
use pw_core::{Error, Result, RunDir, Shard};
use pw_llm::GenParams;
use std::path::PathBuf;

/// Where the code comes from (both subcommands).
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
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
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_bytes: u64,
}

impl InputArgs {
    fn input(&self) -> Input {
        match &self.jsonl {
            Some(file) => Input::Jsonl {
                file: file.clone(),
                fields: JsonlFields {
                    content: self.field.clone(),
                    lang: self.lang_field.clone(),
                    ..JsonlFields::default()
                },
            },
            None => Input::Paths(self.paths.clone()),
        }
    }
}

// Parsed once per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum CommentsCommand {
    /// Comment density of source trees or of a JSONL corpus.
    ///
    /// Python, Rust, JavaScript, TypeScript/TSX, Go, Java, C and C++: comments are found by a
    /// lexical scanner that knows each language's strings, raw strings, nested comments and
    /// Python docstrings (strings that look like comments are not comments), and that gives
    /// the tree-sitter parse's line counts on 99.9% of files at several times its speed
    /// (--engine tree-sitter parses instead, and also skips files with syntax errors). Python
    /// docstrings count as comments unless --docstrings code. A line with code and a comment
    /// counts on both sides (and as `mixed`); tokei's "comments" are `only`. Density is
    /// comment lines over non-blank lines, and comment characters over non-space characters.
    /// Directories are walked as git sees them (.gitignore, hidden files left out), in
    /// parallel. Binary files, invalid UTF-8, files over --max-bytes and files mostly inside
    /// an unterminated comment or string (with tree-sitter: syntax errors) are skipped, one
    /// line each on stderr with the reason.
    ///
    /// Example: paperworks comments density src/ --format csv --per-file --out density.csv
    Density {
        #[command(flatten)]
        input: InputArgs,
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
        /// Skip a file whose errors (an unterminated comment or string; with tree-sitter,
        /// syntax errors) cover more than this share of its bytes.
        #[arg(long, default_value_t = 0.25)]
        max_error_share: f64,
        /// scan (lexical, tokei's speed) or tree-sitter (parse; sees syntax errors).
        #[arg(long, default_value = "scan")]
        engine: Engine,
        /// Print no skip lines (their count is still printed).
        #[arg(long)]
        no_skip_lines: bool,
    },
    /// Add comments to code without changing a byte of it.
    ///
    /// Each function (or, with --unit record, each file or record) is commented by a model
    /// that may only insert comment lines: with the embedded backend the code lines are fed as
    /// forced tokens and at each line boundary the model's own probabilities decide between a
    /// comment and the next code line; with --endpoint (or --generate-verify) the model
    /// rewrites the function and the output is checked (removing what it added must give the
    /// original back byte for byte), retried with a new seed, then rejected with the reason.
    /// The implicit filter drops units the model left uncommented. Writes to the run dir
    /// (default runs/comments-augment): augmented.jsonl (ledger of every accepted unit with
    /// the filter's verdict; a rerun resumes), rejects.jsonl, and the kept units as
    /// comments.jsonl + comments.parquet (content, original, lang, path, line, densities,
    /// model, method, round, seed). Default model: the Qwen2.5-Coder-0.5B GGUF that setup
    /// fetches, else SmolLM2.
    ///
    /// Example: paperworks comments augment src/ --limit 50
    Augment {
        #[command(flatten)]
        input: InputArgs,
        /// function (each function or method) or record (each file / JSONL record whole).
        #[arg(long, default_value = "function")]
        unit: UnitKind,
        /// Leave out units with fewer lines.
        #[arg(long, default_value_t = 3)]
        min_lines: usize,
        /// Leave out units with more lines.
        #[arg(long, default_value_t = 60)]
        max_lines: usize,
        /// At most this many units.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        backend: BackendArgs,
        /// Whole-function generation + verification even with the embedded model.
        #[arg(long)]
        generate_verify: bool,
        /// Generate-verify: most tokens of one reply.
        #[arg(long, default_value_t = 1024)]
        max_tokens: u32,
        /// Constrained: added to log P(comment) at each line boundary (> 0: more comments).
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        bias: f32,
        /// Constrained: most tokens of one comment line.
        #[arg(long, default_value_t = 32)]
        max_comment_tokens: usize,
        /// Constrained: most comment lines in a row.
        #[arg(long, default_value_t = 2)]
        max_consecutive: usize,
        /// Implicit filter: fewest inserted comments of a kept unit.
        #[arg(long, default_value_t = 1)]
        min_inserted: usize,
        /// Implicit filter: lowest comment density (characters) after augmentation.
        #[arg(long, default_value_t = 0.0)]
        min_density_after: f64,
        /// Self-augmentation round recorded in the provenance.
        #[arg(long, default_value_t = 1)]
        round: u32,
        /// Run only units whose id hashes to shard I of N.
        #[arg(long, value_name = "I/N")]
        shard: Option<Shard>,
        /// Generate-verify: no response cache.
        #[arg(long)]
        no_cache: bool,
    },
}

pub fn run(g: &Global, cmd: &CommentsCommand) -> Result<()> {
    match cmd {
        CommentsCommand::Density {
            input,
            format,
            per_file,
            out,
            docstrings,
            max_error_share,
            engine,
            no_skip_lines,
        } => {
            let max_bytes = &input.max_bytes;
            let input = input.input();
            let opts = ReadOptions {
                max_bytes: *max_bytes,
                max_error_share: *max_error_share,
                docstrings: *docstrings,
                engine: *engine,
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
                    "{} inputs counted, {} skipped, {} with {} errors counted; {:.1} MB in {:.2} s ({:.1} MB/s){}",
                    d.total.files,
                    d.skipped.len(),
                    d.total.syntax_error_files,
                    match engine {
                        Engine::Scan => "lexical",
                        Engine::TreeSitter => "syntax",
                    },
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
        CommentsCommand::Augment {
            input,
            unit,
            min_lines,
            max_lines,
            limit,
            backend,
            generate_verify,
            max_tokens,
            bias,
            max_comment_tokens,
            max_consecutive,
            min_inserted,
            min_density_after,
            round,
            shard,
            no_cache,
        } => {
            let read = ReadOptions {
                max_bytes: input.max_bytes,
                ..ReadOptions::default()
            };
            let (units, skipped) = collect_units(
                &input.input(),
                &read,
                &UnitOptions {
                    kind: *unit,
                    min_lines: *min_lines,
                    max_lines: *max_lines,
                    limit: *limit,
                },
            )?;
            if !g.quiet {
                for s in &skipped {
                    eprintln!("{}: {}", s.path, s.reason);
                }
            }
            if units.is_empty() {
                return Err(Error::Other(format!(
                    "no unit to comment: no {} of {min_lines}..={max_lines} lines in the input",
                    if *unit == UnitKind::Function {
                        "function"
                    } else {
                        "file or record"
                    }
                )));
            }
            let dir = g
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/comments-augment"));
            let mut b = backend.clone();
            if b.model.is_none() {
                b.model = Some(pw_data::assets::code_model(&g.assets));
            }
            let cache = (!no_cache).then(|| dir.join("cache.redb"));
            let llm = b.config(g, cache);
            let backend = if llm.uses_http() || *generate_verify {
                Backend::GenerateVerify {
                    llm: Box::new(llm),
                    params: GenParams {
                        temperature: 0.2,
                        max_tokens: *max_tokens,
                        ..GenParams::default()
                    },
                }
            } else {
                Backend::Constrained(llm.embedded)
            };
            let opts = AugmentOptions {
                backend,
                constrained: ConstrainedOptions {
                    bias: *bias,
                    max_comment_tokens: *max_comment_tokens,
                    max_consecutive: *max_consecutive,
                    parallel: b.parallel,
                },
                filter: FilterOptions {
                    min_inserted: *min_inserted,
                    min_density_after: *min_density_after,
                },
                round: *round,
                shard: shard.unwrap_or(Shard::ALL),
                seed: g.seed,
                ..AugmentOptions::default()
            };
            let config = serde_json::json!({
                "units": units.len(), "unit": format!("{unit:?}"), "model": b.model.as_ref().map(|m| m.to_string_lossy()),
                "endpoints": b.endpoint, "bias": bias, "max_comment_tokens": max_comment_tokens,
                "max_consecutive": max_consecutive, "min_inserted": min_inserted,
                "min_density_after": min_density_after, "round": round,
            });
            let s = RunDir::scope(&dir, config.clone(), g.seed, g.fresh, |run| {
                // The ledger holds comments of these units by this model: other code or
                // settings must not resume from it.
                let mut code = String::new();
                for u in &units {
                    code.push_str(&u.id);
                    code.push('\0');
                    code.push_str(&u.code);
                    code.push('\0');
                }
                let units_hash = format!("{:016x}", pw_core::shard::stable_hash(&code));
                run.check_inputs(
                    "comments augment",
                    &[],
                    serde_json::json!({"settings": config, "seed": g.seed, "units": units_hash}),
                )?;
                augment(run.root(), &units, &opts)
            })?;
            println!(
                "{} units ({} done before): {} accepted, {} rejected; implicit filter kept {} and dropped {} left uncommented",
                s.units, s.already_done, s.accepted, s.rejected, s.kept, s.dropped_by_filter
            );
            println!(
                "{} comment lines inserted by {} ({}); mean comment density {:.1}% -> {:.1}%; {:.1} s",
                s.inserted_lines,
                s.model,
                s.method,
                s.mean_density_before * 100.0,
                s.mean_density_after * 100.0,
                s.wall_s
            );
            println!(
                "wrote {} and {} (kept), {} (all accepted), {} (rejects with reasons)",
                s.jsonl.display(),
                s.parquet.display(),
                s.ledger.display(),
                s.rejects.display()
            );
            Ok(())
        }
    }
}
