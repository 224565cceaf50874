//! The real-use entry points the CLI calls.

use crate::data::{self, Density, JsonlFields, ReadOptions};
use crate::density::Counts;
use pw_core::{Error, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

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
