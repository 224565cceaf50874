//! The engine thread: continuous batching over llama.cpp sequence slots.
//!
//! Each request becomes `n` units (one per sample). A unit takes a free slot (a llama.cpp
//! sequence id), feeds its prompt in chunks, then one token per step. Every step builds ONE
//! batch: the next token of every generating unit is planned first (so running sequences are
//! never starved by a long prompt), then prompt chunks up to `batch_tokens`; one `decode` call
//! runs them all. Logits are read only for the positions that need a sample.
//!
//! The context keeps one KV buffer per sequence (llama.cpp's default, not `kv_unified`), so
//! attention reads only a sequence's own cells; but llama.cpp then evaluates one pass per run of
//! consecutive sequence ids. The batch therefore goes in sequence order, and an idle slot or
//! two between busy ones (a unit that finished, one waiting for a prefix) get a throwaway token
//! that is removed after the step: cheaper than reading all the weights again for a second pass.
//!
//! A sequence keeps its KV cache after its unit finishes, with the tokens it holds in
//! `Engine::kv`. A new unit starts from the longest prefix of its prompt that any sequence
//! holds (its own slot's, or a copy of another's), so the `n` choices of a request and
//! requests that open with the same system prompt or syllabus evaluate that prefix once. A
//! unit whose prefix is still being fed by another waits for it instead of evaluating it too.

use super::sampler::Sampler;
use super::template::ChatTemplate;
use super::{EmbeddedConfig, Job, ModelInfo};
use crate::{Choice, Completion, LlmError, Usage, finish};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;

/// The refusal of a request with image parts: the embedded backend loads a GGUF language
/// model without a vision projector (mmproj), so it cannot see.
pub const NO_VISION: &str = "the message holds an image, but this model has no vision projector \
    (mmproj); send images to an OpenAI-compatible vision endpoint (--endpoint)";
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, OnceLock};

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
static ERRORS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static LOG_TO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// llama.cpp's log: its last error line is kept (to explain a failed load in one line); the
/// whole log goes to stderr when `PAPERWORKS_LLAMA_LOG` is set.
unsafe extern "C" fn log_callback(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const std::os::raw::c_char,
    _user: *mut std::os::raw::c_void,
) {
    if text.is_null() {
        return;
    }
    let msg = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy();
    if LOG_TO_STDERR.load(Ordering::Relaxed) {
        eprint!("{msg}");
    }
    if level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR
        && let Ok(mut errs) = ERRORS.lock()
        && errs.len() < 32
    {
        errs.push(msg.trim().to_string());
    }
}

/// The errors llama.cpp logged since the last call, as one line: the specific ones, without
/// the generic "failed to load model" wrappers and function-name prefixes.
pub(crate) fn take_last_error() -> Option<String> {
    let errs = std::mem::take(&mut *ERRORS.lock().ok()?);
    let specific: Vec<String> = errs
        .iter()
        .filter(|e| !e.contains("failed to load model"))
        .map(|e| {
            let e = e
                .strip_prefix("llama_model_load: error loading model: ")
                .unwrap_or(e);
            match e.split_once(": ") {
                Some((f, rest)) if !f.contains(' ') => rest.to_string(),
                _ => e.to_string(),
            }
        })
        .collect();
    let pick = if specific.is_empty() { errs } else { specific };
    (!pick.is_empty()).then(|| pick.join("; "))
}

/// One grammar sampler per sequence for a JSON-schema request. The schema is checked first
/// (llama.cpp's grammar parser never returns on some impossible bounds); the conversion and
/// the parse run with stderr captured, because llama.cpp writes their failures there (a
/// parse error with the whole grammar after it, an incomplete conversion) instead of to its
/// log: a failure becomes one line, a warning one `tracing` line. A schema's grammar is
/// converted once and kept in `converted` (a stage sends one schema many times).
fn grammars_for(
    model: &LlamaModel,
    converted: &mut HashMap<String, String>,
    schema: &serde_json::Value,
    n: usize,
) -> Result<Vec<LlamaSampler>, String> {
    let text = schema.to_string();
    if !converted.contains_key(&text) {
        let g = convert(schema, &text)?;
        if converted.len() >= 256 {
            converted.clear();
        }
        converted.insert(text.clone(), g);
    }
    let grammar = &converted[&text];
    let (made, said) = capture_stderr(|| {
        (0..n)
            .map(|_| LlamaSampler::grammar(model, grammar, "root"))
            .collect::<Result<Vec<_>, _>>()
    });
    match made {
        Ok(v) => {
            if !said.trim().is_empty() {
                eprint!("{said}");
            }
            Ok(v)
        }
        Err(e) => {
            // "llama_grammar_parser::parse: error parsing grammar: <why>", then the grammar
            let why = said
                .lines()
                .find_map(|l| l.split_once("error parsing grammar: ").map(|(_, w)| w))
                .map(str::to_string)
                .or_else(take_last_error)
                .unwrap_or_else(|| e.to_string());
            Err(format!("llama.cpp refused the grammar made from it: {why}"))
        }
    }
}

