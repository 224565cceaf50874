//! `paperworks madbench scenes | build | run | judge | report` end to end: 200 prompts through
//! a fake vision endpoint that insists on image parts (killed three times and resumed: no
//! loss, no duplicate), the exact judge and the report, and clear one-line errors.

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::bin;

static WITHOUT_IMAGE: AtomicUsize = AtomicUsize::new(0);

/// A "vision model" that denies every question's premise, and refuses (400)
/// a request whose user message has no PNG image part as a data URI.
async fn chat(body: String) -> (axum::http::StatusCode, axum::Json<Value>) {
    tokio::time::sleep(Duration::from_millis(60)).await;
    let req: Value = serde_json::from_str(&body).unwrap();
    let parts = req["messages"][0]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has_image = parts.iter().any(|p| {
        p["type"] == "image_url"
            && p["image_url"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("data:image/png;base64,"))
    });
    if !has_image {
        WITHOUT_IMAGE.fetch_add(1, Ordering::SeqCst);
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "no image part"}})),
        );
    }
    // "No" and the question's last line back: a denial that names what was asked about.
    let text: String = parts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let question = text.lines().last().unwrap_or("").to_string();
    (
        axum::http::StatusCode::OK,
        axum::Json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": format!("No, not that. {question}")}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 8}
        })),
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn one_line_error(o: &std::process::Output) -> String {
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn two_hundred_prompts_through_a_vision_endpoint_survive_kills() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sc = d.join("scenes");
    let o = bin()
        .args([
            "madbench",
            "scenes",
            "--out",
            sc.to_str().unwrap(),
            "--n",
            "30",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bench = d.join("bench.jsonl");
    let o = bin()
        .args([
            "madbench",
            "build",
            "--coco",
            sc.join("instances.json").to_str().unwrap(),
            "--images",
            sc.join("images").to_str().unwrap(),
            "--captions",
            sc.join("captions.json").to_str().unwrap(),
            "--out",
            bench.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let items = lines(&bench);
    assert!(items.len() >= 50, "{}", items.len());

    let app = Router::new().route("/v1/chat/completions", post(chat));
    let (_rt, port) = common::serve_on_loopback(app);
    let rd = d.join("run");
    let args = |c: &mut std::process::Command| {
        c.args([
            "--quiet",
            "--run-dir",
            rd.to_str().unwrap(),
            "madbench",
            "run",
            "--bench",
            bench.to_str().unwrap(),
            "--limit",
            "50",
            "--concurrency",
            "2",
            "--endpoint",
            &format!("http://127.0.0.1:{port}/v1"),
        ]);
    };
    for kill_after in [600u64, 900, 700] {
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
    assert!(stdout.contains("50 items x 4 variants"), "{stdout}");
    let before: usize = stdout
        .split_once(" answered (")
        .and_then(|(_, r)| r.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap();
    assert!(
        before > 0 && before < 200,
        "the kills landed mid-run: {stdout}"
    );
    assert_eq!(
        WITHOUT_IMAGE.load(Ordering::SeqCst),
        0,
        "a request came without its image"
    );
    let answers = lines(&rd.join("answers.jsonl"));
    let ids: HashSet<&str> = answers.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), answers.len(), "duplicated answers");
    assert_eq!(ids.len(), 200, "every prompt answered once");
    assert!(lines(&rd.join("answer-rejects.jsonl")).is_empty());
    let results = lines(&rd.join("results.jsonl"));
    assert_eq!(results.len(), 200);
    for r in &results {
        assert!(r["question_id"].is_string() && r["prompt"].is_string() && r["text"].is_string());
    }

    // The exact judge: a model that always denies is right on deceptive prompts of the
    // absence kind and wrong on neutral questions that want a count or a colour.
    let o = bin()
        .args([
            "madbench",
            "judge",
            "--bench",
            bench.to_str().unwrap(),
            "--results",
            rd.join("results.jsonl").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let judged = lines(&rd.join("judged.jsonl"));
    assert_eq!(judged.len(), 200);
    let absent_deceptive = judged
        .iter()
        .filter(|j| j["category"] == "non-existent_object" && j["variant"] == "deceptive")
        .collect::<Vec<_>>();
    assert!(!absent_deceptive.is_empty());
    assert!(absent_deceptive.iter().all(|j| j["exact"] == "Correct"));
    assert!(
        judged
            .iter()
            .filter(|j| j["category"] == "count_of_object" && j["variant"] == "neutral")
            .all(|j| j["exact"] == "Incorrect")
    );
    let out = d.join("report");
    let o = bin()
        .args([
            "madbench",
            "report",
            rd.join("judged.jsonl").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("non-existent_object") && md.contains("deceptive + remedy"),
        "{md}"
    );
    assert!(out.join("report.html").exists());
}

#[test]
fn bad_inputs_get_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A missing bench file.
    let o = bin()
        .args([
            "madbench",
            "run",
            "--bench",
            d.join("nope.jsonl").to_str().unwrap(),
            "--tiny",
            "x",
        ])
        .output()
        .unwrap();
    assert!(one_line_error(&o).contains("nope.jsonl"));
    // A COCO file with an unknown category id.
    let sc = d.join("scenes");
    assert!(
        bin()
            .args([
                "madbench",
                "scenes",
                "--out",
                sc.to_str().unwrap(),
                "--n",
                "3"
            ])
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(sc.join("instances.json")).unwrap()).unwrap();
    v["annotations"][0]["category_id"] = json!(77);
    let bad = d.join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&v).unwrap()).unwrap();
    let build = |coco: &Path| {
        bin()
            .args([
                "madbench",
                "build",
                "--coco",
                coco.to_str().unwrap(),
                "--images",
                sc.join("images").to_str().unwrap(),
                "--out",
                d.join("b.jsonl").to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let e = one_line_error(&build(&bad));
    assert!(
        e.contains("bad.json") && e.contains("unknown category id 77"),
        "{e}"
    );
    // A missing image.
    std::fs::remove_file(sc.join("images/000002.png")).unwrap();
    let e = one_line_error(&build(&sc.join("instances.json")));
    assert!(e.contains("000002.png") && e.contains("not found"), "{e}");
    assert!(!d.join("b.jsonl").exists(), "nothing written on failure");
    // A vision model that is not there, and no model that can see.
    std::fs::write(d.join("b.jsonl"), "").unwrap();
    let e = one_line_error(
        &bin()
            .args([
                "madbench",
                "run",
                "--bench",
                d.join("b.jsonl").to_str().unwrap(),
                "--model",
                "m.gguf",
                "--mmproj",
                "p.gguf",
            ])
            .output()
            .unwrap(),
    );
    assert!(e.contains("p.gguf") && e.contains("mmproj"), "{e}");
    let e = one_line_error(
        &bin()
            .args([
                "madbench",
                "run",
                "--bench",
                d.join("b.jsonl").to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    assert!(e.contains("--endpoint"), "{e}");
    // A tiny VLM folder that is not one.
    let e = one_line_error(
        &bin()
            .args([
                "madbench",
                "run",
                "--bench",
                d.join("b.jsonl").to_str().unwrap(),
                "--tiny",
                d.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    assert!(e.contains("not a tiny VLM folder"), "{e}");
}
