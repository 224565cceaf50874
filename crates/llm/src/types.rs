//! Requests and completions in the OpenAI chat shape, shared by every backend, the cache and
//! the server.

use serde::{Deserialize, Serialize};

/// One chat message, as in OpenAI's `messages` array. Its content is plain text, or a list of
/// text and image parts (OpenAI's `image_url` form): what vision-language models read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Content,
}

/// A message's content. Plain text serialises as a JSON string, as OpenAI's does, so text-only
/// messages (and every cache key made of them) look as they always have.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a message: `{"type": "text", "text": ...}` or
/// `{"type": "image_url", "image_url": {"url": ...}}`. Parts of other types are kept as they
/// came and ignored by our backends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
}

/// Where an image is: a `data:image/...;base64,` URI, a local file (a path or a `file://`
/// URL, read when the request is sent), or an `http(s)://` URL that the server fetches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    /// OpenAI's `detail` hint (`low`, `high`, `auto`), passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ContentPart {
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart {
            kind: "text".into(),
            text: Some(text.into()),
            image_url: None,
        }
    }
    /// An image part; `url` is a data URI, a local path, a `file://` or an `http(s)://` URL.
    pub fn image(url: impl Into<String>) -> Self {
        ContentPart {
            kind: "image_url".into(),
            text: None,
            image_url: Some(ImageUrl {
                url: url.into(),
                detail: None,
            }),
        }
    }
}

impl Content {
    /// The text parts joined (an image contributes nothing).
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(p) => p
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
    /// The image parts, in order.
    pub fn images(&self) -> impl Iterator<Item = &ImageUrl> {
        let parts: &[ContentPart] = match self {
            Content::Text(_) => &[],
            Content::Parts(p) => p,
        };
        parts.iter().filter_map(|p| p.image_url.as_ref())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::Text(s)
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::Text(s.to_string())
    }
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<Content>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<Content>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<Content>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<Content>) -> Self {
        Self::new("assistant", content)
    }
    /// A user message showing `images` (each a data URI, local path or URL) before `text`.
    pub fn user_with_images(text: impl Into<String>, images: &[impl AsRef<str>]) -> Self {
        let mut parts: Vec<ContentPart> = images
            .iter()
            .map(|i| ContentPart::image(i.as_ref()))
            .collect();
        parts.push(ContentPart::text(text));
        Self::new("user", Content::Parts(parts))
    }
    /// The message's text (its text parts joined).
    pub fn text(&self) -> String {
        self.content.text()
    }
    pub fn has_images(&self) -> bool {
        self.content.images().next().is_some()
    }
}

/// Sampling parameters. Defaults follow OpenAI's (temperature 1, top-p 1, one sample) except
/// `max_tokens`, which is bounded so a runaway generation ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenParams {
    /// 0 means greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens whose probabilities sum to `top_p`.
    pub top_p: f32,
    pub max_tokens: u32,
    /// Generation ends before the first occurrence of any of these (not included in the text).
    pub stop: Vec<String>,
    /// Same seed, same request, same model: same text (on the embedded backend; HTTP servers
    /// honour it as far as they do).
    pub seed: Option<u64>,
    /// Independent samples of the same prompt (the `choices` of the result).
    pub n: u32,
    /// A JSON schema the output must follow (llama.cpp grammar on the embedded backend,
    /// `response_format: json_schema` over HTTP).
    pub json_schema: Option<serde_json::Value>,
    /// Keep generating past the end-of-generation token, up to `max_tokens` (llama.cpp's and
    /// vLLM's `ignore_eos`): for timing decode at a fixed number of streams. Sent over HTTP only
    /// when set; OpenAI's own API does not know it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_eos: bool,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: 256,
            stop: Vec::new(),
            seed: None,
            n: 1,
            json_schema: None,
            ignore_eos: false,
        }
    }
}

impl GenParams {
    pub fn greedy(max_tokens: u32) -> Self {
        GenParams {
            temperature: 0.0,
            max_tokens,
            ..Default::default()
        }
    }

    /// Checks the ranges a backend relies on; `Err` names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!("temperature {} must be >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if self.n == 0 || self.n > 128 {
            return Err(format!("n {} must be in 1..=128", self.n));
        }
        if self.max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err("stop strings must not be empty".into());
        }
        if let Some(s) = &self.json_schema
            && !s.is_object()
            && !s.is_boolean()
        {
            return Err("json_schema must be a JSON object".into());
        }
        Ok(())
    }
}

/// One generation request. `id` tags its result in a batch; it is not part of the cache key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub params: GenParams,
    /// A raw prompt, tokenised as it is without the chat template (OpenAI's legacy
    /// `/v1/completions`); `messages` is then empty. Only the embedded text backend takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

impl Request {
    pub fn new(id: impl Into<String>, messages: Vec<ChatMessage>, params: GenParams) -> Self {
        Request {
            id: id.into(),
            messages,
            params,
            prompt: None,
        }
    }
    /// A raw prompt that bypasses the chat template (see [`Request::prompt`]).
    pub fn raw(id: impl Into<String>, prompt: impl Into<String>, params: GenParams) -> Self {
        Request {
            id: id.into(),
            messages: Vec::new(),
            params,
            prompt: Some(prompt.into()),
        }
    }
    /// Whether any message holds an image part.
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(ChatMessage::has_images)
    }
    /// A single user message.
    pub fn user(id: impl Into<String>, prompt: impl Into<String>, params: GenParams) -> Self {
        Self::new(id, vec![ChatMessage::user(prompt.into())], params)
    }
}

/// Why a sample ended.
pub mod finish {
    /// End-of-generation token or a stop string.
    pub const STOP: &str = "stop";
    /// `max_tokens` reached (or the context is full).
    pub const LENGTH: &str = "length";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub text: String,
    /// `stop` or `length` from our backends; any string a server sends is kept as is.
    pub finish_reason: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The request's prompt, counted once however many choices it asked for (OpenAI's sense).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens the model actually evaluated for this request, over all its choices:
    /// `n * prompt_tokens` less what was reused from the KV cache (a shared prefix, the
    /// choices after the first). `None` where the backend does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_evaluated: Option<u64>,
}

impl Usage {
    /// OpenAI's `prompt_tokens_details.cached_tokens` for a request of `n` choices: the prompt
    /// tokens one choice did not evaluate, on average over the choices.
    pub fn cached_tokens(&self, n: usize) -> Option<u64> {
        let per_choice = self.prompt_evaluated?.div_ceil(n.max(1) as u64);
        Some(self.prompt_tokens.saturating_sub(per_choice))
    }
}

/// The answer to one [`Request`]: `n` choices, token usage and latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The request's id.
    pub id: String,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    /// Wall time from submission to the last token (queueing included); 0 for a cache hit's
    /// own lookup is not reported: a hit keeps the latency it was generated with.
    pub latency_ms: f64,
    /// Served from the response cache.
    #[serde(default)]
    pub cached: bool,
}

impl Completion {
    /// The first choice's text.
    pub fn text(&self) -> &str {
        self.choices.first().map(|c| c.text.as_str()).unwrap_or("")
    }
}
