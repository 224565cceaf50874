//! Chat templates as their authors wrote them: a GGUF's `tokenizer.chat_template` is a Jinja
//! template (the one `transformers` renders), and it is rendered here with MiniJinja under the
//! same settings (`trim_blocks`, `lstrip_blocks`, loop controls, `tojson`, Python's string
//! methods, `raise_exception`).
//!
//! llama.cpp's own `llama_chat_apply_template` does not render Jinja: it recognises a template
//! by its markers and applies a built-in format, which drops what the built-in lacks (SmolLM2's
//! and Qwen2.5's default system prompts among them). That path is kept for a template given by
//! a llama.cpp name (`chatml`, `llama3`, `gemma`, ...), and as the fallback, with a warning,
//! for a template that MiniJinja cannot render.

use crate::LlmError;
use crate::embedded::EmbeddedConfig;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

/// A loaded chat template; [`ChatTemplate::apply`] renders a conversation for the model.
pub enum ChatTemplate {
    /// A Jinja template (the GGUF's, or given as text), rendered here.
    Jinja {
        env: Box<minijinja::Environment<'static>>,
        bos: String,
        eos: String,
        /// The model's tokenizer adds BOS itself, so a rendered leading BOS is dropped (else the
        /// prompt would start with two).
        strip_bos: bool,
    },
    /// llama.cpp's built-in format for a name or a recognised template.
    Builtin(LlamaChatTemplate),
}

const NAME: &str = "chat_template";

fn looks_like_jinja(t: &str) -> bool {
    t.contains("{%") || t.contains("{{")
}

fn token_text(model: &LlamaModel, tok: LlamaToken) -> String {
    if tok.0 < 0 {
        return String::new();
    }
    String::from_utf8_lossy(&model.vocab().token_to_piece(tok, true, None)).into_owned()
}

fn jinja_env(source: String) -> Result<minijinja::Environment<'static>, String> {
    let mut env = minijinja::Environment::new();
    // the settings `transformers` renders chat templates with
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template_owned(NAME, source)
        .map_err(|e| e.to_string())?;
    Ok(env)
}

/// `messages` (role, text) through a Jinja template, with transformers' variables.
fn render_jinja(
    env: &minijinja::Environment<'static>,
    messages: &[(String, String)],
    bos: &str,
    eos: &str,
) -> Result<String, String> {
    let msgs: Vec<minijinja::Value> = messages
        .iter()
        .map(|(role, content)| minijinja::context! { role => role, content => content })
        .collect();
    env.get_template(NAME)
        .and_then(|t| {
            t.render(minijinja::context! {
                messages => msgs,
                add_generation_prompt => true,
                bos_token => bos,
                eos_token => eos,
            })
        })
        .map_err(|e| format!("rendering the Jinja chat template: {e}"))
}

impl ChatTemplate {
    /// The template `cfg` asks for (`cfg.chat_template`, else the GGUF's own), checked on a
    /// probe conversation so a template that cannot render fails at load, not at the first
    /// request.
    pub fn load(model: &LlamaModel, cfg: &EmbeddedConfig) -> Result<Self, LlmError> {
        let path = &cfg.model;
        let source = match &cfg.chat_template {
            Some(t) => t.clone(),
            None => model
                .chat_template(None)
                .ok()
                .and_then(|t| t.to_string().ok())
                .ok_or_else(|| {
                    LlmError::model(
                        path,
                        "has no chat template in its metadata; give one with --chat-template \
                         (a llama.cpp name such as chatml, llama3, gemma, or a Jinja template)",
                    )
                })?,
        };
        let probe = [("user".to_string(), "hi".to_string())];
        let mut jinja_failure = None;
        if looks_like_jinja(&source) {
            let t = jinja_env(source.clone()).map(|env| ChatTemplate::Jinja {
                env: Box::new(env),
                bos: token_text(model, model.vocab().bos()),
                eos: token_text(model, model.vocab().eos()),
                strip_bos: model.vocab().should_add_bos(),
            });
            match t.and_then(|t| t.apply(model, &probe).map(|_| t)) {
                Ok(t) => return Ok(t),
                Err(e) => jinja_failure = Some(e),
            }
        }
        let builtin = LlamaChatTemplate::new(&source)
            .map_err(|e| LlmError::model(path, format!("chat template: {e}")))?;
        let t = ChatTemplate::Builtin(builtin);
        match t.apply(model, &probe) {
            Ok(_) => {
                if let Some(e) = jinja_failure {
                    tracing::warn!(
                        "{}: the chat template does not render as Jinja ({e}); using \
                         llama.cpp's built-in format for it, which may leave out parts of it",
                        path.display()
                    );
                }
                Ok(t)
            }
            Err(e) => Err(LlmError::model(
                path,
                match jinja_failure {
                    Some(j) => format!(
                        "the chat template renders neither as Jinja ({j}) nor as a llama.cpp \
                         built-in ({e}); give one with --chat-template"
                    ),
                    None => format!(
                        "llama.cpp does not recognise the chat template ({e}); give a known \
                         one with --chat-template (chatml, llama3, gemma, ...) or a Jinja text"
                    ),
                },
            )),
        }
    }

    /// The prompt for `messages` (role, text), ending where the assistant's reply starts.
    pub fn apply(
        &self,
        model: &LlamaModel,
        messages: &[(String, String)],
    ) -> Result<String, String> {
        match self {
            ChatTemplate::Jinja {
                env,
                bos,
                eos,
                strip_bos,
            } => {
                let text = render_jinja(env, messages, bos, eos)?;
                Ok(match text.strip_prefix(bos.as_str()) {
                    Some(rest) if *strip_bos && !bos.is_empty() => rest.to_string(),
                    _ => text,
                })
            }
            ChatTemplate::Builtin(t) => {
                let msgs = messages
                    .iter()
                    .map(|(r, c)| LlamaChatMessage::new(r.clone(), c.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("messages: {e}"))?;
                model
                    .apply_chat_template(t, &msgs, true)
                    .map_err(|e| format!("chat template: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[(&str, &str)]) -> Result<String, String> {
        let messages: Vec<(String, String)> = messages
            .iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect();
        render_jinja(&jinja_env(source.to_string())?, &messages, "<s>", "</s>")
    }

    /// SmolLM2's template, as its GGUF carries it: the default system prompt that llama.cpp's
    /// built-in chatml leaves out is there when the conversation has none.
    #[test]
    fn smollm2_template_keeps_its_default_system_prompt() {
        let t = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        assert_eq!(
            render(t, &[("user", "hi")]).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render(t, &[("system", "Be brief."), ("user", "hi")]).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    /// What transformers' environment offers: trimmed blocks, Python string methods, loop
    /// controls, `tojson`, and `raise_exception` as an error.
    #[test]
    fn transformers_features_render_and_raise_exception_fails() {
        let t = "{%- for m in messages %}\n  {%- if m.role == 'system' %}{% continue %}{% endif %}\n  {{- bos_token + m.content.strip().upper() + ({'r': m.role} | tojson) }}\n{%- endfor %}";
        assert_eq!(
            render(t, &[("system", "x"), ("user", "  hi ")]).unwrap(),
            "<s>HI{\"r\":\"user\"}"
        );
        let t = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation must start with the user') }}{% endif %}ok";
        let e = render(t, &[("assistant", "x")]).unwrap_err();
        assert!(e.contains("Conversation must start with the user"), "{e}");
        assert!(looks_like_jinja(t) && !looks_like_jinja("chatml"));
    }
}
