//! OpenAI chat-completions wire types. Parsing is forgiving: unknown fields are ignored,
//! `content` may be a string, a list of text parts or null, `stop` a string or a list, and any
//! `finish_reason` string is kept.

use crate::{ChatMessage, Choice, Completion, GenParams, Request, Usage};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub messages: Vec<WireMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// vLLM's structured-output field (the `guided_json` dialect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_json: Option<serde_json::Value>,
    /// Ollama's structured-output field (the `ollama` dialect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    /// llama.cpp's and vLLM's extension: generate up to max_tokens past end-of-generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Read only to refuse them clearly on the server side (this server has no tool calling
    /// and no log-probabilities); never sent.
    #[serde(default, skip_serializing)]
    pub tools: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub functions: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub logprobs: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub top_logprobs: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings of a request's optional `stop` field.
    fn list(s: &Option<Stop>) -> Vec<String> {
        match s {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireMessage {
    pub role: String,
    #[serde(default)]
    pub content: Content,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
    #[default]
    Null,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Part {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<crate::ImageUrl>,
}

impl Content {
    /// The text parts joined (see [`crate::Content::text`]).
    pub fn text(&self) -> String {
        self.to_content().text()
    }

    /// Our content: a string stays a string; parts keep their text and image parts.
    pub fn to_content(&self) -> crate::Content {
        match self {
            Content::Text(s) => crate::Content::Text(s.clone()),
            Content::Null => crate::Content::Text(String::new()),
            Content::Parts(p) => crate::Content::Parts(
                p.iter()
                    .map(|p| crate::ContentPart {
                        kind: p.kind.clone(),
                        text: p.text.clone(),
                        image_url: p.image_url.clone(),
                    })
                    .collect(),
            ),
        }
    }

    /// The wire form of our content.
    pub fn from_content(c: &crate::Content) -> Content {
        match c {
            crate::Content::Text(s) => Content::Text(s.clone()),
            crate::Content::Parts(p) => Content::Parts(
                p.iter()
                    .map(|p| Part {
                        kind: p.kind.clone(),
                        text: p.text.clone(),
                        image_url: p.image_url.clone(),
                    })
                    .collect(),
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaSpec>,
    /// `{"type": "json_object", "schema": {...}}`: llama.cpp's server and llama-cpp-python.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JsonSchemaSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WireChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub message: Option<WireMessage>,
    /// Legacy completions servers put the text here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// `cached_tokens`: prompt tokens served from the server's KV cache (OpenAI, vLLM, and
    /// `paperworks serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

/// `{"error": {...}}` as OpenAI sends it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_string(),
                code: None,
            },
        }
    }
}

/// The wire request for one of our requests: local image files are read into data URIs here,
/// so `Err` names an image that cannot be sent.
pub fn to_wire(req: &Request, model: &str) -> Result<ChatRequest, String> {
    if req.prompt.is_some() {
        return Err(
            "a raw prompt (no chat template) can only go to the embedded backend; this backend \
             sends chat messages"
                .into(),
        );
    }
    let p = &req.params;
    let messages = req
        .messages
        .iter()
        .map(|m| {
            Ok(WireMessage {
                role: m.role.clone(),
                content: Content::from_content(&crate::image::wire_content(&m.content)?),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ChatRequest {
        model: Some(model.to_string()),
        messages,
        temperature: Some(p.temperature),
        top_p: Some(p.top_p),
        max_tokens: Some(p.max_tokens),
        max_completion_tokens: None,
        stop: if p.stop.is_empty() {
            None
        } else {
            Some(Stop::Many(p.stop.clone()))
        },
        seed: p.seed,
        n: if p.n == 1 { None } else { Some(p.n) },
        response_format: None,
        stream: None,
        guided_json: None,
        format: None,
        ignore_eos: p.ignore_eos.then_some(true),
        tools: None,
        functions: None,
        logprobs: None,
        top_logprobs: None,
    }
    .with_schema(p.json_schema.as_ref(), SchemaDialect::JsonSchema))
}

/// How a server is told the JSON schema an answer must follow. Servers differ: OpenAI and
/// `paperworks serve` take `response_format: json_schema`; llama.cpp's server and
/// llama-cpp-python take `response_format: {type: json_object, schema}` (the latter refuses
/// `json_schema` with HTTP 500); vLLM takes `guided_json`; Ollama takes `format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaDialect {
    /// `json_schema` first; on a refusal that names the field, the next of `json_object` and
    /// `guided_json`, remembered per endpoint.
    #[default]
    Auto,
    JsonSchema,
    JsonObject,
    GuidedJson,
    Ollama,
}

impl SchemaDialect {
    pub const NAMES: &'static str = "auto, json_schema, json_object, guided_json, ollama";

    /// The dialect `auto` tries after this one, if any.
    pub fn next_to_try(self) -> Option<SchemaDialect> {
        match self {
            SchemaDialect::Auto | SchemaDialect::JsonSchema => Some(SchemaDialect::JsonObject),
            SchemaDialect::JsonObject => Some(SchemaDialect::GuidedJson),
            _ => None,
        }
    }
}

impl std::str::FromStr for SchemaDialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => SchemaDialect::Auto,
            "json_schema" => SchemaDialect::JsonSchema,
            "json_object" => SchemaDialect::JsonObject,
            "guided_json" => SchemaDialect::GuidedJson,
            "ollama" => SchemaDialect::Ollama,
            other => {
                return Err(format!(
                    "unknown structured-output dialect {other:?} (one of {})",
                    SchemaDialect::NAMES
                ));
            }
        })
    }
}

impl std::fmt::Display for SchemaDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchemaDialect::Auto => "auto",
            SchemaDialect::JsonSchema => "json_schema",
            SchemaDialect::JsonObject => "json_object",
            SchemaDialect::GuidedJson => "guided_json",
            SchemaDialect::Ollama => "ollama",
        })
    }
}

