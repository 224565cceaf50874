//! Code corpora: source trees on disk (walked as git sees them: `.gitignore`, hidden files
//! skipped) and JSONL corpora in The Stack's format (`content` + `lang` fields). Every input
//! that cannot be counted becomes a skip line with its reason (binary, invalid UTF-8, too
//! large, unparsable), never an error that stops the walk.

use crate::density::{Analyzer, Counts, Docstrings};
use crate::lang::Lang;
use pw_core::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// How inputs are read and what is refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    /// Larger files are skipped (generated code, data blobs).
    pub max_bytes: u64,
    /// A file whose ERROR nodes cover more than this share of its bytes is skipped as
    /// unparsable; below it the file is counted and flagged (`syntax_error_files`).
    pub max_error_share: f64,
    pub docstrings: Docstrings,
    pub engine: Engine,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_bytes: 10 * 1024 * 1024,
            max_error_share: 0.25,
            docstrings: Docstrings::Comment,
            engine: Engine::Scan,
        }
    }
}

/// What finds the comments: the lexical scanner (the default, tokei's speed; identical line
/// counts to the parse on 99.9% of the files measured, see `scan.rs`) or the tree-sitter parse
/// (several times slower; it also sees syntax errors, which the scanner cannot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    #[default]
    Scan,
    TreeSitter,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "scan" => Ok(Engine::Scan),
            "tree-sitter" => Ok(Engine::TreeSitter),
            _ => Err(format!("engine must be scan or tree-sitter, not {s:?}")),
        }
    }
}

/// Why an input was not counted: one line, for the skip list.
pub fn check_text(bytes: &[u8], max_bytes: u64) -> std::result::Result<(), String> {
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "skipped: {} bytes, over the limit of {max_bytes} (--max-bytes)",
            bytes.len()
        ));
    }
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err("skipped: binary (a NUL byte in the first 8 KiB)".into());
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(format!(
            "skipped: invalid UTF-8 at byte {}",
            e.valid_up_to()
        ));
    }
    Ok(())
}

/// The density of one counted input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Item {
    /// File path, or `FILE:LINE` (or the record's `id`) for a JSONL record.
    pub path: String,
    pub lang: Lang,
    #[serde(flatten)]
    pub counts: Counts,
    pub density_lines: f64,
    pub density_chars: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Per-input results, per-language sums and the total.
#[derive(Debug, Default, Serialize)]
pub struct Density {
    pub items: Vec<Item>,
    pub skipped: Vec<Skipped>,
    pub per_lang: BTreeMap<String, Counts>,
    pub total: Counts,
}

impl Density {
    fn push(&mut self, r: std::result::Result<Item, Skipped>) {
        match r {
            Ok(it) => {
                self.per_lang
                    .entry(it.lang.name().to_string())
                    .or_default()
                    .add(&it.counts);
                self.total.add(&it.counts);
                self.items.push(it);
            }
            Err(s) => self.skipped.push(s),
        }
    }
}

/// Counts one text (file contents or a JSONL record), or says why not.
pub fn measure(
    an: &mut Analyzer,
    path: String,
    lang: Lang,
    bytes: &[u8],
    opts: &ReadOptions,
) -> std::result::Result<Item, Skipped> {
    let skip = |reason: String| Skipped {
        path: path.clone(),
        reason,
    };
    check_text(bytes, opts.max_bytes).map_err(skip)?;
    let a = match opts.engine {
        Engine::Scan => crate::scan::analyze(lang, bytes, opts.docstrings),
        Engine::TreeSitter => an
            .analyze(lang, bytes, opts.docstrings)
            .ok_or_else(|| skip("skipped: tree-sitter returned no tree".into()))?,
    };
    let share = a.error_bytes as f64 / bytes.len().max(1) as f64;
    if share > opts.max_error_share {
        let what = match a.first_error {
            Some((at, what)) => format!(
                "cannot be read as {}: {what} opens at line {}",
                lang.name(),
                bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1
            ),
            None => format!("tree-sitter cannot parse it as {}", lang.name()),
        };
        return Err(skip(format!(
            "skipped: {what} ({:.0}% of the bytes in errors, over --max-error-share {:.0}%)",
            share * 100.0,
            opts.max_error_share * 100.0
        )));
    }
    Ok(Item {
        density_lines: a.counts.density_lines(),
        density_chars: a.counts.density_chars(),
        path,
        lang,
        counts: a.counts,
    })
}

