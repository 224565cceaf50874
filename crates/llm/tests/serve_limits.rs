//! `serve` under hostile clients, over the embedded SmolLM2: a client that goes away frees its
//! slots at once, `n` counts against the queue, a request past its deadline is cancelled, a
//! slowloris is cut off while /health keeps answering, open connections are bounded, the token
//! is checked before the body is read, every error is OpenAI's JSON, and a shutdown drains
//! within its deadline.

mod common;

use common::Server;
use pw_llm::serve::ServeConfig;
use pw_llm::{Embedded, EmbeddedConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One test at a time: their timings (a slot free within a second) assume the two cores are
/// not shared with another test's generation.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn engine(parallel: usize) -> Arc<Embedded> {
    let mut cfg = EmbeddedConfig::new(common::smollm2());
    cfg.ctx_per_seq = 2048;
    cfg.parallel = parallel;
    cfg.threads = Some(2);
    Arc::new(Embedded::load(cfg).unwrap())
}

/// A request the grammar keeps generating for hundreds of tokens (at least 300 integers).
fn long_request() -> String {
    serde_json::json!({
        "messages": [{"role": "user", "content": "List many numbers."}],
        "max_tokens": 1500,
        "temperature": 0.8,
        "seed": 7,
        "response_format": {"type": "json_schema", "json_schema": {"name": "numbers", "schema": {
            "type": "array", "items": {"type": "integer"}, "minItems": 300
        }}}
    })
    .to_string()
}

