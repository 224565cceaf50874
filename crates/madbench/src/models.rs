//! The models under test, all behind pw-llm's [`Generator`] (chat messages with image parts
//! in, text out), so the runner treats an OpenAI-compatible vision endpoint, the tiny VLM
//! trained here and the describe-then-answer pipeline alike.
//!
//! - [`TinyVlmGenerator`]: the tiny VLM of [`crate::model`], greedy, on all cores through
//!   pw-nn's KV-cached decoder with the image as a prefix.
//! - [`DescribeThenAnswer`]: a describer (any vision Generator) describes the image; an
//!   instruction LLM (any Generator) answers the user's text from that description, so the
//!   remedy paragraph meets a model that can follow it.

use crate::data::Rgb;
use crate::model::{TinyVlm, VlmConfig, Vocab, patches_tensor, patchify};
use pw_llm::{
    BatchResult, ChatMessage, Choice, Completion, Content, GenParams, Generator, LlmError, Request,
    Usage,
};
use pw_nn::decode::{Decoder, Prompt, SampleOptions};
use std::sync::Arc;
use std::time::Instant;

/// The first image and the text of the last user message of a request.
pub fn image_and_text(req: &Request) -> Result<(Option<String>, String), String> {
    let user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .ok_or("the request has no user message")?;
    let image = user.content.images().next().map(|i| i.url.clone());
    Ok((image, user.content.text()))
}

/// The tiny VLM as a [`Generator`]. Sampling parameters other than `max_tokens` are ignored:
/// it answers greedily.
pub struct TinyVlmGenerator {
    name: String,
    cfg: VlmConfig,
    vocab: Vocab,
    model: TinyVlm,
    decoder: Decoder,
}

impl TinyVlmGenerator {
    /// `model` on an inference (non-autodiff) device.
    pub fn new(
        name: impl Into<String>,
        cfg: VlmConfig,
        vocab: Vocab,
        model: TinyVlm,
    ) -> pw_core::Result<Self> {
        crate::model::check_vocab(&vocab, &model)?;
        let decoder = Decoder::new(&model.lm)?;
        Ok(TinyVlmGenerator {
            name: name.into(),
            cfg,
            vocab,
            model,
            decoder,
        })
    }

    fn patches(&self, url: &str) -> Result<Vec<f32>, String> {
        let bytes = pw_llm::image::image_bytes(url)?;
        let rgb = Rgb::from_png(&bytes, url)?;
        Ok(patchify(&rgb, &self.cfg))
    }

    /// Greedy answers of `(patch rows, question)` pairs.
    pub fn answer(&self, inputs: &[(&[f32], &str)], max_new: usize) -> Vec<String> {
        if inputs.is_empty() {
            return Vec::new();
        }
        let device = self.model.lm.head.weight.val().device();
        let rows: Vec<&[f32]> = inputs.iter().map(|(p, _)| *p).collect();
        let prefix = self.model.prefix(patches_tensor(&rows, &self.cfg, &device));
        let prefix: Vec<f32> = prefix
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 prefix");
        let per = self.cfg.patches() * self.cfg.d_model;
        let tokens: Vec<Vec<u32>> = inputs
            .iter()
            .map(|(_, q)| self.vocab.prompt(q, self.cfg.max_words))
            .collect();
        let prompts: Vec<Prompt> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| Prompt {
                prefix: &prefix[i * per..(i + 1) * per],
                tokens: t,
            })
            .collect();
        let seeds = vec![0u64; prompts.len()];
        let opts = SampleOptions {
            temperature: 0.0,
            top_p: 1.0,
            max_new: max_new.min(self.cfg.max_words.saturating_sub(8)),
            stop: Vocab::EOS,
        };
        let out = self
            .decoder
            .sample_prompts(&prompts, &seeds, 1, &opts)
            .expect("prompts fit the decoder");
        out.iter().map(|s| self.vocab.decode(&s[0])).collect()
    }
}