/// Source files with their languages.
pub type Files = Vec<(PathBuf, Lang)>;

/// The source files under `paths` (files named directly are taken whatever their name, and
/// skipped with a reason when their language is unknown). A path that does not exist is an
/// error: the user mistyped it.
pub fn walk(paths: &[PathBuf]) -> Result<(Files, Vec<Skipped>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for root in paths {
        let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if meta.is_file() {
            match Lang::from_path(root) {
                Some(l) => files.push((root.clone(), l)),
                None => skipped.push(Skipped {
                    path: root.display().to_string(),
                    reason: format!(
                        "skipped: unknown language (extension not one of {})",
                        Lang::known_names()
                    ),
                }),
            }
            continue;
        }
        for entry in ignore::WalkBuilder::new(root).build() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    skipped.push(Skipped {
                        path: root.display().to_string(),
                        reason: format!("skipped: {e}"),
                    });
                    continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            if let Some(l) = Lang::from_path(entry.path()) {
                files.push((entry.into_path(), l));
            }
        }
    }
    files.sort();
    Ok((files, skipped))
}

/// Density of every file, in parallel over rayon's pool; results in path order.
pub fn density_of_files(files: &[(PathBuf, Lang)], opts: &ReadOptions) -> Density {
    let results: Vec<_> = files
        .par_iter()
        .map_init(Analyzer::new, |an, (path, lang)| {
            let name = path.display().to_string();
            match std::fs::read(path) {
                Ok(bytes) => measure(an, name, *lang, &bytes, opts),
                Err(e) => Err(Skipped {
                    path: name,
                    reason: format!("skipped: cannot read ({e})"),
                }),
            }
        })
        .collect();
    let mut d = Density::default();
    for r in results {
        d.push(r);
    }
    d
}

/// Where the code and its language are in a JSONL corpus's records.
#[derive(Clone, Debug)]
pub struct JsonlFields {
    pub content: String,
    pub lang: String,
    /// Used for a record's name when present (else FILE:LINE).
    pub id: String,
}

impl Default for JsonlFields {
    fn default() -> Self {
        JsonlFields {
            content: "content".into(),
            lang: "lang".into(),
            id: "id".into(),
        }
    }
}

/// One record of a JSONL corpus: its name, language and code, or why it is unusable.
pub type Record = std::result::Result<(String, Lang, String), Skipped>;

/// Parses one JSONL line into a record.
pub fn parse_record(file: &Path, line_no: usize, line: &str, f: &JsonlFields) -> Record {
    let at = format!("{}:{line_no}", file.display());
    let skip = |reason: String| Skipped {
        path: at.clone(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| skip(format!("skipped: not JSON ({e})")))?;
    let content = v
        .get(&f.content)
        .and_then(|c| c.as_str())
        .ok_or_else(|| skip(format!("skipped: no string field {:?}", f.content)))?;
    let lang_name = v
        .get(&f.lang)
        .and_then(|c| c.as_str())
        .ok_or_else(|| skip(format!("skipped: no string field {:?}", f.lang)))?;
    let lang = Lang::from_name(lang_name).ok_or_else(|| {
        skip(format!(
            "skipped: language {lang_name:?} is not one of {}",
            Lang::known_names()
        ))
    })?;
    let name = match v.get(&f.id) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => at.clone(),
    };
    Ok((name, lang, content.to_string()))
}

/// Reads a JSONL corpus in chunks, calling `f` with each chunk's records (memory stays
/// bounded on a large shard of The Stack). A line that is not UTF-8 is a skipped record.
pub fn read_jsonl_chunks(
    path: &Path,
    fields: &JsonlFields,
    chunk: usize,
    mut f: impl FnMut(Vec<Record>),
) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut batch = Vec::with_capacity(chunk);
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let rec = match std::str::from_utf8(&buf) {
            Ok(s) if s.trim().is_empty() => continue,
            Ok(s) => parse_record(path, line_no, s, fields),
            Err(e) => Err(Skipped {
                path: format!("{}:{line_no}", path.display()),
                reason: format!("skipped: invalid UTF-8 at byte {}", e.valid_up_to()),
            }),
        };
        batch.push(rec);
        if batch.len() >= chunk {
            f(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        f(batch);
    }
    Ok(())
}

