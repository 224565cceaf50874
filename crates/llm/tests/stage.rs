//! The resumable generation stage with a scripted generator: retries on bad output, rejects
//! with reasons, resume without repeating work, shards, the cache after a lost ledger, and an
//! endpoint failure that stops the stage without rejecting anything, a refused item that is
//! rejected while the rest go on.

use pw_core::{Ledger, Shard};
use pw_llm::stage::{RejectRecord, StageItem, StageOptions, StageRecord, default_check, run_stage};
use pw_llm::{
    BatchResult, Cache, Cached, Choice, Completion, GenParams, Generator, LlmError, Request, Usage,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Answers `{"n": i}` for item `i`, but: items with i % 3 == 0 give broken JSON on their first
/// attempt, item 29 always does, and item 7 gets `{"n": "seven"}` (wrong type) first.
#[derive(Default)]
struct Scripted {
    calls: Mutex<HashMap<String, u32>>,
    down: bool,
    /// Items the endpoint answers with HTTP 400 (every item when `refuse_all`).
    refuse: Vec<u32>,
    refuse_all: bool,
}

impl Scripted {
    fn total(&self) -> u32 {
        self.calls.lock().unwrap().values().sum()
    }
}

impl Generator for Scripted {
    fn model(&self) -> String {
        "scripted".into()
    }
    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        if self.down {
            return Err(LlmError::RetriesExhausted {
                endpoint: "http://x".into(),
                attempts: 3,
                last: "cannot connect".into(),
            });
        }
        let k = {
            let mut c = self.calls.lock().unwrap();
            let e = c.entry(req.id.clone()).or_default();
            *e += 1;
            *e - 1
        };
        let i: u32 = req.id.trim_start_matches("item-").parse().unwrap();
        if self.refuse_all || self.refuse.contains(&i) {
            return Err(LlmError::Refused {
                endpoint: "http://x".into(),
                reason: "HTTP 400: Input should be 'text' or 'json_object'".into(),
            });
        }
        let text = if i == 29 || (i.is_multiple_of(3) && k == 0) {
            "{\"n\": ".to_string()
        } else if i == 7 && k == 0 {
            "{\"n\": \"seven\"}".to_string()
        } else {
            format!("{{\"n\": {i}}}")
        };
        Ok(Completion {
            id: req.id.clone(),
            model: "scripted".into(),
            choices: vec![Choice {
                text,
                finish_reason: "stop".into(),
            }],
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 4,
                prompt_evaluated: None,
            },
            latency_ms: 1.0,
            cached: false,
        })
    }
    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        // answer in reverse order: the stage must not rely on order
        for r in reqs.into_iter().rev() {
            let result = self.generate(&r);
            on_result(BatchResult { id: r.id, result });
        }
    }
}

fn items(n: u32) -> Vec<StageItem> {
    (0..n)
        .map(|i| StageItem {
            id: format!("item-{i}"),
            messages: vec![pw_llm::ChatMessage::user(format!("give {i}"))],
            params: GenParams {
                json_schema: Some(serde_json::json!({
                    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]
                })),
                seed: Some(100 + i as u64),
                ..GenParams::greedy(16)
            },
            meta: serde_json::json!({"source": i}),
        })
        .collect()
}

fn opts(shard: Shard) -> StageOptions {
    StageOptions {
        retries: 2,
        chunk: 8,
        shard,
        label: "test".into(),
    }
}

#[test]
fn bad_outputs_are_retried_then_rejected_with_the_reason_and_a_rerun_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rej) = (
        dir.path().join("out.jsonl"),
        dir.path().join("rejects.jsonl"),
    );
    let g = Scripted::default();
    let s = run_stage(&g, items(30), &default_check, &out, &rej, &opts(Shard::ALL)).unwrap();
    assert_eq!((s.items, s.done, s.rejected), (30, 29, 1));
    // 30 first attempts + 10 retries of i%3==0 (item 29 retried twice more, item 7 once)
    assert_eq!(s.generated, 30 + 10 + 1 + 2);
    assert_eq!(g.total() as u64, s.generated);
    let recs: Vec<StageRecord> = Ledger::read_all(&out).unwrap();
    assert_eq!(recs.len(), 29);
    for r in &recs {
        let i: u64 = r.id.trim_start_matches("item-").parse().unwrap();
        assert_eq!(r.output["n"], i);
        assert_eq!(r.meta["source"], i);
        let want_attempts = if i.is_multiple_of(3) || i == 7 { 2 } else { 1 };
        assert_eq!(r.attempts, want_attempts, "{}", r.id);
        // retries move the seed by a 64-bit constant; what is recorded stays JSON-exact
        let seed = r.seed.unwrap();
        assert!(
            seed <= pw_core::seed::JSON_EXACT_MAX,
            "{}: seed {seed}",
            r.id
        );
        assert_eq!(seed as f64 as u64, seed, "a float64 reader keeps it");
    }
    let rejects: Vec<RejectRecord> = Ledger::read_all(&rej).unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].id, "item-29");
    assert_eq!(rejects[0].attempts, 3);
    assert!(
        rejects[0].reason.contains("output is not JSON"),
        "{}",
        rejects[0].reason
    );
    assert_eq!(rejects[0].text.as_deref(), Some("{\"n\": "));

    let again = run_stage(&g, items(30), &default_check, &out, &rej, &opts(Shard::ALL)).unwrap();
    assert_eq!(
        (again.already_done, again.generated, again.done),
        (30, 0, 0)
    );
}

