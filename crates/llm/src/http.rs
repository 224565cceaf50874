//! The HTTP backend: any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp
//! server, Ollama, OpenAI, `paperworks serve`).
//!
//! Requests spread over several endpoints (each goes to the one with the fewest outstanding
//! requests), at most `concurrency` in flight. 429, 408, 5xx, timeouts, connection errors and
//! unparseable bodies are retried with exponential backoff and full jitter, never sooner than
//! a `Retry-After` asks; after `max_retries` the request ends with an error that says what
//! happened. 401/403/404 are not retried and concern the endpoint; other 4xx (400, 413, 422)
//! are not retried and concern only the request ([`LlmError::Refused`]), and neither is a 500
//! that repeats the same validation message (a deterministic failure).
//!
//! Servers differ in two ways this backend absorbs: where a JSON schema goes
//! ([`SchemaDialect`]: `auto` moves to the next dialect when a server refuses the field, and
//! remembers it per endpoint), and whether `n` is honoured (a server that returns fewer
//! choices than asked gets further requests at distinct seeds until `n` are there).

use crate::openai::{self, ChatResponse, ErrorBody, SchemaDialect};
use crate::{BatchResult, Completion, Generator, LlmError, Request};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Base URLs such as `http://127.0.0.1:8000/v1` (a URL ending in `/chat/completions` is
    /// used as is; one without `/v1` gets `/v1/chat/completions`).
    pub endpoints: Vec<String>,
    /// Model name sent in each request (and part of the cache key).
    pub model: String,
    /// Name of the environment variable that holds the API key (sent as a bearer token).
    pub api_key_env: Option<String>,
    /// Requests in flight over all endpoints.
    pub concurrency: usize,
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Longest wait for one attempt's whole response.
    pub timeout_s: f64,
    pub connect_timeout_s: f64,
    /// Where the JSON schema of a structured request goes (see [`SchemaDialect`]).
    pub structured_output: SchemaDialect,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoints: Vec::new(),
            model: "default".into(),
            api_key_env: None,
            concurrency: 16,
            max_retries: 6,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            timeout_s: 300.0,
            connect_timeout_s: 10.0,
            structured_output: SchemaDialect::Auto,
        }
    }
}

struct Endpoint {
    url: String,
    outstanding: AtomicUsize,
    /// The schema dialect this endpoint takes (a `DIALECTS` index); `auto` moves it on.
    dialect: AtomicU8,
}

const DIALECTS: [SchemaDialect; 5] = [
    SchemaDialect::Auto,
    SchemaDialect::JsonSchema,
    SchemaDialect::JsonObject,
    SchemaDialect::GuidedJson,
    SchemaDialect::Ollama,
];

fn dialect_index(d: SchemaDialect) -> u8 {
    DIALECTS.iter().position(|x| *x == d).unwrap_or(0) as u8
}

struct Inner {
    cfg: HttpConfig,
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    api_key: Option<String>,
    /// Bounds requests in flight; in a batch a permit is held until the caller has taken the
    /// answer (see [`Http::generate_batch`]).
    sem: Arc<tokio::sync::Semaphore>,
    rr: AtomicU64,
    attempts: AtomicU64,
    /// Whether the "fewer choices than n" warning was given (once per backend).
    n_warned: AtomicBool,
}

/// Counters of what the backend did (for tests and reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub attempts: u64,
}

pub struct Http {
    inner: Arc<Inner>,
    rt: tokio::runtime::Runtime,
}

/// The chat-completions URL for a configured base URL.
pub fn chat_url(base: &str) -> String {
    let b = base.trim_end_matches('/');
    if b.ends_with("/chat/completions") {
        b.to_string()
    } else if b.ends_with("/v1") {
        format!("{b}/chat/completions")
    } else {
        format!("{b}/v1/chat/completions")
    }
}

enum Attempt {
    Done(Completion),
    /// Not retried; concerns the endpoint (auth, wrong URL).
    Fatal(String),
    /// Not retried; concerns this request only (400, 413, 422, ...).
    Refused(String),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The server refused where the schema was put (any status): another dialect may do.
    SchemaField(String),
}

/// Whether a server error reads as a check of the request failing (which the same request
/// fails again) rather than as a passing fault ("Internal Server Error", overload).
fn reads_as_validation(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "validation",
        "invalid",
        "should be",
        "must be",
        "not supported",
        "unsupported",
        "expected",
        "missing",
        "required",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// Whether an error message is about the structured-output field (so another dialect may be
/// accepted), e.g. llama-cpp-python's "Input should be 'text' or 'json_object'".
fn names_schema_field(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "response_format",
        "json_schema",
        "json_object",
        "guided_json",
        "guided_decoding",
    ]
    .iter()
    .any(|k| m.contains(k))
}

