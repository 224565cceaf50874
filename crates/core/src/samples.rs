//! Per-iteration timing samples that benchmarks record (from criterion's `iter_custom`) so they
//! can print a summary table computed from the same measurements criterion reports.

use std::sync::Mutex;
use std::time::Duration;

pub struct Samples(Mutex<Vec<(String, f64)>>);

impl Samples {
    pub const fn new() -> Self {
        Samples(Mutex::new(Vec::new()))
    }

    /// Records `d` spent on `iters` iterations of `name`; returns `d` for criterion.
    pub fn record(&self, name: &str, iters: u64, d: Duration) -> Duration {
        self.0
            .lock()
            .expect("samples lock")
            .push((name.to_string(), d.as_secs_f64() / iters.max(1) as f64));
        d
    }

    /// Median seconds per iteration of `name`; `None` when it did not run (filtered out, or
    /// criterion's `--profile-time` mode).
    pub fn median(&self, name: &str) -> Option<f64> {
        let mut v: Vec<f64> = self
            .0
            .lock()
            .expect("samples lock")
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

/// The variable `make bench` sets to a JSON-lines file that collects every bench's headline
/// figures, ours and the peers', so `scripts/benchfig.py` can print their ratios.
pub const FIGURES_ENV: &str = "PW_BENCH_FIGURES";

/// Appends one headline figure (`value` in `unit`, higher is better) of `workload` to the file
/// named by [`FIGURES_ENV`]; does nothing when it is unset. The workload names are the ones
/// the peer scripts use.
pub fn report_figure(workload: &str, value: f64, unit: &str) {
    let Some(path) = std::env::var_os(FIGURES_ENV) else {
        return;
    };
    if let Err(e) = append_figure(std::path::Path::new(&path), workload, value, unit) {
        eprintln!(
            "{FIGURES_ENV}: cannot append to {}: {e}",
            path.to_string_lossy()
        );
    }
}

fn append_figure(
    path: &std::path::Path,
    workload: &str,
    value: f64,
    unit: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    let line = serde_json::json!({
        "workload": workload, "who": "paperworks", "value": value, "unit": unit,
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // one write per line, so the benches and peers that append in turn never interleave
    f.write_all(format!("{line}\n").as_bytes())
}

impl Default for Samples {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_per_iteration_and_per_name() {
        let s = Samples::new();
        s.record("a", 10, Duration::from_secs(1));
        s.record("a", 1, Duration::from_secs(3));
        s.record("a", 2, Duration::from_secs(1));
        s.record("b", 1, Duration::from_secs(7));
        assert_eq!(s.median("a"), Some(0.5));
        assert_eq!(s.median("b"), Some(7.0));
        assert_eq!(s.median("c"), None);
    }

    #[test]
    fn figures_append_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("figures.jsonl");
        append_figure(&p, "transformer step", 5573.0, "tokens/s").unwrap();
        append_figure(&p, "matmul 1024", 213.9, "GFLOP/s").unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["workload"], "transformer step");
        assert_eq!(lines[0]["who"], "paperworks");
        assert_eq!(lines[1]["value"], 213.9);
    }
}
