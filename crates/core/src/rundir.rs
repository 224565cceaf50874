//! Run directories: every command writes under `runs/<name>/` with a `manifest.json` (what ran,
//! with which config, seed and code revision, when) and a `metrics.json`. Re-running into the
//! same directory resumes; `fresh` clears the stage outputs first.
//!
//! A run directory is owned by one process at a time: [`RunDir::open`] takes an exclusive
//! `flock` on `.paperworks.lock` inside it (released by the kernel when the process ends, so a
//! killed run never leaves a stale lock) and refuses with the holder's PID while another run
//! lives. `fresh` clears only a directory that holds our manifest, and never the entries that
//! were there before paperworks first used the directory (recorded in the manifest as
//! `foreign`).

use crate::atomic::write_json_atomic;
use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The versions a manifest records: paperworks' own and those of the dependencies that decide
/// a run's numbers (burn, llama-cpp-2, ...), as Cargo.lock pinned them when this was built.
pub fn versions() -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = env!("PW_DEP_VERSIONS")
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.insert("paperworks".into(), env!("CARGO_PKG_VERSION").into());
    v
}

/// The lock file inside every run directory; its content names the holder.
pub const LOCK_FILE: &str = ".paperworks.lock";
const MANIFEST_FILE: &str = "manifest.json";

static GIT_REVISION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records the git revision the running binary was built from, for manifests. The binary's
/// build script knows it and sets it at start; the libraries do not bake it in, so a commit
/// rebuilds the binary crate only, not every crate that depends on pw-core.
pub fn set_git_revision(rev: &str) {
    let _ = GIT_REVISION.set(rev.to_string());
}

/// The revision [`set_git_revision`] recorded ("unknown" when none was).
pub fn git_revision() -> &'static str {
    GIT_REVISION.get().map_or("unknown", String::as_str)
}

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
    /// Entries that were in the directory before paperworks first used it: never ours to
    /// delete, `--fresh` keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign: Vec<String>,
    /// What each stage's outputs were made from ([`RunDir::check_inputs`]): a rerun with
    /// other inputs is refused instead of resuming from outputs that no longer fit them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, InputPrint>,
}

/// The fingerprint of a stage's inputs: each file's size and SHA-256, and the settings that
/// decide its outputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputPrint {
    pub files: Vec<FilePrint>,
    pub settings: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FilePrint {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl FilePrint {
    pub fn of(path: &Path) -> Result<FilePrint> {
        use sha2::Digest;
        let mut f = File::open(path).at(path)?;
        let mut h = sha2::Sha256::new();
        let size = std::io::copy(&mut f, &mut h).at(path)?;
        // Canonical, so the same file named from another folder is the same input.
        let named = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(FilePrint {
            path: named.display().to_string(),
            size,
            sha256: hex::encode(h.finalize()),
        })
    }
}

impl InputPrint {
    /// What differs from `old`, in words (empty when nothing does).
    fn changes_since(&self, old: &InputPrint) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            match old.files.iter().find(|o| o.path == f.path) {
                None => out.push(format!("{} is new", f.path)),
                Some(o) if o.sha256 != f.sha256 => out.push(format!(
                    "{} changed ({} -> {} bytes, sha256 {}.. -> {}..)",
                    f.path,
                    o.size,
                    f.size,
                    &o.sha256[..12],
                    &f.sha256[..12]
                )),
                Some(_) => {}
            }
        }
        for o in &old.files {
            if !self.files.iter().any(|f| f.path == o.path) {
                out.push(format!("{} is no longer an input", o.path));
            }
        }
        let mut keys = Vec::new();
        diff_values("", &old.settings, &self.settings, &mut keys);
        if !keys.is_empty() {
            out.push(format!("settings changed ({})", keys.join(", ")));
        }
        out
    }
}

/// The dotted keys where `new` differs from `old`, each with both values (shortened), so a
/// refusal names what changed instead of printing two whole configurations.
fn diff_values(at: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let short = |v: Option<&Value>| -> String {
        let s = v.map_or_else(|| "(absent)".to_string(), Value::to_string);
        if s.chars().count() > 60 {
            format!("{}..", s.chars().take(57).collect::<String>())
        } else {
            s
        }
    };
    if let (Value::Object(a), Value::Object(b)) = (old, new) {
        let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
        names.sort();
        names.dedup();
        for k in names {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => diff_values(&path, x, y, out),
                (x, y) => out.push(format!("{path}: {} -> {}", short(x), short(y))),
            }
        }
    } else if old != new {
        let path = if at.is_empty() { "(all)" } else { at };
        out.push(format!(
            "{path}: {} -> {}",
            short(Some(old)),
            short(Some(new))
        ));
    }
}

pub struct RunDir {
    root: PathBuf,
    manifest: Manifest,
    // Held for the life of the RunDir: the flock goes with the open file.
    _lock: File,
}

