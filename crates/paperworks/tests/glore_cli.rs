//! `paperworks glore` as a user meets it: SORM labelling over HTTP against `paperworks serve`
//! and with the embedded GGUF on a generated 20-problem file; a labelling run killed with
//! SIGKILL and resumed ends with exactly one label per step of every rollout; `refine` with a
//! chat model; bad input gets one line.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::bin;

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn generate(dir: &Path, n: usize) -> PathBuf {
    let f = dir.join("problems.jsonl");
    run_ok(bin().args([
        "--quiet",
        "glore",
        "generate",
        "--n",
        &n.to_string(),
        "--max-steps",
        "3",
        "--out",
        f.to_str().unwrap(),
    ]));
    f
}

/// Every rollout has one label per line, the exports one row per distinct rollout (question
/// and steps), and the TRL and Math-Shepherd rows agree with the labels, with OpenRLHF's list
/// form and the balancing flags.
fn check_label_outputs(rd: &Path, rollouts: usize) -> Vec<Value> {
    let labels = rows(&rd.join("labels.jsonl"));
    assert_eq!(labels.len(), rollouts);
    let ids: HashSet<&str> = labels.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rollouts, "duplicate rollouts");
    let mut seen = HashSet::new();
    let distinct: Vec<&Value> = labels
        .iter()
        .filter(|l| seen.insert((l["question"].to_string(), l["lines"].to_string())))
        .collect();
    let trl = rows(&rd.join("prm_trl.jsonl"));
    let ms = rows(&rd.join("math_shepherd.jsonl"));
    assert_eq!((trl.len(), ms.len()), (distinct.len(), distinct.len()));
    for ((l, t), m) in distinct.iter().zip(&trl).zip(&ms) {
        let n = l["lines"].as_array().unwrap().len();
        assert_eq!(l["labels"].as_array().unwrap().len(), n, "{l}");
        assert_eq!(t["labels"], l["labels"]);
        assert_eq!(t["completions"], l["lines"]);
        assert_eq!(t["kept"], l["keep"]);
        assert_eq!(m["input"].as_str().unwrap().matches("ки").count(), n);
        let value: Vec<&str> = m["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let want: Vec<&str> = l["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|y| if y.as_bool().unwrap() { "+" } else { "-" })
            .collect();
        assert_eq!(value, want, "OpenRLHF's list form");
    }
    labels
}

#[test]
fn label_runs_against_paperworks_serve_over_http_and_with_the_embedded_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let problems = generate(dir.path(), 20);
    let mut server = bin()
        .args(["serve", "--port", "0", "--ctx", "1024", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.split_whitespace().nth(2).unwrap().to_string();
    let rd = dir.path().join("http");
    let t = std::time::Instant::now();
    let out = run_ok(bin().args([
        "--quiet",
        "--run-dir",
        rd.to_str().unwrap(),
        "glore",
        "label",
        "--problems",
        problems.to_str().unwrap(),
        "--endpoint",
        &url,
        "--rollouts",
        "1",
        "--k",
        "2",
        "--max-tokens",
        "48",
    ]));
    server.kill().unwrap();
    server.wait().unwrap();
    eprintln!(
        "label over HTTP, 20 problems, K = 2: {:.1} s\n{out}",
        t.elapsed().as_secs_f64()
    );
    assert!(out.contains("20 questions, 20 rollouts"), "{out}");
    assert!(out.contains("SORM labels vs exact step truth"), "{out}");
    let labels = check_label_outputs(&rd, 20);
    assert!(
        labels
            .iter()
            .any(|l| !l["lines"].as_array().unwrap().is_empty())
    );

    // The embedded GGUF, same file (5 problems).
    let rd = dir.path().join("embedded");
    let out = run_ok(bin().args([
        "--quiet",
        "--run-dir",
        rd.to_str().unwrap(),
        "glore",
        "label",
        "--problems",
        problems.to_str().unwrap(),
        "--limit",
        "5",
        "--rollouts",
        "1",
        "--k",
        "2",
        "--max-tokens",
        "48",
    ]));
    assert!(out.contains("5 questions, 5 rollouts"), "{out}");
    check_label_outputs(&rd, 5);
}

/// A fake chat endpoint: deterministic step-by-step answers (right or wrong by the request's
/// hash), 30 ms each.
async fn chat(State(calls): State<Arc<AtomicUsize>>, body: String) -> axum::Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let req: Value = serde_json::from_str(&body).unwrap();
    let n = req["n"].as_u64().unwrap_or(1);
    let seed = req["seed"].as_u64().unwrap_or(0);
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let x = (seed.wrapping_mul(31).wrapping_add(i * 7)) % 5;
            let text = format!("{x} + 2 = {}\n#### {}", x + 2, x + 2);
            json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"})
        })
        .collect();
    axum::Json(json!({"choices": choices, "usage": {"prompt_tokens": 10, "completion_tokens": 10}}))
}

