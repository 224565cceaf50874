//! End to end: the HTTP backend against `serve` on loopback, over the embedded SmolLM2.

mod common;

use common::Server;
use pw_llm::serve::ServeConfig;
use pw_llm::{Embedded, EmbeddedConfig, GenParams, Generator, Http, HttpConfig, Request};
use std::net::SocketAddr;
use std::sync::Arc;

fn start(token: Option<&str>) -> Server {
    let mut cfg = EmbeddedConfig::new(common::smollm2());
    cfg.ctx_per_seq = 1024;
    cfg.parallel = 4;
    let engine = Arc::new(Embedded::load(cfg).unwrap());
    common::start_serve(
        engine,
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: token.map(str::to_string),
            max_body_bytes: 64 * 1024,
            max_queue: 16,
            ..Default::default()
        },
    )
}

fn client(addr: SocketAddr, key_env: &str) -> Http {
    Http::new(HttpConfig {
        endpoints: vec![format!("http://{addr}/v1")],
        model: "smol".into(),
        api_key_env: Some(key_env.into()),
        max_retries: 1,
        backoff_base_ms: 10,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn http_backend_against_serve_chat_schema_auth_and_limits() {
    // SAFETY: set once, before any thread of this test binary reads these variables
    unsafe {
        std::env::set_var("PW_SERVE_TEST_KEY", "s3cret");
        std::env::set_var("PW_SERVE_TEST_BAD_KEY", "wrong");
    }
    let server = start(Some("s3cret"));
    let http = client(server.addr, "PW_SERVE_TEST_KEY");

    // a chat request
    let c = http
        .generate(&Request::user(
            "chat",
            "What is the capital of France? One word.",
            GenParams::greedy(12),
        ))
        .unwrap();
    assert!(c.text().contains("Paris"), "{:?}", c.text());
    assert_eq!(c.choices[0].finish_reason, "stop");
    assert!(c.usage.prompt_tokens > 0 && c.usage.completion_tokens > 0);
    assert!(c.model.starts_with("SmolLM2"), "{}", c.model);

    // a JSON-schema request: the answer parses and follows the schema
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "country": {"type": "string", "maxLength": 30},
            "population_millions": {"type": "integer", "minimum": 0, "maximum": 100}
        },
        "required": ["city", "country", "population_millions"],
        "additionalProperties": false
    });
    let c = http
        .generate(&Request::user(
            "json",
            "Give the largest city of Japan as JSON.",
            GenParams {
                json_schema: Some(schema.clone()),
                ..GenParams::greedy(100)
            },
        ))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(c.text()).expect("parses");
    common::check_schema(&v, &schema).unwrap();

    // a batch through the server: every id once
    let reqs: Vec<Request> = (0..6)
        .map(|i| {
            Request::user(
                format!("b{i}"),
                format!("Say the number {i}."),
                GenParams::greedy(6),
            )
        })
        .collect();
    let mut ids = Vec::new();
    http.generate_batch(reqs, &mut |r| {
        r.result.unwrap();
        ids.push(r.id)
    });
    ids.sort();
    assert_eq!(ids, ["b0", "b1", "b2", "b3", "b4", "b5"]);

    // a wrong key: one clear line, not retried
    let bad = client(server.addr, "PW_SERVE_TEST_BAD_KEY");
    let e = bad
        .generate(&Request::user("x", "hi", GenParams::greedy(4)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("HTTP 401") && e.contains("$PW_SERVE_TEST_BAD_KEY"),
        "{e}"
    );
    assert_eq!(bad.stats().attempts, 1);

    // the other routes and the limits, with a plain client
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://{}", server.addr);
    rt.block_on(async {
        let c = reqwest::Client::new();
        let h: serde_json::Value = c
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(h["status"], "ok");
        let m: serde_json::Value = c
            .get(format!("{base}/v1/models"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(m["data"][0]["id"].as_str().unwrap().starts_with("SmolLM2"));
        let big = "x".repeat(100 * 1024);
        let r = c
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("s3cret")
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"messages":[{{"role":"user","content":"{big}"}}]}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 413);
        let r = c
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("s3cret")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("request body")
        );
    });
    drop(server); // graceful stop: the serve future returns Ok
}
