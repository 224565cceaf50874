//! The binary as a user meets it: help texts, the reproduce smoke test, and bad input (a
//! malformed config, an unwritable run directory, a missing asset, a corrupt ledger) giving one
//! clear line, a non-zero exit and untouched good files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_paperworks"));
    c.env("PAPERWORKS_ASSETS", assets())
        .env_remove("PAPERWORKS_LOG");
    c
}

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

/// A config that shrinks every registered reproduction to seconds (the smoke-test size).
fn tiny_config(dir: &Path) -> String {
    let p = dir.join("tiny.toml");
    std::fs::write(
        &p,
        "[reproduce.overrides.pdiff]\nae_channels = [8, 8]\nae_steps = 20\ndenoiser_hidden = 16\nddpm_steps = 20\ngenerated = 4\nlimit = 1000\nablations = false\n[reproduce.overrides.pdiff.collect]\nepochs = 1\nsnapshots = 8\n\
         [reproduce.overrides.glan]\nmax_disciplines = 1\n[reproduce.overrides.glan.subjects]\nqueries = 1\nper_query = 1\n\
         [reproduce.overrides.glan.syllabus]\nmin_sessions = 2\nmax_sessions = 2\nkey_concepts = 2\n\
         [reproduce.overrides.glan.homework]\nper_syllabus = 2\n[reproduce.overrides.glan.answers]\nmax_tokens = 24\n\
         [reproduce.overrides.glore]\nsft_problems = 500\ntrain_problems = 20\nval_problems = 20\ntest_problems = 20\ntest_rollouts = 1\n\
         [reproduce.overrides.glore.student]\nei_samples = 2\nmax_new = 48\n[reproduce.overrides.glore.student.model]\nd_model = 32\nn_layers = 1\nn_heads = 2\n\
         [reproduce.overrides.glore.student.sft]\nsteps = 30\n[reproduce.overrides.glore.student.ei]\nsteps = 5\n\
         [reproduce.overrides.glore.label]\nrollouts = 2\nk = 2\n[reproduce.overrides.glore.orm]\nsteps = 5\n[reproduce.overrides.glore.sorm]\nsteps = 5\n\
         [reproduce.overrides.glore.global]\nsteps = 5\n[reproduce.overrides.glore.local]\nsteps = 5\n",
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn error_line(o: &Output) -> String {
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected exactly one error line, got: {e}");
    lines[0].to_string()
}

#[test]
fn every_command_explains_itself() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        text.contains("run directory") && text.contains("reproduce") && text.contains("assets"),
        "{text}"
    );
    for (cmd, words) in [
        (
            "reproduce",
            ["--only", "--quick", "--full", "--list"].as_slice(),
        ),
        ("assets", ["--verify"].as_slice()),
    ] {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success());
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.lines().count() > 8, "{cmd} --help is too thin: {t}");
        for w in words {
            assert!(t.contains(w), "{cmd} --help lacks {w}: {t}");
        }
    }
}

#[test]
fn reproduce_smoke_writes_report_manifest_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("run");
    let cfg = tiny_config(dir.path());
    let o = run(&[
        "reproduce",
        "--quick",
        "--quiet",
        "--config",
        &cfg,
        "--run-dir",
        rd.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["report.md", "report.html", "manifest.json", "metrics.json"] {
        assert!(rd.join(f).exists(), "{f} missing");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rd.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "ok");
    assert_eq!(m["config"]["reproduce"]["size"], "quick");
    assert_eq!(
        m["config"]["reproduce"]["overrides"]["pdiff"]["ae_steps"],
        20
    );
    let report = std::fs::read_to_string(rd.join("report.md")).unwrap();
    assert!(
        report.contains("| pdiff |"),
        "the claims table must list p-diff: {report}"
    );
    assert!(report.contains("| glan |"), "and GLAN: {report}");
    assert!(report.contains("| glore |"), "and GLoRe: {report}");
    assert!(rd.join("glore/label-train/prm_trl.jsonl").exists());
    assert!(rd.join("glan/glan.parquet").exists());
    // Re-running resumes into the same directory and records the earlier start.
    let o = run(&[
        "reproduce",
        "--quiet",
        "--config",
        &cfg,
        "--run-dir",
        rd.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rd.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["previous_starts"].as_array().unwrap().len(), 1);
}

#[test]
fn unknown_system_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "reproduce",
        "--only",
        "nosuch",
        "--run-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(error_line(&o).contains("nosuch"));
}

#[test]
fn malformed_config_names_file_and_line_and_keeps_the_run_intact() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("run");
    let tiny = tiny_config(dir.path());
    let o = run(&[
        "reproduce",
        "--quiet",
        "--config",
        &tiny,
        "--run-dir",
        rd.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest_before = std::fs::read(rd.join("manifest.json")).unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "seed = 3\n[reproduce]\nsize = \"huge\"\n").unwrap();
    let o = run(&[
        "reproduce",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        rd.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let line = error_line(&o);
    assert!(
        line.contains("bad.toml") && line.contains("line 3"),
        "{line}"
    );
    std::fs::write(&cfg, "[reproduce.overrides.pdiff]\nae_stepz = 3\n").unwrap();
    let o = run(&[
        "reproduce",
        "--only",
        "pdiff",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        dir.path().join("other").to_str().unwrap(),
    ]);
    let line = error_line(&o);
    assert!(
        line.contains("ae_stepz"),
        "an unknown override key must be named: {line}"
    );
    std::fs::write(&cfg, "sed = 3\n").unwrap();
    let line = error_line(&run(&[
        "reproduce",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        rd.to_str().unwrap(),
    ]));
    assert!(line.contains("unknown field"), "{line}");
    assert_eq!(
        std::fs::read(rd.join("manifest.json")).unwrap(),
        manifest_before,
        "a bad config must not touch the run"
    );
}

#[test]
fn unwritable_run_directory_is_a_clear_error_and_keeps_the_file_in_its_way() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "precious").unwrap();
    for target in [blocker.join("run"), blocker.clone()] {
        let o = run(&["reproduce", "--run-dir", target.to_str().unwrap()]);
        assert!(!o.status.success());
        let line = error_line(&o);
        assert!(
            line.contains("run directory") && line.contains("not-a-dir"),
            "{line}"
        );
    }
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "precious");
}

#[test]
fn missing_asset_is_reported_with_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(assets().join("SHA256SUMS"), dir.path().join("SHA256SUMS")).unwrap();
    let o = bin()
        .args(["assets"])
        .env("PAPERWORKS_ASSETS", dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let line = error_line(&o);
    assert!(
        line.contains("missing asset") && line.contains("setup.sh"),
        "{line}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("MISSING"));
}

#[test]
fn shipped_assets_are_all_present() {
    let o = run(&["assets"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[test]
fn garbage_line_in_a_ledger_is_refused_and_the_ledger_kept() {
    // Through the library, as every stage opens its ledger (no subcommand owns a ledger yet).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("stage.jsonl");
    let text = "{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\"::}\n{\"id\":\"c\",\"x\":3}\n";
    write(&p, text);
    let e = pw_core::Ledger::open(&p).err().unwrap();
    let line = pw_core::one_line(&e);
    assert!(
        line.contains("stage.jsonl") && line.contains("line 2"),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
}
