//! What the CLI test binaries share: the binary with the assets set, a loopback server for
//! fake OpenAI-compatible endpoints, and a Python that has a given module (with the
//! interoperability scripts of `tests/interop/` it runs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The assets scripts/setup.sh fetched (the workspace's `assets/`).
pub fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

/// The `paperworks` binary of this build, with the assets set and logging at its default.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_paperworks"));
    c.env("PAPERWORKS_ASSETS", assets())
        .env_remove("PAPERWORKS_LOG");
    c
}

/// Serves `app` on a free loopback port from its own runtime (kept alive by the caller).
pub fn serve_on_loopback(app: axum::Router) -> (tokio::runtime::Runtime, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, port)
}

/// A Python that imports `module`: the one `env` names, else `python3`; `None` when neither
/// has it (the test then says it skipped that check).
pub fn python_with(module: &str, env: &str) -> Option<PathBuf> {
    [
        std::env::var_os(env).map(PathBuf::from),
        Some("python3".into()),
    ]
    .into_iter()
    .flatten()
    .find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs `tests/interop/<script>` with `args` under a Python that imports `modules` (`PW_PYTHON`,
/// else python3) and returns what it printed; `None`, with the reason printed, when there is no
/// such Python. A script that fails fails the test, with its stderr.
pub fn python_check(
    script: &str,
    modules: &str,
    args: &[&std::ffi::OsStr],
    what: &str,
) -> Option<String> {
    let Some(py) = python_with(modules, "PW_PYTHON") else {
        println!("skipped {what}: no Python that imports {modules} (set PW_PYTHON)");
        return None;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let out = Command::new(&py)
        .arg(&path)
        .args(args)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let short: String = line.chars().take(240).collect();
        println!("{what}: {short}");
    }
    Some(stdout)
}
