//! How many CPU threads an embedded llama.cpp engine takes when the user did not say.
//!
//! llama.cpp's OpenMP threads spin at every barrier of every decode step. Two engines that each
//! take every core therefore wait on threads the other one has descheduled: on 2 cores, two
//! `llm complete` processes of 200 tokens took 12.0 s each where one alone took 2.0 s, and one
//! pair of them livelocked. With one thread each they took 2.3 s (one thread alone: 2.2 s).
//!
//! So an engine without `--threads` takes its share of the cores at start:
//! - every live engine of this user holds a lock file under `$TMPDIR/paperworks-engines-<uid>/`
//!   named by its process; the share is `cores / (1 + other processes with an engine)`. Engines
//!   of one process are not counted against each other: a pipeline opens its question, answer
//!   and judge models up front and runs them one stage at a time;
//! - the CPU time other processes used while this engine loaded its model (from `/proc/stat`,
//!   less this process's own time) counts as busy cores and is left to them. Time spent at a
//!   lower priority (`nice` > 0: a background build, a batch job) does not count: the scheduler
//!   gives such a process the core only when a default-priority engine leaves it idle, so
//!   backing off for it would leave the core idle instead. A niced engine counts everything;
//! - at least one thread.
//!
//! The count is fixed for the engine's life (llama-cpp-2 exposes no way to change it on a live
//! context), so an engine that started alone keeps all cores when a second one arrives; the
//! second takes one thread (logged at debug level: a failing command's stderr stays one line).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Busy CPU time, in clock ticks, of the whole machine and of this process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSnapshot {
    machine_busy: u64,
    own: u64,
    at: Instant,
}

impl CpuSnapshot {
    /// Reads `/proc/stat` and `/proc/self/stat`; `None` where they are missing (not Linux).
    pub(crate) fn take() -> Option<Self> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let own = fs::read_to_string("/proc/self/stat").ok()?;
        Some(CpuSnapshot {
            machine_busy: machine_busy_ticks(&stat, !own_is_niced(&own))?,
            own: own_ticks(&own)?,
            at: Instant::now(),
        })
    }

    /// Cores other processes kept busy since `self`, on average.
    pub(crate) fn others_busy_since(&self) -> Option<f64> {
        let now = Self::take()?;
        let secs = now.at.duration_since(self.at).as_secs_f64();
        if secs < 0.02 {
            return None;
        }
        let ticks = now.machine_busy.saturating_sub(self.machine_busy) as f64
            - now.own.saturating_sub(self.own) as f64;
        Some((ticks / clock_ticks_per_second() / secs).max(0.0))
    }
}

/// Busy ticks over all CPUs: the first line of `/proc/stat` less idle and iowait, and less
/// the time of niced processes when `skip_niced`.
fn machine_busy_ticks(stat: &str, skip_niced: bool) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = v.iter().take(8).sum();
    let niced = if skip_niced { *v.get(1)? } else { 0 };
    Some(total - v.get(3)? - v.get(4).copied().unwrap_or(0) - niced)
}

/// Whether `/proc/self/stat` shows a nice value above 0, so this process's own time is in the
/// `nice` column too and nothing there can be told apart.
fn own_is_niced(stat: &str) -> bool {
    stat_field(stat, 19).is_some_and(|n| n > 0)
}

/// Numeric field `n` (1-based, as proc(5) numbers them) of a `/proc/<pid>/stat` line; the
/// fields are counted after the parenthesised name, which may itself hold spaces.
fn stat_field(stat: &str, n: usize) -> Option<i64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state)
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15, after the parenthesised name).
fn own_ticks(stat: &str) -> Option<u64> {
    u64::try_from(stat_field(stat, 14)? + stat_field(stat, 15)?).ok()
}