impl ChatRequest {
    /// This request with `schema` (if any) put where `dialect` expects it, and nowhere else.
    pub fn with_schema(mut self, schema: Option<&serde_json::Value>, d: SchemaDialect) -> Self {
        self.response_format = None;
        self.guided_json = None;
        self.format = None;
        let Some(s) = schema else { return self };
        match d {
            SchemaDialect::Auto | SchemaDialect::JsonSchema => {
                self.response_format = Some(ResponseFormat {
                    kind: "json_schema".into(),
                    json_schema: Some(JsonSchemaSpec {
                        name: "output".into(),
                        schema: Some(s.clone()),
                        strict: Some(true),
                    }),
                    schema: None,
                })
            }
            SchemaDialect::JsonObject => {
                self.response_format = Some(ResponseFormat {
                    kind: "json_object".into(),
                    json_schema: None,
                    schema: Some(s.clone()),
                })
            }
            SchemaDialect::GuidedJson => self.guided_json = Some(s.clone()),
            SchemaDialect::Ollama => self.format = Some(s.clone()),
        }
        self
    }
}

/// Our request for a wire request (the server side). `Err` says which field is wrong.
pub fn from_wire(w: &ChatRequest, id: String) -> Result<Request, String> {
    let given = |v: &Option<serde_json::Value>| {
        v.as_ref().is_some_and(|x| {
            !x.is_null() && x != &serde_json::json!(false) && x != &serde_json::json!([])
        })
    };
    if given(&w.tools) || given(&w.functions) {
        return Err("tools: tool and function calling are not supported by this server".into());
    }
    if given(&w.logprobs) || given(&w.top_logprobs) {
        return Err("logprobs: log-probabilities are not supported by this server".into());
    }
    for (i, m) in w.messages.iter().enumerate() {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(format!(
                "messages[{i}].role: {:?} is not one of system, developer, user, assistant",
                m.role
            ));
        }
    }
    let d = GenParams::default();
    let json_schema = match &w.response_format {
        None => None,
        Some(rf) => match rf.kind.as_str() {
            "text" => None,
            "json_object" => Some(
                rf.schema
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({ "type": "object" })),
            ),
            "json_schema" => Some(
                rf.json_schema
                    .as_ref()
                    .and_then(|j| j.schema.clone())
                    .ok_or("response_format.json_schema.schema is missing")?,
            ),
            other => return Err(format!("response_format.type {other:?} is not supported")),
        },
    };
    let json_schema = json_schema
        .or_else(|| w.guided_json.clone())
        .or_else(|| w.format.clone().filter(|f| f.is_object()));
    let params = GenParams {
        temperature: w.temperature.unwrap_or(d.temperature),
        top_p: w.top_p.unwrap_or(d.top_p),
        max_tokens: w
            .max_completion_tokens
            .or(w.max_tokens)
            .unwrap_or(d.max_tokens),
        stop: Stop::list(&w.stop),
        seed: w.seed,
        n: w.n.unwrap_or(1),
        json_schema,
        ignore_eos: w.ignore_eos.unwrap_or(false),
    };
    params.validate()?;
    if w.messages.is_empty() {
        return Err("messages must not be empty".into());
    }
    Ok(Request {
        id,
        messages: w
            .messages
            .iter()
            .map(|m| {
                // OpenAI's newer name for the system role; chat templates know "system"
                let role = if m.role == "developer" {
                    "system"
                } else {
                    &m.role
                };
                ChatMessage::new(role.to_string(), m.content.to_content())
            })
            .collect(),
        params,
        prompt: None,
    })
}

