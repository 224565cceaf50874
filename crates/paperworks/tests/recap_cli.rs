//! `paperworks recap caption | train | eval | videos` end to end: bikes.mp4 captioned through a
//! fake vision endpoint and a fake text endpoint (killed mid-run and resumed: every clip
//! captioned once, nothing lost), the JSON and WebVTT outputs parsed (WebVTT by webvtt-py when
//! Python has it), training on written records and features, and one-line errors.

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::bin;

static VISION_CALLS: AtomicUsize = AtomicUsize::new(0);
static TEXT_CALLS: AtomicUsize = AtomicUsize::new(0);

fn reply(text: String) -> axum::Json<Value> {
    axum::Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 8}
    }))
}

/// A "vision model" that says how many PNG frames it saw (and refuses a request without).
async fn vision(body: String) -> (axum::http::StatusCode, axum::Json<Value>) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    let req: Value = serde_json::from_str(&body).unwrap();
    let parts = req["messages"][0]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let frames = parts
        .iter()
        .filter(|p| {
            p["type"] == "image_url"
                && p["image_url"]["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("data:image/png;base64,"))
        })
        .count();
    if frames == 0 {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            reply("no image".into()),
        );
    }
    let n = VISION_CALLS.fetch_add(1, Ordering::SeqCst);
    (
        axum::http::StatusCode::OK,
        reply(format!(
            "a cyclist rides past, seen in {frames} frames (call {n})"
        )),
    )
}

/// A "text model": a segment description or a summary, by its system message.
async fn text(body: String) -> axum::Json<Value> {
    TEXT_CALLS.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_str(&body).unwrap();
    let system = req["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if system.contains("summarise") {
        reply("cyclists ride along a road for the whole video.".into())
    } else {
        reply("several cyclists ride past the camera.".into())
    }
}

fn bikes() -> PathBuf {
    common::assets().join("video/bikes.mp4")
}