/// Density of every record of a JSONL corpus.
pub fn density_of_jsonl(path: &Path, fields: &JsonlFields, opts: &ReadOptions) -> Result<Density> {
    let mut d = Density::default();
    read_jsonl_chunks(path, fields, 4096, |recs| {
        let results: Vec<_> = recs
            .into_par_iter()
            .map_init(Analyzer::new, |an, r| {
                let (name, lang, code) = r?;
                measure(an, name, lang, code.as_bytes(), opts)
            })
            .collect();
        for r in results {
            d.push(r);
        }
    })?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_checks_name_the_reason() {
        assert!(check_text(b"x = 1\n", 100).is_ok());
        assert!(
            check_text(b"\x7fELF\0\0", 100)
                .unwrap_err()
                .contains("binary")
        );
        assert!(
            check_text(b"x = '\xff'\n", 100)
                .unwrap_err()
                .contains("invalid UTF-8 at byte 5")
        );
        assert!(
            check_text(&[b'a'; 101], 100)
                .unwrap_err()
                .contains("101 bytes")
        );
    }

    #[test]
    fn jsonl_records_parse_or_say_why_not() {
        let f = JsonlFields::default();
        let p = Path::new("c.jsonl");
        let (name, lang, code) =
            parse_record(p, 3, r#"{"content": "x = 1\n", "lang": "Python"}"#, &f).unwrap();
        assert_eq!(
            (name.as_str(), lang, code.as_str()),
            ("c.jsonl:3", Lang::Python, "x = 1\n")
        );
        let e = parse_record(p, 4, r#"{"content": "x", "lang": "COBOL"}"#, &f).unwrap_err();
        assert!(e.reason.contains("COBOL"), "{}", e.reason);
        let e = parse_record(p, 5, r#"{"text": "x", "lang": "C"}"#, &f).unwrap_err();
        assert!(e.reason.contains("\"content\""), "{}", e.reason);
        assert!(
            parse_record(p, 6, "{not json", &f)
                .unwrap_err()
                .reason
                .contains("not JSON")
        );
    }
}

/// The Python standard library on this machine (the interpreter on PATH says where; else
/// Debian's /usr/lib/python3.X).
pub fn python_stdlib() -> Option<PathBuf> {
    let asked = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.join("os.py").is_file());
    asked.or_else(|| {
        let mut c: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3."))
                    && p.join("os.py").is_file()
            })
            .collect();
        c.sort();
        c.pop()
    })
}

/// The cargo registry sources on this machine (`$CARGO_HOME/registry/src`).
pub fn cargo_registry() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let p = home.join("registry/src");
    p.is_dir().then_some(p)
}

/// Which split a file belongs to: a stable hash of its path relative to the corpus root
/// (80% train, 10% validation, 10% test), so functions of one file never straddle splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

pub fn split_of(rel_path: &str) -> Split {
    match pw_core::shard::stable_hash(rel_path) % 10 {
        0 => Split::Validation,
        1 => Split::Test,
        _ => Split::Train,
    }
}

/// The stdlib's Python files (not what pip installed beside it), relative path and text.
pub fn stdlib_files(root: &Path, max_bytes: u64) -> Result<Vec<(String, String)>> {
    let (files, _) = walk(&[root.to_path_buf()])?;
    let mut out = Vec::new();
    for (p, lang) in files {
        if lang != Lang::Python || p.components().any(|c| c.as_os_str() == "site-packages") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        if check_text(&bytes, max_bytes).is_err() {
            continue;
        }
        let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
        out.push((rel, String::from_utf8(bytes).expect("checked UTF-8")));
    }
    Ok(out)
}

/// A Python function as an NL-conditioned example: the prompt is everything up to the end of
/// its docstring, the body the rest with comments removed. `None` without a docstring or a
/// body.
pub fn nl_example(
    an: &mut Analyzer,
    id: String,
    function: &str,
) -> Option<crate::evaluate::NlExample> {
    let code = crate::verify::strip_comments(an, Lang::Python, function).ok()?;
    let (_, spans) = an.parse(Lang::Python, code.as_bytes())?;
    let doc = spans.iter().find(|s| s.docstring)?;
    let cut = code[doc.bytes.end..]
        .find('\n')
        .map(|p| doc.bytes.end + p + 1)?;
    let body = code[cut..].to_string();
    if body.trim().is_empty() {
        return None;
    }
    Some(crate::evaluate::NlExample {
        id,
        prompt: code[..cut].to_string(),
        body,
    })
}
