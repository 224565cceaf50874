//! Wall time per stage of a long run, for the report's stage-time table.

use crate::report::Table;
use std::time::Instant;

/// Times consecutive stages: [`Stopwatch::lap`] closes the current stage under a name.
pub struct Stopwatch {
    since: Instant,
    laps: Vec<(String, f64)>,
}

impl Default for Stopwatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Stopwatch {
    pub fn new() -> Self {
        Stopwatch {
            since: Instant::now(),
            laps: Vec::new(),
        }
    }

    /// Ends the stage that began at the last lap (or at the start) and names it.
    pub fn lap(&mut self, name: impl Into<String>) {
        self.laps
            .push((name.into(), self.since.elapsed().as_secs_f64()));
        self.since = Instant::now();
    }

    /// (stage, seconds), in order.
    pub fn laps(&self) -> &[(String, f64)] {
        &self.laps
    }

    /// The stage-time table of a report.
    pub fn table(&self) -> Table {
        stage_table(&self.laps)
    }
}

/// A `stage | wall s` table of `(stage, seconds)` pairs.
pub fn stage_table(laps: &[(String, f64)]) -> Table {
    let mut t = Table::new(["stage", "wall s"]);
    for (n, s) in laps {
        t.row([n.clone(), format!("{s:.1}")]);
    }
    t
}

/// `x` as a percentage with one decimal: `0.1234` -> `12.3%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}
