//! Errors of the generation backends. Each names the model file, endpoint, cache or request at
//! fault so the binary prints it as one line.

use std::path::PathBuf;

#[derive(Clone, Debug, thiserror::Error)]
pub enum LlmError {
    /// The GGUF file is missing, not a GGUF, truncated, or llama.cpp refused it.
    #[error("model {}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },

    /// An endpoint answered in a way that retrying cannot fix and that concerns every request
    /// (401/403/404, bad config).
    #[error("endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },

    /// The endpoint refused this one request (HTTP 400, 413, 422, ...): the request is at
    /// fault, not the endpoint, so a stage rejects the item and goes on.
    #[error("endpoint {endpoint}: refused the request: {reason}")]
    Refused { endpoint: String, reason: String },

    /// Every attempt failed with a retryable error.
    #[error("endpoint {endpoint}: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        endpoint: String,
        attempts: u32,
        last: String,
    },

    /// The request itself is invalid (parameters, schema, prompt longer than the context).
    #[error("request {id}: {reason}")]
    Request { id: String, reason: String },

    #[error("response cache {}: {reason}", path.display())]
    Cache { path: PathBuf, reason: String },

    /// The engine's queue is full (the server answers 429).
    #[error("overloaded: {0} requests already queued")]
    Overloaded(usize),

    /// The engine stopped (its thread ended).
    #[error("generator stopped: {0}")]
    Stopped(String),
}

impl LlmError {
    pub fn request(id: &str, reason: impl Into<String>) -> Self {
        LlmError::Request {
            id: id.to_string(),
            reason: reason.into(),
        }
    }
    pub fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        LlmError::Model {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<LlmError> for pw_core::Error {
    fn from(e: LlmError) -> Self {
        pw_core::Error::Other(e.to_string())
    }
}
