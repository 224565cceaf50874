// Records, for run manifests, the versions of the dependencies that decide a run's numbers,
// read from the workspace's Cargo.lock, so a manifest never states a version by hand. (The git
// revision is the binary's: crates/paperworks/build.rs, so a commit does not rebuild pw-core
// and everything above it.)
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