/// A checked schema as GBNF, through llama.cpp's converter with its stderr captured.
fn convert(schema: &serde_json::Value, text: &str) -> Result<String, String> {
    crate::schema::check(schema)?;
    let (converted, said) = capture_stderr(|| llama_cpp_2::json_schema_to_grammar(text));
    let grammar = match converted {
        Ok(g) => g,
        Err(_) => {
            let why = said
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("a $ref, keyword or pattern it does not support");
            return Err(format!(
                "llama.cpp cannot turn this schema into a grammar: {why}"
            ));
        }
    };
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        match line.strip_prefix("WARNING: ") {
            Some(w) => tracing::warn!("json_schema: {w}"),
            None => eprintln!("{line}"),
        }
    }
    Ok(grammar)
}

/// Runs `f` with file descriptor 2 pointed at an unlinked temporary file and returns what was
/// written there. Captures are serialised; the descriptor is restored even if `f` panics.
/// Another thread's stderr output in that window lands in the capture too, so callers print
/// back what they do not consume. Without a temporary file, `f` runs uncaptured.
fn capture_stderr<R>(f: impl FnOnce() -> R) -> (R, String) {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let path = std::env::temp_dir().join(format!(
        "pw-stderr-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path);
    let _ = std::fs::remove_file(&path);
    let Ok(mut file) = file else {
        return (f(), String::new());
    };
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            unsafe {
                libc::dup2(self.0, 2);
                libc::close(self.0);
            }
        }
    }
    let saved = unsafe { libc::dup(2) };
    if saved < 0 || unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        if saved >= 0 {
            unsafe { libc::close(saved) };
        }
        return (f(), String::new());
    }
    let restore = Restore(saved);
    let r = f();
    drop(restore);
    let mut said = String::new();
    let _ = file
        .rewind()
        .and_then(|_| file.take(1 << 20).read_to_string(&mut said));
    (r, said)
}