impl Http {
    pub fn new(cfg: HttpConfig) -> Result<Self, LlmError> {
        let bad = |reason: String| LlmError::Endpoint {
            endpoint: cfg.endpoints.join(","),
            reason,
        };
        if cfg.endpoints.is_empty() {
            return Err(bad("no endpoint configured".into()));
        }
        for e in &cfg.endpoints {
            let url = chat_url(e);
            reqwest::Url::parse(&url).map_err(|err| LlmError::Endpoint {
                endpoint: e.clone(),
                reason: format!("not a URL: {err}"),
            })?;
        }
        if cfg.concurrency == 0 {
            return Err(bad("concurrency must be at least 1".into()));
        }
        let api_key = match &cfg.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => {
                    return Err(bad(format!(
                        "api_key_env names ${var}, which is not set (or empty)"
                    )));
                }
            },
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s.max(0.001)))
            .connect_timeout(Duration::from_secs_f64(cfg.connect_timeout_s.max(0.001)))
            .pool_max_idle_per_host(cfg.concurrency)
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("http-backend")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("tokio runtime: {e}")))?;
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| Endpoint {
                url: chat_url(e),
                outstanding: AtomicUsize::new(0),
                dialect: AtomicU8::new(dialect_index(cfg.structured_output)),
            })
            .collect();
        Ok(Http {
            inner: Arc::new(Inner {
                sem: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency)),
                cfg,
                client,
                endpoints,
                api_key,
                rr: AtomicU64::new(0),
                attempts: AtomicU64::new(0),
                n_warned: AtomicBool::new(false),
            }),
            rt,
        })
    }

    pub fn stats(&self) -> HttpStats {
        HttpStats {
            attempts: self.inner.attempts.load(Ordering::Relaxed),
        }
    }

    /// One request, from async code (the blocking [`Generator`] calls wrap this).
    pub async fn generate_async(&self, req: Request) -> Result<Completion, LlmError> {
        call(self.inner.clone(), req).await
    }
}

impl Inner {
    /// The endpoint with the fewest outstanding requests; ties go round-robin.
    fn pick(&self) -> &Endpoint {
        let start = self.rr.fetch_add(1, Ordering::Relaxed) as usize;
        let n = self.endpoints.len();
        let mut best = &self.endpoints[start % n];
        for k in 1..n {
            let e = &self.endpoints[(start + k) % n];
            if e.outstanding.load(Ordering::Relaxed) < best.outstanding.load(Ordering::Relaxed) {
                best = e;
            }
        }
        best
    }

    fn backoff(&self, attempt: u32, after: Option<Duration>) -> Duration {
        let cap = self.cfg.backoff_max_ms.max(1);
        let exp = self
            .cfg
            .backoff_base_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(cap);
        // full jitter on the upper half: [exp/2, exp]
        let jittered = exp / 2 + rand::random_range(0..=exp - exp / 2);
        let d = Duration::from_millis(jittered);
        match after {
            Some(a) => a.max(d).min(Duration::from_secs(600)),
            None => d,
        }
    }

    async fn attempt(&self, ep: &Endpoint, body: &openai::ChatRequest, req: &Request) -> Attempt {
        let start = Instant::now();
        let mut rb = self.client.post(&ep.url).json(body);
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k);
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    format!("cannot connect ({})", root_cause(&e))
                } else {
                    root_cause(&e)
                };
                return Attempt::Retry {
                    reason: what,
                    after: None,
                };
            }
        };
        let status = resp.status();
        let after = retry_after(resp.headers());
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Retry {
                    reason: if e.is_timeout() {
                        "timed out reading the response".into()
                    } else {
                        format!("reading the response: {}", root_cause(&e))
                    },
                    after,
                };
            }
        };
        let code = status.as_u16();
        if status.is_success() {
            return match serde_json::from_str::<ChatResponse>(&text) {
                Ok(r) => match openai::completion_from_wire(
                    r,
                    &req.id,
                    &self.cfg.model,
                    start.elapsed().as_secs_f64() * 1e3,
                ) {
                    Ok(c) => Attempt::Done(c),
                    Err(e) => Attempt::Retry {
                        reason: format!("unusable response: {e}"),
                        after: None,
                    },
                },
                Err(e) => Attempt::Retry {
                    reason: format!("malformed JSON in the response ({e}): {}", excerpt(&text)),
                    after: None,
                },
            };
        }
        let msg = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| excerpt(&text));
        if req.params.json_schema.is_some() && names_schema_field(&msg) && code != 429 {
            return Attempt::SchemaField(format!("HTTP {code}: {msg}"));
        }
        if code == 429 || code == 408 || status.is_server_error() {
            return Attempt::Retry {
                reason: format!("HTTP {code}: {msg}"),
                after,
            };
        }
        if code == 401 || code == 403 {
            let hint = match &self.cfg.api_key_env {
                Some(v) => format!("check the API key in ${v}"),
                None => "the server wants an API key: name its variable with api_key_env (--api-key-env)".into(),
            };
            return Attempt::Fatal(format!("HTTP {code} (not authorised: {hint}): {msg}"));
        }
        if code == 404 || code == 405 {
            return Attempt::Fatal(format!(
                "HTTP {code} (is this an OpenAI-compatible chat-completions URL?): {msg}"
            ));
        }
        Attempt::Refused(format!("HTTP {code}: {msg}"))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    if t.is_empty() {
        "(empty body)".into()
    } else {
        t.replace('\n', " ")
    }
}