impl Generator for TinyVlmGenerator {
    fn model(&self) -> String {
        self.name.clone()
    }

    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        let mut out = None;
        self.generate_batch(vec![req.clone()], &mut |r| out = Some(r.result));
        out.unwrap_or_else(|| Err(LlmError::request(&req.id, "no result")))
    }

    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        let t0 = Instant::now();
        let mut ok: Vec<(String, (Vec<f32>, String), u32)> = Vec::new();
        for r in reqs {
            let parsed = image_and_text(&r).and_then(|(img, text)| {
                let img = img.ok_or("the tiny VLM needs an image part")?;
                Ok((self.patches(&img)?, text))
            });
            match parsed {
                Ok(x) => ok.push((r.id, x, r.params.max_tokens)),
                Err(e) => on_result(BatchResult {
                    result: Err(LlmError::request(&r.id, e)),
                    id: r.id,
                }),
            }
        }
        let max_new = ok.iter().map(|x| x.2 as usize).max().unwrap_or(24);
        let inputs: Vec<(&[f32], &str)> = ok
            .iter()
            .map(|x| (x.1.0.as_slice(), x.1.1.as_str()))
            .collect();
        let answers = self.answer(&inputs, max_new);
        let ms = t0.elapsed().as_secs_f64() * 1e3 / answers.len().max(1) as f64;
        for ((id, (_, q), _), text) in ok.into_iter().zip(answers) {
            let usage = Usage {
                prompt_tokens: self.vocab.encode(&q).len() as u64 + self.cfg.patches() as u64,
                completion_tokens: text.split_whitespace().count() as u64,
                prompt_evaluated: None,
            };
            on_result(BatchResult {
                result: Ok(completion(&id, &self.name, text, usage, ms)),
                id,
            });
        }
    }
}

fn completion(id: &str, model: &str, text: String, usage: Usage, latency_ms: f64) -> Completion {
    Completion {
        id: id.to_string(),
        model: model.to_string(),
        choices: vec![Choice {
            text,
            finish_reason: "stop".into(),
        }],
        usage,
        latency_ms,
        cached: false,
    }
}

/// The question asked of the describer.
pub const DESCRIBE: &str = "Describe the image.";

/// Describe, then answer from the description (see the module docs).
pub struct DescribeThenAnswer {
    pub describer: Arc<dyn Generator>,
    pub answerer: Arc<dyn Generator>,
}

/// The answerer's messages: the description stands in for the image.
pub fn answer_messages(description: &str, user_text: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::system(
            "You answer questions about an image that you cannot see. A reliable description \
             of the image is given; trust it over anything the question assumes. Answer in \
             one or two short sentences.",
        ),
        ChatMessage::user(format!("Image description: {description}\n\n{user_text}")),
    ]
}

impl Generator for DescribeThenAnswer {
    fn model(&self) -> String {
        format!("{} -> {}", self.describer.model(), self.answerer.model())
    }

    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        let mut out = None;
        self.generate_batch(vec![req.clone()], &mut |r| out = Some(r.result));
        out.unwrap_or_else(|| Err(LlmError::request(&req.id, "no result")))
    }

    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        let mut pending = Vec::new();
        let mut describe = Vec::new();
        for r in reqs {
            match image_and_text(&r) {
                Ok((Some(img), text)) => {
                    describe.push(Request::new(
                        r.id.clone(),
                        vec![ChatMessage::user(Content::Parts(vec![
                            pw_llm::ContentPart::image(img),
                            pw_llm::ContentPart::text(DESCRIBE),
                        ]))],
                        GenParams::greedy(48),
                    ));
                    pending.push((r, text));
                }
                Ok((None, _)) => on_result(BatchResult {
                    result: Err(LlmError::request(&r.id, "the request has no image part")),
                    id: r.id,
                }),
                Err(e) => on_result(BatchResult {
                    result: Err(LlmError::request(&r.id, e)),
                    id: r.id,
                }),
            }
        }
        let descriptions = pw_llm::generate_all(self.describer.as_ref(), describe);
        let mut answer = Vec::new();
        let mut described = Vec::new();
        for ((r, text), d) in pending.into_iter().zip(descriptions) {
            match d {
                Ok(c) => {
                    let desc = c.text().trim().to_string();
                    answer.push(Request::new(
                        r.id.clone(),
                        answer_messages(&desc, &text),
                        r.params.clone(),
                    ));
                    described.push((r.id, c.usage));
                }
                Err(e) => on_result(BatchResult {
                    id: r.id,
                    result: Err(e),
                }),
            }
        }
        let answers = pw_llm::generate_all(self.answerer.as_ref(), answer);
        for ((id, du), a) in described.into_iter().zip(answers) {
            let result = a.map(|mut c| {
                c.usage.prompt_tokens += du.prompt_tokens;
                c.usage.completion_tokens += du.completion_tokens;
                c.model = self.model();
                c
            });
            on_result(BatchResult { id, result });
        }
    }
}
