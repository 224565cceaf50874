//! The reproduction interface. Each paper crate exposes its miniature reproduction as data: the
//! paper's claims (with the paper's own figures), what it measured, and whether each claim held.
//! [`run_reproductions`] runs the registered ones and builds the combined report from those
//! measurements alone.

use crate::error::{Error, Result};
use crate::report::{Block, Report, Table};
use crate::rundir::{Metrics, RunDir};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Minutes on a 2-core CPU: what `make reproduce` and the smoke tests run.
    Quick,
    /// The larger run that shows the effects clearly.
    Full,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Size::Quick => "quick",
            Size::Full => "full",
        })
    }
}

/// One of the paper's claims, in the paper's words and numbers.
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: &'static str,
    pub text: &'static str,
    /// The paper's own figure for it (e.g. "+2.1 points on GSM8K, Table 2").
    pub paper_figure: &'static str,
}

/// Whether a claim held at this size, with the figures that decide it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClaimResult {
    pub id: String,
    /// `None`: not decided, either because the margin is inside what this size resolves
    /// (`resolution` says so) or because it was not measured (a stage was skipped or failed).
    pub held: Option<bool>,
    pub measured: String,
    /// The margin that decides the claim against the smallest margin this size resolves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// A claim decided by a margin in its favour (`margin > 0` means the paper's direction) and the
/// smallest margin the measurement resolves (e.g. two standard errors of the difference on the
/// test split): within it the claim is "not resolved at this size", neither held nor not held.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Resolution {
    pub margin: f64,
    pub resolves: f64,
}

impl ClaimResult {
    /// A claim that holds when `margin` exceeds `resolves`, does not when it falls below
    /// `-resolves`, and is not resolved at this size in between.
    pub fn by_margin(
        id: impl Into<String>,
        measured: impl Into<String>,
        margin: f64,
        resolves: f64,
    ) -> ClaimResult {
        let held = if !(margin.is_finite() && resolves.is_finite()) {
            None
        } else if margin > resolves {
            Some(true)
        } else if margin < -resolves {
            Some(false)
        } else {
            None
        };
        ClaimResult {
            id: id.into(),
            held,
            measured: measured.into(),
            // a margin that could not be computed is undecided, not unresolved
            resolution: (margin.is_finite() && resolves.is_finite())
                .then_some(Resolution { margin, resolves }),
        }
    }

    /// The verdict's words: held, not held, not resolved at this size, or undecided.
    pub fn verdict(&self) -> &'static str {
        match (self.held, self.resolution) {
            (Some(true), _) => crate::report::VERDICT_HELD,
            (Some(false), _) => crate::report::VERDICT_NOT_HELD,
            (None, Some(_)) => crate::report::VERDICT_UNRESOLVED,
            (None, None) => crate::report::VERDICT_UNDECIDED,
        }
    }
}

/// Of several (margin, resolves) pairs that must all hold for a claim to hold, the one
/// furthest from holding (smallest margin minus resolution): it decides the claim, as a chain
/// is as strong as its weakest link. No pairs give an infinite resolution (undecided).
pub fn weakest_margin(pairs: impl IntoIterator<Item = (f64, f64)>) -> (f64, f64) {
    pairs
        .into_iter()
        .min_by(|x, y| (x.0 - x.1).total_cmp(&(y.0 - y.1)))
        .unwrap_or((0.0, f64::INFINITY))
}

/// Two standard errors of the difference between two accuracies measured on `n` items each
/// (unpaired, so an upper bound when the items are shared): the smallest difference that
/// `n` items resolve at about 95%.
pub fn two_se_of_accuracy_difference(a: f64, b: f64, n: usize) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    let n = n as f64;
    2.0 * ((a * (1.0 - a) + b * (1.0 - b)) / n).sqrt()
}

pub struct ReproContext {
    /// The reproduction's name (`--only`), which names its overrides table.
    pub name: String,
    /// This reproduction's own directory inside the run directory.
    pub dir: PathBuf,
    pub assets: PathBuf,
    pub size: Size,
    pub seed: u64,
    /// Overrides of this system's configuration from the config file's
    /// `[reproduce.overrides.<name>]` table (keys as in the system's config struct).
    pub overrides: Option<serde_json::Value>,
}

