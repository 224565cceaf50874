//! A local GGUF opened for callers that drive decoding themselves: feed tokens they choose
//! (forced tokens: code that must come back unchanged), read the next-token logits, pick under
//! their own constraints. Several sequences are decoded together in one llama.cpp batch, so a
//! caller can run many constrained generations in lockstep.
//!
//! The model and its context live on the caller's thread for the duration of [`with_lm`]
//! (llama.cpp contexts borrow their model), unlike [`super::Embedded`]'s engine thread.

use super::engine::{backend, load_model};
use super::template::ChatTemplate;
use super::{EmbeddedConfig, prepare};
use crate::{ChatMessage, LlmError};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;

/// The open model: see the module docs.
pub struct Lm<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: ChatTemplate,
    pieces: Vec<Vec<u8>>,
    batch: LlamaBatch<'static>,
    batch_tokens: usize,
    pos: Vec<usize>,
    ctx_per_seq: usize,
    name: String,
    threads: usize,
}

/// Opens `cfg.model` with `cfg.parallel` sequences of `cfg.ctx_per_seq` tokens and runs `f`.
pub fn with_lm<R>(cfg: &EmbeddedConfig, f: impl FnOnce(&mut Lm) -> R) -> Result<R, LlmError> {
    let cfg = prepare(cfg.clone())?;
    if cfg.parallel == 0 || cfg.parallel > 256 {
        return Err(LlmError::model(
            &cfg.model,
            format!("parallel {} must be in 1..=256", cfg.parallel),
        ));
    }
    let claim = super::ThreadClaim::start();
    let model = load_model(&cfg)?;
    let template = ChatTemplate::load(&model, &cfg)?;
    let threads = claim.threads(&cfg);
    let ctx_per_seq = cfg.ctx_per_seq.min(model.n_ctx_train().max(16)) as usize;
    let batch_tokens = (cfg.batch_tokens as usize).max(cfg.parallel).max(32);
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new((ctx_per_seq * cfg.parallel) as u32))
        .with_n_batch(batch_tokens as u32)
        .with_n_ubatch(batch_tokens as u32)
        .with_n_seq_max(cfg.parallel as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let ctx = model.new_context(backend()?, cparams).map_err(|e| {
        LlmError::model(
            &cfg.model,
            format!(
                "cannot create a context of {} tokens: {e}",
                ctx_per_seq * cfg.parallel
            ),
        )
    })?;
    let pieces = model.tokens(false).map(|(_, p)| p).collect();
    let name = cfg
        .name
        .clone()
        .unwrap_or_else(|| super::default_name(&cfg.model));
    let mut lm = Lm {
        model: &model,
        ctx,
        template,
        pieces,
        batch: LlamaBatch::new(batch_tokens, 1),
        batch_tokens,
        pos: vec![0; cfg.parallel],
        ctx_per_seq,
        name,
        threads,
    };
    Ok(f(&mut lm))
}

