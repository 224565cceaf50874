//! `paperworks videoprism embed | train | probe` on the shipped clips and on videos this test
//! writes (YUV4MPEG2, which FFmpeg reads without an encoder): outputs a user can open, the
//! released .npz layout as a checkpoint, and one-line errors for bad videos and checkpoints.

mod common;

use common::{assets, bin};
use pw_nn::checkpoint::load_tensors;
use pw_nn::vivit::VivitConfig;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `frames` frames of `size x size` with a bright square moving `dx` pixels per frame.
fn y4m(path: &Path, size: usize, frames: usize, dx: isize) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "YUV4MPEG2 W{size} H{size} F25:1 Ip A1:1 C420jpeg").unwrap();
    for t in 0..frames {
        f.write_all(b"FRAME\n").unwrap();
        let mut y = vec![40u8; size * size];
        let x0 = (size as isize / 2 + dx * t as isize - 4).clamp(0, size as isize - 8) as usize;
        for r in 12..20 {
            for c in x0..x0 + 8 {
                y[r * size + c] = 220;
            }
        }
        f.write_all(&y).unwrap();
        f.write_all(&vec![128u8; 2 * (size / 2) * (size / 2)])
            .unwrap();
    }
}

fn clip(name: &str) -> Option<PathBuf> {
    let p = assets().join("video").join(name);
    if p.exists() {
        Some(p)
    } else {
        println!("skipped: {} missing (run scripts/setup.sh)", p.display());
        None
    }
}

fn fails_with(args: &[&str], needle: &str) {
    let out = bin().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "{args:?}: {err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "one error line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn embed_writes_safetensors_and_an_index() {
    let Some(bikes) = clip("bikes.mp4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("emb.safetensors");
    let o = bin()
        .args(["videoprism", "embed", "--random-init", "--tokens", "--out"])
        .arg(&out)
        .arg(&bikes)
        .args(["--run-dir"])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("embedded 1 videos"), "{stdout}");
    let t = load_tensors(&out).unwrap();
    assert_eq!(t["global"].0, vec![1, 64]);
    assert_eq!(t["tokens"].0, vec![1, 128, 64]);
    let norm: f32 = t["global"].1.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-4,
        "global embeddings are L2-normalised: {norm}"
    );
    let index = std::fs::read_to_string(out.with_extension("jsonl")).unwrap();
    assert_eq!(index.lines().count(), 1);
    assert!(
        index.contains("\"frame_indices\":[15,46,78,109,140,171,203,234]"),
        "{index}"
    );
}

#[test]
fn a_released_layout_checkpoint_embeds_and_bad_ones_are_named() {
    let Some(bikes) = clip("bikes.mp4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = VivitConfig {
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
    let mut arrays = pw_videoprism::npz::random_official(&cfg, 1);
    let ck = dir.path().join("flax_tiny_repeated.npz");
    pw_videoprism::npz::write_npz(&ck, &arrays).unwrap();
    let out = dir.path().join("e.safetensors");
    let o = bin()
        .args(["videoprism", "embed", "--checkpoint"])
        .arg(&ck)
        .arg("--out")
        .arg(&out)
        .arg(&bikes)
        .arg("--run-dir")
        .arg(dir.path().join("r1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(load_tensors(&out).unwrap()["global"].0, vec![1, 24]);

    arrays.remove("spatial_pos_emb/emb_var");
    let bad = dir.path().join("missing.npz");
    pw_videoprism::npz::write_npz(&bad, &arrays).unwrap();
    let (b, v) = (bad.display().to_string(), bikes.display().to_string());
    fails_with(
        &["videoprism", "embed", "--checkpoint", &b, &v],
        "spatial_pos_emb/emb_var is missing",
    );
}

#[test]
fn bad_videos_fail_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, vec![7u8; 5000]).unwrap();
    let zero = dir.path().join("zero.y4m");
    y4m(&zero, 32, 0, 1);
    let short = dir.path().join("short.y4m");
    y4m(&short, 32, 3, 1);
    let run = dir.path().join("run").display().to_string();
    for (p, needle) in [
        (&garbage, "garbage.mp4: not a video FFmpeg can read"),
        (&zero, "zero.y4m"),
        (
            &short,
            "short.y4m: has 3 frames, fewer than the 8 requested",
        ),
        (&dir.path().join("nope.mp4"), "nope.mp4: no such file"),
    ] {
        fails_with(
            &[
                "videoprism",
                "embed",
                "--random-init",
                "--run-dir",
                &run,
                &p.display().to_string(),
            ],
            needle,
        );
    }
}

#[test]
fn train_then_probe_on_user_videos() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    let mut labels = String::new();
    for i in 0..12 {
        let dx = if i % 2 == 0 { 2 } else { -2 };
        let name = format!("v{i}.y4m");
        y4m(&dir.path().join(&name), 32, 10, dx);
        let word = if dx > 0 { "right" } else { "left" };
        pairs.push_str(&format!(
            "{{\"video\": \"{name}\", \"caption\": \"a square moves {word}\"}}\n"
        ));
        let split = ["train", "train", "train", "train", "val", "test"][i % 6];
        labels.push_str(&format!(
            "{{\"video\": \"{name}\", \"label\": \"{word}\", \"split\": \"{split}\"}}\n"
        ));
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(dir.path().join("labels.jsonl"), labels).unwrap();
    let model = dir.path().join("model");
    let o = bin()
        .args([
            "videoprism",
            "train",
            "--stage1-steps",
            "3",
            "--stage2-steps",
            "3",
            "--batch",
            "4",
            "--data",
        ])
        .arg(dir.path().join("pairs.jsonl"))
        .arg("--run-dir")
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "model.json",
        "tokenizer.json",
        "stage1.safetensors",
        "stage2.safetensors",
    ] {
        assert!(model.join(f).exists(), "{f}");
    }
    let o = bin()
        .args(["videoprism", "probe", "--steps", "4", "--data"])
        .arg(dir.path().join("labels.jsonl"))
        .arg("--checkpoint")
        .arg(&model)
        .arg("--run-dir")
        .arg(dir.path().join("probe"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("probe on 2 classes (train/val/test [8, 2, 2])"),
        "{stdout}"
    );
    assert!(dir.path().join("probe/probe.json").exists());
    // A caption file pointing at a missing video is one line naming it.
    std::fs::write(dir.path().join("bad.jsonl"), "{\"video\": \"gone.mp4\", \"caption\": \"x\"}\n{\"video\": \"v0.y4m\", \"caption\": \"y\"}\n").unwrap();
    let bad = dir.path().join("bad.jsonl").display().to_string();
    let run = dir.path().join("m2").display().to_string();
    fails_with(
        &["videoprism", "train", "--data", &bad, "--run-dir", &run],
        "gone.mp4: no such file",
    );
}
