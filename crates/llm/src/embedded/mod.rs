//! The embedded backend: any local GGUF through llama.cpp (llama-cpp-2), in-process.
//!
//! One engine thread owns the model and one llama.cpp context with `parallel` sequence slots.
//! Requests queue up; every step the engine decodes one token of every running sequence and
//! a chunk of the next prompt together in one llama.cpp batch (continuous batching), so a
//! batch of requests runs several times faster than one at a time. The GGUF's own tokenizer
//! and chat template are used; JSON-schema requests are constrained by a llama.cpp grammar.

pub mod budget;
mod engine;
pub mod forced;
pub mod requant;
pub mod sampler;
pub mod template;
pub mod vision;

use crate::{BatchResult, Completion, Generator, LlmError, Request};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Settings of the embedded backend. `model` is the only one without a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Local GGUF file.
    pub model: PathBuf,
    /// Sequences decoded together in one llama.cpp batch.
    pub parallel: usize,
    /// Context (prompt + completion tokens) of each sequence.
    pub ctx_per_seq: u32,
    /// Most tokens per llama.cpp decode call (prompt chunks + one per running sequence).
    pub batch_tokens: u32,
    /// CPU threads for llama.cpp (default: all cores).
    pub threads: Option<usize>,
    /// Chat template to use instead of the GGUF's: a Jinja template text (rendered as
    /// `transformers` does, see [`template`]) or a llama.cpp built-in name (`chatml`, `llama3`,
    /// `gemma`, ...).
    pub chat_template: Option<String>,
    /// Layers to offload to a GPU (needs a GPU build of llama.cpp).
    pub gpu_layers: u32,
    /// Name results carry (default: the file name without `.gguf`, plus `@<format>` when
    /// converted).
    pub name: Option<String>,
    /// Convert the weights at load time (once, cached): see [`requant`] for why Q4_1 models
    /// batch poorly on CPU. Default `auto`: Q4_1/Q5_1 become Q8_0.
    pub weights: requant::WeightFormat,
    /// Where converted models are kept (default `$XDG_CACHE_HOME/paperworks/models` or
    /// `~/.cache/paperworks/models`).
    pub convert_dir: Option<PathBuf>,
    /// Reuse the KV cache of a prompt prefix another sequence already evaluated (the choices
    /// of an `n > 1` request, requests that share a system prompt or a syllabus), instead of
    /// evaluating it again. Off only to measure what it saves.
    pub reuse_prefix: bool,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            model: PathBuf::new(),
            parallel: 8,
            ctx_per_seq: 2048,
            batch_tokens: 512,
            threads: None,
            chat_template: None,
            gpu_layers: 0,
            name: None,
            weights: requant::WeightFormat::Auto,
            convert_dir: None,
            reuse_prefix: true,
        }
    }
}

impl EmbeddedConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            model: model.into(),
            ..Default::default()
        }
    }

    /// `threads`, else the process default ([`set_default_threads`], the CLI's `--threads`),
    /// else every core.
    pub fn thread_count(&self) -> usize {
        self.explicit_threads().unwrap_or_else(cores)
    }

    /// The thread count the user chose, if any.
    fn explicit_threads(&self) -> Option<usize> {
        self.threads
            .or(match DEFAULT_THREADS.load(Ordering::Relaxed) {
                0 => None,
                n => Some(n),
            })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// An engine's claim on the cores, from before its model loads until it is dropped (see
/// [`budget`]).
pub(crate) struct ThreadClaim {
    since: Option<budget::CpuSnapshot>,
    _slot: Option<budget::EngineSlot>,
    dir: PathBuf,
}

impl ThreadClaim {
    /// Registers the engine and starts measuring what other processes use.
    pub(crate) fn start() -> Self {
        let dir = budget::registry_dir();
        ThreadClaim {
            since: budget::CpuSnapshot::take(),
            _slot: budget::register(&dir),
            dir,
        }
    }

    /// llama.cpp threads for `cfg`: the user's count, else this engine's share of the cores.
    pub(crate) fn threads(&self, cfg: &EmbeddedConfig) -> usize {
        let cores = cores();
        let live = 1 + budget::other_processes(&self.dir);
        let others = self
            .since
            .and_then(|s| s.others_busy_since())
            .unwrap_or(0.0);
        if let Some(n) = cfg.explicit_threads() {
            // Only other paperworks engines count here: the CPU measurement is a short sample,
            // too noisy to warn on.
            if n * live > cores {
                tracing::warn!(
                    "llama.cpp on {n} threads beside {} other paperworks process(es) decoding on \
                     {cores} cores: spinning threads will slow each other down; leave --threads \
                     unset to share the cores",
                    live - 1
                );
            }
            return n;
        }
        let n = budget::plan(cores, live, others);
        if n < cores {
            // Debug, not info: a command's stderr stays its one-line error when it fails.
            tracing::debug!(
                "llama.cpp on {n} of {cores} cores: {} other paperworks process(es) decoding, \
                 {others:.1} cores busy elsewhere (--threads overrides)",
                live - 1
            );
        }
        n
    }
}

static DEFAULT_THREADS: AtomicUsize = AtomicUsize::new(0);

/// llama.cpp threads for every engine whose config leaves `threads` unset. `--threads N` sets
/// it, so that N bounds the whole process: llama.cpp's OpenMP threads spin, and engines at all
/// cores beside another process (or burn's rayon pool) slow each other down many times over.
pub fn set_default_threads(n: usize) {
    DEFAULT_THREADS.store(n, Ordering::Relaxed);
}

/// What the engine reports once the model is loaded.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub n_params: u64,
    pub size_bytes: u64,
    pub n_vocab: i32,
    pub n_ctx_train: u32,
    pub parallel: usize,
    pub ctx_per_seq: u32,
    pub threads: usize,
}

