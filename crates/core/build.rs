// Records, for run manifests, the git revision (or "unknown" outside a checkout) and the
// versions of the dependencies that decide a run's numbers, read from the workspace's
// Cargo.lock, so a manifest never states a version by hand.
use std::path::Path;

/// The dependencies whose versions a manifest records.
const RECORDED: &[&str] = &[
    "burn",
    "llama-cpp-2",
    "parquet",
    "redb",
    "tree-sitter",
    "video-rs",
    "ffmpeg-next",
];

fn main() {
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PW_GIT_REVISION={rev}");
    for p in ["../../.git/HEAD", "../../.git/refs/heads"] {
        if Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let lock = Path::new("../../Cargo.lock");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut found = Vec::new();
    // Cargo.lock is a list of [[package]] tables with `name = "..."` then `version = "..."`.
    let mut name: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            name = None;
        } else if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), &name)
            && RECORDED.contains(&n.as_str())
        {
            found.push(format!("{n}={}", v.trim_matches('"')));
        }
    }
    found.sort();
    found.dedup();
    println!("cargo:rustc-env=PW_DEP_VERSIONS={}", found.join(";"));
}
