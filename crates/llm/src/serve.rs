//! `paperworks serve`: an OpenAI-compatible HTTP server over the embedded backend.
//!
//! Routes: `POST /v1/chat/completions`, the legacy `POST /v1/completions` (a raw prompt, no
//! chat template), `GET /v1/models`, `GET /health`; `POST /v1/embeddings` is a 400 saying this
//! server has none. Binds 127.0.0.1 by
//! default (a non-loopback bind without a token is warned about). The server bounds what a
//! client can hold:
//! - work: a request's `n` sequences count against `max_queue` (429 with `Retry-After` past
//!   it); a request whose client goes away, or that passes `request_timeout`, is cancelled in
//!   the engine at its next step, so its slots are free for others;
//! - connections: at most `max_connections` open (more are closed at once), and a connection
//!   that has not sent a whole request head within `header_timeout` (a slowloris, or an idle
//!   keep-alive) is closed;
//! - shutdown: SIGTERM or Ctrl-C stops accepting, lets running requests finish for up to
//!   `drain_timeout`, then cancels what is left and returns.
//!
//! The bearer token is checked (in constant time, scheme case-insensitive) before the body is
//! read, and every error, 404 and 413 included, is OpenAI's error JSON.
//!
//! `stream: true` answers as OpenAI does: server-sent events, one `chat.completion.chunk` per
//! piece of text as the engine decodes it (a first chunk with the role, a last one with each
//! choice's `finish_reason` and the `usage`), then `data: [DONE]`. A client that leaves
//! mid-stream cancels its sequences as any other.

use crate::openai::{self, ErrorBody};
use crate::{Embedded, LlmError};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// Clients must send `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    pub max_body_bytes: usize,
    /// Sequences (each request's `n`) waiting or running before new requests get 429.
    pub max_queue: usize,
    /// Longest a request may wait for its answer before it is cancelled (504).
    pub request_timeout: Duration,
    /// After SIGTERM, how long running requests may finish before they are cancelled.
    pub drain_timeout: Duration,
    /// Longest a connection may take to send a request head (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body_bytes: 1 << 20,
            max_queue: 64,
            request_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

struct AppState {
    engine: Arc<Embedded>,
    cfg: ServeConfig,
    next_id: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
    cancelled: AtomicU64,
    /// The token's digest, so the comparison takes the same time whatever the guess.
    token_digest: Option<[u8; 32]>,
}

fn error(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(kind, msg))).into_response()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether `headers` carry the server's bearer token. The scheme is case-insensitive (RFC 7235);
/// the token is compared through fixed-length digests with no early exit.
fn authorized(st: &AppState, headers: &HeaderMap) -> bool {
    st.token_digest
        .as_ref()
        .is_none_or(|want| bearer_matches(want, headers))
}

fn bearer_matches(want: &[u8; 32], headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| digest(t.trim()))
    else {
        return false;
    };
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "missing or wrong bearer token",
    )
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("request body larger than the server's limit of {limit} bytes"),
    )
}

/// Sets the flag when dropped: the handler's future is dropped when its client disconnects,
/// and the engine then cancels the request's sequences.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `resp` with `Connection: close`: the request's body was not read, so the connection cannot
/// carry another request, and a client must not reuse it.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Which OpenAI API a request came in through: it decides the response's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// `/v1/chat/completions`: `chat.completion` / `chat.completion.chunk`.
    Chat,
    /// The legacy `/v1/completions`: `text_completion`, a raw prompt.
    Text,
}

/// The request's JSON body, after the token and size checks; `Err` is the response to send.
async fn read_json<T: serde::de::DeserializeOwned>(
    st: &AppState,
    req: axum::extract::Request,
) -> Result<T, Response> {
    if !authorized(st, req.headers()) {
        return Err(closing(unauthorized()));
    }
    let limit = st.cfg.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(closing(too_large(limit)));
    }
    let body = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b,
        Err(e) if pw_core::one_line(&e).contains("length limit") => {
            return Err(closing(too_large(limit)));
        }
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("reading the request body: {}", pw_core::one_line(&e)),
            ));
        }
    };
    serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("request body: {e}"),
        )
    })
}