#[test]
fn a_truncated_ledger_resumes_only_what_is_missing_and_the_cache_pays_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rej) = (
        dir.path().join("out.jsonl"),
        dir.path().join("rejects.jsonl"),
    );
    let cache = Arc::new(Cache::open(dir.path().join("cache.redb")).unwrap());
    let g = Cached::new(Scripted::default(), cache.clone());
    let first = run_stage(&g, items(20), &default_check, &out, &rej, &opts(Shard::ALL)).unwrap();
    assert_eq!(first.done, 20);
    // a kill after the answers but before the ledger write: keep 5 records and a torn line
    let text = std::fs::read_to_string(&out).unwrap();
    let kept: Vec<&str> = text.lines().take(5).collect();
    std::fs::write(&out, format!("{}\n{{\"id\": \"item-", kept.join("\n"))).unwrap();
    let before = g.inner().total();
    let second = run_stage(&g, items(20), &default_check, &out, &rej, &opts(Shard::ALL)).unwrap();
    assert_eq!((second.already_done, second.done), (5, 15));
    assert_eq!(second.generated, 0, "every answer came from the cache");
    assert_eq!(g.inner().total(), before, "the model was not asked again");
    let recs: Vec<StageRecord> = Ledger::read_all(&out).unwrap();
    let mut ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "no item lost or written twice");
    assert_eq!(recs.len(), 20);
}

#[test]
fn shards_split_the_items_and_together_cover_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for i in 0..3 {
        let shard: Shard = format!("{i}/3").parse().unwrap();
        let out = dir.path().join(format!("out{}.jsonl", shard.suffix()));
        let rej = dir.path().join(format!("rejects{}.jsonl", shard.suffix()));
        let s = run_stage(
            &Scripted::default(),
            items(30),
            &default_check,
            &out,
            &rej,
            &opts(shard),
        )
        .unwrap();
        assert!(s.items > 3 && s.items < 20, "shard {i}: {} items", s.items);
        let recs: Vec<StageRecord> = Ledger::read_all(&out).unwrap();
        let rejs: Vec<RejectRecord> = Ledger::read_all(&rej).unwrap();
        all.extend(recs.into_iter().map(|r| r.id));
        all.extend(rejs.into_iter().map(|r| r.id));
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (30, 30));
}

#[test]
fn an_endpoint_failure_stops_the_stage_without_rejecting_items() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rej) = (
        dir.path().join("out.jsonl"),
        dir.path().join("rejects.jsonl"),
    );
    let g = Scripted {
        down: true,
        ..Default::default()
    };
    let e = run_stage(&g, items(10), &default_check, &out, &rej, &opts(Shard::ALL))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot connect") && e.contains("rerun to continue"),
        "{e}"
    );
    assert_eq!(Ledger::open(&rej).unwrap().len(), 0);
    // back up: the same call finishes the work
    let s = run_stage(
        &Scripted::default(),
        items(10),
        &default_check,
        &out,
        &rej,
        &opts(Shard::ALL),
    )
    .unwrap();
    assert_eq!(s.done + s.rejected, 10);
}

#[test]
fn a_request_the_endpoint_refuses_is_rejected_with_its_reason_and_the_stage_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rej) = (
        dir.path().join("out.jsonl"),
        dir.path().join("rejects.jsonl"),
    );
    let g = Scripted {
        refuse: vec![2, 11, 12, 25],
        ..Default::default()
    };
    let s = run_stage(&g, items(30), &default_check, &out, &rej, &opts(Shard::ALL)).unwrap();
    // item 29 always gives broken JSON: rejected after its retries, as before
    assert_eq!((s.done, s.rejected), (25, 5));
    let rejects: Vec<RejectRecord> = Ledger::read_all(&rej).unwrap();
    for i in [2, 11, 12, 25] {
        let r = rejects
            .iter()
            .find(|r| r.id == format!("item-{i}"))
            .expect("refused item rejected");
        assert!(r.reason.contains("HTTP 400"), "{}", r.reason);
        assert_eq!(r.attempts, 1, "a refusal is not retried");
    }
    // a rerun has nothing left to do: the refusals no longer block the stage
    let calls = g.total();
    let s = run_stage(&g, items(30), &default_check, &out, &rej, &opts(Shard::ALL)).unwrap();
    assert_eq!((s.already_done, s.done, s.rejected), (30, 0, 0));
    assert_eq!(g.total(), calls);
}

#[test]
fn an_endpoint_that_refuses_every_request_stops_the_stage_without_rejecting_items() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rej) = (
        dir.path().join("out.jsonl"),
        dir.path().join("rejects.jsonl"),
    );
    let g = Scripted {
        refuse_all: true,
        ..Default::default()
    };
    let e = run_stage(&g, items(20), &default_check, &out, &rej, &opts(Shard::ALL))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused all of the first 8 requests") && e.contains("json_object"),
        "{e}"
    );
    assert_eq!(Ledger::open(&rej).unwrap().len(), 0);
    assert_eq!(Ledger::open(&out).unwrap().len(), 0);
}
