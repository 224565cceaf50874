// The git revision the binary is built from (or "unknown" outside a checkout), for `--version`
// and run manifests, with "-dirty" when tracked files differ from HEAD or untracked,
// non-ignored files exist: a run made from uncommitted code must not claim a commit's name.
// It reruns when HEAD moves, the index changes or a source file of the workspace changes.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let rev = match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "unknown".to_string(),
        Some(rev) => match git(&["status", "--porcelain"]) {
            Some(s) if !s.is_empty() => format!("{rev}-dirty"),
            _ => rev,
        },
    };
    println!("cargo:rustc-env=PW_GIT_REVISION={rev}");
    for p in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/index",
        "../../crates",
        "../../scripts",
        "../../Cargo.toml",
        "../../Cargo.lock",
    ] {
        if Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
