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
}
