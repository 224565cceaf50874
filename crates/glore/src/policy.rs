//! The policy that writes solutions: continue a question's solution from a prefix of steps.
//!
//! Two kinds: the student trained here ([`StudentPolicy`], sampled by the KV-cached
//! [`Decoder`]) and any pw-llm [`Generator`] ([`LlmPolicy`]: the embedded GGUF or an
//! OpenAI-compatible endpoint), which is how `paperworks glore label` and `refine` run on real
//! models. Both see the same requests and return continuation texts.

use crate::model::{refine_prompt, solve_prompt};
use crate::vocab::Vocab;
use pw_llm::{ChatMessage, GenParams, Generator, Request};
use pw_nn::decode::{Decoder, SampleOptions};
use std::sync::Arc;

/// Continue `question`'s solution after the `prefix` lines.
#[derive(Debug, Clone)]
pub struct ContinueRequest {
    pub id: String,
    pub question: String,
    pub prefix: Vec<String>,
}

impl ContinueRequest {
    /// A whole solution of `p` (empty prefix), under the problem's id.
    pub fn from_start(p: &crate::problem::Problem) -> ContinueRequest {
        ContinueRequest {
            id: p.id.clone(),
            question: p.question.clone(),
            prefix: vec![],
        }
    }
}

/// The run's seed for a request id, so a resumed run samples what the interrupted one would
/// have.
pub use pw_core::seed::derive as seed_for;

pub trait Policy: Sync {
    fn name(&self) -> String;
    /// `n` continuations per request (text after the prefix: the remaining lines and the
    /// final `#### N`). `temperature` 0 is greedy. An error stops the caller's stage (a later
    /// run resumes it).
    fn continue_batch(
        &self,
        reqs: &[ContinueRequest],
        n: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<Vec<String>>, String>;
}

/// The student: a [`CausalLm`](pw_nn::transformer::CausalLm) sampled by the KV-cached [`Decoder`].
pub struct StudentPolicy {
    pub decoder: Decoder,
    pub vocab: Vocab,
    pub max_new: usize,
    pub name: String,
}

impl Policy for StudentPolicy {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn continue_batch(
        &self,
        reqs: &[ContinueRequest],
        n: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<Vec<String>>, String> {
        let prompts: Vec<Vec<u32>> = reqs
            .iter()
            .map(|r| solve_prompt(&self.vocab, &r.question, &r.prefix))
            .collect();
        let seeds: Vec<u64> = reqs.iter().map(|r| seed_for(seed, &r.id)).collect();
        let opts = SampleOptions {
            temperature,
            top_p: 1.0,
            max_new: self.max_new,
            stop: self.vocab.eos(),
        };
        Ok(self
            .decoder
            .sample(&prompts, &seeds, n, &opts)
            .into_iter()
            .map(|samples| samples.iter().map(|s| self.vocab.decode(s)).collect())
            .collect())
    }
}

impl StudentPolicy {
    /// Refiner use of a student-shaped model: one output per item after `refine_prompt` (with
    /// the forced prefix lines of a local refinement), returned as the whole solution text.
    pub fn refine_batch(&self, items: &[RefineItem], temperature: f32, seed: u64) -> Vec<String> {
        let prompts: Vec<Vec<u32>> = items
            .iter()
            .map(|it| {
                let mut p = refine_prompt(&self.vocab, &it.question, &it.draft, it.bad_at);
                p.extend(crate::model::lines_tokens(&self.vocab, &it.forced, None));
                p
            })
            .collect();
        let seeds: Vec<u64> = items.iter().map(|it| seed_for(seed, &it.id)).collect();
        let opts = SampleOptions {
            temperature,
            top_p: 1.0,
            max_new: self.max_new,
            stop: self.vocab.eos(),
        };
        self.decoder
            .sample(&prompts, &seeds, 1, &opts)
            .into_iter()
            .zip(items)
            .map(|(s, it)| join_lines(&it.forced, &self.vocab.decode(&s[0])))
            .collect()
    }
}

/// One refinement request to a trained refiner.
#[derive(Debug, Clone)]
pub struct RefineItem {
    pub id: String,
    pub question: String,
    pub draft: Vec<String>,
    /// Where `[BAD]` goes (local refinement).
    pub bad_at: Option<usize>,
    /// Lines the output is forced to start with (the draft's good prefix).
    pub forced: Vec<String>,
}

/// `prefix` lines followed by a continuation text.
pub fn join_lines(prefix: &[String], continuation: &str) -> String {
    let mut s = prefix.join("\n");
    if !s.is_empty() && !continuation.is_empty() {
        s.push('\n');
    }
    s.push_str(continuation);
    s
}

/// System prompt of the solver (GSM8K's answer format).
pub const SOLVER_SYSTEM: &str = "You solve math word problems step by step. Write one short \
step per line. End with a last line of the form `#### <number>` holding only the final answer.";

/// Any pw-llm generator as a policy: the question (and the solution so far) in a chat prompt.
pub struct LlmPolicy {
    pub generator: Arc<dyn Generator>,
    pub max_tokens: u32,
}

/// The chat messages asking to solve `question`, continuing after `prefix` when it is not empty.
pub fn continue_messages(question: &str, prefix: &[String]) -> Vec<ChatMessage> {
    let mut user = format!("Question: {question}");
    if !prefix.is_empty() {
        user.push_str("\n\nThe solution so far:\n");
        user.push_str(&prefix.join("\n"));
        user.push_str(
            "\n\nContinue this solution from the next step, one step per line, without \
             repeating the steps above, and end with `#### <number>`.",
        );
    }
    vec![ChatMessage::system(SOLVER_SYSTEM), ChatMessage::user(user)]
}

impl Policy for LlmPolicy {
    fn name(&self) -> String {
        self.generator.model()
    }
    fn continue_batch(
        &self,
        reqs: &[ContinueRequest],
        n: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<Vec<String>>, String> {
        let requests: Vec<Request> = reqs
            .iter()
            .map(|r| {
                let params = GenParams {
                    temperature,
                    top_p: 1.0,
                    max_tokens: self.max_tokens,
                    seed: Some(seed_for(seed, &r.id)),
                    n: n as u32,
                    ..Default::default()
                };
                Request::new(
                    r.id.clone(),
                    continue_messages(&r.question, &r.prefix),
                    params,
                )
            })
            .collect();
        pw_llm::generate_all(self.generator.as_ref(), requests)
            .into_iter()
            .map(|res| {
                let c = res.map_err(|e| e.to_string())?;
                Ok(c.choices.into_iter().map(|ch| ch.text).collect())
            })
            .collect()
    }
}