/// A reproduction's configuration: the paper's defaults at each size, and the range checks
/// its stages rely on.
pub trait ReproConfig: serde::Serialize + serde::de::DeserializeOwned + Clone {
    fn for_size(size: Size) -> Self;
    /// `Err` names the field out of range.
    fn validate(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The configuration a reproduction runs with: `explicit` (a test's) or the size's defaults,
/// with `overrides` applied, then range-checked.
pub fn resolve_config<C: ReproConfig>(
    explicit: Option<&C>,
    size: Size,
    overrides: Option<&serde_json::Value>,
) -> std::result::Result<C, String> {
    let defaults = explicit.cloned().unwrap_or_else(|| C::for_size(size));
    let c = apply_overrides(&defaults, overrides)?;
    c.validate()?;
    Ok(c)
}

impl ReproContext {
    /// [`resolve_config`] at this run's size with this system's `[reproduce.overrides.<name>]`;
    /// an unknown, mistyped or out-of-range key is an error naming the table and the key.
    pub fn config<C: ReproConfig>(&self, explicit: Option<&C>) -> Result<C> {
        resolve_config(explicit, self.size, self.overrides.as_ref())
            .map_err(|e| Error::Other(format!("[reproduce.overrides.{}] {e}", self.name)))
    }
}

/// `base` with the keys of `overrides` replaced, recursively for nested tables; then parsed as
/// `T` (so an unknown or mistyped key is an error naming it).
pub fn apply_overrides<T: serde::Serialize + serde::de::DeserializeOwned>(
    base: &T,
    overrides: Option<&serde_json::Value>,
) -> std::result::Result<T, String> {
    fn merge(a: &mut serde_json::Value, b: &serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            a.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (a, b) => *a = b.clone(),
        }
    }
    let mut v = serde_json::to_value(base).map_err(|e| e.to_string())?;
    if let Some(o) = overrides {
        merge(&mut v, o);
    }
    serde_json::from_value(v).map_err(|e| format!("overrides: {e}"))
}

pub struct ReproOutcome {
    pub claims: Vec<ClaimResult>,
    pub metrics: Metrics,
    /// The system's section of the report (tables, plots, explanations).
    pub blocks: Vec<Block>,
}

pub trait Reproduction: Send + Sync {
    /// Short name used by `--only` (e.g. "pdiff").
    fn name(&self) -> &'static str;
    /// The paper, in a few words.
    fn title(&self) -> &'static str;
    fn claims(&self) -> Vec<Claim>;
    /// Checks this system's overrides at `size` (parsed and range-checked as `run` would)
    /// without running anything, so a bad override of a later system is refused before the
    /// first one starts.
    fn check(
        &self,
        size: Size,
        overrides: Option<&serde_json::Value>,
    ) -> std::result::Result<(), String> {
        let _ = (size, overrides);
        Ok(())
    }
    fn run(
        &self,
        ctx: &ReproContext,
    ) -> std::result::Result<ReproOutcome, Box<dyn std::error::Error + Send + Sync>>;
}

/// Runs `selected` reproductions into `run`, writing `<name>/` per system, `metrics.json` and the
/// combined `report.md` / `report.html`. A failing system is reported as failed and the others
/// still run; the result is an error when any failed.
pub fn run_reproductions(
    run: &RunDir,
    selected: &[&dyn Reproduction],
    size: Size,
    assets: PathBuf,
    seed: u64,
    overrides: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<Report> {
    // Every override is checked before anything runs: a typo in a later system's table must
    // not surface only when that system starts, minutes in.
    for r in selected {
        r.check(size, overrides.get(r.name()))
            .map_err(|e| Error::Other(format!("[reproduce.overrides.{}] {e}", r.name())))?;
    }
    let mut report = Report::new(format!("paperworks reproduction ({size})"));
    let mut metrics = Metrics::default();
    let m = run.manifest();
    // The CLI records its device (`--device`) in the run's config; a reader of a GPU run's
    // report sees where it trained.
    let device = m.config["global"]["device"]
        .as_str()
        .map(|d| format!(" · device {d}"))
        .unwrap_or_default();
    report.paragraph(format!(
        "Revision {} · seed {}{device} · started {} · {} system(s) registered and selected.",
        m.git_revision,
        seed,
        m.started_at,
        selected.len()
    ));
    if selected.is_empty() {
        report.paragraph(
            "No reproduction was selected, so nothing was measured and no claim is reported.",
        );
    }
    let mut summary = Table::new(["system", "claim", "paper", "measured", "verdict"]);
    // held, not held, not resolved at this size, undecided
    let mut tally = [0usize; 4];
    let mut sections: Vec<Block> = Vec::new();
    let mut failures = Vec::new();
    for r in selected {
        let ctx = ReproContext {
            name: r.name().to_string(),
            dir: run.subdir(r.name())?,
            assets: assets.clone(),
            size,
            seed,
            overrides: overrides.get(r.name()).cloned(),
        };
        tracing::info!("reproducing {} ({size})", r.name());
        let t0 = Instant::now();
        let outcome = r.run(&ctx);
        let wall = t0.elapsed().as_secs_f64();
        metrics.set(format!("{}.wall_s", r.name()), wall);
        sections.push(Block::Heading(1, format!("{} — {}", r.name(), r.title())));
        match outcome {
            Ok(o) => {
                for c in r.claims() {
                    let res = o.claims.iter().find(|x| x.id == c.id);
                    let (measured, held) = match res {
                        Some(x) => (x.measured.clone(), x.verdict()),
                        None => ("not measured".to_string(), crate::report::VERDICT_UNDECIDED),
                    };
                    tally[match held {
                        crate::report::VERDICT_HELD => 0,
                        crate::report::VERDICT_NOT_HELD => 1,
                        crate::report::VERDICT_UNRESOLVED => 2,
                        _ => 3,
                    }] += 1;
                    summary.row([
                        r.name().to_string(),
                        c.text.to_string(),
                        c.paper_figure.to_string(),
                        measured,
                        held.to_string(),
                    ]);
                    metrics.set(
                        format!("{}.claim.{}.held", r.name(), c.id),
                        res.and_then(|x| x.held),
                    );
                    metrics.set(format!("{}.claim.{}.verdict", r.name(), c.id), held);
                }
                for (k, v) in o.metrics.0 {
                    metrics.0.insert(format!("{}.{k}", r.name()), v);
                }
                sections.push(Block::Paragraph(format!("Wall time {wall:.1} s.")));
                sections.extend(o.blocks);
            }
            Err(e) => {
                let line = crate::error::one_line(e.as_ref());
                sections.push(Block::Paragraph(format!(
                    "FAILED after {wall:.1} s: {line}"
                )));
                for c in r.claims() {
                    tally[3] += 1;
                    summary.row([
                        r.name(),
                        c.text,
                        c.paper_figure,
                        "run failed",
                        crate::report::VERDICT_UNDECIDED,
                    ]);
                }
                failures.push(format!("{}: {line}", r.name()));
            }
        }
    }
    if !selected.is_empty() {
        let [h, n, r, u] = tally;
        metrics.set("claims.held", h);
        metrics.set("claims.not_resolved", r);
        metrics.set("claims.total", h + n + r + u);
        report
            .heading(1, "Claims")
            .paragraph(format!(
                "{h} of {} claims held, {n} not held, {r} not resolved at this size (the \
                 margin is inside what the test split resolves), {u} undecided.",
                h + n + r + u
            ))
            .table(summary);
    }
    report.extend(sections);
    run.write_metrics(&metrics)?;
    report.write(run.root())?;
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(Error::Other(format!(
            "reproduction failed: {}",
            failures.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{ClaimResult, two_se_of_accuracy_difference};
    use crate::report::{VERDICT_HELD, VERDICT_NOT_HELD, VERDICT_UNDECIDED, VERDICT_UNRESOLVED};

    /// A margin inside what the split resolves is neither held nor not held.
    #[test]
    fn claims_by_margin_have_three_verdicts() {
        // 200 test problems at about 55%: two standard errors of a difference are ~10 points
        let r = two_se_of_accuracy_difference(0.55, 0.54, 200);
        assert!((0.09..0.11).contains(&r), "{r}");
        let v = |m: f64| ClaimResult::by_margin("c", "m", m, r).verdict();
        assert_eq!(v(0.01), VERDICT_UNRESOLVED);
        assert_eq!(v(-0.05), VERDICT_UNRESOLVED);
        assert_eq!(v(0.15), VERDICT_HELD);
        assert_eq!(v(-0.15), VERDICT_NOT_HELD);
        assert_eq!(
            ClaimResult::by_margin("c", "m", f64::NAN, r).verdict(),
            VERDICT_UNDECIDED
        );
        assert_eq!(two_se_of_accuracy_difference(0.5, 0.5, 0), f64::INFINITY);
    }

    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        b: u32,
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        steps: u32,
        inner: Inner,
    }

    #[test]
    fn overrides_replace_nested_keys_and_reject_unknown_ones() {
        let base = Cfg {
            steps: 10,
            inner: Inner { a: 1, b: 2 },
        };
        let o = serde_json::json!({"inner": {"b": 5}});
        assert_eq!(
            apply_overrides(&base, Some(&o)).unwrap(),
            Cfg {
                steps: 10,
                inner: Inner { a: 1, b: 5 }
            }
        );
        let bad = serde_json::json!({"stepz": 3});
        assert!(
            apply_overrides(&base, Some(&bad))
                .unwrap_err()
                .contains("stepz")
        );
    }
}