pub(crate) type Reply = Box<dyn FnOnce(Result<Completion, LlmError>) + Send>;

/// Receives a request's text as it is generated: (choice, new text). Text that could still
/// turn out to begin a stop sequence, and incomplete UTF-8, are held back until decided; the
/// deltas of a choice concatenate to its final text.
pub type OnDelta = Arc<dyn Fn(usize, &str) + Send + Sync>;

pub(crate) struct Job {
    pub req: Request,
    pub submitted: std::time::Instant,
    pub reply: Reply,
    /// Set by the submitter when nobody waits for the answer any more (the server's client
    /// went away, a deadline passed): the engine drops the job's sequences at its next step.
    pub cancel: Option<Arc<AtomicBool>>,
    pub on_delta: Option<OnDelta>,
}

/// Handle to the engine thread. Cheap to share (`Arc`); dropping the last handle stops the
/// engine after it answers what it already took.
pub struct Embedded {
    tx: Option<mpsc::Sender<Job>>,
    info: ModelInfo,
    pending: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Checks that `path` exists and starts like a GGUF file, so the common mistakes get a clear
/// message before llama.cpp sees the file.
pub fn check_gguf(path: &Path) -> Result<(), LlmError> {
    let mut f = std::fs::File::open(path).map_err(|e| LlmError::model(path, e.to_string()))?;
    let len = f
        .metadata()
        .map_err(|e| LlmError::model(path, e.to_string()))?
        .len();
    let mut head = [0u8; 8];
    if len < 24 || f.read_exact(&mut head).is_err() {
        return Err(LlmError::model(
            path,
            format!("not a GGUF file: only {len} bytes"),
        ));
    }
    if &head[..4] != b"GGUF" {
        return Err(LlmError::model(
            path,
            format!(
                "not a GGUF file: starts with {:02x?}, expected the magic \"GGUF\"",
                &head[..4]
            ),
        ));
    }
    let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(2..=3).contains(&version) {
        return Err(LlmError::model(
            path,
            format!("unsupported GGUF version {version} (llama.cpp reads 2 and 3)"),
        ));
    }
    Ok(())
}

/// The model name for a path: the file name without `.gguf`.
pub fn default_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().trim_end_matches(".gguf").to_string())
        .unwrap_or_else(|| "model".into())
}

/// `$XDG_CACHE_HOME/paperworks/models`, else `~/.cache/paperworks/models`.
pub fn default_convert_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("paperworks").join("models")
}

/// Checks the GGUF and converts its weights when `cfg.weights` asks (once, cached); the
/// returned config points at the file to load.
fn prepare(cfg: EmbeddedConfig) -> Result<EmbeddedConfig, LlmError> {
    check_gguf(&cfg.model)?;
    // Installs our log callback before llama.cpp reads the file's metadata: otherwise its
    // parser prints its complaints straight to stderr, beside our one-line error.
    engine::backend()?;
    let mut cfg = cfg;
    if let Some(to) = cfg.weights.resolve(&cfg.model, cfg.gpu_layers) {
        let dir = cfg.convert_dir.clone().unwrap_or_else(default_convert_dir);
        let threads = cfg.thread_count();
        let converted = requant::ensure(&cfg.model, to, &dir, threads)?;
        if cfg.name.is_none() {
            cfg.name = Some(format!("{}@{}", default_name(&cfg.model), to.name()));
        }
        cfg.model = converted;
    }
    Ok(cfg)
}

