//! pw-llm: language-model generation for every paperworks system that calls a model.
//!
//! - [`Generator`] (`generator.rs`): chat messages in, completions out; `generate_batch` yields
//!   results as they finish, tagged with the request id.
//! - [`Embedded`] (`embedded/`): any local GGUF through llama.cpp, continuous batching of many
//!   sequences in one context, JSON-schema grammars, seeded sampling.
//! - [`Http`] (`http.rs`): OpenAI-compatible servers (vLLM, llama.cpp server, Ollama, OpenAI),
//!   several endpoints, concurrency limit, retries with backoff and jitter.
//! - [`Cached`] (`cache.rs`): a crash-safe response cache (redb) in front of any generator.
//! - [`serve`] (`serve.rs`): an OpenAI-compatible HTTP server over the embedded backend.
//! - [`backend`] (`backend.rs`): [`LlmConfig`] and [`backend::open`], how every caller picks a
//!   backend.
//! - [`bench`] (`bench.rs`): prompt-processing and generation tokens/s, single and batched.
//! - [`openai`] (`openai.rs`): the wire types, forgiving on input; messages hold text and
//!   image parts ([`Content`]), [`image`] (`image.rs`) reads local images into data URIs at
//!   send time and hashes their bytes into cache keys.
//! - [`schema`] (`schema.rs`): JSON-schema validation of parsed outputs.
//! - [`stage`] (`stage.rs`): a resumable generation stage over a ledger: parse, validate,
//!   retry with a new seed, reject with the reason; `--shard I/N`.

pub mod backend;
pub mod bench;
pub mod cache;
pub mod embedded;
mod error;
mod generator;
pub mod http;
pub mod image;
pub mod openai;
pub mod schema;
pub mod serve;
pub mod stage;
mod types;

pub use backend::LlmConfig;
pub use cache::{Cache, Cached};
pub use embedded::{Embedded, EmbeddedConfig, ModelInfo};
pub use error::LlmError;
pub use generator::{BatchResult, Generator, generate_all};
pub use http::{Http, HttpConfig};
pub use types::{
    ChatMessage, Choice, Completion, Content, ContentPart, GenParams, ImageUrl, Request, Usage,
    finish,
};
