//! The real-use entry points the CLI calls.

use crate::augment::{self, ConstrainedOptions, Outcome, Unit};
use crate::data::{self, Density, JsonlFields, ReadOptions};
use crate::density::{Analyzer, Counts};
use crate::export::{self, AugRecord, FilterOptions};
use crate::lang::Lang;
use crate::verify::{self, Accepted};
use pw_core::{Error, Ledger, Result, Shard};
use pw_llm::embedded::forced::with_lm;
use pw_llm::stage::{RejectRecord, StageOptions, StageRecord};
use pw_llm::{EmbeddedConfig, GenParams, LlmConfig};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Jsonl,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "jsonl" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("format must be table, jsonl or csv, not {s:?}")),
        }
    }
}

/// Where `density` reads from.
#[derive(Clone, Debug)]
pub enum Input {
    Paths(Vec<PathBuf>),
    Jsonl { file: PathBuf, fields: JsonlFields },
}

/// Density of source trees or of a JSONL corpus.
pub fn density(input: &Input, opts: &ReadOptions) -> Result<Density> {
    if !(0.0..=1.0).contains(&opts.max_error_share) {
        return Err(Error::Other(format!(
            "--max-error-share must be between 0 and 1, not {}",
            opts.max_error_share
        )));
    }
    match input {
        Input::Paths(paths) => {
            let (files, skipped) = data::walk(paths)?;
            let mut d = data::density_of_files(&files, opts);
            d.skipped.splice(0..0, skipped);
            Ok(d)
        }
        Input::Jsonl { file, fields } => data::density_of_jsonl(file, fields, opts),
    }
}

/// One output row: a language, the total, or a file.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    lang: &'a str,
    #[serde(flatten)]
    counts: &'a Counts,
    density_lines: f64,
    density_chars: f64,
}

fn rows<'a>(d: &'a Density, per_file: bool) -> Vec<Row<'a>> {
    let row = |path, lang, counts: &'a Counts| Row {
        path,
        lang,
        counts,
        density_lines: counts.density_lines(),
        density_chars: counts.density_chars(),
    };
    let mut out: Vec<Row> = if per_file {
        d.items
            .iter()
            .map(|i| row(Some(i.path.as_str()), i.lang.name(), &i.counts))
            .collect()
    } else {
        d.per_lang
            .iter()
            .map(|(l, c)| row(None, l.as_str(), c))
            .collect()
    };
    out.push(row(None, "total", &d.total));
    out
}

const COLUMNS: [&str; 15] = [
    "lang",
    "files",
    "bytes",
    "lines",
    "blank",
    "code",
    "comment",
    "comment_only",
    "mixed",
    "docstring",
    "code_chars",
    "comment_chars",
    "comment_words",
    "density_lines",
    "density_chars",
];

fn fields(r: &Row) -> [String; 15] {
    let c = r.counts;
    [
        r.lang.to_string(),
        c.files.to_string(),
        c.bytes.to_string(),
        c.lines.to_string(),
        c.blank.to_string(),
        c.code.to_string(),
        c.comment.to_string(),
        c.comment_only.to_string(),
        c.mixed.to_string(),
        c.docstring.to_string(),
        c.code_chars.to_string(),
        c.comment_chars.to_string(),
        c.comment_words.to_string(),
        format!("{:.4}", r.density_lines),
        format!("{:.4}", r.density_chars),
    ]
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The density as a table, JSONL or CSV: one row per language (or per file with
/// `per_file`) and a total row.
pub fn render(d: &Density, format: Format, per_file: bool) -> String {
    let rows = rows(d, per_file);
    let mut out = String::new();
    match format {
        Format::Jsonl => {
            for r in &rows {
                out.push_str(&serde_json::to_string(r).expect("rows serialize"));
                out.push('\n');
            }
        }
        Format::Csv => {
            if per_file {
                out.push_str("path,");
            }
            out.push_str(&COLUMNS.join(","));
            out.push('\n');
            for r in &rows {
                if per_file {
                    out.push_str(&csv_field(r.path.unwrap_or("")));
                    out.push(',');
                }
                let f = fields(r).map(|s| csv_field(&s));
                out.push_str(&f.join(","));
                out.push('\n');
            }
        }
        Format::Table => {
            let _ = writeln!(
                out,
                "{:<12} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
                if per_file { "file" } else { "language" },
                "files",
                "lines",
                "blank",
                "code",
                "comment",
                "only",
                "mixed",
                "doc",
                "words",
                "dens/line",
                "dens/char"
            );
            for r in &rows {
                let c = r.counts;
                let name = r.path.unwrap_or(r.lang);
                let _ = writeln!(
                    out,
                    "{:<12} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8.1}% {:>8.1}%",
                    name,
                    c.files,
                    c.lines,
                    c.blank,
                    c.code,
                    c.comment,
                    c.comment_only,
                    c.mixed,
                    c.docstring,
                    c.comment_words,
                    r.density_lines * 100.0,
                    r.density_chars * 100.0
                );
            }
        }
    }
    out
}

/// What a unit of augmentation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// Each function or method (tree-sitter), dedented.
    Function,
    /// Each file or corpus record whole.
    Record,
}

impl std::str::FromStr for UnitKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "function" => Ok(UnitKind::Function),
            "record" => Ok(UnitKind::Record),
            _ => Err(format!("unit must be function or record, not {s:?}")),
        }
    }
}

