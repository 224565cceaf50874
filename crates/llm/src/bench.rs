//! `paperworks llm bench`: prompt-processing and generation throughput of any [`Generator`],
//! one stream and several in parallel.
//!
//! Measured through the public interface only, so the same numbers mean the same thing for the
//! embedded backend and for a remote server: prefill time is the latency of a `max_tokens = 1`
//! request; generation rate is the extra tokens of a long request over its extra time.

use crate::{ChatMessage, GenParams, Generator, LlmError, Request};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Tokens to generate per stream.
    pub gen_tokens: u32,
    /// Parallel streams of the batched measurement.
    pub parallel: usize,
    /// Repetitions (the median is reported).
    pub reps: usize,
    /// Words of the prompt-processing prompt.
    pub prompt_words: usize,
    /// Every stream generates all `gen_tokens` (past end-of-generation), so the batched
    /// measurement runs at `parallel` streams throughout, as llama-batched-bench does.
    pub ignore_eos: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            gen_tokens: 128,
            parallel: 8,
            reps: 3,
            prompt_words: 400,
            ignore_eos: false,
        }
    }
}

impl BenchConfig {
    /// Refuses what cannot be timed: no stream, no repetition, or fewer than 2 tokens (the
    /// generation rate is the difference of a 1-token and a `gen_tokens` run).
    pub fn check(&self) -> Result<(), String> {
        if self.parallel == 0 || self.reps == 0 || self.gen_tokens < 2 {
            return Err("--streams and --reps must be at least 1, --tokens at least 2".into());
        }
        Ok(())
    }

    /// Sizes an embedded engine for this bench: room for every stream, and a context of at most
    /// 1,024 tokens per stream, which the longest bench request fits.
    pub fn fit(&self, engine: &mut crate::EmbeddedConfig) {
        engine.parallel = engine.parallel.max(self.parallel);
        engine.ctx_per_seq = engine.ctx_per_seq.min(1024);
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub prompt_tokens: u64,
    /// Prompt processing, tokens/s (one long prompt).
    pub pp_tokens_per_s: f64,
    /// Generation, one stream, tokens/s.
    pub tg_single_tokens_per_s: f64,
    /// Generation, `parallel` streams together, aggregate tokens/s.
    pub tg_batched_tokens_per_s: f64,
    pub parallel: usize,
    /// batched / single.
    pub speedup: f64,
    pub gen_tokens_single: u64,
    pub gen_tokens_batched: u64,
}

fn story(i: usize, seed: u64, max_tokens: u32, ignore_eos: bool) -> Request {
    const TOPICS: [&str; 8] = [
        "a lighthouse keeper",
        "a robot learning to paint",
        "a city under the sea",
        "a dragon who hates gold",
        "the last train of the night",
        "a garden on Mars",
        "a detective cat",
        "a library that never closes",
    ];
    Request::new(
        format!("bench-{i}-{max_tokens}"),
        vec![ChatMessage::user(format!(
            "Write a long, detailed story about {}. Use many paragraphs.",
            TOPICS[i % TOPICS.len()]
        ))],
        GenParams {
            temperature: 0.8,
            top_p: 0.95,
            max_tokens,
            seed: Some(seed + i as u64),
            ignore_eos,
            ..Default::default()
        },
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `k` story requests together; returns (wall seconds, completion tokens).
fn run_streams(
    g: &dyn Generator,
    k: usize,
    seed: u64,
    max_tokens: u32,
    ignore_eos: bool,
) -> Result<(f64, u64), LlmError> {
    let reqs: Vec<Request> = (0..k)
        .map(|i| story(i, seed, max_tokens, ignore_eos))
        .collect();
    let t = Instant::now();
    let mut tokens = 0u64;
    let mut err = None;
    g.generate_batch(reqs, &mut |r| match r.result {
        Ok(c) => tokens += c.usage.completion_tokens,
        Err(e) => err = Some(e),
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok((t.elapsed().as_secs_f64(), tokens))
}

/// Generation tokens/s of `k` streams: (long run tokens - short run tokens) over the time
/// difference, so prompt processing and queueing cancel out.
fn tg_rate(
    g: &dyn Generator,
    k: usize,
    cfg: &BenchConfig,
    seed: u64,
) -> Result<(f64, u64), LlmError> {
    let mut rates = Vec::new();
    let mut toks = 0;
    for r in 0..cfg.reps {
        let s = seed + 1000 * r as u64;
        // untimed: puts the prompts in the KV cache, so that the two timed runs reuse them
        // alike (a backend that reuses prompt prefixes would otherwise evaluate them in the
        // short run only, and the difference would not be generation alone)
        run_streams(g, k, s, 1, cfg.ignore_eos)?;
        let (t1, n1) = run_streams(g, k, s, 1, cfg.ignore_eos)?;
        let (tn, nn) = run_streams(g, k, s, cfg.gen_tokens, cfg.ignore_eos)?;
        if nn <= n1 || tn <= t1 {
            return Err(LlmError::request(
                "bench",
                format!("the model generated only {nn} tokens; cannot time generation"),
            ));
        }
        rates.push((nn - n1) as f64 / (tn - t1));
        toks = nn;
    }
    Ok((median(rates), toks))
}

pub fn run(g: &dyn Generator, cfg: &BenchConfig) -> Result<BenchReport, LlmError> {
    // warm-up (first-touch of weights, server connection)
    run_streams(g, 1, 0, 4, cfg.ignore_eos)?;
    let words: Vec<&str> = "the quick brown fox jumps over the lazy dog while a curious \
        researcher measures how fast a small language model reads long prompts"
        .split(' ')
        .collect();
    let long: String = (0..cfg.prompt_words)
        .map(|i| words[i % words.len()])
        .collect::<Vec<_>>()
        .join(" ");
    let mut pp = Vec::new();
    let mut prompt_tokens = 0;
    for r in 0..cfg.reps {
        let req = Request::new(
            format!("pp-{r}"),
            // the rep first, so the prompts differ early and little of one is reused
            vec![ChatMessage::user(format!("({r}) {long}"))],
            GenParams::greedy(1),
        );
        let t = Instant::now();
        let c = g.generate(&req)?;
        prompt_tokens = c.usage.prompt_tokens;
        // the tokens evaluated, not sent: a chat template's system prompt is reused
        let evaluated = c.usage.prompt_evaluated.unwrap_or(prompt_tokens);
        pp.push(evaluated as f64 / t.elapsed().as_secs_f64());
    }
    let (single, n1) = tg_rate(g, 1, cfg, 7)?;
    let (batched, nk) = tg_rate(g, cfg.parallel, cfg, 7)?;
    Ok(BenchReport {
        model: g.model(),
        prompt_tokens,
        pp_tokens_per_s: median(pp),
        tg_single_tokens_per_s: single,
        tg_batched_tokens_per_s: batched,
        parallel: cfg.parallel,
        speedup: batched / single,
        gen_tokens_single: n1,
        gen_tokens_batched: nk,
    })
}
