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

/// `stream: true`: server-sent chunks whose deltas concatenate to the answer the same request
/// gets without streaming (greedy), a first chunk with the role, a last one with the finish
/// reason and usage, then `[DONE]`; a stop sequence never leaks into the deltas.
#[test]
fn streaming_deltas_add_up_to_the_plain_answer_and_end_with_usage_and_done() {
    let server = start(None);
    let url = format!("http://{}/v1/chat/completions", server.addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ask = |stream: bool, stop: Option<&str>| {
        let mut body = serde_json::json!({
            "model": "smol", "temperature": 0, "max_tokens": 40, "seed": 3, "stream": stream,
            "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
        });
        if let Some(s) = stop {
            body["stop"] = serde_json::json!([s]);
        }
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(&url)
                .json(&body)
                .send()
                .await
                .unwrap();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (ct, r.text().await.unwrap())
        })
    };
    let (_, plain) = ask(false, None);
    let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
    let want = plain["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();

    let parse = |sse: &str| {
        let events: Vec<&str> = sse
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").expect("each event is a data line"))
            .collect();
        assert_eq!(*events.last().unwrap(), "[DONE]", "{sse}");
        let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        chunks
    };
    let (ct, sse) = ask(true, None);
    assert_eq!(ct, "text/event-stream");
    let chunks = parse(&sse);
    assert!(
        chunks.len() >= 4,
        "a role chunk, deltas, a last chunk: {sse}"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want, "the deltas add up to the plain answer");
    let last = chunks.last().unwrap();
    assert_eq!(
        last["choices"][0]["finish_reason"],
        plain["choices"][0]["finish_reason"]
    );
    same_usage(&last["usage"], &plain["usage"]);

    // a stop sequence taken from inside the answer: cut there, never streamed
    let words: Vec<&str> = want.split_whitespace().collect();
    if words.len() >= 3 {
        let stop = words[2];
        let (_, sse) = ask(true, Some(stop));
        let chunks = parse(&sse);
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.contains(stop), "{stop:?} leaked: {text:?}");
        assert!(want.starts_with(&text), "{text:?} vs {want:?}");
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
    }
}

/// The legacy `/v1/completions`: the prompt is continued as it is (no chat template: fewer
/// prompt tokens than the same text as a chat message), streamed chunks add up to the plain
/// answer, and `/v1/embeddings` is a 400 that says so. Chat requests get the GGUF's template.
#[test]
fn legacy_completions_continue_the_raw_prompt_and_stream() {
    let server = start(None);
    let base = format!("http://{}/v1", server.addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |route: &str, body: serde_json::Value| {
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{base}/{route}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let prompt = "The capital of France is";
    let body = |stream: bool| {
        serde_json::json!({"model": "smol", "prompt": prompt, "temperature": 0,
                           "max_tokens": 12, "stream": stream})
    };
    let (status, plain) = post("completions", body(false));
    assert_eq!(status, 200, "{plain}");
    let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(plain["object"], "text_completion");
    let want = plain["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(!want.trim().is_empty(), "{plain}");
    // the chat template adds its role markers (and any default system prompt) around the text
    let (_, chat) = post(
        "chat/completions",
        serde_json::json!({"model": "smol", "max_tokens": 1,
                           "messages": [{"role": "user", "content": prompt}]}),
    );
    let chat: serde_json::Value = serde_json::from_str(&chat).unwrap();
    // the GGUF's Jinja template is rendered as its authors wrote it: SmolLM2's default system
    // prompt (which llama.cpp's built-in chatml leaves out) is there when the
    // conversation brings none, so a one-word system message makes the prompt shorter
    let (_, brief) = post(
        "chat/completions",
        serde_json::json!({"model": "smol", "max_tokens": 1,
                           "messages": [{"role": "system", "content": "Brief."},
                                        {"role": "user", "content": prompt}]}),
    );
    let brief: serde_json::Value = serde_json::from_str(&brief).unwrap();
    assert!(
        brief["usage"]["prompt_tokens"].as_u64().unwrap() + 10
            < chat["usage"]["prompt_tokens"].as_u64().unwrap(),
        "{brief} vs {chat}"
    );
    let raw_tokens = plain["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        raw_tokens < chat["usage"]["prompt_tokens"].as_u64().unwrap(),
        "{plain} vs {chat}"
    );

    let (status, sse) = post("completions", body(true));
    assert_eq!(status, 200, "{sse}");
    let events: Vec<&str> = sse
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, want);
    same_usage(&chunks.last().unwrap()["usage"], &plain["usage"]);

    let (status, e) = post(
        "completions",
        serde_json::json!({"prompt": "x", "echo": true}),
    );
    assert_eq!(status, 400);
    assert!(e.contains("echo"), "{e}");
    let (status, e) = post(
        "embeddings",
        serde_json::json!({"model": "smol", "input": "x"}),
    );
    assert_eq!(status, 400);
    assert!(e.contains("embeddings are not supported"), "{e}");
}

/// The same token counts; the second of two equal requests reuses the first one's prompt
/// from the KV cache, which OpenAI's `prompt_tokens_details.cached_tokens` reports.
fn same_usage(second: &serde_json::Value, first: &serde_json::Value) {
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(second[k], first[k], "{k}");
    }
    let cached = second["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached_tokens");
    let prompt = second["prompt_tokens"].as_u64().unwrap();
    assert_eq!(cached, prompt - 1, "all but the last prompt token reused");
}