/// Takes the directory's exclusive lock or says who holds it.
fn lock_dir(root: &Path, command: &[String]) -> std::result::Result<File, String> {
    let path = root.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {LOCK_FILE}: {e}"))?;
    // SAFETY: flock on a descriptor we own; no memory is shared with the kernel.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("process {holder}")
            };
            return Err(format!(
                "in use by {who}; wait for it to end or choose another --run-dir"
            ));
        }
        return Err(format!("cannot lock {LOCK_FILE}: {err}"));
    }
    let holder = format!(
        "{} ({}), since {}",
        std::process::id(),
        command.join(" ").chars().take(200).collect::<String>(),
        now()
    );
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(holder.as_bytes()))
        .and_then(|_| file.flush());
    written.map_err(|e| format!("cannot write {LOCK_FILE}: {e}"))?;
    Ok(file)
}

/// Names of the directory's entries other than the lock file, sorted.
fn entries(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root).at(root)? {
        let name = entry.at(root)?.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
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
    /// Opens `root` as a run directory for `command`, creating it, and holds its lock until the
    /// `RunDir` is dropped. With `fresh`, removes what earlier runs wrote: only in a directory
    /// that holds our manifest (or is empty), and never the entries recorded as foreign. Fails
    /// with a clear error when the directory is in use, cannot be created or written, or is not
    /// ours to clear; an existing manifest is never replaced by a broken one.
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
        std::fs::create_dir_all(&root).map_err(|e| rd_err(format!("cannot create: {e}")))?;
        let lock = lock_dir(&root, &command).map_err(rd_err)?;
        // Probe writability before any stage starts, so a bad --run-dir fails in a second.
        let probe = root.join(".write-probe");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| rd_err(format!("not writable: {e}")))?;

        // We hold the lock: a temp file of a dead process here is a killed run's, never
        // renamed into place, and nobody else's to finish.
        let stale = crate::atomic::remove_stale_temps(&root);
        if stale > 0 {
            tracing::info!(
                "{}: removed {stale} temp file(s) a killed run left",
                root.display()
            );
        }
        let manifest_path = root.join(MANIFEST_FILE);
        let old: Option<Manifest> = if manifest_path.exists() {
            let parsed = std::fs::read(&manifest_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
            if parsed.is_none() {
                if fresh {
                    return Err(rd_err(format!(
                        "--fresh: {MANIFEST_FILE} is not a paperworks manifest, so nothing here is \
                         cleared; choose a new --run-dir"
                    )));
                }
                tracing::warn!(
                    "{}: unreadable, starting a new manifest",
                    manifest_path.display()
                );
            }
            parsed
        } else {
            None
        };
        let present = entries(&root)?;
        let foreign = match &old {
            Some(m) => m.foreign.clone(),
            // Everything already here when paperworks first uses the directory is the user's.
            None => present
                .iter()
                .filter(|n| n.as_str() != MANIFEST_FILE)
                .cloned()
                .collect(),
        };
        if fresh {
            if old.is_none() && !foreign.is_empty() {
                return Err(rd_err(format!(
                    "--fresh clears only a run directory paperworks made, and this one holds \
                     other files ({}) and no paperworks manifest; choose a new --run-dir",
                    foreign
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            for name in present.iter().filter(|n| !foreign.contains(n)) {
                let p = root.join(name);
                // symlink_metadata: a link is removed as a link, never followed.
                let is_dir = std::fs::symlink_metadata(&p)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                let r = if is_dir {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| rd_err(format!("cannot clear for --fresh: {}: {e}", p.display())))?;
            }
        }
        let previous_starts = match (&old, fresh) {
            (Some(m), false) => {
                let mut v = m.previous_starts.clone();
                v.push(m.started_at.clone());
                v
            }
            _ => Vec::new(),
        };
        let manifest = Manifest {
            command,
            config,
            seed,
            git_revision: git_revision().to_string(),
            versions,
            started_at: now(),
            ended_at: None,
            status: "running".into(),
            previous_starts,
            foreign,
            inputs: match (&old, fresh) {
                (Some(m), false) => m.inputs.clone(),
                _ => BTreeMap::new(),
            },
        };
        let rd = RunDir {
            root,
            manifest,
            _lock: lock,
        };
        rd.write_manifest()?;
        Ok(rd)
    }

    /// Opens `root` for the running command (its command line and [`versions`]), runs `work`
    /// in it, and records the outcome in the manifest: `ok`, or `failed: <the error>`. The
    /// directory's lock is held throughout.
    pub fn scope<T>(
        root: impl AsRef<Path>,
        config: serde_json::Value,
        seed: u64,
        fresh: bool,
        work: impl FnOnce(&mut RunDir) -> Result<T>,
    ) -> Result<T> {
        let mut run = RunDir::open(
            root,
            std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            config,
            seed,
            versions(),
            fresh,
        )?;
        let result = work(&mut run);
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(crate::error::one_line(e)),
        };
        run.finish(outcome)?;
        result
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
        write_json_atomic(self.root.join(MANIFEST_FILE), &self.manifest)
    }

    /// Records what `stage`'s outputs are made from (`files` by content, `settings` as given)
    /// and refuses, naming what changed, when an earlier run of this directory made them from
    /// other inputs: resuming would mix outputs of the old inputs into the new ones.
    pub fn check_inputs(
        &mut self,
        stage: &str,
        files: &[&Path],
        settings: serde_json::Value,
    ) -> Result<()> {
        let now = InputPrint {
            files: files
                .iter()
                .map(|p| FilePrint::of(p))
                .collect::<Result<_>>()?,
            settings,
        };
        if let Some(old) = self.manifest.inputs.get(stage) {
            let changes = now.changes_since(old);
            if !changes.is_empty() {
                return Err(Error::RunDir {
                    path: self.root.clone(),
                    reason: format!(
                        "holds {stage} outputs made from other inputs: {}; pass --fresh to \
                         start over here, or choose another --run-dir",
                        changes.join("; ")
                    ),
                });
            }
            return Ok(());
        }
        self.manifest.inputs.insert(stage.to_string(), now);
        self.write_manifest()
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
        drop(rd);
        let rd2 = open(false).unwrap();
        assert_eq!(rd2.manifest().previous_starts.len(), 1);
        assert!(rd2.path("stage.jsonl").exists());
        drop(rd2);
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

    fn open_at(root: &Path, fresh: bool) -> Result<RunDir> {
        RunDir::open(
            root,
            vec!["paperworks".into(), "test".into()],
            serde_json::Value::Null,
            0,
            BTreeMap::new(),
            fresh,
        )
    }

    #[test]
    fn fresh_refuses_a_directory_it_did_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("thesis");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("thesis.tex"), "years of work").unwrap();
        std::fs::write(root.join("data/results.csv"), "1,2").unwrap();
        let err = open_at(&root, true).err().expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("--fresh") && msg.contains("thesis.tex"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("thesis.tex")).unwrap(),
            "years of work"
        );
        assert!(root.join("data/results.csv").exists());
        assert!(
            !root.join(MANIFEST_FILE).exists(),
            "no manifest was written"
        );
    }

    #[test]
    fn fresh_clears_only_what_paperworks_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mixed");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        let rd = open_at(&root, false).unwrap();
        assert_eq!(rd.manifest().foreign, vec!["notes.txt".to_string()]);
        std::fs::create_dir_all(rd.path("stage")).unwrap();
        std::fs::write(rd.path("stage/out.jsonl"), "{}\n").unwrap();
        drop(rd);
        let rd = open_at(&root, true).unwrap();
        assert!(!root.join("stage").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("notes.txt")).unwrap(),
            "mine"
        );
        assert_eq!(rd.manifest().foreign, vec!["notes.txt".to_string()]);
    }

    #[test]
    fn fresh_removes_a_symlink_without_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep").unwrap();
        let root = dir.path().join("run");
        drop(open_at(&root, false).unwrap());
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        drop(open_at(&root, true).unwrap());
        assert!(!root.join("link").exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("precious")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn a_rerun_with_changed_inputs_is_refused_and_fresh_accepts_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let input = dir.path().join("problems.jsonl");
        std::fs::write(&input, "{\"answer\": \"#### 4\"}\n").unwrap();
        let settings = serde_json::json!({"k": 4});
        let mut rd = open_at(&root, false).unwrap();
        rd.check_inputs("label", &[&input], settings.clone())
            .unwrap();
        drop(rd);
        // same inputs: resumes
        let mut rd = open_at(&root, false).unwrap();
        rd.check_inputs("label", &[&input], settings.clone())
            .unwrap();
        drop(rd);
        // corrected gold answer: refused, naming the file
        std::fs::write(&input, "{\"answer\": \"#### 5\"}\n").unwrap();
        let mut rd = open_at(&root, false).unwrap();
        let msg = rd
            .check_inputs("label", &[&input], settings.clone())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("problems.jsonl changed") && msg.contains("--fresh"),
            "{msg}"
        );
        let msg = rd
            .check_inputs("label", &[&input], serde_json::json!({"k": 8}))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("settings changed (k: 4 -> 8)"), "{msg}");
        let msg = rd
            .check_inputs(
                "label",
                &[&input],
                serde_json::json!({"k": 4, "model": {"gguf": "b.gguf"}}),
            )
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("model: (absent) -> {\"gguf\":\"b.gguf\"}"),
            "only the changed key is named: {msg}"
        );
        drop(rd);
        // --fresh forgets the old fingerprint with the old outputs
        let mut rd = open_at(&root, true).unwrap();
        rd.check_inputs("label", &[&input], settings).unwrap();
    }

    #[test]
    fn a_second_run_in_a_live_run_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let live = open_at(&root, false).unwrap();
        std::fs::write(live.path("ledger.jsonl"), "{\"id\":1}\n").unwrap();
        for fresh in [false, true] {
            let msg = open_at(&root, fresh).err().expect("refused").to_string();
            assert!(
                msg.contains("in use by process") && msg.contains(&std::process::id().to_string()),
                "{msg}"
            );
        }
        // The live run's files and manifest are untouched by the refused ones.
        assert!(live.path("ledger.jsonl").exists());
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(live.path(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(m.status, "running");
        drop(live);
        assert!(open_at(&root, false).is_ok(), "the lock goes with the run");
    }
}