impl Lm<'_> {
    /// The name results carry (file name without `.gguf`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sequences(&self) -> usize {
        self.pos.len()
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn ctx_per_seq(&self) -> usize {
        self.ctx_per_seq
    }

    pub fn n_vocab(&self) -> usize {
        self.pieces.len()
    }

    /// The bytes a token stands for (special tokens: empty).
    pub fn piece(&self, tok: u32) -> &[u8] {
        self.pieces.get(tok as usize).map_or(&[], |p| p.as_slice())
    }

    pub fn is_eog(&self, tok: u32) -> bool {
        self.model.vocab().is_eog(LlamaToken(tok as i32))
    }

    /// The chat prompt of `messages` through the model's template, ending where the
    /// assistant's reply starts.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let msgs: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.role.clone(), m.text()))
            .collect();
        self.template
            .apply(self.model, &msgs)
            .map_err(|e| LlmError::request("prompt", e))
    }

    /// Tokens of `text`; `special` parses the template's control tokens (for a chat prompt)
    /// and adds BOS when the model wants one.
    pub fn tokenize(&self, text: &str, special: bool) -> Vec<u32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), special, special)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    /// Tokens held by sequence `seq`.
    pub fn len(&self, seq: usize) -> usize {
        self.pos[seq]
    }

    pub fn is_empty(&self, seq: usize) -> bool {
        self.pos[seq] == 0
    }

    /// Forgets sequence `seq` (its KV cache), to start a new text in it.
    pub fn reset(&mut self, seq: usize) {
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.pos[seq] = 0;
    }

    /// Makes sequence `seq` hold the first `n` tokens that sequence `src` holds (`src == seq`:
    /// its own), so a text that starts with them is fed from token `n` on instead of whole.
    /// Returns the tokens kept: `n` (at most what `src` holds), or 0 with `seq` empty where
    /// llama.cpp cannot keep a part of a sequence (a recurrent model's state, a sliding window
    /// that dropped the start).
    pub fn share_prefix(&mut self, seq: usize, src: usize, n: usize) -> usize {
        let n = n.min(self.pos[src]);
        if src != seq {
            // a cache with one buffer per sequence copies whole sequences only: the whole of
            // `src` comes over and its tail is dropped below
            self.reset(seq);
            if n == 0
                || self
                    .ctx
                    .copy_kv_cache_seq(src as i32, seq as i32, None, None)
                    .is_err()
            {
                return 0;
            }
        }
        let kept = n > 0
            && self
                .ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(n as u32), None)
                .unwrap_or(false)
            && self.ctx.kv_cache_seq_pos_min(seq as i32) == 0
            && self.ctx.kv_cache_seq_pos_max(seq as i32) == n as i32 - 1;
        if kept {
            self.pos[seq] = n;
            n
        } else {
            self.reset(seq);
            0
        }
    }

    /// Appends each `(seq, tokens)` to its sequence and returns, for each, the next-token
    /// logits after its last token. Feeds longer than a batch are split over several decode
    /// calls; an empty feed is refused.
    pub fn step(&mut self, feeds: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>, LlmError> {
        let n_vocab = self.pieces.len();
        let mut out = vec![Vec::new(); feeds.len()];
        for (i, (seq, toks)) in feeds.iter().enumerate() {
            if *seq >= self.pos.len() {
                return Err(LlmError::request(
                    "step",
                    format!("sequence {seq} of {}", self.pos.len()),
                ));
            }
            if toks.is_empty() {
                return Err(LlmError::request("step", format!("empty feed {i}")));
            }
            if self.pos[*seq] + toks.len() > self.ctx_per_seq {
                return Err(LlmError::request(
                    "step",
                    format!(
                        "sequence {seq} would hold {} tokens, over its context of {}",
                        self.pos[*seq] + toks.len(),
                        self.ctx_per_seq
                    ),
                ));
            }
        }
        // (feed index, offset into its tokens)
        let mut cursor: Vec<usize> = vec![0; feeds.len()];
        let mut fi = 0;
        while fi < feeds.len() {
            self.batch.clear();
            let mut wanted: Vec<(usize, i32)> = Vec::new();
            while fi < feeds.len() && (self.batch.n_tokens() as usize) < self.batch_tokens {
                let (seq, toks) = feeds[fi];
                let room = self.batch_tokens - self.batch.n_tokens() as usize;
                let k = (toks.len() - cursor[fi]).min(room);
                for j in cursor[fi]..cursor[fi] + k {
                    let last = j + 1 == toks.len();
                    if last {
                        wanted.push((fi, self.batch.n_tokens()));
                    }
                    let pos = self.pos[seq] as i32;
                    self.batch
                        .add(LlamaToken(toks[j] as i32), pos, &[seq as i32], last)
                        .map_err(|e| LlmError::request("step", e.to_string()))?;
                    self.pos[seq] += 1;
                }
                cursor[fi] += k;
                if cursor[fi] == toks.len() {
                    fi += 1;
                }
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| LlmError::Model {
                    path: self.name.clone().into(),
                    reason: format!("llama.cpp decode failed: {e}"),
                })?;
            for (f, idx) in wanted {
                let l = self.ctx.get_logits_ith(idx);
                out[f] = l[..n_vocab.min(l.len())].to_vec();
            }
        }
        Ok(out)
    }
}
