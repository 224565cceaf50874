//! Append-only JSONL ledger keyed by a stable record id: what makes every long stage resumable.
//!
//! Each line is one JSON object with a string `"id"` field. A stage asks [`Ledger::contains`]
//! before doing an item and appends the result afterwards; re-running the stage after a kill
//! skips what is already there, so nothing is lost and nothing is done (or written) twice.
//!
//! Durability: appends are buffered and written + fsynced per batch ([`Ledger::flush`], called
//! automatically every `batch_size` records and on drop). A crash can leave a torn last line
//! (no trailing newline); [`Ledger::open`] detects it, drops it and truncates the file back to
//! the last complete record. A malformed line anywhere else is corruption: `open` refuses with
//! the line number and leaves the file untouched.

use crate::error::{Error, IoContext, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const DEFAULT_BATCH: usize = 64;

pub struct Ledger {
    path: PathBuf,
    file: File,
    ids: HashSet<String>,
    pending: Vec<u8>,
    pending_count: usize,
    batch_size: usize,
    dropped_torn_bytes: u64,
}

/// Parses one ledger line and returns its id.
fn line_id(line: &str) -> std::result::Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    match v.get("id") {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("field \"id\" is not a string".into()),
        None => Err("record has no \"id\" field".into()),
    }
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`, recovering from a torn last line.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .at(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at(&path)?;

        // A complete record always ends with '\n': whatever follows the last '\n' is torn.
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut ids = HashSet::new();
        for (i, raw) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if raw.is_empty() {
                continue;
            }
            let line = std::str::from_utf8(raw).map_err(|_| {
                Error::corrupt(
                    &path,
                    i + 1,
                    "not UTF-8; the ledger is corrupt, fix or remove the line",
                )
            })?;
            let id = line_id(line).map_err(|r| {
                Error::corrupt(
                    &path,
                    i + 1,
                    format!("{r}; the ledger is corrupt, fix or remove the line"),
                )
            })?;
            if !ids.insert(id.clone()) {
                return Err(Error::corrupt(&path, i + 1, format!("duplicate id {id:?}")));
            }
        }
        let dropped = (bytes.len() - complete) as u64;
        if dropped > 0 {
            tracing::warn!(
                "{}: dropping a torn last line ({dropped} bytes) left by an interrupted write",
                path.display()
            );
            file.set_len(complete as u64).at(&path)?;
            file.sync_all().at(&path)?;
            file.seek(SeekFrom::End(0)).at(&path)?;
        }
        Ok(Ledger {
            path,
            file,
            ids,
            pending: Vec::new(),
            pending_count: 0,
            batch_size: DEFAULT_BATCH,
            dropped_torn_bytes: dropped,
        })
    }

    /// Records per fsync (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a record with this id is already in the ledger (written or pending).
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes of a torn last line removed when the ledger was opened (0 when none).
    pub fn dropped_torn_bytes(&self) -> u64 {
        self.dropped_torn_bytes
    }

    /// Appends `record` (which must serialise to a JSON object) under `id`. Returns false and
    /// writes nothing when the id is already present.
    pub fn append<T: Serialize>(&mut self, id: &str, record: &T) -> Result<bool> {
        if self.ids.contains(id) {
            return Ok(false);
        }
        let mut value = serde_json::to_value(record).map_err(|e| {
            Error::invalid(
                &self.path,
                format!("record {id:?} cannot be serialised: {e}"),
            )
        })?;
        let obj = value.as_object_mut().ok_or_else(|| {
            Error::invalid(&self.path, format!("record {id:?} is not a JSON object"))
        })?;
        obj.insert("id".into(), serde_json::Value::String(id.to_string()));
        // `id` first makes the files easy to scan by eye.
        let mut line = String::with_capacity(64);
        line.push_str("{\"id\":");
        line.push_str(&serde_json::to_string(id).expect("string serialises"));
        for (k, v) in obj.iter().filter(|(k, _)| k.as_str() != "id") {
            line.push(',');
            line.push_str(&serde_json::to_string(k).expect("string serialises"));
            line.push(':');
            line.push_str(&v.to_string());
        }
        line.push_str("}\n");
        self.pending.extend_from_slice(line.as_bytes());
        self.pending_count += 1;
        self.ids.insert(id.to_string());
        if self.pending_count >= self.batch_size {
            self.flush()?;
        }
        Ok(true)
    }

    /// Writes pending records in one write and fsyncs the file.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending).at(&self.path)?;
        self.file.sync_data().at(&self.path)?;
        self.pending.clear();
        self.pending_count = 0;
        Ok(())
    }

    /// A resumable per-item stage over this ledger: `pending` (the items whose ids it does
    /// not hold yet) goes to `work` in chunks of `chunk`; `work` returns one record per item,
    /// in order, or an error that stops the stage. Each record is appended under its item's
    /// id and the ledger is flushed per chunk, so a killed run loses at most the chunk in
    /// flight and a rerun duplicates nothing.
    pub fn fill_in_chunks<I, R: Serialize>(
        &mut self,
        pending: &[I],
        chunk: usize,
        label: &str,
        id: impl Fn(&I) -> &str,
        mut work: impl FnMut(&[I]) -> Result<Vec<R>>,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let bar = crate::progress::bar(pending.len() as u64, label);
        for items in pending.chunks(chunk.max(1)) {
            let records = work(items)?;
            if records.len() != items.len() {
                return Err(Error::Other(format!(
                    "{label}: {} records for {} items",
                    records.len(),
                    items.len()
                )));
            }
            for (item, rec) in items.iter().zip(&records) {
                self.append(id(item), rec)?;
            }
            self.flush()?;
            bar.inc(items.len() as u64);
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Reads every record of a ledger file as `T` (after the same torn-line rule as `open`,
    /// without modifying the file).
    pub fn read_all<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<T>> {
        let path = path.as_ref();
        let file = File::open(path).at(path)?;
        let mut out = Vec::new();
        let mut reader = BufReader::new(file);
        let mut buf = String::new();
        let mut n = 0usize;
        loop {
            buf.clear();
            let read = reader.read_line(&mut buf).at(path)?;
            if read == 0 {
                break;
            }
            n += 1;
            if !buf.ends_with('\n') {
                break; // torn last line
            }
            let line = buf.trim_end();
            if line.is_empty() {
                continue;
            }
            let rec =
                serde_json::from_str(line).map_err(|e| Error::corrupt(path, n, e.to_string()))?;
            out.push(rec);
        }
        Ok(out)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!("{}", crate::error::one_line(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rec {
        id: Option<String>,
        x: u32,
    }

    #[test]
    fn resumed_ledger_skips_existing_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.jsonl");
        {
            let mut l = Ledger::open(&p).unwrap();
            assert!(l.append("a", &serde_json::json!({"x": 1})).unwrap());
            assert!(l.append("b", &serde_json::json!({"x": 2})).unwrap());
        }
        let mut l = Ledger::open(&p).unwrap();
        assert!(l.contains("a") && l.contains("b"));
        assert!(!l.append("a", &serde_json::json!({"x": 9})).unwrap());
        drop(l);
        let recs: Vec<Rec> = Ledger::read_all(&p).unwrap();
        assert_eq!(
            recs,
            vec![
                Rec {
                    id: Some("a".into()),
                    x: 1
                },
                Rec {
                    id: Some("b".into()),
                    x: 2
                }
            ]
        );
    }

    #[test]
    fn torn_last_line_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.jsonl");
        std::fs::write(&p, "{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\"").unwrap();
        let l = Ledger::open(&p).unwrap();
        assert_eq!(l.len(), 1);
        assert!(l.dropped_torn_bytes() > 0);
        drop(l);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"id\":\"a\",\"x\":1}\n"
        );
    }

    #[test]
    fn garbage_line_in_the_middle_is_an_error_and_the_file_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.jsonl");
        let text = "{\"id\":\"a\"}\nthis is not json\n{\"id\":\"c\"}\n";
        std::fs::write(&p, text).unwrap();
        let err = Ledger::open(&p).err().expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("l.jsonl"), "{msg}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    }

    #[test]
    fn record_without_id_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.jsonl");
        std::fs::write(&p, "{\"x\":1}\n").unwrap();
        assert!(
            Ledger::open(&p)
                .err()
                .unwrap()
                .to_string()
                .contains("no \"id\"")
        );
    }
}
