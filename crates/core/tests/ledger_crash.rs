//! Crash test of the ledger: a child process appending records is SIGKILLed at 20 random
//! moments and resumed each time; the final ledger must hold exactly the expected ids, none
//! twice, each with the payload its id determines.
//!
//! The child is this same test binary re-run on the ignored test `ledger_writer_child` with
//! `PW_LEDGER_CHILD` naming the ledger file.

use pw_core::Ledger;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

const N: usize = 4000;

fn payload(i: usize) -> String {
    // Variable-length payloads make torn writes land at varied offsets.
    format!("{:x}", i * 2654435761 % 1_000_003).repeat(1 + i % 7)
}

#[test]
#[ignore = "child process of ledger_survives_20_sigkills_without_loss_or_duplication"]
fn ledger_writer_child() {
    let path = std::env::var("PW_LEDGER_CHILD").expect("run by the crash test only");
    let mut ledger = Ledger::open(&path).unwrap().with_batch_size(8);
    for i in 0..N {
        let id = format!("rec-{i}");
        if ledger.contains(&id) {
            continue;
        }
        ledger
            .append(&id, &serde_json::json!({ "i": i, "payload": payload(i) }))
            .unwrap();
        // Some work per item, so that kills land at every stage of the loop.
        std::thread::sleep(Duration::from_micros(250));
    }
    ledger.flush().unwrap();
}

fn spawn_child(path: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "ledger_writer_child",
            "--test-threads=1",
            "--quiet",
        ])
        .env("PW_LEDGER_CHILD", path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn ledger_survives_20_sigkills_without_loss_or_duplication() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stage.jsonl");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut progress = Vec::new();
    for _ in 0..20 {
        let mut child = spawn_child(&path);
        std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let n = std::fs::read_to_string(&path)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        progress.push(n);
    }
    // Resume to completion.
    let status = spawn_child(&path).wait().unwrap();
    assert!(status.success(), "the final resume failed");

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        let i = v["i"].as_u64().unwrap() as usize;
        assert_eq!(v["id"], format!("rec-{i}"));
        assert_eq!(v["payload"], payload(i), "payload of rec-{i}");
        assert!(seen.insert(i), "rec-{i} appears twice");
    }
    assert_eq!(seen.len(), N, "lost records");
    // The kills must have interrupted real progress, not only an empty start or a finished run.
    let interrupted = progress.iter().filter(|&&n| n > 0 && n < N).count();
    eprintln!("records after each kill: {progress:?}");
    assert!(
        interrupted >= 15,
        "too few kills landed mid-run: {progress:?}"
    );
}
