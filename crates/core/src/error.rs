//! Typed errors of the shared mechanisms. Every variant names the file (and line or field) at
//! fault, so the binary can print it as one line.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: line {line}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },

    #[error("config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    #[error("run directory {}: {reason}", path.display())]
    RunDir { path: PathBuf, reason: String },

    #[error("missing asset {}: {hint}", path.display())]
    MissingAsset { path: PathBuf, hint: String },

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    pub fn invalid(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }
    pub fn corrupt(path: impl AsRef<Path>, line: usize, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.as_ref().to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

/// Reads and parses a TOML file; errors are [`Error::Config`] naming the file and, for a
/// parse error, the line (`line 3: unknown variant ...`).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    // A configuration or taxonomy is kilobytes; a larger file is a wrong path, not a config.
    const MAX_TOML_BYTES: u64 = 16 << 20;
    let size = std::fs::metadata(path)
        .map_err(|e| Error::Config {
            path: path.into(),
            reason: e.to_string(),
        })?
        .len();
    if size > MAX_TOML_BYTES {
        return Err(Error::Config {
            path: path.into(),
            reason: format!(
                "{size} bytes: larger than the {} MiB a TOML configuration may be",
                MAX_TOML_BYTES >> 20
            ),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        path: path.into(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| {
        let reason = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!("line {line}: {}", e.message())
            }
            None => e.message().to_string(),
        };
        Error::Config {
            path: path.into(),
            reason,
        }
    })
}

/// Attaches a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Renders any error chain as one line: `outer: inner: innermost`, without repeating a cause
/// that the outer message already contains.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_toml_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.toml");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(17 << 20).unwrap(); // sparse: no 17 MiB written
        let e = read_toml::<toml::Value>(&p).unwrap_err().to_string();
        assert!(
            e.contains("huge.toml") && e.contains("larger than the 16 MiB"),
            "{e}"
        );
    }

    #[test]
    fn one_line_names_the_path_and_the_cause_once() {
        let e = Error::io("/x/y.json", std::io::Error::other("disk full"));
        let line = one_line(&e);
        assert_eq!(line, "/x/y.json: disk full");
        assert!(!line.contains('\n'));
    }
}
