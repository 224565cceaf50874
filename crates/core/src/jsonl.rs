//! JSON Lines files a user hands us or keeps: one record per line, written atomically, read
//! with errors that name the file and line. (Resumable stage outputs use the [`Ledger`]
//! instead, whose torn-last-line rule suits a crash but would silently drop the last line of a
//! user's file that merely lacks a final newline.)
//!
//! [`Ledger`]: crate::Ledger

use crate::error::{Error, IoContext, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::BufRead;
use std::path::Path;

/// Writes `rows` as JSON Lines to `path`, atomically (a reader sees the old file or the new
/// one, never half of it).
pub fn write_jsonl<T: Serialize>(path: &Path, rows: impl IntoIterator<Item = T>) -> Result<()> {
    let mut buf = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut buf, &r).map_err(|e| Error::invalid(path, e.to_string()))?;
        buf.push(b'\n');
    }
    crate::write_atomic(path, &buf)
}

/// Reads every record of a JSON Lines file, skipping blank lines and a UTF-8 byte-order mark.
/// A line that does not parse is an error naming the file and line, with `what` (e.g. "a
/// GSM8K record") in the reason.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for_each_line(path, |line_no, line| {
        let row = serde_json::from_str(line)
            .map_err(|e| Error::corrupt(path, line_no, format!("not {what}: {e}")))?;
        out.push(row);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f(line_number, line)` for every non-blank line of `path` (numbers from 1), streaming.
pub fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let file = std::fs::File::open(path).at(path)?;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::corrupt(path, i + 1, e.to_string()))?;
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            &line
        };
        if line.trim().is_empty() {
            continue;
        }
        f(i + 1, line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Row {
        id: u32,
        text: String,
    }

    #[test]
    fn rows_round_trip_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rows.jsonl");
        let rows = vec![
            Row {
                id: 1,
                text: "a".into(),
            },
            Row {
                id: 2,
                text: "b\nc".into(),
            },
        ];
        write_jsonl(&p, &rows).unwrap();
        assert_eq!(read_jsonl::<Row>(&p, "a row").unwrap(), rows);
        // A BOM, a blank line and a last line without a newline are a user's file, not damage.
        std::fs::write(
            &p,
            "\u{feff}{\"id\":1,\"text\":\"a\"}\n\n{\"id\":2,\"text\":\"x\"}",
        )
        .unwrap();
        assert_eq!(read_jsonl::<Row>(&p, "a row").unwrap().len(), 2);
        std::fs::write(&p, "{\"id\":1,\"text\":\"a\"}\n{\"id\":\"two\"}\n").unwrap();
        let e = read_jsonl::<Row>(&p, "a row").unwrap_err().to_string();
        assert!(e.contains("rows.jsonl: line 2: not a row"), "{e}");
    }
}
