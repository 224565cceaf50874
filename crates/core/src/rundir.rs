//! Run directories: every command writes under `runs/<name>/` with a `manifest.json` (what ran,
//! with which config, seed and code revision, when) and a `metrics.json`. Re-running into the
//! same directory resumes; `fresh` clears the stage outputs first.

use crate::atomic::write_json_atomic;
use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The git revision this binary was built from (set by build.rs; "unknown" outside a checkout).
pub const GIT_REVISION: &str = env!("PW_GIT_REVISION");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub command: Vec<String>,
    pub config: serde_json::Value,
    pub seed: u64,
    pub git_revision: String,
    pub versions: BTreeMap<String, String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// "running", "ok" or "failed: <reason>".
    pub status: String,
    /// Earlier starts of this run directory (resumes), oldest first.
    #[serde(default)]
    pub previous_starts: Vec<String>,
}

pub struct RunDir {
    root: PathBuf,
    manifest: Manifest,
}

/// RFC 3339 UTC timestamp of `t`, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn now() -> String {
    rfc3339(SystemTime::now())
}

impl RunDir {
    /// Opens `root` as a run directory for `command`, creating it. With `fresh`, removes what an
    /// earlier run left (only inside `root`). Fails with a clear error when the directory cannot
    /// be created or written; an existing manifest is never replaced by a broken one.
    pub fn open(
        root: impl AsRef<Path>,
        command: Vec<String>,
        config: serde_json::Value,
        seed: u64,
        versions: BTreeMap<String, String>,
        fresh: bool,
    ) -> Result<RunDir> {
        let root = root.as_ref().to_path_buf();
        let rd_err = |reason: String| Error::RunDir {
            path: root.clone(),
            reason,
        };
        if root.exists() && !root.is_dir() {
            return Err(rd_err("exists and is not a directory".into()));
        }
        if fresh && root.is_dir() {
            for entry in std::fs::read_dir(&root).at(&root)? {
                let p = entry.at(&root)?.path();
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| rd_err(format!("cannot clear for --fresh: {}: {e}", p.display())))?;
            }
        }
        std::fs::create_dir_all(&root).map_err(|e| rd_err(format!("cannot create: {e}")))?;
        // Probe writability before any stage starts, so a bad --run-dir fails in a second.
        let probe = root.join(".write-probe");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| rd_err(format!("not writable: {e}")))?;

        let manifest_path = root.join("manifest.json");
        let mut previous_starts = Vec::new();
        if manifest_path.exists() {
            match std::fs::read(&manifest_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            {
                Some(old) => {
                    previous_starts = old.previous_starts;
                    previous_starts.push(old.started_at);
                }
                None => tracing::warn!(
                    "{}: unreadable, starting a new manifest",
                    manifest_path.display()
                ),
            }
        }
        let manifest = Manifest {
            command,
            config,
            seed,
            git_revision: GIT_REVISION.to_string(),
            versions,
            started_at: now(),
            ended_at: None,
            status: "running".into(),
            previous_starts,
        };
        let rd = RunDir { root, manifest };
        rd.write_manifest()?;
        Ok(rd)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// A sub-directory of the run, created on demand.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let p = self.root.join(rel);
        std::fs::create_dir_all(&p).at(&p)?;
        Ok(p)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn write_manifest(&self) -> Result<()> {
        write_json_atomic(self.root.join("manifest.json"), &self.manifest)
    }

    /// Marks the run finished (`Ok`) or failed, with the end time.
    pub fn finish(&mut self, outcome: std::result::Result<(), String>) -> Result<()> {
        self.manifest.ended_at = Some(now());
        self.manifest.status = match outcome {
            Ok(()) => "ok".into(),
            Err(e) => format!("failed: {e}"),
        };
        self.write_manifest()
    }

    /// Writes `metrics.json` (atomically).
    pub fn write_metrics(&self, metrics: &Metrics) -> Result<()> {
        write_json_atomic(self.root.join("metrics.json"), &metrics.0)
    }
}

/// Named measurements of a run, written as `metrics.json`. Keys are dotted paths
/// (`pdiff.test_acc.mean`), kept sorted.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Metrics(pub BTreeMap<String, serde_json::Value>);

impl Metrics {
    pub fn set(&mut self, key: impl Into<String>, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.0.insert(key.into(), v);
    }
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(|v| v.as_f64())
    }
    pub fn extend(&mut self, other: Metrics) {
        self.0.extend(other.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn reopening_a_run_keeps_history_and_fresh_clears_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let open = |fresh| {
            RunDir::open(
                &root,
                vec!["x".into()],
                serde_json::json!({"a": 1}),
                7,
                BTreeMap::new(),
                fresh,
            )
        };
        let mut rd = open(false).unwrap();
        std::fs::write(rd.path("stage.jsonl"), "{}\n").unwrap();
        rd.finish(Ok(())).unwrap();
        let rd2 = open(false).unwrap();
        assert_eq!(rd2.manifest().previous_starts.len(), 1);
        assert!(rd2.path("stage.jsonl").exists());
        let rd3 = open(true).unwrap();
        assert!(!rd3.path("stage.jsonl").exists());
        assert!(rd3.path("manifest.json").exists());
        assert_eq!(rd3.manifest().seed, 7);
    }

    #[test]
    fn a_file_in_place_of_the_run_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("f");
        std::fs::write(&root, "keep me").unwrap();
        let err = RunDir::open(
            &root,
            vec![],
            serde_json::Value::Null,
            0,
            BTreeMap::new(),
            false,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(std::fs::read_to_string(&root).unwrap(), "keep me");
    }
}