/// llama.cpp's process-wide initialisation, done once.
pub(crate) fn backend() -> Result<&'static LlamaBackend, LlmError> {
    BACKEND
        .get_or_init(|| {
            LOG_TO_STDERR.store(
                std::env::var_os("PAPERWORKS_LLAMA_LOG").is_some(),
                Ordering::Relaxed,
            );
            unsafe { llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
            // The multimodal library (and its helpers) log on their own channel.
            unsafe {
                llama_cpp_sys_2::mtmd_helper_log_set(Some(log_callback), std::ptr::null_mut())
            };
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LlmError::Stopped(format!("llama.cpp backend: {e}")))
}

/// Loads the GGUF of `cfg` (already checked and converted by the caller).
pub(super) fn load_model(cfg: &EmbeddedConfig) -> Result<LlamaModel, LlmError> {
    let path = &cfg.model;
    let backend = backend()?;
    // llama.cpp quietly runs on the CPU when it has no GPU backend; a user who asked for offload
    // should learn that before a run that is slower than they planned.
    if cfg.gpu_layers > 0 && !backend.supports_gpu_offload() {
        let why = if cfg!(feature = "cuda") {
            "this build's llama.cpp has a CUDA backend but found no GPU (no NVIDIA driver >= 580, \
             no device, or CUDA_VISIBLE_DEVICES hides it)"
        } else {
            "this build's llama.cpp has no GPU backend (it is built for the CPU only; \
             `make build-cuda` builds one with CUDA)"
        };
        return Err(LlmError::model(
            path,
            format!("--gpu-layers {}: {why}; use --gpu-layers 0", cfg.gpu_layers),
        ));
    }
    let mparams = LlamaModelParams::default().with_n_gpu_layers(cfg.gpu_layers);
    let name =
        pw_core::cpath::OpenName::new(path).map_err(|e| LlmError::model(path, e.to_string()))?;
    take_last_error();
    LlamaModel::load_from_file(backend, name.as_path(), &mparams).map_err(|e| {
        let why = take_last_error().unwrap_or_else(|| e.to_string());
        LlmError::model(path, format!("llama.cpp could not load it: {why}"))
    })
}

pub(super) fn run(
    cfg: EmbeddedConfig,
    rx: Receiver<Job>,
    ready: Sender<Result<ModelInfo, LlmError>>,
    pending: Arc<AtomicUsize>,
) {
    let path = cfg.model.clone();
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let claim = super::ThreadClaim::start();
    let model = match load_model(&cfg) {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let template = match ChatTemplate::load(&model, &cfg) {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = claim.threads(&cfg);
    let n_ctx_train = model.n_ctx_train();
    let ctx_per_seq = cfg.ctx_per_seq.min(n_ctx_train.max(16));
    let parallel = cfg.parallel;
    let batch_tokens = cfg.batch_tokens.max(parallel as u32).max(32);
    let n_ctx = ctx_per_seq * parallel as u32;
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(batch_tokens)
        .with_n_ubatch(batch_tokens)
        .with_n_seq_max(parallel as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let ctx = match model.new_context(backend, cparams) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(LlmError::model(
                &path,
                format!("cannot create a context of {n_ctx} tokens: {e}"),
            )));
            return;
        }
    };
    let name = cfg
        .name
        .clone()
        .unwrap_or_else(|| super::default_name(&path));
    let info = ModelInfo {
        name: name.clone(),
        path: path.clone(),
        n_params: model.n_params(),
        size_bytes: model.size(),
        n_vocab: model.n_vocab(),
        n_ctx_train,
        parallel,
        ctx_per_seq,
        threads,
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    let mut engine = Engine {
        model: &model,
        ctx,
        template,
        name,
        ctx_per_seq,
        batch_tokens,
        slots: (0..parallel).map(|_| None).collect(),
        waiting: VecDeque::new(),
        jobs: HashMap::new(),
        next_job: 0,
        pending,
        one: LlamaTokenDataArray::new(Vec::with_capacity(1), false),
        full: LlamaTokenDataArray::new(Vec::new(), false),
        masked: Vec::new(),
        converted: HashMap::new(),
        kv: vec![Vec::new(); parallel],
        reuse_prefix: cfg.reuse_prefix,
        plan: Vec::with_capacity(parallel),
        eog: None,
    };
    engine.serve(rx);
}

struct JobState {
    id: String,
    submitted: std::time::Instant,
    reply: Option<super::Reply>,
    cancel: Option<Arc<AtomicBool>>,
    /// Sequences counted in `pending` for this job (its `n`).
    units: usize,
    choices: Vec<Option<Choice>>,
    remaining: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Prompt tokens evaluated over all its units (less what they reused).
    prompt_evaluated: u64,
}

/// The unit whose prompt feeding a waiting unit waits for, and how much of it it will take.
#[derive(Clone, Copy)]
struct Leader {
    slot: usize,
    job: u64,
    choice: usize,
    target: usize,
}

/// A wait must save at least this many prompt tokens (it delays the unit by the leader's
/// remaining prompt chunks).
const MIN_WAIT_GAIN: usize = 16;

/// How much of a common prefix a unit can take: all but its last prompt token, which is always
/// evaluated for the logits of the first sample.
fn usable(common: usize, prompt_len: usize) -> usize {
    common.min(prompt_len.saturating_sub(1))
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

struct Unit {
    job: u64,
    choice: usize,
    prompt: Arc<Vec<LlamaToken>>,
    fed: usize,
    sampler: Sampler,
    grammar: Option<LlamaSampler>,
    out: Vec<u8>,
    n_gen: u32,
    max_tokens: u32,
    stop: Arc<Vec<String>>,
    last: LlamaToken,
    logit_idx: Option<i32>,
    /// Bytes of `out` already handed to `on_delta`.
    sent: usize,
    on_delta: Option<super::OnDelta>,
    /// Set while it waits for another unit to feed the prefix it will copy.
    wait: Option<Leader>,
    /// End-of-generation tokens are never drawn (`GenParams::ignore_eos`).
    ignore_eos: bool,
}

impl Unit {
    /// Hands the decided part of the new text to `on_delta`: all of it when `done`, else
    /// without a tail that could begin a stop sequence or that ends inside a UTF-8 character.
    fn stream(&mut self, done: bool) {
        let Some(f) = &self.on_delta else { return };
        let mut upto = self.out.len();
        if !done {
            for s in self.stop.iter().map(String::as_bytes) {
                for k in (1..s.len().min(self.out.len() + 1)).rev() {
                    if self.out.ends_with(&s[..k]) {
                        upto = upto.min(self.out.len() - k);
                        break;
                    }
                }
            }
            upto = self.sent.max(utf8_complete(&self.out[..upto]));
        }
        if upto > self.sent {
            f(
                self.choice,
                &String::from_utf8_lossy(&self.out[self.sent..upto]),
            );
            self.sent = upto;
        }
    }
}

/// The length of `b` without an incomplete UTF-8 character at its end.
fn utf8_complete(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => b.len(),
    }
}

struct Engine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: ChatTemplate,
    name: String,
    ctx_per_seq: u32,
    batch_tokens: u32,
    slots: Vec<Option<Unit>>,
    waiting: VecDeque<Unit>,
    jobs: HashMap<u64, JobState>,
    next_job: u64,
    pending: Arc<AtomicUsize>,
    /// Reused buffers of the grammar check: one candidate, the whole vocabulary, masked logits.
    one: LlamaTokenDataArray,
    full: LlamaTokenDataArray,
    masked: Vec<f32>,
    /// JSON-schema text -> its GBNF grammar (see [`grammars_for`]).
    converted: HashMap<String, String>,
    /// The tokens in each sequence's KV cache, by position (kept after its unit finishes).
    kv: Vec<Vec<LlamaToken>>,
    reuse_prefix: bool,
    /// What each slot puts into the current step's batch.
    plan: Vec<Part>,
    /// Made when a request first ignores end-of-generation tokens.
    eog: Option<EogMask>,
}

/// Logits with the vocabulary's end-of-generation tokens masked, for `GenParams::ignore_eos`.
pub(super) struct EogMask {
    ids: Vec<usize>,
    masked: Vec<f32>,
}

impl EogMask {
    pub(super) fn new(model: &LlamaModel) -> Self {
        let vocab = model.vocab();
        let ids = (0..model.n_vocab())
            .filter(|&t| vocab.is_eog(LlamaToken(t)))
            .map(|t| t as usize)
            .collect();
        EogMask {
            ids,
            masked: Vec::new(),
        }
    }

    /// `logits` with every end-of-generation entry at `-inf`.
    pub(super) fn apply(&mut self, logits: &[f32]) -> &[f32] {
        self.masked.clear();
        self.masked.extend_from_slice(logits);
        for &t in &self.ids {
            if let Some(l) = self.masked.get_mut(t) {
                *l = f32::NEG_INFINITY;
            }
        }
        &self.masked
    }
}

/// A slot's part of one decode step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Idle,
    /// The next token of a unit that is generating.
    Gen,
    /// The next `k` tokens of a unit's prompt.
    Chunk(usize),
    /// A throwaway token after the sequence's cells, removed after the step, so that the
    /// sequences on either side of an idle slot are evaluated in one pass.
    Fill,
}