async fn chat(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    let wire: openai::ChatRequest = match read_json(&st, req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let id = format!("{:08x}", st.next_id.fetch_add(1, Ordering::Relaxed));
    match openai::from_wire(&wire, id) {
        Ok(r) => answer(st, r, wire.stream == Some(true), Api::Chat).await,
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    }
}

/// OpenAI's legacy completions: the prompt is continued as it is, without the chat template.
async fn completions(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    let wire: openai::CompletionRequest = match read_json(&st, req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let id = format!("{:08x}", st.next_id.fetch_add(1, Ordering::Relaxed));
    match openai::from_completion_wire(&wire, id) {
        Ok(r) => answer(st, r, wire.stream == Some(true), Api::Text).await,
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    }
}

async fn embeddings(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return closing(unauthorized());
    }
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "embeddings are not supported by this server: it serves a generative model through \
         POST /v1/chat/completions and POST /v1/completions",
    )
}

/// Runs `req` on the engine and answers in `api`'s shape, streamed or whole.
async fn answer(st: Arc<AppState>, req: crate::Request, stream: bool, api: Api) -> Response {
    let cancel = Arc::new(AtomicBool::new(false));
    let cancel_on_drop = CancelOnDrop(cancel.clone());
    if stream {
        return stream_answer(st, req, cancel, cancel_on_drop, api);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let submitted = st.engine.submit(
        req,
        st.cfg.max_queue,
        Some(cancel.clone()),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    if let Err(e) = submitted {
        return submit_error(&st, e);
    }
    let answer = match tokio::time::timeout(st.cfg.request_timeout, rx).await {
        Ok(a) => a,
        Err(_) => {
            cancel.store(true, Ordering::Relaxed);
            st.cancelled.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "no answer within the server's request timeout of {:.0} s; cancelled",
                    st.cfg.request_timeout.as_secs_f64()
                ),
            );
        }
    };
    match answer {
        Ok(Ok(c)) => {
            st.served.fetch_add(1, Ordering::Relaxed);
            match api {
                Api::Chat => Json(openai::completion_to_wire(&c, now_secs())).into_response(),
                Api::Text => Json(openai::text_completion_to_wire(&c, now_secs())).into_response(),
            }
        }
        Ok(Err(e @ LlmError::Request { .. })) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            e.to_string(),
        ),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the engine dropped the request",
        ),
    }
}

/// The answer to a request the engine would not take.
fn submit_error(st: &AppState, e: LlmError) -> Response {
    match e {
        LlmError::Overloaded(n) => {
            st.refused.fetch_add(1, Ordering::Relaxed);
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                format!("server busy: {n} sequences queued; retry later"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        e @ LlmError::Request { .. } => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            e.to_string(),
        ),
        e => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            e.to_string(),
        ),
    }
}

enum Event {
    Delta(usize, String),
    Done(Result<crate::Completion, LlmError>),
}

/// What the SSE body holds between chunks; dropping it (the client left) cancels the request.
struct Streaming {
    st: Arc<AppState>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    _cancel_on_drop: CancelOnDrop,
    cancel: Arc<AtomicBool>,
    deadline: tokio::time::Instant,
    head: Option<String>,
    id: String,
    model: String,
    created: u64,
    done: bool,
    api: Api,
}

