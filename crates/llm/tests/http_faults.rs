//! The HTTP backend against a fault-injecting OpenAI-compatible server: 429 with Retry-After,
//! 500/503, malformed JSON, stalls, a non-retryable 400 and odd-but-valid answers. 200
//! requests must all end answered or with a clear error: none lost, none duplicated.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pw_llm::{GenParams, Generator, Http, HttpConfig, LlmError, Request};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

#[derive(Default)]
struct Faults {
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
    per_port: Mutex<HashMap<u16, u64>>,
    too_many: AtomicU64,
    server_error: AtomicU64,
    unavailable: AtomicU64,
    malformed: AtomicU64,
    stalled: AtomicU64,
    bad_request: AtomicU64,
    ok: AtomicU64,
}

fn ok_body(id: &str, odd: bool) -> Response {
    let body = if odd {
        serde_json::json!({
            "choices": [{"message": {"role": "assistant",
                "content": [{"type": "text", "text": "echo:"}, {"type": "text", "text": id}],
                "refusal": null},
              "finish_reason": "eos_token", "logprobs": {"content": []}}],
            "system_fingerprint": "fp_x", "service_tier": "default"
        })
    } else {
        serde_json::json!({
            "id": "cmpl", "object": "chat.completion", "created": 1, "model": "fault",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo:{id}")},
              "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        })
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn status(code: u16, retry_after: Option<&'static str>) -> Response {
    let mut r = (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(
            serde_json::json!({"error": {"message": format!("injected {code}"), "type": "x"}}),
        ),
    )
        .into_response();
    if let Some(a) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(a));
    }
    r
}

async fn handler(
    State((st, port)): State<(Arc<Faults>, u16)>,
    body: axum::body::Bytes,
) -> Response {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = v["messages"][0]["content"].as_str().unwrap().to_string();
    let i: usize = id.trim_start_matches("req-").parse().unwrap();
    let k = {
        let mut a = st.attempts.lock().unwrap();
        let e = a.entry(id.clone()).or_default();
        e.push(Instant::now());
        e.len() - 1
    };
    *st.per_port.lock().unwrap().entry(port).or_default() += 1;
    let count = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::SeqCst);
    };
    match (i % 10, k) {
        (1, 0) => {
            count(&st.too_many);
            status(429, Some("0.2"))
        }
        (2, 0) | (5, 1) | (6, _) => {
            count(&st.server_error);
            status(500, None)
        }
        (3, 0) | (5, 2) => {
            count(&st.malformed);
            (StatusCode::OK, "{\"choices\": [{\"message\": ").into_response()
        }
        (4, 0) => {
            count(&st.stalled);
            tokio::time::sleep(Duration::from_secs(3)).await;
            ok_body(&id, false)
        }
        (5, 0) => {
            count(&st.too_many);
            status(429, Some("0.05"))
        }
        (7, 0) | (7, 1) => {
            count(&st.unavailable);
            status(503, None)
        }
        (8, _) => {
            count(&st.bad_request);
            status(400, None)
        }
        (p, _) => {
            count(&st.ok);
            ok_body(&id, p == 9)
        }
    }
}