/// `Retry-After` in seconds (integer or decimal). HTTP-date values are ignored (the backoff
/// applies).
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let s: f64 = v.parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s))
}

async fn permit(inner: &Inner) -> Result<tokio::sync::OwnedSemaphorePermit, LlmError> {
    inner
        .sem
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| LlmError::Stopped("HTTP backend closed".into()))
}

async fn call(inner: Arc<Inner>, req: Request) -> Result<Completion, LlmError> {
    let _permit = permit(&inner).await?;
    call_holding(inner, req).await
}

/// One request with its retries; the caller holds a permit. A server that returns fewer
/// choices than `n` (many ignore `n`) is asked again for the rest, each time at a seed derived
/// from the request's seed and the choice index, until `n` choices are there.
async fn call_holding(inner: Arc<Inner>, req: Request) -> Result<Completion, LlmError> {
    if let Err(reason) = req.params.validate() {
        return Err(LlmError::request(&req.id, reason));
    }
    let submitted = Instant::now();
    let want = req.params.n.max(1) as usize;
    let mut c = call_once(&inner, &req).await?;
    c.choices.truncate(want);
    let mut fills = 0;
    while c.choices.len() < want {
        if !inner.n_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the endpoint returned {} of {want} choices asked (it ignores n); the rest are \
                 asked for in further requests at distinct seeds",
                c.choices.len()
            );
        }
        fills += 1;
        if fills > want {
            return Err(LlmError::Endpoint {
                endpoint: inner.cfg.endpoints.join(","),
                reason: format!(
                    "returned {} of {want} choices after {fills} requests",
                    c.choices.len()
                ),
            });
        }
        let mut more = req.clone();
        let have = c.choices.len();
        more.params.n = (want - have) as u32;
        more.params.seed = Some(match req.params.seed {
            Some(s) => s.wrapping_add((have as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            None => rand::random(),
        });
        let m = call_once(&inner, &more).await?;
        c.usage.prompt_tokens += m.usage.prompt_tokens;
        c.usage.completion_tokens += m.usage.completion_tokens;
        c.usage.prompt_evaluated = c
            .usage
            .prompt_evaluated
            .zip(m.usage.prompt_evaluated)
            .map(|(a, b)| a + b);
        c.choices.extend(m.choices.into_iter().take(want - have));
    }
    c.latency_ms = submitted.elapsed().as_secs_f64() * 1e3;
    Ok(c)
}