impl Streaming {
    fn chunk(&self, choices: serde_json::Value, usage: Option<serde_json::Value>) -> String {
        let (id, object) = match self.api {
            Api::Chat => (format!("chatcmpl-{}", self.id), "chat.completion.chunk"),
            Api::Text => (format!("cmpl-{}", self.id), "text_completion"),
        };
        let mut v = serde_json::json!({
            "id": id, "object": object,
            "created": self.created, "model": self.model, "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        format!("data: {v}\n\n")
    }

    /// The next piece of the event stream, `None` at its end.
    async fn next(&mut self) -> Option<String> {
        if let Some(h) = self.head.take() {
            return Some(h);
        }
        if self.done {
            return None;
        }
        let event = tokio::time::timeout_at(self.deadline, self.rx.recv()).await;
        Some(match event {
            Ok(Some(Event::Delta(i, text))) => {
                let choice = match self.api {
                    Api::Chat => {
                        serde_json::json!({"index": i, "delta": {"content": text}, "finish_reason": null})
                    }
                    Api::Text => {
                        serde_json::json!({"index": i, "text": text, "logprobs": null, "finish_reason": null})
                    }
                };
                self.chunk(serde_json::Value::from(vec![choice]), None)
            }
            Ok(Some(Event::Done(Ok(c)))) => {
                self.done = true;
                self.st.served.fetch_add(1, Ordering::Relaxed);
                let choices: Vec<serde_json::Value> = c
                    .choices
                    .iter()
                    .enumerate()
                    .map(|(i, ch)| match self.api {
                        Api::Chat => {
                            serde_json::json!({"index": i, "delta": {}, "finish_reason": ch.finish_reason})
                        }
                        Api::Text => serde_json::json!({"index": i, "text": "", "logprobs": null,
                                                        "finish_reason": ch.finish_reason}),
                    })
                    .collect();
                let usage = crate::openai::usage_json(&c);
                format!(
                    "{}data: [DONE]\n\n",
                    self.chunk(serde_json::Value::from(choices), Some(usage))
                )
            }
            Ok(Some(Event::Done(Err(e)))) => {
                self.done = true;
                let kind = match e {
                    LlmError::Request { .. } => "invalid_request_error",
                    _ => "server_error",
                };
                let body =
                    serde_json::to_string(&ErrorBody::new(kind, e.to_string())).unwrap_or_default();
                format!("data: {body}\n\n")
            }
            Ok(None) => return None,
            Err(_) => {
                self.done = true;
                self.cancel.store(true, Ordering::Relaxed);
                self.st.cancelled.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "no answer within the server's request timeout of {:.0} s; cancelled",
                    self.st.cfg.request_timeout.as_secs_f64()
                );
                let body =
                    serde_json::to_string(&ErrorBody::new("timeout", msg)).unwrap_or_default();
                format!("data: {body}\n\n")
            }
        })
    }
}

/// `stream: true`: the request goes to the engine with a delta callback, and the answer is an
/// SSE body that forwards each delta as a chunk.
fn stream_answer(
    st: Arc<AppState>,
    req: crate::Request,
    cancel: Arc<AtomicBool>,
    cancel_on_drop: CancelOnDrop,
    api: Api,
) -> Response {
    use crate::Generator;
    let (etx, erx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let deltas = etx.clone();
    let on_delta: crate::embedded::OnDelta = Arc::new(move |i, text: &str| {
        let _ = deltas.send(Event::Delta(i, text.to_string()));
    });
    let n = req.params.n.max(1) as usize;
    let id = req.id.clone();
    let submitted = st.engine.submit_streaming(
        req,
        st.cfg.max_queue,
        Some(cancel.clone()),
        Some(on_delta),
        Box::new(move |r| {
            let _ = etx.send(Event::Done(r));
        }),
    );
    if let Err(e) = submitted {
        return submit_error(&st, e);
    }
    let mut s = Streaming {
        deadline: tokio::time::Instant::now() + st.cfg.request_timeout,
        model: st.engine.model(),
        st,
        rx: erx,
        _cancel_on_drop: cancel_on_drop,
        cancel,
        head: None,
        id,
        created: now_secs(),
        done: false,
        api,
    };
    // the chat API opens with each choice's role; the legacy API has no roles
    if api == Api::Chat {
        let roles: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})
            })
            .collect();
        s.head = Some(s.chunk(serde_json::Value::from(roles), None));
    }
    let body = futures_util::stream::unfold(s, |mut s| async move {
        let piece = s.next().await?;
        Some((
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(piece)),
            s,
        ))
    });
    let mut resp = axum::body::Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let info = st.engine.info();
    Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": info.name,
            "object": "model",
            "created": 0,
            "owned_by": "paperworks",
            "meta": { "n_params": info.n_params, "n_ctx_per_seq": info.ctx_per_seq,
                      "parallel": info.parallel },
        }]
    }))
    .into_response()
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({
        "status": "ok",
        "model": st.engine.info().name,
        "pending": st.engine.pending(),
        "served": st.served.load(Ordering::Relaxed),
        "refused": st.refused.load(Ordering::Relaxed),
        "timed_out": st.cancelled.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!(
            "no route {}: this server has POST /v1/chat/completions, POST /v1/completions, \
             GET /v1/models, GET /health",
            uri.path()
        ),
    )
}

