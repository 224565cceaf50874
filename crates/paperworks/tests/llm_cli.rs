//! `paperworks serve` under load, and `paperworks llm` as a user meets it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;
use common::{assets, bin};

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn serve_under_64_clients_and_500_requests_stays_healthy_and_bounded() {
    let mut child = bin()
        .args([
            "serve", "--port", "0", "--queue", "32", "--ctx", "512", "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    let base = line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches("/v1")
        .to_string();
    let rss_idle = vm_hwm_kib(pid);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let t0 = std::time::Instant::now();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (client, base) = (client.clone(), base.clone());
            let (next, answered, refused) = (next.clone(), answered.clone(), refused.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= 500 {
                        break;
                    }
                    let body = serde_json::json!({
                        "model": "any",
                        "messages": [{"role": "user", "content": format!("Name a colour ({i}).")}],
                        "max_tokens": 8 + (i % 3) * 4,
                        "temperature": 0.7,
                        "seed": i,
                    });
                    let r = client
                        .post(format!("{base}/v1/chat/completions"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("request {i}: {e}"));
                    match r.status().as_u16() {
                        200 => {
                            let v: serde_json::Value = r.json().await.unwrap();
                            assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        429 => {
                            // a polite client: this request is refused; wait as asked before
                            // sending the next one
                            let after: f64 = r.headers()["retry-after"]
                                .to_str()
                                .unwrap()
                                .parse()
                                .unwrap();
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_secs_f64(after)).await;
                        }
                        s => panic!(
                            "request {i}: HTTP {s}: {}",
                            r.text().await.unwrap_or_default()
                        ),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let wall = t0.elapsed().as_secs_f64();
    let (a, r) = (
        answered.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
    );
    assert_eq!(a + r, 500, "every request answered or refused");
    // the first full queue is always served; how many more depends on the machine's speed
    // while the clients back off, so no higher bound is asserted
    assert!(a >= 32, "only {a} answered");

    // still healthy, and answering
    let health: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pending"], 0);
    let peak = vm_hwm_kib(pid);
    eprintln!(
        "serve load: 500 requests from 64 clients in {wall:.1} s: {a} answered, {r} refused (429); \
         peak RSS {:.0} MiB (after load), {:.0} MiB (idle)",
        peak as f64 / 1024.0,
        rss_idle as f64 / 1024.0
    );
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB over 1 GiB");

    // the Python `openai` client: streamed chat and legacy completions equal the plain ones
    let v1 = format!("{base}/v1");
    common::python_check(
        "openai_stream.py",
        "openai",
        &[v1.as_ref()],
        "the openai client against serve",
    );

    // SIGTERM: graceful stop, exit 0
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = bin().args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn one_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {stderr}");
    lines[0].to_string()
}

#[test]
fn complete_answers_caches_and_reports_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("run");
    let rd = rd.to_str().unwrap();
    let args = [
        "--run-dir",
        rd,
        "llm",
        "complete",
        "What is 2+2? Answer with a number.",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--ctx",
        "256",
        "--parallel",
        "1",
    ];
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    assert!(out.contains('4'), "{out}");
    assert!(!err.contains("from the cache"), "{err}");
    let (ok, out2, err) = run(&args);
    assert!(ok && out2 == out, "{err}");
    assert!(err.contains("from the cache"), "{err}");
    let (ok, _, err) = run(&[&args[..], &["--no-cache"]].concat());
    assert!(ok && !err.contains("from the cache"), "{err}");

    // structured output from the command line
    let (ok, out, err) = run(&[
        "--run-dir",
        rd,
        "llm",
        "complete",
        "Describe a cat.",
        "--json-schema",
        r#"{"type":"object","properties":{"name":{"type":"string","maxLength":20},"legs":{"type":"integer"}},"required":["name","legs"]}"#,
        "--seed",
        "1",
        "--ctx",
        "256",
        "--parallel",
        "1",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["legs"].is_i64() && v["name"].is_string(), "{v}");

    // bad input: one clear line and a non-zero exit each
    let missing = dir.path().join("missing.gguf");
    let (ok, _, err) = run(&[
        "llm",
        "complete",
        "hi",
        "--model",
        missing.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(one_error_line(&err).contains("missing.gguf"), "{err}");

    let trunc = dir.path().join("trunc.gguf");
    let bytes = std::fs::read(assets().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = run(&[
        "llm",
        "complete",
        "hi",
        "--weights",
        "keep",
        "--model",
        trunc.to_str().unwrap(),
    ]);
    assert!(!ok);
    let line = one_error_line(&err);
    assert!(
        line.contains("trunc.gguf") && line.contains("file bounds"),
        "{line}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let (ok, _, err) = run(&[
        "llm",
        "complete",
        "hi",
        "--endpoint",
        &url,
        "--retries",
        "1",
        "--no-cache",
    ]);
    assert!(!ok);
    let line = one_error_line(&err);
    assert!(
        line.contains(&url) && line.contains("cannot connect"),
        "{line}"
    );

    let (ok, _, err) = run(&[
        "llm",
        "complete",
        "hi",
        "--endpoint",
        &url,
        "--api-key-env",
        "PW_SURELY_UNSET_VAR",
        "--no-cache",
    ]);
    assert!(!ok);
    assert!(
        one_error_line(&err).contains("$PW_SURELY_UNSET_VAR"),
        "{err}"
    );
}

#[test]
fn a_gguf_with_corrupt_metadata_is_refused_in_exactly_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::assets().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut head = vec![0u8; 1 << 20];
    use std::io::Read;
    std::fs::File::open(&src)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    head[16..24].copy_from_slice(&0xFFFF_FFFFu64.to_le_bytes()); // n_kv
    let bad = dir.path().join("badkv.gguf");
    std::fs::write(&bad, &head).unwrap();
    let out = common::bin()
        .args(["--quiet", "--run-dir"])
        .arg(dir.path().join("run"))
        .args(["llm", "complete", "--model"])
        .arg(&bad)
        .arg("hi")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: model ") && err.contains("badkv.gguf"),
        "{err}"
    );
}

/// Schemas llama.cpp cannot use end in one line and exit 1, quickly: bounds that would make
/// its grammar parser loop for ever, a dangling `$ref`, and a grammar its parser refuses
/// (which it would otherwise print whole to stderr).
#[test]
fn a_refused_schema_is_one_line_never_a_hang_or_a_grammar_dump() {
    for (schema, says) in [
        (
            r#"{"type":"string","pattern":"^[a-z]{2,1}$"}"#,
            "invalid repetition count range",
        ),
        (
            r#"{"type":"array","items":{"type":"string","minLength":5,"maxLength":2}}"#,
            "items: minLength 5 exceeds maxLength 2",
        ),
        (
            r##"{"type":"object","properties":{"a":{"$ref":"#/nope"}}}"##,
            "properties.a.$ref",
        ),
        (
            r#"{"type":"string","pattern":"^a{3000}$"}"#,
            "llama.cpp refused the grammar made from it: number of repetitions exceeds",
        ),
    ] {
        let mut child = bin()
            .args([
                "llm",
                "complete",
                "hi",
                "--no-cache",
                "--max-tokens",
                "4",
                "--ctx",
                "256",
            ])
            .args(["--parallel", "1", "--json-schema", schema])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("{schema}: still running after 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{schema}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{schema}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(says),
            "{schema}: {err}"
        );
    }
}