/// OpenAI's legacy `/v1/completions` request: the prompt is continued as it is, without the
/// chat template. Read on the server side only.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    /// A string, or a list holding one string; token-id lists are refused.
    #[serde(default)]
    pub prompt: Option<serde_json::Value>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    /// Read only to refuse what this server does not do.
    #[serde(default)]
    pub echo: Option<serde_json::Value>,
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    #[serde(default)]
    pub suffix: Option<serde_json::Value>,
    #[serde(default)]
    pub best_of: Option<u32>,
}

/// OpenAI's default `max_tokens` for legacy completions.
const LEGACY_MAX_TOKENS: u32 = 16;

/// Our raw-prompt request for a legacy completions request. `Err` names the field.
pub fn from_completion_wire(w: &CompletionRequest, id: String) -> Result<Request, String> {
    let truthy = |v: &Option<serde_json::Value>| {
        v.as_ref().is_some_and(|x| {
            !x.is_null() && x != &serde_json::json!(false) && x != &serde_json::json!("")
        })
    };
    if truthy(&w.echo) {
        return Err("echo: echoing the prompt is not supported by this server".into());
    }
    if truthy(&w.logprobs) {
        return Err("logprobs: log-probabilities are not supported by this server".into());
    }
    if truthy(&w.suffix) {
        return Err(
            "suffix: insertion (fill-in-the-middle) is not supported by this server".into(),
        );
    }
    let n = w.n.unwrap_or(1);
    if w.best_of.is_some_and(|b| b != n) {
        return Err(
            "best_of: only best_of equal to n is supported (no server-side ranking)".into(),
        );
    }
    let prompt = match &w.prompt {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        Some(serde_json::Value::Array(a)) if a.iter().all(|x| x.is_string()) => {
            return Err(format!(
                "prompt: {} prompts in one request; send one prompt per request",
                a.len()
            ));
        }
        Some(serde_json::Value::Array(_)) => {
            return Err("prompt: token-id prompts are not supported; send the text".into());
        }
        None | Some(serde_json::Value::Null) => return Err("prompt is missing".into()),
        Some(_) => return Err("prompt must be a string".into()),
    };
    if prompt.is_empty() {
        return Err("prompt must not be empty".into());
    }
    let d = GenParams::default();
    let params = GenParams {
        temperature: w.temperature.unwrap_or(d.temperature),
        top_p: w.top_p.unwrap_or(d.top_p),
        max_tokens: w.max_tokens.unwrap_or(LEGACY_MAX_TOKENS),
        stop: Stop::list(&w.stop),
        seed: w.seed,
        n,
        json_schema: None,
        ignore_eos: w.ignore_eos.unwrap_or(false),
    };
    params.validate()?;
    Ok(Request::raw(id, prompt, params))
}