/// Which units to take from the input.
#[derive(Clone, Debug)]
pub struct UnitOptions {
    pub kind: UnitKind,
    /// Units with fewer / more lines are left out.
    pub min_lines: usize,
    pub max_lines: usize,
    /// At most this many units (in input order).
    pub limit: Option<usize>,
}

impl Default for UnitOptions {
    fn default() -> Self {
        UnitOptions {
            kind: UnitKind::Function,
            min_lines: 3,
            max_lines: 60,
            limit: None,
        }
    }
}

/// The units of an input, with the inputs that were skipped and why.
pub fn collect_units(
    input: &Input,
    read: &ReadOptions,
    u: &UnitOptions,
) -> Result<(Vec<Unit>, Vec<data::Skipped>)> {
    let mut texts: Vec<(String, Lang, String)> = Vec::new();
    let mut skipped = Vec::new();
    match input {
        Input::Paths(paths) => {
            let (files, s) = data::walk(paths)?;
            skipped.extend(s);
            for (p, lang) in files {
                let name = p.display().to_string();
                match std::fs::read(&p) {
                    Ok(bytes) => match data::check_text(&bytes, read.max_bytes) {
                        Ok(()) => texts.push((
                            name,
                            lang,
                            String::from_utf8(bytes).expect("checked UTF-8"),
                        )),
                        Err(reason) => skipped.push(data::Skipped { path: name, reason }),
                    },
                    Err(e) => skipped.push(data::Skipped {
                        path: name,
                        reason: format!("skipped: cannot read ({e})"),
                    }),
                }
            }
        }
        Input::Jsonl { file, fields } => {
            data::read_jsonl_chunks(file, fields, 4096, |recs| {
                for r in recs {
                    match r {
                        Ok((name, lang, code)) => {
                            match data::check_text(code.as_bytes(), read.max_bytes) {
                                Ok(()) => texts.push((name, lang, code)),
                                Err(reason) => skipped.push(data::Skipped { path: name, reason }),
                            }
                        }
                        Err(s) => skipped.push(s),
                    }
                }
            })?;
        }
    }
    let mut an = Analyzer::new();
    let mut units = Vec::new();
    'texts: for (name, lang, code) in texts {
        let pieces: Vec<(usize, String)> = match u.kind {
            UnitKind::Record => vec![(1, code)],
            UnitKind::Function => verify::functions(&mut an, lang, &code)
                .into_iter()
                .map(|f| (f.line, f.code))
                .collect(),
        };
        for (line, code) in pieces {
            let n = code.lines().count();
            if n < u.min_lines || n > u.max_lines {
                continue;
            }
            units.push(Unit {
                id: format!("{name}#L{line}"),
                lang,
                path: name.clone(),
                line,
                code,
            });
            if u.limit.is_some_and(|l| units.len() >= l) {
                break 'texts;
            }
        }
    }
    Ok((units, skipped))
}

/// How augmentation calls its model.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Line-constrained decoding on a local GGUF (forced code tokens).
    Constrained(EmbeddedConfig),
    /// Whole-function generation through any generator, then verification.
    GenerateVerify {
        llm: Box<LlmConfig>,
        params: GenParams,
    },
}