#[test]
fn two_hundred_requests_through_faults_none_lost_none_duplicated() {
    let st = Arc::new(Faults::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut urls = Vec::new();
    for _ in 0..2 {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new()
            .route("/v1/chat/completions", post(handler))
            .with_state((st.clone(), port));
        rt.spawn(async move { axum::serve(listener, app).await });
        urls.push(format!("http://127.0.0.1:{port}/v1"));
    }
    let http = Http::new(HttpConfig {
        endpoints: urls,
        model: "fault".into(),
        concurrency: 32,
        max_retries: 4,
        backoff_base_ms: 10,
        backoff_max_ms: 100,
        timeout_s: 0.4,
        ..Default::default()
    })
    .unwrap();
    let reqs: Vec<Request> = (0..200)
        .map(|i| Request::user(format!("id-{i}"), format!("req-{i}"), GenParams::greedy(8)))
        .collect();
    let t0 = Instant::now();
    let mut results: Vec<(String, Result<pw_llm::Completion, LlmError>)> = Vec::new();
    http.generate_batch(reqs, &mut |r| results.push((r.id, r.result)));
    let wall = t0.elapsed();

    // every request exactly once
    assert_eq!(results.len(), 200, "lost or duplicated results");
    let ids: HashSet<&String> = results.iter().map(|r| &r.0).collect();
    assert_eq!(ids.len(), 200, "a request answered twice");
    let mut answered = 0;
    let mut exhausted = 0;
    let mut refused = 0;
    for (id, r) in &results {
        let i: usize = id.trim_start_matches("id-").parse().unwrap();
        match (i % 10, r) {
            (6, Err(LlmError::RetriesExhausted { attempts, last, .. })) => {
                assert_eq!(*attempts, 5);
                assert!(last.contains("HTTP 500"), "{last}");
                exhausted += 1;
            }
            (8, Err(e @ LlmError::Refused { .. })) => {
                assert!(e.to_string().contains("HTTP 400: injected 400"), "{e}");
                refused += 1;
            }
            (p, Ok(c)) if p != 6 && p != 8 => {
                assert_eq!(
                    c.text(),
                    format!("echo:req-{i}"),
                    "answer for the right request"
                );
                assert_eq!(c.id, *id);
                if p == 9 {
                    assert_eq!(c.choices[0].finish_reason, "eos_token");
                }
                answered += 1;
            }
            (p, other) => panic!("request {i} (pattern {p}): unexpected {other:?}"),
        }
    }
    assert_eq!((answered, exhausted, refused), (160, 20, 20));

    // the faults the server injected, exactly
    let n = |c: &AtomicU64| c.load(Ordering::SeqCst);
    assert_eq!(n(&st.too_many), 40, "429s");
    assert_eq!(n(&st.server_error), 20 + 20 + 20 * 5, "500s");
    assert_eq!(n(&st.unavailable), 40, "503s");
    assert_eq!(n(&st.malformed), 40, "malformed bodies");
    assert_eq!(n(&st.stalled), 20, "stalls");
    assert_eq!(n(&st.bad_request), 20, "400s (never retried)");
    assert_eq!(n(&st.ok), 160);
    assert_eq!(http.stats().attempts, 460);

    // Retry-After: 0.2 s was honoured
    let attempts = st.attempts.lock().unwrap();
    for i in (1..200).step_by(10) {
        let a = &attempts[&format!("req-{i}")];
        let gap = a[1] - a[0];
        assert!(
            gap >= Duration::from_millis(195),
            "req-{i} retried after {gap:?}"
        );
    }
    // both endpoints took work
    let ports = st.per_port.lock().unwrap();
    assert_eq!(ports.len(), 2);
    assert!(ports.values().all(|&c| c >= 50), "{ports:?}");
    eprintln!(
        "200 requests in {:.2} s: 160 answered, 20 exhausted retries, 20 refused (400); \
         injected 40x429 140x500 40x503 40 malformed 20 stalls; per endpoint {:?}",
        wall.as_secs_f64(),
        ports.values().collect::<Vec<_>>()
    );
    drop(attempts);
    drop(ports);
    rt.shutdown_background();
}

#[test]
fn an_unreachable_endpoint_fails_clearly_after_the_budget() {
    // a port nothing listens on: bind, read the port, close
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = Http::new(HttpConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        max_retries: 2,
        backoff_base_ms: 5,
        ..Default::default()
    })
    .unwrap();
    let e = http
        .generate(&Request::user("u", "hi", GenParams::greedy(4)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("127.0.0.1:{port}"))
            && e.contains("gave up after 3 attempts")
            && e.contains("cannot connect"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn malformed_endpoint_urls_are_refused_at_construction() {
    let e = Http::new(HttpConfig {
        endpoints: vec!["not a url".into()],
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("not a url") && e.contains("not a URL"), "{e}");
}

/// Answers received but not yet taken by the caller count against `concurrency`: with a
/// consumer slower than the endpoint (a cache's fsync on a slow disk), the server never holds
/// more than `concurrency` requests beyond those the caller has taken, so a kill at any moment
/// loses at most that many paid answers.
#[test]
fn a_slow_consumer_bounds_answers_received_but_not_yet_taken() {
    #[derive(Default)]
    struct Seen {
        taken: AtomicU64,
        received: AtomicU64,
        most_ahead: AtomicU64,
    }
    async fn quick(State(st): State<Arc<Seen>>, _body: axum::body::Bytes) -> Response {
        let r = st.received.fetch_add(1, Ordering::SeqCst) + 1;
        let ahead = r - st.taken.load(Ordering::SeqCst);
        st.most_ahead.fetch_max(ahead, Ordering::SeqCst);
        ok_body("x", false)
    }
    let st = Arc::new(Seen::default());
    let (rt, url) = common::serve_on_loopback(
        Router::new()
            .route("/v1/chat/completions", post(quick))
            .with_state(st.clone()),
    );
    let http = Http::new(HttpConfig {
        endpoints: vec![url],
        model: "m".into(),
        concurrency: 3,
        ..Default::default()
    })
    .unwrap();
    let reqs: Vec<Request> = (0..24)
        .map(|i| Request::user(format!("id-{i}"), format!("q{i}"), GenParams::greedy(4)))
        .collect();
    let mut n = 0;
    http.generate_batch(reqs, &mut |r| {
        assert!(r.result.is_ok(), "{:?}", r.result);
        std::thread::sleep(Duration::from_millis(15));
        st.taken.fetch_add(1, Ordering::SeqCst);
        n += 1;
    });
    assert_eq!(n, 24);
    let ahead = st.most_ahead.load(Ordering::SeqCst);
    assert!(
        ahead <= 3,
        "the server held {ahead} requests beyond those taken (concurrency 3)"
    );
    rt.shutdown_background();
}