/// The legacy `text_completion` response for one of our completions (the server side).
pub fn text_completion_to_wire(c: &Completion, created: u64) -> serde_json::Value {
    let choices: Vec<serde_json::Value> = c
        .choices
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            serde_json::json!({"index": i, "text": ch.text, "logprobs": null,
                               "finish_reason": ch.finish_reason})
        })
        .collect();
    serde_json::json!({
        "id": format!("cmpl-{}", c.id), "object": "text_completion", "created": created,
        "model": c.model, "choices": choices,
        "usage": usage_json(c),
    })
}

impl WireUsage {
    /// A completion's `usage` as the OpenAI API writes it.
    pub fn of(c: &Completion) -> Self {
        WireUsage {
            prompt_tokens: c.usage.prompt_tokens,
            completion_tokens: c.usage.completion_tokens,
            total_tokens: c.usage.prompt_tokens + c.usage.completion_tokens,
            prompt_tokens_details: c
                .usage
                .cached_tokens(c.choices.len())
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        }
    }
}

/// [`WireUsage::of`] as a JSON value, for the responses written as `json!`.
pub fn usage_json(c: &Completion) -> serde_json::Value {
    serde_json::to_value(WireUsage::of(c)).unwrap_or_default()
}

/// Our completion for a wire response (the client side). `Err` when it holds no choice.
pub fn completion_from_wire(
    r: ChatResponse,
    id: &str,
    fallback_model: &str,
    latency_ms: f64,
) -> Result<Completion, String> {
    if r.choices.is_empty() {
        return Err("response has no choices".into());
    }
    let mut choices: Vec<(u32, Choice)> = r
        .choices
        .into_iter()
        .map(|c| {
            let text = c
                .message
                .map(|m| m.content.text())
                .or(c.text)
                .unwrap_or_default();
            (
                c.index,
                Choice {
                    text,
                    finish_reason: c.finish_reason.unwrap_or_else(|| "unknown".into()),
                },
            )
        })
        .collect();
    choices.sort_by_key(|c| c.0);
    let n_choices = choices.len();
    let usage = r.usage.unwrap_or_default();
    Ok(Completion {
        id: id.to_string(),
        model: if r.model.is_empty() {
            fallback_model.to_string()
        } else {
            r.model
        },
        choices: choices.into_iter().map(|c| c.1).collect(),
        usage: Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            // the wire says it per request; each choice is taken to have reused as much
            prompt_evaluated: usage
                .prompt_tokens_details
                .map(|d| usage.prompt_tokens.saturating_sub(d.cached_tokens) * n_choices as u64),
        },
        latency_ms,
        cached: false,
    })
}