/// Idle slots between busy ones that are cheaper to fill than to split the batch at: one pass
/// over the weights costs about as much as two or three more tokens in a pass (Qwen2.5-Coder-0.5B
/// on 2 cores: a 13-token step 178 ms in one pass, 207 ms split in two; 16 tokens 189 ms).
const MAX_FILL: usize = 2;

/// Marks as [`Part::Fill`] each run of at most [`MAX_FILL`] idle slots that has busy slots on
/// both sides, while `budget` tokens last and the slot's sequence has room for one more cell.
fn fill_gaps(plan: &mut [Part], kv: &[Vec<LlamaToken>], ctx_per_seq: usize, mut budget: usize) {
    let busy = |p: &Part| matches!(p, Part::Gen | Part::Chunk(_));
    let (Some(first), Some(last)) = (plan.iter().position(busy), plan.iter().rposition(busy))
    else {
        return;
    };
    let mut s = first;
    while s < last {
        if plan[s] != Part::Idle {
            s += 1;
            continue;
        }
        let end = (s..last).find(|&e| plan[e] != Part::Idle).unwrap_or(last);
        let run = end - s;
        if run <= MAX_FILL && run <= budget && (s..end).all(|e| kv[e].len() + 1 < ctx_per_seq) {
            plan[s..end].fill(Part::Fill);
            budget -= run;
        }
        s = end;
    }
}