fn send(addr: SocketAddr, head: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{head}\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// What the server sent before it closed. A server that answers without reading a body closes
/// with unread bytes, which can end in a reset after the answer: what arrived still counts.
fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Status and body of one request on its own connection.
fn call(addr: SocketAddr, head: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = send(addr, head, body);
    let out = read_all(&mut s);
    let status: u16 = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = out
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn pending(addr: SocketAddr) -> u64 {
    let (status, h) = call(addr, "GET /health HTTP/1.1", "");
    assert_eq!(status, 200, "{h}");
    h["pending"].as_u64().unwrap()
}

/// Waits until `pending` equals `want`; returns how long that took.
fn wait_pending(addr: SocketAddr, want: u64, limit: Duration) -> Duration {
    let t0 = Instant::now();
    while pending(addr) != want {
        assert!(
            t0.elapsed() < limit,
            "pending never reached {want} in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

#[test]
fn a_client_that_goes_away_frees_its_slots_and_n_counts_against_the_queue() {
    let _one_at_a_time = serial();
    let server = common::start_serve(
        engine(2),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            max_queue: 4,
            ..Default::default()
        },
    );
    let addr = server.addr;
    let chat = "POST /v1/chat/completions HTTP/1.1";

    // n alone above the queue: refused as invalid, not queued
    let (status, e) = call(
        addr,
        chat,
        r#"{"messages":[{"role":"user","content":"hi"}],"n":5,"max_tokens":4}"#,
    );
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("n = 5"),
        "{e}"
    );

    // a long request, then its client disconnects: its sequence is gone within a second
    let client = send(addr, chat, &long_request());
    wait_pending(addr, 1, Duration::from_secs(10));
    // n = 4 on top of 1 running sequence passes the queue of 4: 429 with Retry-After
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"n":4,"max_tokens":4}"#;
    let mut s = send(addr, chat, body);
    let out = read_all(&mut s);
    assert!(out.starts_with("HTTP/1.1 429"), "{out}");
    assert!(out.to_ascii_lowercase().contains("retry-after: 1"), "{out}");
    drop(client);
    let freed = wait_pending(addr, 0, Duration::from_secs(5));
    eprintln!(
        "slot free {:.0} ms after the client left",
        freed.as_secs_f64() * 1e3
    );
    assert!(freed < Duration::from_millis(1000), "{freed:?}");
    // and the slots serve the next client
    let (status, c) = call(
        addr,
        chat,
        r#"{"messages":[{"role":"user","content":"Say hi."}],"max_tokens":4}"#,
    );
    assert_eq!(status, 200, "{c}");
    drop(server);
}

#[test]
fn a_request_past_its_deadline_is_cancelled_with_an_openai_error() {
    let _one_at_a_time = serial();
    let server = common::start_serve(
        engine(1),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            request_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    let (status, e) = call(
        server.addr,
        "POST /v1/chat/completions HTTP/1.1",
        &long_request(),
    );
    assert_eq!(status, 504, "{e}");
    assert_eq!(e["error"]["type"], "timeout", "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    wait_pending(server.addr, 0, Duration::from_secs(1));
}

#[test]
fn slowloris_connections_are_cut_off_and_health_answers_throughout() {
    let _one_at_a_time = serial();
    let server = common::start_serve(
        engine(1),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            header_timeout: Duration::from_millis(800),
            ..Default::default()
        },
    );
    let addr = server.addr;
    // 200 connections that send a few header bytes and then nothing
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(600) {
        let (status, _) = call(addr, "GET /health HTTP/1.1", "");
        assert_eq!(status, 200);
    }
    std::thread::sleep(Duration::from_millis(1000));
    // every slow connection has been closed by the server
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        // hyper answers 408 or just closes; either way no request was served
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let (status, _) = call(addr, "GET /health HTTP/1.1", "");
    assert_eq!(status, 200);
}

#[test]
fn open_connections_are_bounded_and_the_bound_frees_as_they_close() {
    let _one_at_a_time = serial();
    let server = common::start_serve(
        engine(1),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            max_connections: 4,
            header_timeout: Duration::from_secs(30),
            ..Default::default()
        },
    );
    let addr = server.addr;
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = over.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = over.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the fifth connection is closed unanswered");
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = call(addr, "GET /health HTTP/1.1", "");
    assert_eq!(status, 200);
}

#[test]
fn the_token_is_checked_before_the_body_and_every_error_is_openai_json() {
    let _one_at_a_time = serial();
    let server = common::start_serve(
        engine(1),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: Some("s3cret".into()),
            max_body_bytes: 1024,
            ..Default::default()
        },
    );
    let addr = server.addr;
    let chat = "POST /v1/chat/completions HTTP/1.1";
    let big = "x".repeat(4096);
    // a wrong token with a too-large body: 401, not 413 (the body was never read)
    let (status, e) = call(
        addr,
        &format!("{chat}\r\nAuthorization: Bearer wrong"),
        &big,
    );
    assert_eq!(
        (status, e["error"]["type"].as_str()),
        (401, Some("invalid_api_key"))
    );
    // the right token, lowercase scheme: 413 as OpenAI's error JSON
    let (status, e) = call(
        addr,
        &format!("{chat}\r\nAuthorization: bearer s3cret"),
        &big,
    );
    assert_eq!(status, 413, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"),
        "{e}"
    );
    // /v1/models wants the token too; an unknown route is a JSON 404; a wrong method a 405
    assert_eq!(call(addr, "GET /v1/models HTTP/1.1", "").0, 401);
    let (status, m) = call(
        addr,
        "GET /v1/models HTTP/1.1\r\nAuthorization: Bearer s3cret",
        "",
    );
    assert_eq!(status, 200, "{m}");
    let (status, e) = call(addr, "GET /v1/images/generations HTTP/1.1", "");
    assert_eq!(status, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains("no route"));
    let (status, e) = call(addr, "GET /v1/chat/completions HTTP/1.1", "");
    assert_eq!(status, 405);
    assert!(e["error"]["message"].is_string(), "{e}");
}

#[test]
fn shutdown_cancels_what_is_still_running_at_the_drain_deadline() {
    let _one_at_a_time = serial();
    let engine = engine(1);
    let server = common::start_serve(
        engine.clone(),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            drain_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let addr = server.addr;
    let mut client = send(addr, "POST /v1/chat/completions HTTP/1.1", &long_request());
    wait_pending(addr, 1, Duration::from_secs(10));
    let t0 = Instant::now();
    drop::<Server>(server); // stop, then wait for serve to return
    let stopped = t0.elapsed();
    eprintln!(
        "serve returned {:.0} ms after the stop",
        stopped.as_secs_f64() * 1e3
    );
    assert!(stopped < Duration::from_secs(3), "{stopped:?}");
    // the running request was cancelled in the engine, and its client was let go
    let t1 = Instant::now();
    while engine.pending() > 0 {
        assert!(t1.elapsed() < Duration::from_secs(1), "still running");
        std::thread::sleep(Duration::from_millis(10));
    }
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
}