/// The wire response for one of our completions (the server side).
pub fn completion_to_wire(c: &Completion, created: u64) -> ChatResponse {
    ChatResponse {
        id: format!("chatcmpl-{}", c.id),
        object: "chat.completion".into(),
        created,
        model: c.model.clone(),
        choices: c
            .choices
            .iter()
            .enumerate()
            .map(|(i, ch)| WireChoice {
                index: i as u32,
                message: Some(WireMessage {
                    role: "assistant".into(),
                    content: Content::Text(ch.text.clone()),
                }),
                text: None,
                finish_reason: Some(ch.finish_reason.clone()),
            })
            .collect(),
        usage: Some(WireUsage::of(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_but_valid_responses_parse() {
        let body = r#"{"id":"x","choices":[
            {"index":1,"message":{"role":"assistant","content":[{"type":"text","text":"b"}]},"finish_reason":"eos_token","logprobs":null},
            {"index":0,"message":{"role":"assistant","content":"a","tool_calls":[]},"finish_reason":null}],
            "usage":{"prompt_tokens":3,"completion_tokens":2},"system_fingerprint":"fp"}"#;
        let r: ChatResponse = serde_json::from_str(body).unwrap();
        let c = completion_from_wire(r, "q1", "m", 1.0).unwrap();
        assert_eq!(c.choices[0].text, "a");
        assert_eq!(c.choices[0].finish_reason, "unknown");
        assert_eq!(c.choices[1].text, "b");
        assert_eq!(c.choices[1].finish_reason, "eos_token");
        assert_eq!(c.model, "m");
        assert_eq!(c.usage.completion_tokens, 2);
    }

    #[test]
    fn cached_prompt_tokens_cross_the_wire_both_ways() {
        let body = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"a"},
            "finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":5,
            "total_tokens":105,"prompt_tokens_details":{"cached_tokens":64}}}"#;
        let r: ChatResponse = serde_json::from_str(body).unwrap();
        let c = completion_from_wire(r, "q", "m", 1.0).unwrap();
        assert_eq!(c.usage.prompt_evaluated, Some(36));
        let back = completion_to_wire(&c, 0);
        let u = back.usage.unwrap();
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 64);
        // a server that does not say leaves it unknown, and we do not invent it
        let plain = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant",
            "content":"a"}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let c = completion_from_wire(serde_json::from_str(plain).unwrap(), "q", "m", 1.0).unwrap();
        assert_eq!(c.usage.prompt_evaluated, None);
        assert!(usage_json(&c).get("prompt_tokens_details").is_none());
        // n = 2 choices that evaluated 100 + 1 of a 100-token prompt: 49 cached on average
        let two = Usage {
            prompt_tokens: 100,
            completion_tokens: 0,
            prompt_evaluated: Some(101),
        };
        assert_eq!(two.cached_tokens(2), Some(49));
    }

    #[test]
    fn wire_round_trip_keeps_parameters() {
        let req = Request::new(
            "r",
            vec![ChatMessage::system("s"), ChatMessage::user("u")],
            GenParams {
                temperature: 0.3,
                top_p: 0.9,
                max_tokens: 17,
                stop: vec!["\n".into()],
                seed: Some(5),
                n: 3,
                json_schema: Some(serde_json::json!({"type":"object"})),
                ignore_eos: true,
            },
        );
        let w = to_wire(&req, "m").unwrap();
        let text = serde_json::to_string(&w).unwrap();
        assert!(text.contains(r#""ignore_eos":true"#), "{text}");
        let back: ChatRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(from_wire(&back, "r".into()).unwrap(), req);
    }

    #[test]
    fn ignore_eos_is_left_out_unless_set() {
        // OpenAI's API refuses fields it does not know, and the response cache keys on the
        // serialized parameters: both stay as they were for every request that does not set it
        let req = Request::user("r", "u", GenParams::default());
        let text = serde_json::to_string(&to_wire(&req, "m").unwrap()).unwrap();
        assert!(!text.contains("ignore_eos"), "{text}");
        let params = serde_json::to_string(&GenParams::default()).unwrap();
        assert!(!params.contains("ignore_eos"), "{params}");
        let w: CompletionRequest =
            serde_json::from_str(r#"{"prompt":"Once","ignore_eos":true}"#).unwrap();
        assert!(
            from_completion_wire(&w, "c".into())
                .unwrap()
                .params
                .ignore_eos
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let w: ChatRequest =
            serde_json::from_str(r#"{"messages":[{"role":"user","content":"x"}],"top_p":0}"#)
                .unwrap();
        assert!(from_wire(&w, "r".into()).unwrap_err().contains("top_p"));
        let w: ChatRequest = serde_json::from_str(r#"{"messages":[]}"#).unwrap();
        assert!(from_wire(&w, "r".into()).unwrap_err().contains("messages"));
        let w: ChatRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}"#,
        )
        .unwrap();
        assert!(
            from_wire(&w, "r".into())
                .unwrap_err()
                .contains("response_format")
        );
        // what this server cannot do is said, not silently ignored
        for (body, says) in [
            (
                r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#,
                "tools:",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#,
                "logprobs:",
            ),
            (
                r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
                "messages[0].role",
            ),
        ] {
            let w: ChatRequest = serde_json::from_str(body).unwrap();
            let e = from_wire(&w, "r".into()).unwrap_err();
            assert!(e.starts_with(says), "{body}: {e}");
        }
        let w: ChatRequest = serde_json::from_str(
            r#"{"messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"x"}],"tools":[],"logprobs":false,"stream":true}"#,
        )
        .unwrap();
        let r = from_wire(&w, "r".into()).unwrap();
        assert_eq!(r.messages[0].role, "system");
        // the structured-output dialects a client may send all arrive as the schema
        for body in [
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object","schema":{"type":"integer"}}}"#,
            r#"{"messages":[{"role":"user","content":"x"}],"guided_json":{"type":"integer"}}"#,
            r#"{"messages":[{"role":"user","content":"x"}],"format":{"type":"integer"}}"#,
        ] {
            let w: ChatRequest = serde_json::from_str(body).unwrap();
            let r = from_wire(&w, "r".into()).unwrap();
            assert_eq!(
                r.params.json_schema,
                Some(serde_json::json!({"type":"integer"})),
                "{body}"
            );
        }
    }

    #[test]
    fn legacy_completions_take_one_text_prompt_and_name_what_they_refuse() {
        let w: CompletionRequest =
            serde_json::from_str(r#"{"model":"m","prompt":["Once upon"],"n":2,"stop":"."}"#)
                .unwrap();
        let r = from_completion_wire(&w, "c".into()).unwrap();
        assert_eq!(r.prompt.as_deref(), Some("Once upon"));
        assert!(r.messages.is_empty());
        assert_eq!(r.params.max_tokens, LEGACY_MAX_TOKENS);
        assert_eq!(
            (r.params.n, r.params.stop.clone()),
            (2, vec![".".to_string()])
        );
        for (body, says) in [
            (r#"{"prompt":"x","echo":true}"#, "echo:"),
            (r#"{"prompt":"x","logprobs":2}"#, "logprobs:"),
            (r#"{"prompt":"x","suffix":"y"}"#, "suffix:"),
            (r#"{"prompt":"x","best_of":3}"#, "best_of:"),
            (r#"{"prompt":["a","b"]}"#, "prompt: 2 prompts"),
            (r#"{"prompt":[1,2,3]}"#, "prompt: token-id"),
            (r#"{"model":"m"}"#, "prompt is missing"),
            (r#"{"prompt":"x","top_p":0}"#, "top_p"),
        ] {
            let w: CompletionRequest = serde_json::from_str(body).unwrap();
            let e = from_completion_wire(&w, "c".into()).unwrap_err();
            assert!(e.starts_with(says), "{body}: {e}");
        }
        // a raw prompt never goes out as chat messages
        assert!(to_wire(&r, "m").unwrap_err().contains("raw prompt"));
        let c = Completion {
            id: "c".into(),
            model: "m".into(),
            choices: vec![Choice {
                text: " a time".into(),
                finish_reason: "length".into(),
            }],
            usage: Usage {
                prompt_tokens: 2,
                completion_tokens: 3,
                prompt_evaluated: None,
            },
            latency_ms: 1.0,
            cached: false,
        };
        let v = text_completion_to_wire(&c, 7);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], " a time");
        assert_eq!(v["usage"]["total_tokens"], 5);
    }
}
