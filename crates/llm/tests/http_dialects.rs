//! The HTTP backend against servers that are OpenAI-compatible in their own way: one that
//! refuses `response_format: json_schema` with HTTP 500 and ignores `n` (as llama-cpp-python's
//! server does), and one that fails every request with the same 500.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pw_llm::openai::SchemaDialect;
use pw_llm::{GenParams, Generator, Http, HttpConfig, LlmError, Request};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

mod common;

#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<Value>>,
}

fn error(code: u16, msg: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(json!({"error": {"message": msg, "type": "x"}})),
    )
        .into_response()
}

/// Like llama-cpp-python 0.3: `json_object` + `schema` only, one choice whatever `n` says.
async fn llama_cpp_python(State(st): State<Arc<Seen>>, body: axum::body::Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap();
    st.bodies.lock().unwrap().push(v.clone());
    let rf = &v["response_format"];
    if !rf.is_null() && rf["type"] != "json_object" && rf["type"] != "text" {
        return error(
            500,
            "1 validation error: response_format.type Input should be 'text' or 'json_object'",
        );
    }
    let text = if rf["schema"].is_object() {
        json!({"seed": v["seed"]}).to_string()
    } else {
        format!("seed {}", v["seed"])
    };
    axum::Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}
    }))
    .into_response()
}

/// Like OpenAI given a schema it will not take: every dialect refused with a 400.
async fn openai_bad_schema(State(st): State<Arc<Seen>>, body: axum::body::Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap();
    st.bodies.lock().unwrap().push(v.clone());
    if v.get("guided_json").is_some() {
        return error(400, "Unrecognized request argument supplied: guided_json");
    }
    if v["response_format"]["type"] == "json_object" {
        return error(
            400,
            "Invalid parameter: 'response_format.schema' is not permitted",
        );
    }
    if v["response_format"]["type"] == "json_schema" {
        return error(
            400,
            "Invalid schema for response_format 'output': 'additionalProperties' is required",
        );
    }
    axum::Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "plain"}, "finish_reason": "stop"}]
    }))
    .into_response()
}

async fn always_500(State(st): State<Arc<Seen>>, body: axum::body::Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap();
    st.bodies.lock().unwrap().push(v);
    error(500, "prompt template is missing a field")
}

/// An HTTP backend on the fake `handler` (retries quick), with the fake's record.
fn backend<H, T>(handler: H, dialect: SchemaDialect) -> (tokio::runtime::Runtime, Http, Arc<Seen>)
where
    H: axum::handler::Handler<T, Arc<Seen>>,
    T: 'static,
{
    let st = Arc::new(Seen::default());
    let (rt, url) = common::serve_on_loopback(
        Router::new()
            .route("/v1/chat/completions", post(handler))
            .with_state(st.clone()),
    );
    let http = Http::new(HttpConfig {
        endpoints: vec![url],
        structured_output: dialect,
        max_retries: 6,
        backoff_base_ms: 1,
        ..Default::default()
    })
    .unwrap();
    (rt, http, st)
}

fn structured(id: &str, n: u32) -> Request {
    Request::user(
        id,
        "give json",
        GenParams {
            n,
            seed: Some(7),
            json_schema: Some(json!({"type":"object","properties":{"seed":{"type":"integer"}}})),
            ..GenParams::greedy(16)
        },
    )
}

#[test]
fn auto_finds_json_object_and_fills_n_when_the_server_ignores_it() {
    let (_rt, http, st) = backend(llama_cpp_python, SchemaDialect::Auto);
    let c = http.generate(&structured("a", 4)).unwrap();
    assert_eq!(c.choices.len(), 4, "{c:?}");
    let seeds: std::collections::HashSet<String> =
        c.choices.iter().map(|ch| ch.text.clone()).collect();
    assert_eq!(
        seeds.len(),
        4,
        "distinct seeds for the filled choices: {seeds:?}"
    );
    assert!(c.choices.iter().all(|ch| ch.text.starts_with("{\"seed\":")));
    assert_eq!(c.usage.completion_tokens, 8);
    {
        let b = st.bodies.lock().unwrap();
        assert_eq!(b[0]["response_format"]["type"], "json_schema");
        assert_eq!(b[1]["response_format"]["type"], "json_object");
        assert!(b[1]["response_format"]["schema"].is_object());
        assert_eq!(
            b.len(),
            5,
            "one refused dialect, then one request per choice"
        );
    }
    // the endpoint's dialect is remembered: the next request goes out as json_object at once
    let c = http.generate(&structured("b", 1)).unwrap();
    assert_eq!(c.choices.len(), 1);
    let b = st.bodies.lock().unwrap();
    assert_eq!(b.len(), 6);
    assert_eq!(b[5]["response_format"]["type"], "json_object");
}

#[test]
fn an_explicit_dialect_the_server_refuses_is_one_refusal_naming_it() {
    let (_rt, http, st) = backend(llama_cpp_python, SchemaDialect::JsonSchema);
    let e = http.generate(&structured("a", 1)).unwrap_err();
    assert!(matches!(e, LlmError::Refused { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("sent as json_schema") && msg.contains("--structured-output"),
        "{msg}"
    );
    assert_eq!(st.bodies.lock().unwrap().len(), 1, "not retried");
}

#[test]
fn a_500_that_repeats_its_message_is_not_retried_again() {
    let (_rt, http, st) = backend(always_500, SchemaDialect::Auto);
    let e = http
        .generate(&Request::user("x", "hi", GenParams::greedy(4)))
        .unwrap_err();
    assert!(matches!(e, LlmError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("deterministic"), "{e}");
    assert_eq!(st.bodies.lock().unwrap().len(), 2, "7 attempts before");
}

/// A schema the server refuses in every dialect: the error keeps the first, informative
/// refusal, and the endpoint is not moved off the dialect it takes.
#[test]
fn a_schema_refused_in_every_dialect_keeps_the_first_reason_and_the_endpoint_its_dialect() {
    let (_rt, http, st) = backend(openai_bad_schema, SchemaDialect::Auto);
    let e = http.generate(&structured("a", 1)).unwrap_err();
    assert!(matches!(e, LlmError::Refused { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("refused as json_schema: HTTP 400: Invalid schema for response_format"),
        "{msg}"
    );
    assert_eq!(st.bodies.lock().unwrap().len(), 3, "one try per dialect");
    let _ = http.generate(&structured("b", 1));
    let b = st.bodies.lock().unwrap();
    assert_eq!(
        b[3]["response_format"]["type"], "json_schema",
        "the next request starts from the endpoint's dialect again"
    );
}