impl Engine<'_> {
    fn serve(&mut self, rx: Receiver<Job>) {
        let mut batch = LlamaBatch::new(self.batch_tokens as usize, 1);
        let mut open = true;
        loop {
            // take new jobs while there is room to start them soon
            while open && self.waiting.len() < self.slots.len() {
                let idle = self.waiting.is_empty() && self.slots.iter().all(Option::is_none);
                let job = if idle {
                    match rx.recv() {
                        Ok(j) => j,
                        Err(_) => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match rx.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                };
                self.admit(job);
            }
            self.drop_cancelled();
            if !open && self.waiting.is_empty() && self.slots.iter().all(Option::is_none) {
                return;
            }
            self.place_waiting();
            if self.slots.iter().all(Option::is_none) {
                continue;
            }
            self.step(&mut batch);
        }
    }

    /// Starts waiting units in free slots, each in the free slot whose KV cache shares the
    /// longest prefix with its prompt (on a tie, the one holding least).
    fn place_waiting(&mut self) {
        while self.slots.iter().any(Option::is_none) {
            let Some(u) = self.waiting.pop_front() else {
                return;
            };
            if !self.jobs.contains_key(&u.job) {
                continue;
            }
            let s = (0..self.slots.len())
                .filter(|&s| self.slots[s].is_none())
                .max_by_key(|&s| {
                    (
                        common_prefix(&self.kv[s], &u.prompt),
                        std::cmp::Reverse(self.kv[s].len()),
                        std::cmp::Reverse(s),
                    )
                })
                .expect("a slot is free");
            self.start(s, u);
        }
    }

    /// Puts `u` in slot `s`: on the best prefix there is now, or waiting for a running unit
    /// that is feeding a longer one.
    fn start(&mut self, s: usize, mut u: Unit) {
        if self.reuse_prefix {
            let have = self.best_source(s, &u.prompt).1;
            let lead = (0..self.slots.len())
                .filter_map(|t| {
                    let l = self.slots[t].as_ref()?;
                    let feeding = l.wait.is_none() && l.fed < l.prompt.len();
                    feeding.then(|| Leader {
                        slot: t,
                        job: l.job,
                        choice: l.choice,
                        target: usable(common_prefix(&l.prompt, &u.prompt), u.prompt.len()),
                    })
                })
                .max_by_key(|l| l.target);
            if let Some(l) = lead.filter(|l| l.target >= have + MIN_WAIT_GAIN) {
                u.wait = Some(l);
                self.slots[s] = Some(u);
                return;
            }
        }
        self.adopt_prefix(s, &mut u);
        self.slots[s] = Some(u);
    }

    /// The sequence holding the longest usable prefix of `prompt`, and its length; slot `s`
    /// itself on a tie (no copy).
    fn best_source(&self, s: usize, prompt: &[LlamaToken]) -> (usize, usize) {
        let mut best = (s, usable(common_prefix(&self.kv[s], prompt), prompt.len()));
        for (t, kv) in self.kv.iter().enumerate() {
            let c = usable(common_prefix(kv, prompt), prompt.len());
            if c > best.1 {
                best = (t, c);
            }
        }
        best
    }

    /// Sets sequence `s` to the longest prefix of `u`'s prompt that any sequence holds and
    /// starts `u` after it; anything llama.cpp cannot keep (a recurrent model's partial
    /// state, a sliding window that dropped the prefix's start) is evaluated again.
    fn adopt_prefix(&mut self, s: usize, u: &mut Unit) {
        let (src, mut keep) = if self.reuse_prefix {
            self.best_source(s, &u.prompt)
        } else {
            (s, 0)
        };
        let seq = s as u32;
        if src != s {
            // a cache with one buffer per sequence copies whole sequences only, so the whole
            // of `src` comes over and its tail is dropped below
            if self
                .ctx
                .copy_kv_cache_seq(src as i32, s as i32, None, None)
                .is_ok()
            {
                let copied = self.kv[src][..keep].to_vec();
                self.kv[s] = copied;
            } else {
                keep = 0;
            }
        }
        if keep > 0 {
            let kept = self
                .ctx
                .clear_kv_cache_seq(Some(seq), Some(keep as u32), None)
                .unwrap_or(false)
                && self.ctx.kv_cache_seq_pos_min(s as i32) == 0
                && self.ctx.kv_cache_seq_pos_max(s as i32) == keep as i32 - 1;
            if !kept {
                keep = 0;
            }
        }
        if keep == 0 {
            let _ = self.ctx.clear_kv_cache_seq(Some(seq), None, None);
        }
        self.kv[s].truncate(keep);
        u.fed = keep;
        if let Some(job) = self.jobs.get_mut(&u.job) {
            job.prompt_evaluated += (u.prompt.len() - keep) as u64;
        }
    }

    /// Starts each waiting unit whose leader has fed the prefix it waits for, or stopped
    /// feeding (finished, failed, or done with its prompt).
    fn resolve_waits(&mut self) {
        for s in 0..self.slots.len() {
            let Some((w, prompt)) = self.slots[s]
                .as_ref()
                .and_then(|u| Some((u.wait?, u.prompt.clone())))
            else {
                continue;
            };
            let feeding = self.slots[w.slot]
                .as_ref()
                .is_some_and(|l| l.job == w.job && l.choice == w.choice && l.fed < l.prompt.len());
            if feeding && common_prefix(&self.kv[w.slot], &prompt) < w.target {
                continue;
            }
            let mut u = self.slots[s].take().expect("slot is active");
            u.wait = None;
            self.adopt_prefix(s, &mut u);
            self.slots[s] = Some(u);
        }
    }

    /// Fails every job whose submitter set its cancel flag, freeing its slots and dropping its
    /// waiting units, so a client that went away stops costing decode steps.
    fn drop_cancelled(&mut self) {
        let cancelled: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)))
            .map(|(&k, _)| k)
            .collect();
        for job in cancelled {
            self.fail_job(
                job,
                "cancelled: nobody waits for the answer any more".into(),
            );
        }
        if !self.waiting.is_empty() {
            let jobs = &self.jobs;
            self.waiting.retain(|u| jobs.contains_key(&u.job));
        }
    }

    /// Tokenises a job's prompt and queues its units; answers at once when the request
    /// cannot run.
    fn admit(&mut self, job: Job) {
        let id = job.req.id.clone();
        let p = &job.req.params;
        let sequences = p.n.max(1) as usize;
        let prepared = (|| -> Result<(Vec<LlamaToken>, Vec<LlamaSampler>), LlmError> {
            if job.req.has_images() {
                return Err(LlmError::request(&id, NO_VISION));
            }
            let text = match &job.req.prompt {
                // a legacy completion: the text as it is (BOS added where the model wants one)
                Some(raw) => raw.clone(),
                None => {
                    let msgs: Vec<(String, String)> = job
                        .req
                        .messages
                        .iter()
                        .map(|m| (m.role.clone(), m.text()))
                        .collect();
                    if msgs.is_empty() {
                        return Err(LlmError::request(&id, "messages is empty"));
                    }
                    self.template
                        .apply(self.model, &msgs)
                        .map_err(|e| LlmError::request(&id, e))?
                }
            };
            let tokens = self.model.vocab().tokenize(text.as_bytes(), true, true);
            if tokens.is_empty() {
                return Err(LlmError::request(&id, "the prompt has no tokens"));
            }
            if tokens.len() as u32 + 1 >= self.ctx_per_seq {
                return Err(LlmError::request(
                    &id,
                    format!(
                        "prompt of {} tokens does not fit the context of {} tokens per sequence",
                        tokens.len(),
                        self.ctx_per_seq
                    ),
                ));
            }
            let grammars = match &p.json_schema {
                Some(schema) => grammars_for(self.model, &mut self.converted, schema, sequences)
                    .map_err(|e| LlmError::request(&id, format!("json_schema: {e}")))?,
                None => Vec::new(),
            };
            Ok((tokens, grammars))
        })();
        let (tokens, mut grammars) = match prepared {
            Ok(x) => x,
            Err(e) => {
                self.pending.fetch_sub(sequences, Ordering::SeqCst);
                (job.reply)(Err(e));
                return;
            }
        };
        let n = sequences;
        let seed = p.seed.unwrap_or_else(rand::random::<u64>);
        let prompt = Arc::new(tokens);
        let stop = Arc::new(p.stop.clone());
        let mut units = Vec::with_capacity(n);
        for choice in 0..n {
            let g = grammars.pop();
            units.push(Unit {
                job: self.next_job,
                choice,
                prompt: prompt.clone(),
                fed: 0,
                sampler: Sampler::new(
                    p.temperature,
                    p.top_p,
                    seed.wrapping_add((choice as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                ),
                grammar: g,
                out: Vec::new(),
                n_gen: 0,
                max_tokens: p.max_tokens,
                stop: stop.clone(),
                last: LlamaToken(0),
                logit_idx: None,
                sent: 0,
                on_delta: job.on_delta.clone(),
                wait: None,
                ignore_eos: p.ignore_eos,
            });
        }
        self.jobs.insert(
            self.next_job,
            JobState {
                id,
                submitted: job.submitted,
                reply: Some(job.reply),
                cancel: job.cancel,
                units: sequences,
                choices: vec![None; n],
                remaining: n,
                prompt_tokens: prompt.len() as u64,
                completion_tokens: 0,
                prompt_evaluated: 0,
            },
        );
        self.next_job += 1;
        self.waiting.extend(units);
    }

    fn step(&mut self, batch: &mut LlamaBatch) {
        self.resolve_waits();
        batch.clear();
        let mut budget = self.batch_tokens as usize;
        let plan = &mut self.plan;
        plan.clear();
        plan.resize(self.slots.len(), Part::Idle);
        // generating units: one token each
        for (s, slot) in self.slots.iter().enumerate() {
            if let Some(u) = slot
                && u.fed == u.prompt.len()
                && u.n_gen > 0
            {
                plan[s] = Part::Gen;
                budget -= 1;
            }
        }
        // prompt chunks with what is left
        for (s, slot) in self.slots.iter().enumerate() {
            let Some(u) = slot else { continue };
            if u.fed == u.prompt.len() || u.wait.is_some() || budget == 0 {
                continue;
            }
            let k = (u.prompt.len() - u.fed).min(budget);
            plan[s] = Part::Chunk(k);
            budget -= k;
        }
        fill_gaps(plan, &self.kv, self.ctx_per_seq as usize, budget);
        // Into the batch in sequence order: with a cache of one buffer per sequence, llama.cpp
        // evaluates a batch in one pass only over consecutive sequence ids, and splits it into
        // one pass per run of them otherwise (each pass reads all the weights again).
        for (s, (slot, kv)) in self.slots.iter_mut().zip(&mut self.kv).enumerate() {
            match plan[s] {
                Part::Idle => {
                    if let Some(u) = slot.as_mut() {
                        u.logit_idx = None;
                    }
                }
                Part::Fill => {
                    if let Some(u) = slot.as_mut() {
                        u.logit_idx = None;
                    }
                    batch
                        .add(LlamaToken(0), kv.len() as i32, &[s as i32], false)
                        .expect("batch sized for every slot");
                }
                Part::Gen => {
                    let u = slot.as_mut().expect("planned slot is active");
                    let pos = (u.prompt.len() as u32 + u.n_gen - 1) as i32;
                    debug_assert_eq!(kv.len(), pos as usize);
                    u.logit_idx = Some(batch.n_tokens());
                    batch
                        .add(u.last, pos, &[s as i32], true)
                        .expect("batch sized for every slot");
                    kv.push(u.last);
                }
                Part::Chunk(k) => {
                    let u = slot.as_mut().expect("planned slot is active");
                    debug_assert_eq!(kv.len(), u.fed);
                    u.logit_idx = None;
                    for j in u.fed..u.fed + k {
                        let last = j + 1 == u.prompt.len();
                        if last {
                            u.logit_idx = Some(batch.n_tokens());
                        }
                        batch
                            .add(u.prompt[j], j as i32, &[s as i32], last)
                            .expect("chunk fits the budget");
                    }
                    kv.extend_from_slice(&u.prompt[u.fed..u.fed + k]);
                    u.fed += k;
                }
            }
        }
        if batch.n_tokens() == 0 {
            return;
        }
        if let Err(e) = self.ctx.decode(batch) {
            let active: Vec<u64> = self.slots.iter().flatten().map(|u| u.job).collect();
            for job in active {
                self.fail_job(job, format!("llama.cpp decode failed: {e}"));
            }
            // what the failed batch left in the cache is unknown: nothing of it is reused
            self.ctx.clear_kv_cache();
            self.kv.iter_mut().for_each(Vec::clear);
            return;
        }
        // the filler tokens' cells go again; their sequences hold what they held
        for s in 0..self.slots.len() {
            if self.plan[s] == Part::Fill {
                let _ = self.ctx.clear_kv_cache_seq(
                    Some(s as u32),
                    Some(self.kv[s].len() as u32),
                    None,
                );
            }
        }
        for s in 0..self.slots.len() {
            let Some(idx) = self.slots[s].as_ref().and_then(|u| u.logit_idx) else {
                continue;
            };
            let tok = self.pick(s, idx);
            let vocab = self.model.vocab();
            let u = self.slots[s].as_mut().expect("slot is active");
            let mut reason = None;
            if vocab.is_eog(tok) {
                reason = Some(finish::STOP);
            } else {
                let before = u.out.len();
                vocab.token_to_piece_into(tok, &mut u.out, false, None);
                u.n_gen += 1;
                u.last = tok;
                if let Some(g) = u.grammar.as_mut() {
                    g.accept(tok);
                }
                if let Some(cut) = find_stop(&u.out, before, &u.stop) {
                    u.out.truncate(cut);
                    reason = Some(finish::STOP);
                } else if u.n_gen >= u.max_tokens
                    || u.prompt.len() as u32 + u.n_gen + 1 >= self.ctx_per_seq
                {
                    reason = Some(finish::LENGTH);
                } else {
                    u.stream(false);
                }
            }
            if let Some(r) = reason {
                self.finish_slot(s, r);
            }
        }
    }

    /// Samples the next token of slot `s` from the logits at batch index `idx`. With a
    /// grammar, the unconstrained sample is checked first (one grammar test instead of one per
    /// vocabulary entry); only when the grammar rejects it is the whole vocabulary masked.
    fn pick(&mut self, s: usize, idx: i32) -> LlamaToken {
        let mut logits = self.ctx.get_logits_ith(idx);
        let u = self.slots[s].as_mut().expect("slot is active");
        if u.ignore_eos {
            let model = self.model;
            logits = self
                .eog
                .get_or_insert_with(|| EogMask::new(model))
                .apply(logits);
        }
        let t = u.sampler.sample(logits);
        let Some(g) = u.grammar.as_mut() else {
            return LlamaToken(t as i32);
        };
        let one = &mut self.one;
        one.data.clear();
        one.data.push(LlamaTokenData::new(
            LlamaToken(t as i32),
            logits[t as usize],
            0.0,
        ));
        one.selected = None;
        one.sorted = false;
        one.apply_sampler(g);
        if one.data.first().is_some_and(|d| d.logit().is_finite()) {
            return LlamaToken(t as i32);
        }
        self.full.data.clear();
        self.full.data.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
        );
        self.full.selected = None;
        self.full.sorted = false;
        self.full.apply_sampler(g);
        self.masked.clear();
        self.masked.resize(logits.len(), f32::NEG_INFINITY);
        for d in &self.full.data {
            self.masked[d.id().0 as usize] = d.logit();
        }
        LlamaToken(u.sampler.sample(&self.masked) as i32)
    }

    fn finish_slot(&mut self, s: usize, reason: &str) {
        let mut u = self.slots[s].take().expect("slot is active");
        u.stream(true);
        if !self.reuse_prefix {
            let _ = self.ctx.clear_kv_cache_seq(Some(s as u32), None, None);
            self.kv[s].clear();
        }
        let Some(job) = self.jobs.get_mut(&u.job) else {
            return;
        };
        job.choices[u.choice] = Some(Choice {
            text: String::from_utf8_lossy(&u.out).into_owned(),
            finish_reason: reason.to_string(),
        });
        job.completion_tokens += u.n_gen as u64;
        job.remaining -= 1;
        if job.remaining == 0 {
            let job = self.jobs.remove(&u.job).expect("job present");
            let completion = Completion {
                id: job.id,
                model: self.name.clone(),
                choices: job
                    .choices
                    .into_iter()
                    .map(|c| c.expect("all done"))
                    .collect(),
                usage: Usage {
                    prompt_tokens: job.prompt_tokens,
                    completion_tokens: job.completion_tokens,
                    prompt_evaluated: Some(job.prompt_evaluated),
                },
                latency_ms: job.submitted.elapsed().as_secs_f64() * 1e3,
                cached: false,
            };
            self.pending.fetch_sub(job.units, Ordering::SeqCst);
            if let Some(reply) = job.reply {
                reply(Ok(completion));
            }
        }
    }

    /// Answers a job with an error and frees every slot it holds.
    fn fail_job(&mut self, job: u64, reason: String) {
        for s in 0..self.slots.len() {
            if self.slots[s].as_ref().is_some_and(|u| u.job == job) {
                self.slots[s] = None;
                let _ = self.ctx.clear_kv_cache_seq(Some(s as u32), None, None);
                self.kv[s].clear();
            }
        }
        if let Some(state) = self.jobs.remove(&job) {
            self.pending.fetch_sub(state.units, Ordering::SeqCst);
            if let Some(reply) = state.reply {
                reply(Err(LlmError::request(&state.id, reason)));
            }
        }
    }
}

