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

/// The longest line a JSONL reader takes: a longer one is an error naming it, not gigabytes of
/// memory. (A whole source file of The Stack is well under a megabyte.)
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Calls `f(line_number, line)` for every non-blank line of `path` (numbers from 1), streaming.
/// A line over [`MAX_LINE_BYTES`] or not UTF-8 is an error naming the file and line.
pub fn for_each_line(path: &Path, f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    for_each_line_bounded(path, MAX_LINE_BYTES, f)
}

fn for_each_line_bounded(
    path: &Path,
    max: usize,
    mut f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<()> {
    use std::io::Read;
    let file = std::fs::File::open(path).at(path)?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    for i in 0.. {
        buf.clear();
        let n = (&mut reader)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::corrupt(path, i + 1, e.to_string()))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && buf.len() > max {
            return Err(Error::corrupt(
                path,
                i + 1,
                format!("longer than {} MiB: not a JSON Lines record", max >> 20),
            ));
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|e| Error::corrupt(path, i + 1, format!("not UTF-8 text ({e})")))?;
        let line = text.trim_end_matches(['\n', '\r']);
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
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

    #[test]
    fn an_overlong_line_is_named_without_reading_it_whole_and_a_bom_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.jsonl");
        let long = "x".repeat(5000);
        std::fs::write(
            &p,
            format!("\u{feff}{{\"a\": 1}}\r\n{{\"a\": \"{long}\"}}\n"),
        )
        .unwrap();
        let mut seen = Vec::new();
        let e = for_each_line_bounded(&p, 1024, |n, l| {
            seen.push((n, l.to_string()));
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(seen, vec![(1, "{\"a\": 1}".to_string())]);
        assert!(
            e.contains("big.jsonl: line 2") && e.contains("longer than"),
            "{e}"
        );
        std::fs::write(&p, b"{\"a\": 1}\n\xff\xfe\n").unwrap();
        let e = for_each_line_bounded(&p, 1024, |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("not UTF-8"), "{e}");
    }

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
