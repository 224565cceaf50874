//! `paperworks comments density | augment` end to end: skip lines and exit codes, 200
//! functions through a fake OpenAI-compatible commenter (killed three times and resumed: no
//! loss, no duplicate; code-changing replies rejected with the reason), the line-constrained
//! path on the embedded SmolLM2, and clear errors.

use axum::Router;
use axum::routing::post;
use pw_comments::{Analyzer, Lang};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::bin;

/// A commenter that inserts `# step` before each `return`, and changes the code of functions
/// whose name starts with an underscore.
async fn chat(body: String) -> axum::Json<Value> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let req: Value = serde_json::from_str(&body).unwrap();
    let user = req["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let code = user
        .split_once("```python\n")
        .map(|(_, rest)| rest.rsplit_once("```").map_or(rest, |(c, _)| c).to_string())
        .unwrap_or_default();
    let out: String = if code.starts_with("def _") {
        code.replacen("return", "retrun", 1) + "x = 1\n"
    } else {
        code.split_inclusive('\n')
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("return") {
                    format!("{}# step\n{l}", &l[..l.len() - t.len()])
                } else {
                    l.to_string()
                }
            })
            .collect()
    };
    let text = format!("Here is the commented code:\n```python\n{out}```\n");
    axum::Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10}
    }))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_hundred_functions_through_an_endpoint_survive_kills_and_never_change_code() {
    let Some(stdlib) = pw_comments::data::python_stdlib() else {
        println!("skipped: no Python standard library on this machine");
        return;
    };
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let (_rt, port) = common::serve_on_loopback(app);
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("aug");
    let args = |c: &mut std::process::Command| {
        c.args([
            "--quiet",
            "--run-dir",
            rd.to_str().unwrap(),
            "comments",
            "augment",
            stdlib.join("json").to_str().unwrap(),
            stdlib.join("email").to_str().unwrap(),
            stdlib.join("collections").to_str().unwrap(),
            stdlib.join("logging").to_str().unwrap(),
            "--limit",
            "200",
            "--concurrency",
            "4",
            "--endpoint",
            &format!("http://127.0.0.1:{port}/v1"),
        ]);
    };
    for kill_after in [700u64, 1200, 900] {
        let mut c = bin();
        args(&mut c);
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(kill_after));
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut c = bin();
    args(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("200 units"), "{stdout}");
    // The kills landed mid-run: the last run found some units done and did the rest.
    let before: usize = stdout
        .split_once(" units (")
        .and_then(|(_, r)| r.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap();
    assert!(before > 0 && before < 200, "{stdout}");
    let done = lines(&rd.join("generated.jsonl"));
    let rejected = lines(&rd.join("rejects.jsonl"));
    let (d, r) = (ids(&done), ids(&rejected));
    let (ds, rs): (HashSet<_>, HashSet<_>) = (d.iter().collect(), r.iter().collect());
    assert_eq!(ds.len(), d.len(), "duplicate accepted ids");
    assert_eq!(rs.len(), r.len(), "duplicate rejected ids");
    assert!(ds.is_disjoint(&rs));
    assert_eq!(
        d.len() + r.len(),
        200,
        "every unit accepted or rejected once"
    );
    // Code-changing replies (functions named _...) are rejected with the reason.
    let planted: Vec<&Value> = rejected
        .iter()
        .filter(|x| x["text"].as_str().is_some_and(|t| t.contains("retrun")))
        .collect();
    assert!(!planted.is_empty());
    for x in &planted {
        assert!(
            x["reason"].as_str().unwrap().contains("changes the code"),
            "{x}"
        );
    }
    // Every kept record strips back to its original.
    let mut an = Analyzer::new();
    let kept = lines(&rd.join("comments.jsonl"));
    assert!(kept.len() > 50, "{}", kept.len());
    for k in &kept {
        let (content, original) = (
            k["content"].as_str().unwrap(),
            k["original"].as_str().unwrap(),
        );
        assert_ne!(content, original);
        assert_eq!(
            pw_comments::verify::strip_comments(&mut an, Lang::Python, content).unwrap(),
            pw_comments::verify::strip_comments(&mut an, Lang::Python, original).unwrap()
        );
        assert_eq!(k["method"], "generate-verify");
        assert!(k["density_after"].as_f64() > k["density_before"].as_f64());
    }
    let pq = pw_comments::export::read_parquet_contents(&rd.join("comments.parquet")).unwrap();
    assert_eq!(pq.len(), kept.len());
    assert!(pq.iter().all(|(_, kept)| *kept));
}

#[test]
fn line_constrained_augmentation_on_the_embedded_model_keeps_code_intact() {
    let Some(stdlib) = pw_comments::data::python_stdlib() else {
        println!("skipped: no Python standard library on this machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("aug");
    let o = bin()
        .args([
            "--quiet",
            "--run-dir",
            rd.to_str().unwrap(),
            "comments",
            "augment",
            stdlib.join("heapq.py").to_str().unwrap(),
            "--limit",
            "6",
            "--model",
            common::assets()
                .join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
                .to_str()
                .unwrap(),
            "--bias",
            "2",
            "--parallel",
            "3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("6 units") && stdout.contains("(constrained)"),
        "{stdout}"
    );
    let all = lines(&rd.join("augmented.jsonl"));
    let rejected = lines(&rd.join("rejects.jsonl"));
    assert_eq!(all.len() + rejected.len(), 6);
    let mut an = Analyzer::new();
    for r in &all {
        let (content, original) = (
            r["content"].as_str().unwrap(),
            r["original"].as_str().unwrap(),
        );
        assert_eq!(
            pw_comments::verify::strip_comments(&mut an, Lang::Python, content).unwrap(),
            pw_comments::verify::strip_comments(&mut an, Lang::Python, original).unwrap(),
            "{content}"
        );
        assert_eq!(
            r["kept"].as_bool().unwrap(),
            r["inserted_lines"].as_u64().unwrap() > 0
        );
    }
    // A rerun with the same settings finds everything done; one with another bias would mix
    // two settings' comments in one ledger, and is refused.
    let rerun = |bias: &str| {
        bin()
            .args([
                "--quiet",
                "--run-dir",
                rd.to_str().unwrap(),
                "comments",
                "augment",
                stdlib.join("heapq.py").to_str().unwrap(),
                "--limit",
                "6",
                "--model",
                common::assets()
                    .join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
                    .to_str()
                    .unwrap(),
                "--bias",
                bias,
            ])
            .output()
            .unwrap()
    };
    let o = rerun("2");
    assert!(String::from_utf8_lossy(&o.stdout).contains("(6 done before)"));
    let o = rerun("0");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("settings changed") && err.contains("--fresh"),
        "{err}"
    );
}

#[test]
fn density_prints_tables_and_skip_lines_and_bad_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.py"), "x = 1  # one\n# two\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), b"fn \xff() {}\n").unwrap();
    let o = bin()
        .args([
            "comments",
            "density",
            dir.path().to_str().unwrap(),
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("lang,files,"), "{out}");
    assert!(out.contains("Python,1,"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("b.rs: skipped: invalid UTF-8"), "{err}");
    assert!(err.contains("1 inputs counted, 1 skipped"), "{err}");
    // The parse gives the scanner's table; an engine that does not exist is one line.
    let with = |engine: &str| {
        bin()
            .args(["comments", "density", dir.path().to_str().unwrap()])
            .args(["--format", "csv", "--engine", engine])
            .output()
            .unwrap()
    };
    let parsed = with("tree-sitter");
    assert!(parsed.status.success());
    assert_eq!(String::from_utf8_lossy(&parsed.stdout), out);
    assert!(String::from_utf8_lossy(&parsed.stderr).contains("0 with syntax errors"));
    let bad = with("regex");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("engine must be scan or tree-sitter, not \"regex\""),
        "{err}"
    );
    let o = bin()
        .args([
            "comments",
            "density",
            dir.path().join("missing").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("missing"), "{err}");
    // A model file that is not a GGUF is named in one line, and nothing is written.
    let fake = dir.path().join("fake.gguf");
    std::fs::write(&fake, "not a model").unwrap();
    let rd = dir.path().join("run");
    let o = bin()
        .args([
            "--run-dir",
            rd.to_str().unwrap(),
            "comments",
            "augment",
            dir.path().join("a.py").to_str().unwrap(),
            "--unit",
            "record",
            "--min-lines",
            "1",
            "--model",
            fake.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(line.len(), 1, "{err}");
    assert!(line[0].contains("fake.gguf"), "{err}");
}