fn start_fake() -> (tokio::runtime::Runtime, Arc<AtomicUsize>, u16) {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(calls.clone());
    let (rt, port) = common::serve_on_loopback(app);
    (rt, calls, port)
}

#[test]
fn a_labelling_run_killed_and_resumed_has_no_duplicate_and_no_missing_prefix_label() {
    let (_rt, _calls, port) = start_fake();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    let mut f = String::new();
    for i in 0..30 {
        f.push_str(&format!("{{\"id\": \"q{i}\", \"question\": \"Ann has {i} apples. She buys 2 more. How many?\", \"answer\": \"{i} + 2 = {}\\n#### {}\"}}\n", i + 2, i + 2));
    }
    std::fs::write(&problems, f).unwrap();
    let cmd = |rd: &Path| {
        let mut c = bin();
        c.args([
            "--quiet",
            "--run-dir",
            rd.to_str().unwrap(),
            "glore",
            "label",
            "--problems",
            problems.to_str().unwrap(),
            "--endpoint",
            &format!("http://127.0.0.1:{port}/v1"),
            "--rollouts",
            "3",
            "--k",
            "4",
            "--chunk",
            "4",
            "--concurrency",
            "2",
            "--no-cache",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let rd = dir.path().join("killed");
    let mut mid_run = 0;
    for wait in [150u64, 300, 450] {
        let mut child = cmd(&rd).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(wait));
        if child.try_wait().unwrap().is_none() {
            mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(mid_run >= 2, "only {mid_run} of 3 kills landed mid-run");
    let out = cmd(&rd).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Ledgers: one record per question and per distinct prefix.
    for ledger in ["rollouts.jsonl", "verify.jsonl"] {
        let ids: Vec<String> = rows(&rd.join(ledger))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let set: HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len(), "duplicate ids in {ledger}");
    }
    assert_eq!(rows(&rd.join("rollouts.jsonl")).len(), 30);
    check_label_outputs(&rd, 90);
    // OpenRLHF's ProcessRewardDataset and TRL's PRM tokenisation on the exports
    common::python_check(
        "glore_exports.py",
        "datasets, tokenizers, transformers, torch",
        &[
            rd.join("prm_trl.jsonl").as_os_str(),
            rd.join("math_shepherd.jsonl").as_os_str(),
        ],
        "GLoRe's exports in OpenRLHF and TRL",
    );

    // The same labels as a run never interrupted.
    let clean = dir.path().join("clean");
    let out = cmd(&clean).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        rows(&rd.join("labels.jsonl")),
        rows(&clean.join("labels.jsonl"))
    );

    // refine: the wrong rollouts, globally and locally, with the same chat model.
    let rf = dir.path().join("refine");
    let out = run_ok(bin().args([
        "--quiet",
        "--run-dir",
        rf.to_str().unwrap(),
        "glore",
        "refine",
        "--problems",
        problems.to_str().unwrap(),
        "--labels",
        rd.join("labels.jsonl").to_str().unwrap(),
        "--endpoint",
        &format!("http://127.0.0.1:{port}/v1"),
    ]));
    let wrong = rows(&rd.join("labels.jsonl"))
        .iter()
        .filter(|l| l["correct"] == json!(false))
        .count();
    assert!(out.contains(&format!("{wrong} wrong drafts")), "{out}");
    let refs = rows(&rf.join("refinements.jsonl"));
    assert_eq!(
        refs.len(),
        2 * wrong,
        "one global and one local refinement per wrong draft"
    );
    assert!(
        refs.iter()
            .all(|r| r["messages"].as_array().unwrap().last().unwrap()["role"] == "assistant")
    );
}

#[test]
fn bad_input_gets_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"question\": \"q\", \"answer\": \"1 + 1 = 2\\n#### 2\"}\nnot json\n",
    )
    .unwrap();
    let out = bin()
        .args([
            "--quiet",
            "--run-dir",
            dir.path().join("r").to_str().unwrap(),
            "glore",
            "label",
            "--problems",
            bad.to_str().unwrap(),
            "--endpoint",
            "http://127.0.0.1:9/v1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl: line 2") && err.trim().lines().count() == 1,
        "{err}"
    );

    let good = generate(dir.path(), 3);
    let out = bin()
        .args([
            "--quiet",
            "--run-dir",
            dir.path().join("r2").to_str().unwrap(),
            "glore",
            "label",
            "--problems",
            good.to_str().unwrap(),
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--retries",
            "0",
            "--no-cache",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_rerun_with_corrected_gold_answers_is_refused_instead_of_reusing_stale_rollouts() {
    let (_rt, _calls, port) = start_fake();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    let write = |answer_offset: u64| {
        let mut f = String::new();
        for i in 0..3u64 {
            let a = i + 2 + answer_offset;
            f.push_str(&format!("{{\"id\": \"q{i}\", \"question\": \"Ann has {i} apples. She buys 2 more. How many?\", \"answer\": \"{i} + 2 = {a}\\n#### {a}\"}}\n"));
        }
        std::fs::write(&problems, f).unwrap();
    };
    let rd = dir.path().join("run");
    let label = |fresh: bool| {
        let mut c = bin();
        c.args(["--quiet", "--run-dir", rd.to_str().unwrap()]);
        if fresh {
            c.arg("--fresh");
        }
        c.args([
            "glore",
            "label",
            "--problems",
            problems.to_str().unwrap(),
            "--endpoint",
            &format!("http://127.0.0.1:{port}/v1"),
            "--rollouts",
            "2",
            "--k",
            "2",
            "--no-cache",
        ]);
        c.output().unwrap()
    };
    write(1); // wrong gold answers
    assert!(label(false).status.success());
    let before = std::fs::read(rd.join("labels.jsonl")).unwrap();
    write(0); // corrected
    let out = label(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("p.jsonl changed") && err.contains("--fresh") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        std::fs::read(rd.join("labels.jsonl")).unwrap(),
        before,
        "the refused run wrote nothing"
    );
    let out = label(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two reproductions with one seed on two threads write the same bytes: every checkpoint
/// (student, ORM curve, SORM, refiners) and every JSONL (problems, rollouts, labels,
/// evaluations). Float sums whose grouping follows rayon's work stealing would break this.
#[test]
fn two_runs_with_one_seed_write_identical_models_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(
        &cfg,
        "[reproduce.overrides.glore]\nsft_problems = 800\ntrain_problems = 24\nval_problems = 16\ntest_problems = 16\ntest_rollouts = 1\n\
         [reproduce.overrides.glore.student]\nei_samples = 2\nmax_new = 48\n[reproduce.overrides.glore.student.model]\nd_model = 32\nn_layers = 2\nn_heads = 2\n\
         [reproduce.overrides.glore.student.sft]\nsteps = 300\n[reproduce.overrides.glore.student.ei]\nsteps = 5\n\
         [reproduce.overrides.glore.label]\nrollouts = 2\nk = 2\n[reproduce.overrides.glore.orm]\nmin_steps = 3\nmax_steps = 8\n\
         [reproduce.overrides.glore.sorm]\nsteps = 5\n[reproduce.overrides.glore.global]\nsteps = 5\n[reproduce.overrides.glore.local]\nsteps = 5\n",
    )
    .unwrap();
    let files = |name: &str| {
        let rd = dir.path().join(name);
        run_ok(bin().args([
            "--quiet",
            "--threads",
            "2",
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            rd.to_str().unwrap(),
            "reproduce",
            "--only",
            "glore",
        ]));
        let mut out = Vec::new();
        let mut stack = vec![rd.join("glore")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p
                    .extension()
                    .is_some_and(|x| x == "safetensors" || x == "jsonl")
                {
                    let rel = p.strip_prefix(&rd).unwrap().to_path_buf();
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    };
    let (a, b) = (files("a"), files("b"));
    let names = |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    assert!(
        a.iter()
            .filter(|(p, _)| p.extension().unwrap() == "safetensors")
            .count()
            >= 5,
        "{:?}",
        names(&a)
    );
    for ((p, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{} differs between two runs with one seed",
            p.display()
        );
    }
}
