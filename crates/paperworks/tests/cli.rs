//! The binary as a user meets it: help texts, the reproduce smoke test, and bad input (a
//! malformed config, an unwritable run directory, a missing asset, a corrupt ledger) giving one
//! clear line, a non-zero exit and untouched good files.

use std::path::Path;
use std::process::Output;

mod common;
use common::{assets, bin};

/// A config that shrinks every registered reproduction to seconds (the smoke-test size).
fn tiny_config(dir: &Path) -> String {
    let p = dir.join("tiny.toml");
    std::fs::write(
        &p,
        "[reproduce.overrides.pdiff]\nae_channels = [8, 8]\nae_steps = 20\ndenoiser_hidden = 16\nddpm_steps = 20\ngenerated = 4\nlimit = 1000\nablations = false\n[reproduce.overrides.pdiff.collect]\nepochs = 1\nsnapshots = 8\n\
         [reproduce.overrides.glan]\nmax_disciplines = 1\n[reproduce.overrides.glan.subjects]\nqueries = 1\nper_query = 1\n\
         [reproduce.overrides.glan.syllabus]\nmin_sessions = 2\nmax_sessions = 2\nkey_concepts = 2\n\
         [reproduce.overrides.glan.homework]\nper_syllabus = 2\n[reproduce.overrides.glan.answers]\nmax_tokens = 24\n\
         [reproduce.overrides.glan.judge]\ncalibrate = false\nmin_score = 1\n[reproduce.overrides.glan.judge.sampling]\nmax_tokens = 96\n\
         [reproduce.overrides.glan.filters]\ndrop_truncated = false\nquestion_form = false\n\
         [reproduce.overrides.glan.claim]\npretrain_bytes = 20000\neval_every = 2\nseeds = 1\n\
         [reproduce.overrides.glan.claim.lm]\nd_model = 32\nn_heads = 2\nn_layers = 1\n\
         [reproduce.overrides.glan.claim.pretrain]\nsteps = 3\nbatch = 4\n[reproduce.overrides.glan.claim.sft]\nsteps = 3\nbatch = 4\n\
         [reproduce.overrides.glore]\nsft_problems = 500\ntrain_problems = 20\nval_problems = 20\ntest_problems = 20\ntest_rollouts = 1\n\
         [reproduce.overrides.glore.student]\nei_samples = 2\nmax_new = 48\n[reproduce.overrides.glore.student.model]\nd_model = 32\nn_layers = 1\nn_heads = 2\n\
         [reproduce.overrides.glore.student.sft]\nsteps = 30\n[reproduce.overrides.glore.student.ei]\nsteps = 5\n\
         [reproduce.overrides.glore.label]\nrollouts = 2\nk = 2\n[reproduce.overrides.glore.orm]\nmin_steps = 1\nmax_steps = 5\n[reproduce.overrides.glore.sorm]\nsteps = 5\n\
         [reproduce.overrides.glore.global]\nsteps = 5\n[reproduce.overrides.glore.local]\nsteps = 5\n\
         [reproduce.overrides.videoprism]\nprobe_evals = 2\nprobe_seeds = 1\n\
         [reproduce.overrides.videoprism.splits]\npairs = 32\nvideo_only = 16\nprobe_train = 32\nprobe_val = 8\nprobe_test = 16\n\
         [reproduce.overrides.videoprism.stage1]\nsteps = 3\nbatch = 8\nlr = 0.001\n[reproduce.overrides.videoprism.stage2]\nsteps = 3\nbatch = 8\nlr = 0.001\n\
         [reproduce.overrides.videoprism.probe]\nsteps = 3\nbatch = 8\nlr = 0.001\n\
         [reproduce.overrides.comments]\naugment_functions = 8\npretrain_bytes = 20000\neval_every = 2\nvalidation_functions = 8\ntest_functions = 8\n\
         generator = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\ndensity_files = 40\nparallel = 4\n\
         [reproduce.overrides.comments.lm]\nd_model = 32\nn_heads = 2\nn_layers = 1\nmax_len = 512\n\
         [reproduce.overrides.comments.pretrain]\nsteps = 3\nbatch = 4\n[reproduce.overrides.comments.cont]\nsteps = 3\nbatch = 4\n\
         [reproduce.overrides.madbench]\ntrain_scenes = 40\nvalidation_scenes = 10\ntest_scenes = 12\nllm_items_per_category = 1\n\
         eval_every = 2\njudge_rows = 4\nparallel = 4\nanswerer = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\n\
         judge = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\n\
         [reproduce.overrides.madbench.vlm]\nd_vision = 32\nd_model = 32\nn_heads = 2\nn_layers = 1\nvision_layers = 1\n\
         [reproduce.overrides.madbench.train]\nsteps = 4\nbatch = 4\n[reproduce.overrides.madbench.robust]\nsteps = 4\nbatch = 4\n\
         [reproduce.overrides.recap]\ntrain_videos = 12\nvalidation_videos = 4\ntest_videos = 4\npseudo_videos = 2\nencoder_steps = 3\n\
         encoder_pairs = 64\nevals = 1\nparallel = 4\n[reproduce.overrides.recap.model]\nd_model = 32\nn_heads = 2\nn_layers = 1\n\
         [reproduce.overrides.recap.clip]\nsteps = 4\nbatch = 4\nlr = 0.002\nwarmup = 1\n\
         [reproduce.overrides.recap.segment]\nsteps = 4\nbatch = 4\nlr = 0.001\nwarmup = 1\n\
         [reproduce.overrides.recap.video_level]\nsteps = 4\nbatch = 4\nlr = 0.001\nwarmup = 1\n"
            .to_string()
            // GLAN on SmolLM2 (the default is the slower Qwen); GLAN's model paths are
            // ordinary paths, not asset-relative
            + &format!(
                "[reproduce.overrides.glan.model.embedded]\nmodel = {:?}\n",
                assets().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
            ),
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
    // one thread each: the two reproduce tests run at once on two cores, and llama.cpp's
    // spinning threads at full width beside another process crawl
    let o = run(&[
        "--threads",
        "1",
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
    // the device it trained on (`make test-gpu` runs this test with PW_DEVICE=torch-cpu)
    let device: pw_nn::DeviceKind = std::env::var("PW_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .unwrap();
    assert_eq!(m["config"]["global"]["device"], device.to_string());
    assert_eq!(
        m["config"]["reproduce"]["overrides"]["pdiff"]["ae_steps"],
        20
    );
    let report = std::fs::read_to_string(rd.join("report.md")).unwrap();
    assert!(
        report.contains(&format!(" · device {device} · ")),
        "{report}"
    );
    assert!(
        report.contains("| pdiff |"),
        "the claims table must list p-diff: {report}"
    );
    assert!(report.contains("| glan |"), "and GLAN: {report}");
    assert!(report.contains("| glore |"), "and GLoRe: {report}");
    assert!(
        report.contains("| comments |"),
        "and Code Needs Comments: {report}"
    );
    assert!(report.contains("| madbench |"), "and MAD-Bench: {report}");
    assert!(report.contains("| recap |"), "and Video ReCap: {report}");
    // the verdicts at a glance: a count line, and the count agrees with the table and metrics
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rd.join("metrics.json")).unwrap()).unwrap();
    let (held, total) = (
        metrics["claims.held"].as_u64().unwrap(),
        metrics["claims.total"].as_u64().unwrap(),
    );
    assert!(
        report.contains(&format!("{held} of {total} claims held")),
        "{report}"
    );
    assert_eq!(report.matches(" | held |").count() as u64, held, "{report}");
    let html = std::fs::read_to_string(rd.join("report.html")).unwrap();
    assert!(!html.contains('`'), "raw backticks in the HTML report");
    assert!(rd.join("recap/hcap/test.json").exists());
    assert!(rd.join("comments/augment/comments.parquet").exists());
    // Self-augmentation: the round-1 model is kept and round 2 has its ledger.
    assert!(rd.join("comments/variant-filtered.safetensors").exists());
    assert!(rd.join("comments/round2/augmented.jsonl").exists());
    assert!(rd.join("glore/label-train/prm_trl.jsonl").exists());
    // GLoRe's ORM learning curve: every point measured, exactly one chosen, and plotted.
    let curve: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(rd.join("glore/orm-curve/curve.json")).unwrap())
            .unwrap();
    assert!(curve.len() >= 2, "{curve:?}");
    assert_eq!(curve.iter().filter(|r| r["selected"] == true).count(), 1);
    assert!(rd.join("plots/glore_orm_curve.png").exists());
    assert!(rd.join("glan/glan.parquet").exists());
    // GLAN's central-claim experiment ran its Self-Instruct arm and gave a verdict or said why
    // it could not
    // (the tiny config's filters let SmolLM2's short answers through, so both arms have pairs)
    assert!(rd.join("glan/claim/self_instruct.jsonl").exists());
    let tuned = std::fs::read_dir(rd.join("glan/claim"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.path().join("glan-s0.json").exists());
    assert!(
        tuned || report.contains("not run: an arm has no kept pair"),
        "the claim neither ran nor said why: {report}"
    );
    assert!(
        metrics["glan.claim.central.verdict"].is_string(),
        "{metrics}"
    );
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
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    let mut child = bin()
        .args(["reproduce", "--list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the child's first write, as a `| head` that has had enough.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "stderr: {err}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "stderr: {err}");
    }
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
    // one thread each: the two reproduce tests run at once on two cores, and llama.cpp's
    // spinning threads at full width beside another process crawl
    let o = run(&[
        "--threads",
        "1",
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
    // A typo in a system's name, and a bad key of a later system, are refused before
    // anything runs (p-diff first would otherwise train for minutes).
    for (toml, word) in [
        ("[reproduce.overrides.pdif]\nae_steps = 3\n", "pdif"),
        ("[reproduce.overrides.glore.label]\nk = 0\n", "k 0"),
    ] {
        std::fs::write(&cfg, toml).unwrap();
        let run_dir = dir.path().join("early");
        let o = run(&[
            "reproduce",
            "--quiet",
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
        ]);
        let line = error_line(&o);
        assert!(line.contains(word), "{toml}: {line}");
        assert!(
            !run_dir.join("pdiff").exists(),
            "{toml}: no system may start before every override is checked"
        );
    }
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

/// A TCP server that accepts connections and never answers: a client of it waits, so a
/// `glan run` against it stays alive (holding its run directory) until it is killed.
fn silent_endpoint() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Bounded: the test needs a handful of connections and ends within seconds.
        for conn in listener.incoming().take(64) {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    });
    (port, h)
}

#[test]
fn two_processes_cannot_share_a_run_directory_and_fresh_cannot_clear_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("run");
    let (port, _server) = silent_endpoint();
    let endpoint = format!("http://127.0.0.1:{port}");
    let glan = |extra: &[&str]| {
        let mut c = bin();
        c.args(["--quiet", "--run-dir", rd.to_str().unwrap()])
            .args(extra)
            .args(["glan", "run", "--no-cache", "--endpoint", &endpoint]);
        c
    };
    let mut live = glan(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let manifest = rd.join("manifest.json");
    let t0 = std::time::Instant::now();
    while !manifest.exists() {
        assert!(t0.elapsed().as_secs() < 60, "the live run never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = std::fs::read(&manifest).unwrap();
    for extra in [&[][..], &["--fresh"][..]] {
        let o = glan(extra).output().unwrap();
        assert!(!o.status.success());
        let line = error_line(&o);
        assert!(
            line.contains("in use by process") && line.contains(&live.id().to_string()),
            "{line}"
        );
    }
    // Neither refused run touched the live one's manifest (no "failed" over a live run).
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    assert!(String::from_utf8_lossy(&before).contains("\"running\""));
    // A killed holder leaves no stale lock: the kernel drops it with the process.
    live.kill().unwrap();
    live.wait().unwrap();
    let empty = dir.path().join("no-checkpoints");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&[
        "--quiet",
        "--run-dir",
        rd.to_str().unwrap(),
        "pdiff",
        "fit",
        "--checkpoints",
        empty.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let line = error_line(&o);
    assert!(!line.contains("in use"), "{line}");
}

#[test]
fn fresh_refuses_a_directory_it_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    let thesis = dir.path().join("thesis");
    std::fs::create_dir_all(thesis.join("data")).unwrap();
    std::fs::write(thesis.join("thesis.tex"), "\\documentclass{book}").unwrap();
    std::fs::write(thesis.join("data/table.csv"), "a,b\n1,2\n").unwrap();
    let problems = dir.path().join("p.jsonl");
    let o = run(&[
        "glore",
        "generate",
        "--n",
        "2",
        "--out",
        problems.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "--fresh",
        "--run-dir",
        thesis.to_str().unwrap(),
        "glore",
        "label",
        "--problems",
        problems.to_str().unwrap(),
        "--endpoint",
        "http://127.0.0.1:9",
    ]);
    assert!(!o.status.success());
    let line = error_line(&o);
    assert!(line.contains("--fresh"), "{line}");
    assert!(thesis.join("thesis.tex").exists() && thesis.join("data/table.csv").exists());
}

#[test]
fn threads_beyond_the_bound_are_refused_in_one_line_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("run");
    let o = run(&[
        "--threads",
        "100000",
        "--run-dir",
        rd.to_str().unwrap(),
        "reproduce",
        "--only",
        "pdiff",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(
        line.contains("--threads 100000") && line.contains("1..=1024"),
        "{line}"
    );
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    assert!(!rd.exists(), "nothing was started");
}

/// File and folder names need not be UTF-8 on Linux: a GGUF, a video and a source tree named
/// with odd bytes, in a run directory named so too, are read, not refused or panicked on.
#[test]
fn file_names_that_are_not_utf8_are_read() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let video = assets().join("video/bikes.mp4");
    let gguf = assets().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !video.exists() || !gguf.exists() {
        println!("skipped: the assets are missing (run scripts/setup.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let odd = |name: &[u8]| dir.path().join(OsStr::from_bytes(name));
    let (model, clip, tree, rd) = (
        odd(b"m\xff.gguf"),
        odd(b"v\xe9.mp4"),
        odd(b"src\xfe"),
        odd(b"run\xff"),
    );
    std::os::unix::fs::symlink(&gguf, &model).unwrap();
    std::fs::copy(&video, &clip).unwrap();
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(
        tree.join(OsStr::from_bytes(b"a\xfd.py")),
        "def f():\n    # one comment\n    return 1\n",
    )
    .unwrap();

    let o = bin()
        .args([
            "--quiet",
            "llm",
            "complete",
            "hi",
            "--max-tokens",
            "3",
            "--no-cache",
        ])
        .args(["--ctx", "256", "--parallel", "1", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "llm complete: {}", stderr(&o));

    let o = bin()
        .arg("--quiet")
        .arg("--run-dir")
        .arg(&rd)
        .args(["videoprism", "embed", "--random-init"])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(o.status.success(), "videoprism embed: {}", stderr(&o));
    assert!(rd.join("embeddings.safetensors").is_file());
    let manifest = std::fs::read_to_string(rd.join("manifest.json")).unwrap();
    assert!(manifest.contains("v\u{fffd}.mp4"), "{manifest}");

    let o = bin()
        .args(["comments", "density"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(o.status.success(), "comments density: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Python"), "{out}");
}

/// The habits of command-line tools: `--version` names the git revision, `llm complete -` reads
/// the prompt from stdin, logs carry no colour codes into a pipe, and $OPENAI_BASE_URL is the
/// endpoint when no backend is named.
#[test]
fn version_stdin_plain_logs_and_the_openai_base_url() {
    let o = run(&["--version"]);
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && v.contains("(git "), "{v}");

    let gguf = assets().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if gguf.exists() {
        use std::io::Write;
        let mut child = bin()
            .args([
                "llm",
                "complete",
                "-",
                "--temperature",
                "0",
                "--max-tokens",
                "8",
            ])
            .args(["--no-cache", "--ctx", "256", "--parallel", "1", "--model"])
            .arg(&gguf)
            // a pattern llama.cpp cannot convert: its warning is a log line
            .args([
                "--json-schema",
                r#"{"type":"string","pattern":"^\\p{L}+ Paris$"}"#,
            ])
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"What is the capital of France?\n")
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("WARN"), "{err}");
        // "-" is stdin, not a prompt: an empty stdin is refused
        let o = bin()
            .args(["llm", "complete", "-", "--no-cache", "--model"])
            .arg(&gguf)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(error_line(&o).contains("stdin is empty"), "{}", stderr(&o));
        assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");
    } else {
        println!("skipped the stdin check: {} is missing", gguf.display());
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let o = bin()
        .args(["llm", "complete", "hi", "--retries", "0", "--no-cache"])
        .env("OPENAI_BASE_URL", &url)
        .output()
        .unwrap();
    let line = error_line(&o);
    assert!(
        line.contains(&url) && line.contains("cannot connect"),
        "{line}"
    );
}

/// `completions <shell>` prints a script that names every subcommand; the bash one parses.
#[test]
fn shell_completions_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(&["completions", shell]);
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for sub in ["reproduce", "glan", "glore", "videoprism", "recap", "serve"] {
            assert!(s.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let o = run(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("paperworks.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    match std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
    {
        Ok(check) => assert!(
            check.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&check.stderr)
        ),
        Err(e) => println!("skipped the bash syntax check: no bash ({e})"),
    }
    let o = run(&["completions", "tcsh"]);
    assert!(!o.status.success());
}