/// User + system CPU seconds this process has used so far (all threads); `None` where
/// `/proc/self/stat` is missing (not Linux).
pub fn own_cpu_seconds() -> Option<f64> {
    let own = own_ticks(&fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(own as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The threads an engine takes: its share of the cores among `live_engines` (itself included),
/// less the cores other processes keep busy, at least one.
pub fn plan(cores: usize, live_engines: usize, others_busy: f64) -> usize {
    let share = cores / live_engines.max(1);
    let free = cores as f64 - others_busy;
    // A core counts as busy when other processes used most of it (> 0.6): a short burst
    // (a shell, the page cache) should not halve a lone engine.
    let free = (free + 0.4).floor().max(0.0) as usize;
    share.min(free).max(1)
}

/// This engine's lock file: held (flock) while the engine lives, removed when it drops.
#[derive(Debug)]
pub struct EngineSlot {
    path: PathBuf,
    _file: File,
}

impl Drop for EngineSlot {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `$TMPDIR/paperworks-engines-<uid>`.
pub fn registry_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    std::env::temp_dir().join(format!("paperworks-engines-{uid}"))
}

/// Registers an engine in `dir`; `None` when the directory cannot be used (then the engine
/// plans as if it were alone, and says nothing: this is advice, not a resource).
pub fn register(dir: &Path) -> Option<EngineSlot> {
    register_as(dir, std::process::id())
}

fn register_as(dir: &Path, pid: u32) -> Option<EngineSlot> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    fs::create_dir_all(dir).ok()?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{pid}-{n}.lock"));
    let file = File::create(&path).ok()?;
    file.try_lock().ok()?;
    Some(EngineSlot { path, _file: file })
}

/// Processes other than this one with a live engine registered in `dir`; files left by
/// processes that died are removed.
pub fn other_processes(dir: &Path) -> usize {
    other_processes_than(dir, std::process::id())
}

fn other_processes_than(dir: &Path, me: u32) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut pids = std::collections::BTreeSet::new();
    for e in entries.flatten() {
        let path = e.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".lock"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(f) = File::open(&path) else { continue };
        match f.try_lock() {
            // Nobody holds it: its engine is gone.
            Ok(()) => {
                let _ = fs::remove_file(&path);
            }
            Err(_) => {
                pids.insert(pid);
            }
        }
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_shares_the_cores_and_leaves_busy_ones() {
        assert_eq!(plan(2, 1, 0.0), 2);
        assert_eq!(plan(2, 1, 0.3), 2, "a short burst is not a busy core");
        assert_eq!(plan(2, 1, 0.9), 1);
        assert_eq!(plan(2, 2, 0.0), 1);
        assert_eq!(plan(2, 3, 0.0), 1);
        assert_eq!(plan(2, 1, 2.0), 1, "never zero");
        assert_eq!(plan(16, 2, 3.0), 8);
        assert_eq!(plan(16, 1, 3.0), 13);
    }

    #[test]
    fn proc_stat_lines_parse() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n";
        assert_eq!(
            machine_busy_ticks(stat, false),
            Some(100 + 5 + 50 + 1 + 2 + 3)
        );
        assert_eq!(
            machine_busy_ticks(stat, true),
            Some(100 + 50 + 1 + 2 + 3),
            "niced time is left out"
        );
        let own = "1234 (paper works) S 1 1234 1234 0 -1 4194560 100 0 0 0 77 23 0 0 20 0 3 0";
        assert_eq!(own_ticks(own), Some(100));
        assert!(!own_is_niced(own));
        let niced = "1234 (paper works) S 1 1234 1234 0 -1 4194560 100 0 0 0 77 23 0 0 39 19 3 0";
        assert!(own_is_niced(niced));
        assert_eq!(machine_busy_ticks("garbage", true), None);
    }

    #[test]
    fn other_processes_counts_held_locks_and_sweeps_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let me = 7;
        assert_eq!(other_processes_than(dir.path(), me), 0);
        // This process's own engines do not count against each other.
        let _mine = (register_as(dir.path(), me), register_as(dir.path(), me));
        assert_eq!(other_processes_than(dir.path(), me), 0);
        // Another process with two engines counts once.
        let a = register_as(dir.path(), 11).unwrap();
        let b = register_as(dir.path(), 11).unwrap();
        let c = register_as(dir.path(), 12).unwrap();
        // A file nobody locks: a process that was killed before it could remove it.
        fs::write(dir.path().join("999999-0.lock"), "").unwrap();
        assert_eq!(other_processes_than(dir.path(), me), 2);
        assert!(!dir.path().join("999999-0.lock").exists());
        drop((a, b));
        assert_eq!(other_processes_than(dir.path(), me), 1);
        drop(c);
        assert_eq!(other_processes_than(dir.path(), me), 0);
    }

    #[test]
    fn this_process_is_measured() {
        let Some(s) = CpuSnapshot::take() else {
            return; // not Linux
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        let busy = s.others_busy_since().unwrap();
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        assert!((0.0..=cores + 0.5).contains(&busy), "{busy}");
    }
}
