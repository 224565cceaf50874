// The git revision the binary is built from (or "unknown" outside a checkout), for `--version`
// and run manifests. Only this crate reruns it when HEAD moves.
use std::path::Path;

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
}