#[derive(Clone, Debug)]
pub struct AugmentOptions {
    pub backend: Backend,
    pub constrained: ConstrainedOptions,
    pub filter: FilterOptions,
    pub round: u32,
    pub shard: Shard,
    pub seed: u64,
    /// Units per ledger flush (a kill loses at most one chunk's work, never a record).
    pub chunk: usize,
    /// Stage retries for generate-verify.
    pub retries: u32,
}

impl Default for AugmentOptions {
    fn default() -> Self {
        AugmentOptions {
            backend: Backend::Constrained(EmbeddedConfig::default()),
            constrained: ConstrainedOptions::default(),
            filter: FilterOptions::default(),
            round: 1,
            shard: Shard::ALL,
            seed: 0,
            chunk: 16,
            retries: 2,
        }
    }
}

/// What `augment` did, with where it wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AugmentSummary {
    pub model: String,
    pub method: String,
    pub units: usize,
    pub already_done: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub kept: usize,
    pub dropped_by_filter: usize,
    pub inserted_lines: usize,
    pub mean_density_before: f64,
    pub mean_density_after: f64,
    pub wall_s: f64,
    pub ledger: PathBuf,
    pub rejects: PathBuf,
    pub jsonl: PathBuf,
    pub parquet: PathBuf,
}

/// Who made a record: model, method, self-augmentation round, seed.
pub(crate) struct Provenance<'a> {
    pub model: &'a str,
    pub method: &'a str,
    pub round: u32,
    pub seed: u64,
}

pub(crate) fn record(
    an: &mut Analyzer,
    unit: &Unit,
    a: &Accepted,
    filter: &FilterOptions,
    p: Provenance,
) -> AugRecord {
    let Provenance {
        model,
        method,
        round,
        seed,
    } = p;
    let before = augment::char_density(an, unit.lang, &unit.code);
    let after = augment::char_density(an, unit.lang, &a.text);
    let reason = filter.verdict(a.inserted_lines + a.trailing_comments, after);
    AugRecord {
        id: unit.id.clone(),
        path: unit.path.clone(),
        line: unit.line,
        lang: unit.lang,
        content: a.text.clone(),
        original: unit.code.clone(),
        inserted_lines: a.inserted_lines,
        trailing_comments: a.trailing_comments,
        density_before: before,
        density_after: after,
        kept: reason.is_none(),
        filter_reason: reason,
        model: model.to_string(),
        method: method.to_string(),
        round,
        seed,
    }
}

