//! `paperworks serve`: an OpenAI-compatible HTTP server over the embedded backend.
//!
//! Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`. Binds 127.0.0.1 by
//! default; an optional bearer token; request bodies over `max_body_bytes` get 413; when
//! `max_queue` requests are already waiting or running, new ones get 429 with `Retry-After`
//! instead of piling up; SIGTERM or Ctrl-C stops accepting, lets running requests finish and
//! exits.

use crate::openai::{self, ErrorBody};
use crate::{Embedded, LlmError};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// Clients must send `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    pub max_body_bytes: usize,
    /// Requests waiting or running before new ones get 429.
    pub max_queue: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body_bytes: 1 << 20,
            max_queue: 64,
        }
    }
}

struct AppState {
    engine: Arc<Embedded>,
    cfg: ServeConfig,
    next_id: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
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

async fn chat(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(token) = &st.cfg.token {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == token);
        if !ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "missing or wrong bearer token",
            );
        }
    }
    let wire: openai::ChatRequest = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("request body: {e}"),
            );
        }
    };
    let id = format!("{:08x}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let req = match openai::from_wire(&wire, id) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let submitted = st.engine.submit(
        req,
        st.cfg.max_queue,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    match submitted {
        Ok(()) => {}
        Err(LlmError::Overloaded(n)) => {
            st.refused.fetch_add(1, Ordering::Relaxed);
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                format!("server busy: {n} requests queued; retry later"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        Err(e @ LlmError::Request { .. }) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                e.to_string(),
            );
        }
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                e.to_string(),
            );
        }
    }
    match rx.await {
        Ok(Ok(c)) => {
            st.served.fetch_add(1, Ordering::Relaxed);
            Json(openai::completion_to_wire(&c, now_secs())).into_response()
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

async fn models(State(st): State<Arc<AppState>>) -> Response {
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
    }))
    .into_response()
}

pub fn router(engine: Arc<Embedded>, cfg: ServeConfig) -> Router {
    let limit = cfg.max_body_bytes;
    let state = Arc::new(AppState {
        engine,
        cfg,
        next_id: AtomicU64::new(0),
        served: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Binds and serves until SIGTERM/Ctrl-C or `stop` resolves. `on_bound` gets the actual
/// address (port 0 picks a free port).
pub async fn serve(
    engine: Arc<Embedded>,
    cfg: ServeConfig,
    on_bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), LlmError> {
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
    on_bound(addr);
    let app = router(engine, cfg);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
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
        })
        .await
        .map_err(|e| LlmError::Endpoint {
            endpoint: addr.to_string(),
            reason: e.to_string(),
        })
}