impl Embedded {
    /// Loads the model and starts the engine. Errors name the file: missing, not a GGUF,
    /// truncated/corrupt (llama.cpp refused it), or no chat template.
    pub fn load(cfg: EmbeddedConfig) -> Result<Self, LlmError> {
        if cfg.parallel == 0 || cfg.parallel > 256 {
            return Err(LlmError::model(
                &cfg.model,
                format!("parallel {} must be in 1..=256", cfg.parallel),
            ));
        }
        if cfg.ctx_per_seq < 16 {
            return Err(LlmError::model(
                &cfg.model,
                "ctx_per_seq must be at least 16",
            ));
        }
        let cfg = prepare(cfg)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let pending2 = pending.clone();
        let thread = std::thread::Builder::new()
            .name("llama-engine".into())
            .spawn(move || engine::run(cfg, rx, ready_tx, pending2))
            .map_err(|e| LlmError::Stopped(format!("cannot start the engine thread: {e}")))?;
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(LlmError::Stopped(
                    "engine thread ended while loading".into(),
                ));
            }
        };
        Ok(Embedded {
            tx: Some(tx),
            info,
            pending,
            thread: Some(thread),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Sequences (a request's `n` samples each) queued or running now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Queues a request; `reply` is called once with its result, from the engine thread.
    /// Refuses with [`LlmError::Overloaded`] when the request's `n` sequences would take the
    /// sequences pending past `limit` (the server's bounded queue; batch callers pass
    /// `usize::MAX` and wait instead). A request whose `n` alone exceeds `limit` is refused
    /// as invalid, since it could never run. `cancel`, once set, drops the request's
    /// sequences at the engine's next step (and its reply carries an error).
    pub fn submit(
        &self,
        req: Request,
        limit: usize,
        cancel: Option<Arc<AtomicBool>>,
        reply: Reply,
    ) -> Result<(), LlmError> {
        self.submit_streaming(req, limit, cancel, None, reply)
    }

    /// [`Embedded::submit`], with the text handed to `on_delta` as it is generated.
    pub fn submit_streaming(
        &self,
        req: Request,
        limit: usize,
        cancel: Option<Arc<AtomicBool>>,
        on_delta: Option<OnDelta>,
        reply: Reply,
    ) -> Result<(), LlmError> {
        if let Err(reason) = req.params.validate() {
            return Err(LlmError::request(&req.id, reason));
        }
        let cap = limit.max(1);
        let units = req.params.n.max(1) as usize;
        if units > cap {
            return Err(LlmError::request(
                &req.id,
                format!("n = {units} is more than the {cap} sequences this server queues"),
            ));
        }
        let prev = self.pending.fetch_add(units, Ordering::SeqCst);
        if prev.saturating_add(units) > cap {
            self.pending.fetch_sub(units, Ordering::SeqCst);
            return Err(LlmError::Overloaded(prev));
        }
        let job = Job {
            req,
            submitted: std::time::Instant::now(),
            reply,
            cancel,
            on_delta,
        };
        let tx = self
            .tx
            .as_ref()
            .expect("sender lives as long as the handle");
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            self.pending.fetch_sub(units, Ordering::SeqCst);
            (job.reply)(Err(LlmError::Stopped("the engine thread has ended".into())));
        }
        Ok(())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Generator for Embedded {
    fn model(&self) -> String {
        self.info.name.clone()
    }

    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        let (tx, rx) = mpsc::channel();
        self.submit(
            req.clone(),
            usize::MAX,
            None,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )?;
        rx.recv()
            .unwrap_or_else(|_| Err(LlmError::Stopped("the engine thread has ended".into())))
    }

    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        let (tx, rx) = mpsc::channel::<BatchResult>();
        let mut expected = 0usize;
        for req in reqs {
            let id = req.id.clone();
            let tx2 = tx.clone();
            let id2 = id.clone();
            match self.submit(
                req,
                usize::MAX,
                None,
                Box::new(move |result| {
                    let _ = tx2.send(BatchResult { id: id2, result });
                }),
            ) {
                Ok(()) => expected += 1,
                Err(e) => on_result(BatchResult { id, result: Err(e) }),
            }
        }
        drop(tx);
        for _ in 0..expected {
            match rx.recv() {
                Ok(r) => on_result(r),
                Err(_) => break,
            }
        }
    }
}