async fn wrong_method() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method not allowed on this route",
    )
}

pub fn router(engine: Arc<Embedded>, cfg: ServeConfig) -> Router {
    let state = Arc::new(AppState {
        engine,
        token_digest: cfg.token.as_deref().map(digest),
        cfg,
        next_id: AtomicU64::new(0),
        served: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

/// What a bind address warrants saying before serving: a warning when the server is reachable
/// from other machines and anyone there may use it.
pub fn exposure_warning(cfg: &ServeConfig) -> Option<String> {
    (!cfg.addr.ip().is_loopback() && cfg.token.is_none()).then(|| {
        format!(
            "serving on {} without a token: anyone who can reach this address can use the \
             model; set --token-env",
            cfg.addr
        )
    })
}

/// Binds and serves until SIGTERM/Ctrl-C or `stop` resolves, then drains (see the module
/// docs). `on_bound` gets the actual address (port 0 picks a free port).
pub async fn serve(
    engine: Arc<Embedded>,
    cfg: ServeConfig,
    on_bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), LlmError> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener =
        tokio::net::TcpListener::bind(cfg.addr)
            .await
            .map_err(|e| LlmError::Endpoint {
                endpoint: cfg.addr.to_string(),
                reason: format!("cannot listen: {e}"),
            })?;
    let addr = listener.local_addr().map_err(|e| LlmError::Endpoint {
        endpoint: cfg.addr.to_string(),
        reason: e.to_string(),
    })?;
    if let Some(w) = exposure_warning(&cfg) {
        tracing::warn!("{w}");
    }
    on_bound(addr);
    let app = router(engine, cfg.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut conns = tokio::task::JoinSet::new();
    let shutdown = async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => tracing::info!("SIGTERM: finishing running requests"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: finishing running requests"),
            _ = stop => {}
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    drop(stream); // over the connection bound: closed at once
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                conns.spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(cfg.drain_timeout) => {
            tracing::warn!(
                "drain deadline of {:.0} s passed: cancelling the requests still running",
                cfg.drain_timeout.as_secs_f64()
            );
        }
    }
    // Dropping the connections' tasks drops their handlers, whose guards cancel their work.
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_exact() {
        let want = digest("s3cret");
        let check = |auth: &str| bearer_matches(&want, &headers(auth));
        assert!(check("Bearer s3cret"));
        assert!(check("bearer s3cret"));
        assert!(check("BEARER  s3cret"));
        assert!(!check("Bearer s3cre"));
        assert!(!check("Basic s3cret"));
        assert!(!check("s3cret"));
    }

    #[test]
    fn a_public_bind_without_a_token_is_warned_about() {
        let public = ServeConfig {
            addr: "0.0.0.0:8080".parse().unwrap(),
            ..Default::default()
        };
        assert!(
            exposure_warning(&public)
                .unwrap()
                .contains("without a token")
        );
        let with_token = ServeConfig {
            token: Some("t".into()),
            ..public.clone()
        };
        assert!(exposure_warning(&with_token).is_none());
        assert!(exposure_warning(&ServeConfig::default()).is_none());
    }
}
