//! Choosing a backend from configuration: the embedded GGUF unless endpoints are given, with
//! the response cache in front unless it is turned off. Paper crates and the CLI build their
//! generators through [`open`].

use crate::{Cache, Cached, Embedded, EmbeddedConfig, Generator, Http, HttpConfig, LlmError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// The embedded model (used when `http.endpoints` is empty).
    pub embedded: EmbeddedConfig,
    /// OpenAI-compatible endpoints; non-empty `endpoints` selects the HTTP backend.
    pub http: HttpConfig,
    /// Response cache file; `None` turns the cache off.
    pub cache: Option<PathBuf>,
}

impl LlmConfig {
    pub fn uses_http(&self) -> bool {
        !self.http.endpoints.is_empty()
    }

    /// Which model answers, for a run's input fingerprint: the endpoints and model name, or
    /// the GGUF file's name and weight format (not its folder, so moved assets still match).
    pub fn identity(&self) -> serde_json::Value {
        if self.uses_http() {
            serde_json::json!({"endpoints": self.http.endpoints, "model": self.http.model})
        } else {
            serde_json::json!({
                "gguf": crate::embedded::default_name(&self.embedded.model),
                "weights": self.embedded.weights,
                "chat_template": self.embedded.chat_template,
            })
        }
    }
}

/// Opens the configured generator.
pub fn open(cfg: &LlmConfig) -> Result<Arc<dyn Generator>, LlmError> {
    let inner: Arc<dyn Generator> = if cfg.uses_http() {
        Arc::new(Http::new(cfg.http.clone())?)
    } else {
        Arc::new(Embedded::load(cfg.embedded.clone())?)
    };
    cached(inner, cfg.cache.as_deref())
}

/// `inner` behind the response cache at `path` (`None`: as it is).
pub fn cached(
    inner: Arc<dyn Generator>,
    path: Option<&std::path::Path>,
) -> Result<Arc<dyn Generator>, LlmError> {
    Ok(match path {
        None => inner,
        Some(path) => Arc::new(Cached::new(inner, Arc::new(Cache::open(path)?))),
    })
}