fn one_line_error(o: &std::process::Output) -> String {
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

fn ledger_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn caption_resumes_after_a_kill_and_writes_json_and_webvtt() {
    if !bikes().exists() {
        println!(
            "skipped: {} is missing (run scripts/setup.sh)",
            bikes().display()
        );
        return;
    }
    let (_rt_v, pv) =
        common::serve_on_loopback(Router::new().route("/v1/chat/completions", post(vision)));
    let (_rt_t, pt) =
        common::serve_on_loopback(Router::new().route("/v1/chat/completions", post(text)));
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args_with = |b: &mut Command, frames: &str| {
        b.args([
            "--quiet",
            "--run-dir",
            run.to_str().unwrap(),
            "recap",
            "caption",
        ])
        .arg(bikes())
        .args(["--clip-endpoint", &format!("http://127.0.0.1:{pv}/v1")])
        .args(["--llm-endpoint", &format!("http://127.0.0.1:{pt}/v1")])
        .args([
            "--clip-seconds",
            "1",
            "--frames",
            frames,
            "--size",
            "64",
            "--segment-clips",
            "3",
        ]);
    };
    let args = |b: &mut Command| args_with(b, "2");
    // Killed once some clips are in the ledger.
    let mut b = bin();
    args(&mut b);
    let mut child = b
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ledger = run.join("clips.jsonl");
    let t0 = std::time::Instant::now();
    while ledger_ids(&ledger).len() < 2 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = ledger_ids(&ledger);
    assert!(!before.is_empty(), "nothing captioned before the kill");

    let mut b = bin();
    args(&mut b);
    let o = b.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("from before") && stdout.contains("clips.vtt"),
        "{stdout}"
    );

    let h: Value =
        serde_json::from_slice(&std::fs::read(run.join("hierarchy.json")).unwrap()).unwrap();
    let duration = h["duration_s"].as_f64().unwrap();
    let clips = h["clips"].as_array().unwrap();
    assert_eq!(
        clips.len(),
        duration.floor() as usize,
        "one clip per second of {duration} s"
    );
    assert!(clips.len() >= 4);
    // Every clip once in the ledger; the earlier answers kept.
    let ids = ledger_ids(&ledger);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), clips.len());
    assert_eq!(unique.len(), ids.len(), "a clip was captioned twice");
    for id in &before {
        assert!(ids.contains(id));
    }
    // At most one chunk (4 requests) in flight at the kill was asked again.
    let calls = VISION_CALLS.load(Ordering::SeqCst);
    assert!(
        calls >= clips.len() && calls <= clips.len() + 4,
        "{calls} vision calls for {} clips",
        clips.len()
    );
    for (i, c) in clips.iter().enumerate() {
        assert_eq!(c["start"].as_f64().unwrap(), i as f64);
        assert!(c["text"].as_str().unwrap().contains("2 frames"), "{c}");
    }
    assert_eq!(
        h["segments"].as_array().unwrap().len(),
        clips.len().div_ceil(3)
    );
    assert!(h["summary"].as_str().unwrap().contains("cyclists"));

    // Other sizes are refused instead of resuming from these captions.
    let mut b = bin();
    args_with(&mut b, "3");
    let o = b.output().unwrap();
    let err = one_line_error(&o);
    assert!(
        err.contains("frames: 2 -> 3") && err.contains("--fresh"),
        "{err}"
    );
    assert_eq!(VISION_CALLS.load(Ordering::SeqCst), calls, "nothing asked");

    let vtt = std::fs::read_to_string(run.join("clips.vtt")).unwrap();
    assert!(
        vtt.starts_with("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\n"),
        "{vtt}"
    );
    match common::python_with("webvtt", "PW_PYTHON") {
        Some(py) => {
            let o = Command::new(py)
                .args([
                    "-c",
                    "import sys, webvtt; cues = webvtt.read(sys.argv[1]); print(len(cues)); print(cues[1].start, cues[1].end, cues[1].text)",
                ])
                .arg(run.join("clips.vtt"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let out = String::from_utf8_lossy(&o.stdout);
            let mut lines = out.lines();
            assert_eq!(lines.next().unwrap().parse::<usize>().unwrap(), clips.len());
            assert!(
                lines
                    .next()
                    .unwrap()
                    .starts_with("00:00:01.000 00:00:02.000 a cyclist"),
                "{out}"
            );
        }
        None => println!(
            "skipped the webvtt-py check: no Python with webvtt (set PW_PYTHON); checked the cue layout"
        ),
    }
}

#[test]
fn bad_videos_and_records_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let caption = |video: &Path, extra: &[&str]| {
        bin()
            .args([
                "--quiet",
                "--run-dir",
                run.to_str().unwrap(),
                "recap",
                "caption",
            ])
            .arg(video)
            .args([
                "--clip-endpoint",
                "http://127.0.0.1:9/v1",
                "--llm-endpoint",
                "http://127.0.0.1:9/v1",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    if bikes().exists() {
        let e = one_line_error(&caption(&bikes(), &["--clip-seconds", "100000"]));
        assert!(
            e.contains("bikes.mp4") && e.contains("shorter than one clip"),
            "{e}"
        );
    }
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, b"this is not a video at all").unwrap();
    let e = one_line_error(&caption(&garbage, &[]));
    assert!(e.contains("garbage.mp4"), "{e}");
    let e = one_line_error(&caption(&dir.path().join("missing.mp4"), &[]));
    assert!(e.contains("missing.mp4"), "{e}");

    let bad = dir.path().join("hcap.jsonl");
    std::fs::write(&bad, "{\"video_uid\": \"v1\", \"start\": 0, \"end\": 4, \"caption\": \"x y\"}\n{\"video_uid\": \"v1\", \"start\": 4, \"end\": 8, \"clip_captions\": [\"a\"]}\n").unwrap();
    let o = bin()
        .args(["recap", "eval", "--pred"])
        .arg(&bad)
        .arg("--ref")
        .arg(&bad)
        .output()
        .unwrap();
    let e = one_line_error(&o);
    assert!(
        e.contains("hcap.jsonl") && e.contains("line 2") && e.contains("description"),
        "{e}"
    );
}

#[test]
fn videos_train_and_eval_on_written_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hcap.json");
    let o = bin()
        .args(["--seed", "3", "recap", "videos", "--n", "12", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let h: pw_recap::data::Hcap = serde_json::from_slice(&std::fs::read(&data).unwrap()).unwrap();
    assert_eq!(
        (h.clips.len(), h.segments.len(), h.videos.len()),
        (144, 36, 12)
    );
    // A reference scored against itself.
    let o = bin()
        .args(["recap", "eval", "--pred"])
        .arg(&data)
        .arg("--ref")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let summary = out.lines().find(|l| l.starts_with("summary")).unwrap();
    let rouge: f64 = summary.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!((rouge - 100.0).abs() < 1e-6, "{out}");

    // Features written the way users bring theirs: one file per video.
    let feats = dir.path().join("features");
    std::fs::create_dir_all(&feats).unwrap();
    for (k, uid) in h.video_uids().iter().enumerate() {
        let f = pw_recap::features::VideoFeatures {
            d: 8,
            clip: (0..12 * 8)
                .map(|i| ((i * 7 + k) % 13) as f32 / 13.0)
                .collect(),
            frames: Vec::new(),
            dense_rows: 0,
        };
        f.save(&feats.join(format!("{uid}.safetensors"))).unwrap();
    }
    let out_dir = dir.path().join("model");
    let o = bin()
        .args(["--quiet", "recap", "train", "--data"])
        .arg(&data)
        .arg("--features")
        .arg(&feats)
        .arg("--out")
        .arg(&out_dir)
        .args(["--steps", "3,3,3", "--batch", "4", "--evals", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("trained on 10 videos, validated on 2"),
        "{out}"
    );
    for f in [
        "clip.safetensors",
        "segment.safetensors",
        "video.safetensors",
        "vocab.json",
    ] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
    let pred = out_dir.join("predictions-validation.json");
    let o = bin()
        .args(["recap", "eval", "--pred"])
        .arg(&pred)
        .arg("--ref")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Only the 2 validation videos were predicted: the others' references count as missing.
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let missing = |level: &str| -> usize {
        let l = out.lines().find(|l| l.starts_with(level)).unwrap();
        l.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert_eq!(
        (missing("clip"), missing("segment"), missing("summary")),
        (120, 30, 10),
        "{out}"
    );

    // A features folder without a video's file.
    std::fs::remove_file(feats.join(format!("{}.safetensors", h.video_uids()[0]))).unwrap();
    let o = bin()
        .args(["--quiet", "--fresh", "recap", "train", "--data"])
        .arg(&data)
        .arg("--features")
        .arg(&feats)
        .arg("--out")
        .arg(dir.path().join("model2"))
        .output()
        .unwrap();
    let e = one_line_error(&o);
    assert!(e.contains("no features for video"), "{e}");
}

#[test]
fn features_of_a_real_video_load_for_training() {
    if !bikes().exists() {
        println!(
            "skipped: {} is missing (run scripts/setup.sh)",
            bikes().display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A random encoder in the released .npz layout (4 frames, 4x4 patches of 6 px).
    let cfg = pw_nn::vivit::VivitConfig {
        patch: 6,
        d_model: 24,
        n_heads: 3,
        spatial_layers: 1,
        temporal_layers: 1,
        mlp_dim: 48,
        grid: (4, 4),
        frames: 4,
        logit_cap: 50.0,
    };
    let npz = dir.path().join("enc.npz");
    pw_videoprism::npz::write_npz(&npz, &pw_videoprism::npz::random_official(&cfg, 1)).unwrap();
    let out = dir.path().join("feats");
    let o = bin()
        .args(["--quiet", "recap", "features"])
        .arg(bikes())
        .arg("--encoder")
        .arg(&npz)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("bikes.mp4: 2 clips of 4 s"), "{stdout}");
    let f = pw_recap::features::VideoFeatures::load(&out.join("bikes.safetensors")).unwrap();
    assert_eq!((f.clips(), f.d, f.dense_rows), (2, 24, 2 * 16));
    assert!(f.clip.iter().chain(&f.frames).all(|v| v.is_finite()));
    let o = bin()
        .args(["--quiet", "recap", "features"])
        .arg(bikes())
        .arg("--encoder")
        .arg(&npz)
        .args(["--clip-seconds", "60", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let e = one_line_error(&o);
    assert!(
        e.contains("bikes.mp4") && e.contains("shorter than one clip"),
        "{e}"
    );
}