/// One wire request with its retries (and, for a structured request under `auto`, its moves
/// to the next schema dialect).
async fn call_once(inner: &Inner, req: &Request) -> Result<Completion, LlmError> {
    let mut body =
        openai::to_wire(req, &inner.cfg.model).map_err(|e| LlmError::request(&req.id, e))?;
    let schema = req.params.json_schema.as_ref();
    // The dialect `body` carries now (`to_wire` writes json_schema); rewritten only on a change.
    let mut carried = SchemaDialect::JsonSchema;
    let attempts = inner.cfg.max_retries + 1;
    let mut last = String::new();
    let mut last_ep = String::new();
    let mut last_500: Option<String> = None;
    let mut attempt = 0;
    let mut switches = 0;
    // A dialect this request moved an endpoint to: kept for the endpoint only once it is
    // answered, so one bad schema cannot move a server off the dialect it does take.
    let mut trying: Option<(String, SchemaDialect)> = None;
    let mut first_refusal: Option<String> = None;
    while attempt < attempts {
        let ep = inner.pick();
        let d = match &trying {
            Some((url, d)) if *url == ep.url => *d,
            _ => DIALECTS[ep.dialect.load(Ordering::Relaxed) as usize % DIALECTS.len()],
        };
        let sent = if d == SchemaDialect::Auto {
            SchemaDialect::JsonSchema
        } else {
            d
        };
        if schema.is_some() && sent != carried {
            body = std::mem::take(&mut body).with_schema(schema, sent);
            carried = sent;
        }
        ep.outstanding.fetch_add(1, Ordering::Relaxed);
        inner.attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = inner.attempt(ep, &body, req).await;
        ep.outstanding.fetch_sub(1, Ordering::Relaxed);
        last_ep = ep.url.clone();
        attempt += 1;
        let refused = |reason| {
            Err(LlmError::Refused {
                endpoint: ep.url.clone(),
                reason,
            })
        };
        match outcome {
            Attempt::Done(c) => {
                if let Some((url, n)) = &trying
                    && *url == ep.url
                {
                    ep.dialect.store(dialect_index(*n), Ordering::Relaxed);
                }
                return Ok(c);
            }
            Attempt::Fatal(reason) => {
                return Err(LlmError::Endpoint {
                    endpoint: ep.url.clone(),
                    reason,
                });
            }
            Attempt::Refused(reason) => return refused(reason),
            Attempt::SchemaField(reason) => {
                let next = (inner.cfg.structured_output == SchemaDialect::Auto)
                    .then(|| d.next_to_try())
                    .flatten();
                match next {
                    // At most one move per dialect; a move is not a retry.
                    Some(n) if switches < DIALECTS.len() => {
                        switches += 1;
                        attempt -= 1;
                        trying = Some((ep.url.clone(), n));
                        tracing::warn!(
                            "{}: refused the schema as {sent} ({reason}); trying {n}",
                            ep.url
                        );
                        first_refusal.get_or_insert_with(|| format!("as {sent}: {reason}"));
                    }
                    _ => {
                        return refused(match &first_refusal {
                            Some(first) => format!(
                                "the schema was refused {first}; as {sent}: {reason} (choose a \
                                 dialect with --structured-output {})",
                                SchemaDialect::NAMES
                            ),
                            None => format!(
                                "{reason} (structured output sent as {sent}; choose another \
                                 with --structured-output {})",
                                SchemaDialect::NAMES
                            ),
                        });
                    }
                }
            }
            Attempt::Retry { reason, .. }
                if reason.starts_with("HTTP 500")
                    && last_500.as_deref() == Some(reason.as_str())
                    && reads_as_validation(&reason) =>
            {
                return refused(format!(
                    "{reason} (twice the same answer: a deterministic failure, not retried)"
                ));
            }
            Attempt::Retry { reason, after } => {
                tracing::debug!(id = %req.id, attempt, %reason, "retrying");
                if reason.starts_with("HTTP 500") {
                    last_500 = Some(reason.clone());
                }
                last = reason;
                if attempt < attempts {
                    tokio::time::sleep(inner.backoff(attempt - 1, after)).await;
                }
            }
        }
    }
    Err(LlmError::RetriesExhausted {
        endpoint: last_ep,
        attempts,
        last,
    })
}

impl Generator for Http {
    fn model(&self) -> String {
        self.inner.cfg.model.clone()
    }

    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        self.rt.block_on(call(self.inner.clone(), req.clone()))
    }

    /// Sends the requests concurrently, at most `concurrency` at a time. A request's permit is
    /// released only after `on_result` has returned for its answer, so answers received but
    /// not yet stored by the caller (a cache's fsync, a ledger append) count against the bound:
    /// a run killed at any moment loses at most `concurrency` paid answers, however slow the
    /// disk.
    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        type Answer = (BatchResult, Option<tokio::sync::OwnedSemaphorePermit>);
        let (tx, rx) = std::sync::mpsc::channel::<Answer>();
        let n = reqs.len();
        for req in reqs {
            let inner = self.inner.clone();
            let tx = tx.clone();
            self.rt.spawn(async move {
                let id = req.id.clone();
                let (result, held) = match permit(&inner).await {
                    Ok(p) => (call_holding(inner, req).await, Some(p)),
                    Err(e) => (Err(e), None),
                };
                let _ = tx.send((BatchResult { id, result }, held));
            });
        }
        drop(tx);
        for _ in 0..n {
            match rx.recv() {
                Ok((r, held)) => {
                    on_result(r);
                    drop(held);
                }
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_completed() {
        assert_eq!(chat_url("http://h:1/v1"), "http://h:1/v1/chat/completions");
        assert_eq!(chat_url("http://h:1/"), "http://h:1/v1/chat/completions");
        assert_eq!(
            chat_url("http://h:1/v1/chat/completions"),
            "http://h:1/v1/chat/completions"
        );
    }

    #[test]
    fn missing_api_key_variable_is_named() {
        let err = Http::new(HttpConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            api_key_env: Some("PW_TEST_SURELY_UNSET_KEY".into()),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("$PW_TEST_SURELY_UNSET_KEY"), "{err}");
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let h = Http::new(HttpConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            ..Default::default()
        })
        .unwrap();
        for a in 0..10 {
            let d = h.inner.backoff(a, None).as_millis() as u64;
            let exp = (100u64 << a).min(1000);
            assert!(d >= exp / 2 && d <= exp, "attempt {a}: {d} ms");
        }
        let d = h.inner.backoff(0, Some(Duration::from_secs(3)));
        assert_eq!(d, Duration::from_secs(3));
    }
}