/// Byte offset where the first stop string starts, looking only where a match could have
/// been completed by the bytes from `new_from` on.
fn find_stop(out: &[u8], new_from: usize, stops: &[String]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for s in stops {
        let s = s.as_bytes();
        if s.len() > out.len() {
            continue;
        }
        let from = new_from.saturating_sub(s.len() - 1);
        if let Some(p) = out[from..].windows(s.len()).position(|w| w == s) {
            let at = from + p;
            best = Some(best.map_or(at, |b: usize| b.min(at)));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::find_stop;

    #[test]
    fn short_gaps_between_busy_slots_are_filled_while_tokens_and_room_last() {
        use super::{LlamaToken, Part::*, fill_gaps};
        let kv = vec![vec![LlamaToken(1); 10]; 9];
        let mut plan = [Idle, Gen, Idle, Gen, Idle, Idle, Idle, Chunk(4), Idle];
        fill_gaps(&mut plan, &kv, 64, 100);
        // the edges stay idle: a run of busy ids may start and end anywhere
        assert_eq!(
            plan,
            [Idle, Gen, Fill, Gen, Idle, Idle, Idle, Chunk(4), Idle]
        );
        let mut plan = [Gen, Idle, Idle, Gen, Idle, Gen];
        fill_gaps(&mut plan, &kv, 64, 2);
        assert_eq!(
            plan,
            [Gen, Fill, Fill, Gen, Idle, Gen],
            "the budget ran out"
        );
        let mut full = kv.clone();
        full[1] = vec![LlamaToken(1); 63];
        let mut plan = [Gen, Idle, Gen];
        fill_gaps(&mut plan, &full, 64, 10);
        assert_eq!(plan, [Gen, Idle, Gen], "no room for another cell");
    }

    #[test]
    fn stop_strings_spanning_tokens_are_found() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(find_stop(b"abc\n", 3, &stops), None);
        assert_eq!(find_stop(b"abc\n\n", 4, &stops), Some(3));
        assert_eq!(find_stop(b"xxEN", 3, &stops), None);
        assert_eq!(find_stop(b"xxEND tail", 4, &stops), Some(2));
        // an earlier match outside the new bytes' reach is not searched again
        assert_eq!(find_stop(b"END.....", 7, &stops), None);
    }
}