/// Comments `units` into the run directory: a resumable ledger of every accepted unit
/// (`augmented.jsonl`, with the implicit filter's verdict), rejects with their reasons
/// (`rejects.jsonl`), and the kept units as `comments.jsonl` + `comments.parquet`.
pub fn augment(root: &Path, units: &[Unit], opts: &AugmentOptions) -> Result<AugmentSummary> {
    let t0 = std::time::Instant::now();
    let sfx = opts.shard.suffix();
    let ledger_path = root.join(format!("augmented{sfx}.jsonl"));
    let rejects_path = root.join(format!("rejects{sfx}.jsonl"));
    let mine: Vec<Unit> = units
        .iter()
        .filter(|u| opts.shard.owns(&u.id))
        .cloned()
        .collect();
    let mut s = AugmentSummary {
        units: mine.len(),
        ..AugmentSummary::default()
    };
    let mut an = Analyzer::new();
    match &opts.backend {
        Backend::Constrained(cfg) => {
            s.method = "constrained".into();
            let mut ledger = Ledger::open(&ledger_path)?;
            let mut rejects = Ledger::open(&rejects_path)?;
            let todo: Vec<Unit> = mine
                .iter()
                .filter(|u| !ledger.contains(&u.id) && !rejects.contains(&u.id))
                .cloned()
                .collect();
            s.already_done = mine.len() - todo.len();
            let mut cfg = cfg.clone();
            cfg.parallel = cfg.parallel.min(opts.constrained.parallel.max(1));
            let bar = pw_core::progress::bar(todo.len() as u64, "commenting");
            let model = with_lm(&cfg, |lm| -> Result<String> {
                let model = lm.name().to_string();
                for chunk in todo.chunks(opts.chunk.max(1)) {
                    let mut outcomes = Vec::with_capacity(chunk.len());
                    augment::constrained(lm, chunk, &opts.constrained, &mut |u, o| {
                        outcomes.push((u.id.clone(), o));
                        bar.inc(1);
                    })
                    .map_err(|e| pw_core::Error::Other(e.to_string()))?;
                    let by_id: HashMap<&str, &Unit> =
                        chunk.iter().map(|u| (u.id.as_str(), u)).collect();
                    for (id, o) in outcomes {
                        let unit = by_id[id.as_str()];
                        match o {
                            Outcome::Accepted(a) => {
                                let r = record(
                                    &mut an,
                                    unit,
                                    &a,
                                    &opts.filter,
                                    Provenance {
                                        model: &model,
                                        method: "constrained",
                                        round: opts.round,
                                        seed: opts.seed,
                                    },
                                );
                                ledger.append(&id, &r)?;
                            }
                            Outcome::Rejected { reason, text } => {
                                let r = RejectRecord {
                                    id: id.clone(),
                                    meta: serde_json::json!({"path": unit.path, "line": unit.line, "lang": unit.lang}),
                                    reason,
                                    text,
                                    attempts: 1,
                                };
                                rejects.append(&id, &r)?;
                            }
                        }
                    }
                    ledger.flush()?;
                    rejects.flush()?;
                }
                Ok(model)
            })
            .map_err(|e| pw_core::Error::Other(e.to_string()))
            .and_then(|r| r);
            bar.finish_and_clear();
            s.model = model?;
        }
        Backend::GenerateVerify { llm, params } => {
            s.method = "generate-verify".into();
            let generator =
                pw_llm::backend::open(llm).map_err(|e| pw_core::Error::Other(e.to_string()))?;
            s.model = generator.model();
            let stage_out = root.join(format!("generated{sfx}.jsonl"));
            let stats = augment::generate_verify(
                generator.as_ref(),
                &mine,
                params,
                &stage_out,
                &rejects_path,
                &StageOptions {
                    retries: opts.retries,
                    chunk: opts.chunk.max(1),
                    shard: Shard::ALL,
                    label: "commenting".into(),
                },
            )?;
            s.already_done = stats.already_done;
            let by_id: HashMap<&str, &Unit> = mine.iter().map(|u| (u.id.as_str(), u)).collect();
            let stage: Vec<StageRecord> = Ledger::read_all(&stage_out)?;
            let rows: Vec<AugRecord> = stage
                .iter()
                .filter_map(|r| {
                    let unit = by_id.get(r.id.as_str())?;
                    let a: Accepted = serde_json::from_value(r.output.clone()).ok()?;
                    Some(record(
                        &mut an,
                        unit,
                        &a,
                        &opts.filter,
                        Provenance {
                            model: &r.model,
                            method: "generate-verify",
                            round: opts.round,
                            seed: r.seed.unwrap_or(opts.seed),
                        },
                    ))
                })
                .collect();
            pw_core::jsonl::write_jsonl(&ledger_path, &rows)?;
        }
    }
    let rows: Vec<AugRecord> = Ledger::read_all(&ledger_path)?;
    let n_rejects = Ledger::read_all::<serde_json::Value>(&rejects_path)?.len();
    let kept: Vec<AugRecord> = rows.iter().filter(|r| r.kept).cloned().collect();
    s.accepted = rows.len();
    s.rejected = n_rejects;
    s.kept = kept.len();
    s.dropped_by_filter = rows.len() - kept.len();
    s.inserted_lines = rows.iter().map(|r| r.inserted_lines).sum();
    let mean = |f: fn(&AugRecord) -> f64| {
        if rows.is_empty() {
            0.0
        } else {
            rows.iter().map(f).sum::<f64>() / rows.len() as f64
        }
    };
    s.mean_density_before = mean(|r| r.density_before);
    s.mean_density_after = mean(|r| r.density_after);
    s.jsonl = root.join(format!("comments{sfx}.jsonl"));
    s.parquet = root.join(format!("comments{sfx}.parquet"));
    pw_core::jsonl::write_jsonl(&s.jsonl, &kept)?;
    export::write_parquet(&s.parquet, &kept)?;
    s.ledger = ledger_path;
    s.rejects = rejects_path;
    s.wall_s = t0.elapsed().as_secs_f64();
    Ok(s)
}
