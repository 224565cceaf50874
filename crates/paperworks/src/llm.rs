//! `paperworks llm ...` and `paperworks serve`: flag parsing and printing; the work is in
//! pw-llm.

use clap::{Args, Subcommand};
use pw_core::{Error, Result};
use pw_llm::bench::{BenchConfig, BenchReport};
use pw_llm::embedded::requant::WeightFormat;
use pw_llm::serve::ServeConfig;
use pw_llm::{
    ChatMessage, Embedded, EmbeddedConfig, GenParams, Generator, HttpConfig, LlmConfig, Request,
};
use std::path::PathBuf;
use std::sync::Arc;

use crate::Global;

/// Which model answers: the embedded GGUF (default) or OpenAI-compatible endpoints.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Local GGUF model (default: <assets>/models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long, value_name = "GGUF")]
    pub model: Option<PathBuf>,
    /// OpenAI-compatible endpoint(s) to use instead of the embedded model, e.g.
    /// http://127.0.0.1:8000/v1 (comma-separated or repeated; requests go to the least busy).
    /// Without --endpoint and --model, $OPENAI_BASE_URL is used when set, with the key in
    /// $OPENAI_API_KEY (that key is never sent to an endpoint named here unless
    /// --api-key-env OPENAI_API_KEY says so).
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    pub endpoint: Vec<String>,
    /// Model name to send to the endpoints.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub api_model: String,
    /// Environment variable holding the endpoints' API key (sent as a bearer token).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Embedded: sequences decoded together in one llama.cpp batch.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub parallel: usize,
    /// Embedded: context tokens (prompt + completion) per sequence.
    #[arg(long, default_value_t = 2048, value_name = "TOKENS")]
    pub ctx: u32,
    /// Embedded: chat template instead of the GGUF's (a Jinja text, rendered as transformers
    /// does, or a llama.cpp built-in name such as chatml, llama3).
    #[arg(long, value_name = "TEMPLATE")]
    pub chat_template: Option<String>,
    /// Embedded: weight format to run in: auto (Q4_1/Q5_1 files are converted once to q8_0:
    /// llama.cpp's CPU backend has no batched kernel for them, and q8_0 is nearly lossless),
    /// keep (as the file is), or q8_0 / q5_0 / q4_0. Converted copies are cached in
    /// ~/.cache/paperworks/models.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub weights: WeightFormat,
    /// Embedded: evaluate every prompt in full, instead of reusing the KV cache of a prefix
    /// that an earlier prompt or another choice of the same request already evaluated.
    #[arg(long)]
    pub no_prefix_reuse: bool,
    /// Embedded: layers to offload to the GPU (99: all). Needs the CUDA build of llama.cpp
    /// (`make build-cuda`, target/cuda/release/paperworks); elsewhere N > 0 is an error.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub gpu_layers: u32,
    /// HTTP: requests in flight over all endpoints.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// HTTP: retries after the first attempt (429, 5xx, timeouts, connection errors).
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub retries: u32,
    /// HTTP: seconds to wait for one attempt.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub timeout: f64,
    /// Where an endpoint takes a JSON schema: auto (json_schema, then json_object + schema,
    /// then guided_json, as the server refuses them), json_schema (OpenAI, vLLM, paperworks
    /// serve), json_object (llama.cpp server, llama-cpp-python), guided_json (vLLM), ollama.
    #[arg(long, default_value = "auto", value_name = "DIALECT")]
    pub structured_output: pw_llm::openai::SchemaDialect,
}

impl BackendArgs {
    pub fn config(&self, g: &Global, cache: Option<PathBuf>) -> LlmConfig {
        // The openai client's defaults: $OPENAI_BASE_URL when no backend is named, and then
        // $OPENAI_API_KEY as its key (only for that URL, so the key does not travel to
        // servers named on the command line).
        let set = |v: &str| std::env::var(v).ok().filter(|s| !s.trim().is_empty());
        let from_env = self.endpoint.is_empty() && self.model.is_none();
        let (endpoints, api_key_env) = match set("OPENAI_BASE_URL").filter(|_| from_env) {
            Some(url) => (
                vec![url.trim().to_string()],
                self.api_key_env
                    .clone()
                    .or_else(|| set("OPENAI_API_KEY").map(|_| "OPENAI_API_KEY".to_string())),
            ),
            None => (self.endpoint.clone(), self.api_key_env.clone()),
        };
        let model = self
            .model
            .clone()
            .unwrap_or_else(|| pw_data::assets::default_model(&g.assets));
        LlmConfig {
            embedded: EmbeddedConfig {
                model,
                parallel: self.parallel,
                ctx_per_seq: self.ctx,
                threads: g.threads,
                chat_template: self.chat_template.clone(),
                gpu_layers: self.gpu_layers,
                weights: self.weights,
                reuse_prefix: !self.no_prefix_reuse,
                ..Default::default()
            },
            http: HttpConfig {
                endpoints,
                model: self.api_model.clone(),
                api_key_env,
                concurrency: self.concurrency,
                max_retries: self.retries,
                timeout_s: self.timeout,
                structured_output: self.structured_output,
                ..Default::default()
            },
            cache,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum LlmCommand {
    /// Answer one prompt and print the completion.
    ///
    /// Uses the embedded SmolLM2 unless --model or --endpoint says otherwise. Answers are kept in
    /// the response cache (<run-dir>/cache.redb, default runs/llm): the same prompt, parameters
    /// and seed are answered from it. Without --seed a sampled request gets a fresh seed, so it
    /// is not a cache hit.
    Complete(CompleteArgs),
    /// Measure prompt-processing and generation tokens/s, one stream and several in parallel.
    ///
    /// Generation rate is (tokens of a long request - tokens of a 1-token request) / (time
    /// difference), so prompt processing cancels out; the median of --reps runs is shown.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct CompleteArgs {
    /// The user message; `-` reads it from standard input.
    pub prompt: String,
    /// A system message before it.
    #[arg(long)]
    pub system: Option<String>,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Samples to draw.
    #[arg(short, long, default_value_t = 1)]
    pub n: u32,
    /// A JSON schema the answer must follow: a file, or the JSON text itself.
    #[arg(long, value_name = "FILE|JSON")]
    pub json_schema: Option<String>,
    /// Print the whole result (choices, usage, latency) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Bypass the response cache.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Tokens generated per stream.
    #[arg(long, default_value_t = 128)]
    pub tokens: u32,
    /// Parallel streams of the batched measurement.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// Repetitions of each measurement (the median is shown).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Every stream generates all --tokens, past its end-of-generation token, so that the
    /// batched figure is at --streams throughout (as llama-batched-bench measures); without it
    /// streams that end early narrow the batch, as in real use. Over HTTP it is sent as
    /// `ignore_eos`, which llama.cpp's server and vLLM honour.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to bind (127.0.0.1 keeps it on this machine).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Environment variable holding a token clients must send as `Authorization: Bearer`.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Sequences (each request's `n`) waiting or running before new requests get 429 with
    /// Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Seconds a request may wait for its answer before it is cancelled (504).
    #[arg(long, default_value_t = 600.0, value_name = "S")]
    pub request_timeout: f64,
    /// Seconds running requests may finish after SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub drain_timeout: f64,
    /// Seconds a connection may take to send a request head (and stay idle between requests).
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub header_timeout: f64,
    /// Open connections at most; more are closed at once.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    #[command(flatten)]
    pub backend: BackendArgs,
}

fn seed_or_random(seed: u64, explicit: bool) -> u64 {
    if explicit { seed } else { rand::random() }
}

fn json_schema_arg(s: &str) -> Result<serde_json::Value> {
    let text = if s.trim_start().starts_with('{') {
        s.to_string()
    } else {
        std::fs::read_to_string(s).map_err(|e| Error::io(s, e))?
    };
    serde_json::from_str(&text).map_err(|e| Error::invalid(s, format!("--json-schema: {e}")))
}

pub fn complete(g: &Global, a: &CompleteArgs, seed_given: bool) -> Result<()> {
    let run = g
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/llm"));
    let cache = (!a.no_cache).then(|| run.join("cache.redb"));
    let gen_ = pw_llm::backend::open(&a.backend.config(g, cache))?;
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage::system(s.clone()));
    }
    let prompt = if a.prompt == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)
            .map_err(|e| pw_core::Error::Other(format!("reading the prompt from stdin: {e}")))?;
        if s.trim().is_empty() {
            return Err(pw_core::Error::Other(
                "the prompt read from stdin is empty".into(),
            ));
        }
        s.trim_end_matches('\n').to_string()
    } else {
        a.prompt.clone()
    };
    messages.push(ChatMessage::user(prompt));
    let params = GenParams {
        temperature: a.temperature,
        top_p: a.top_p,
        max_tokens: a.max_tokens,
        stop: a.stop.clone(),
        seed: Some(seed_or_random(g.seed, seed_given || a.temperature == 0.0)),
        n: a.n,
        json_schema: a.json_schema.as_deref().map(json_schema_arg).transpose()?,
        ignore_eos: false,
    };
    let c = gen_.generate(&Request::new("complete", messages, params))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
    } else {
        for (i, ch) in c.choices.iter().enumerate() {
            if c.choices.len() > 1 {
                println!("--- choice {i} ({}) ---", ch.finish_reason);
            }
            println!("{}", ch.text);
        }
        let reused = match c.usage.cached_tokens(c.choices.len()) {
            Some(k) if k > 0 && !c.cached => format!(" ({k} reused from the KV cache)"),
            _ => String::new(),
        };
        eprintln!(
            "[{}] {} prompt{reused} + {} completion tokens, {:.0} ms{}",
            c.model,
            c.usage.prompt_tokens,
            c.usage.completion_tokens,
            c.latency_ms,
            if c.cached { ", from the cache" } else { "" }
        );
    }
    Ok(())
}

pub fn print_bench(r: &BenchReport) {
    println!("model                               {}", r.model);
    println!(
        "prompt processing ({:>4} tokens)    {:>8.1} tokens/s",
        r.prompt_tokens, r.pp_tokens_per_s
    );
    println!(
        "generation, 1 stream                {:>8.1} tokens/s",
        r.tg_single_tokens_per_s
    );
    println!(
        "generation, {:>2} streams (aggregate) {:>8.1} tokens/s",
        r.parallel, r.tg_batched_tokens_per_s
    );
    println!("batched / single                    {:>8.2}x", r.speedup);
    use pw_core::samples::report_figure;
    report_figure(
        &format!("{}: prompt processing, {} tokens", r.model, r.prompt_tokens),
        r.pp_tokens_per_s,
        "tokens/s",
    );
    report_figure(
        &format!("{}: generation, 1 stream", r.model),
        r.tg_single_tokens_per_s,
        "tokens/s",
    );
    report_figure(
        &format!("{}: generation, {} streams", r.model, r.parallel),
        r.tg_batched_tokens_per_s,
        "tokens/s",
    );
}

pub fn bench(g: &Global, a: &BenchArgs) -> Result<()> {
    let bench = BenchConfig {
        gen_tokens: a.tokens,
        parallel: a.streams,
        reps: a.reps,
        ignore_eos: a.ignore_eos,
        ..Default::default()
    };
    bench.check().map_err(Error::Other)?;
    let mut cfg = a.backend.config(g, None);
    bench.fit(&mut cfg.embedded);
    // The embedded engine's file (after any weight conversion) and threads go into --out, so
    // llama.cpp's own tools can be run on the same file and thread count beside it.
    let (gen_, engine): (Arc<dyn pw_llm::Generator>, _) = if cfg.uses_http() {
        (pw_llm::backend::open(&cfg)?, None)
    } else {
        let e = Embedded::load(cfg.embedded.clone())?;
        let info = e.info().clone();
        (
            pw_llm::backend::cached(Arc::new(e), cfg.cache.as_deref())?,
            Some(info),
        )
    };
    let r = pw_llm::bench::run(gen_.as_ref(), &bench)?;
    print_bench(&r);
    if let Some(out) = &a.out {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a BenchReport,
            /// Tokens asked per stream (`--tokens`); a stream that ends early generates fewer.
            gen_tokens: u32,
            engine: Option<pw_llm::ModelInfo>,
        }
        let out_json = Out {
            report: &r,
            gen_tokens: a.tokens,
            engine,
        };
        pw_core::write_json_atomic(out, &out_json)?;
    }
    Ok(())
}

pub fn serve(g: &Global, a: &ServeArgs) -> Result<()> {
    if !a.backend.endpoint.is_empty() {
        return Err(Error::Other(
            "serve: --endpoint is for clients; serve runs the embedded model (--model)".into(),
        ));
    }
    let token = match &a.token_env {
        None => None,
        Some(v) => Some(
            std::env::var(v)
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Error::Other(format!("--token-env {v}: ${v} is not set (or empty)"))
                })?,
        ),
    };
    let addr: std::net::SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .map_err(|e| Error::Other(format!("--host {} --port {}: {e}", a.host, a.port)))?;
    let cfg = a.backend.config(g, None);
    let engine = Arc::new(Embedded::load(cfg.embedded)?);
    let name = engine.model();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("tokio runtime: {e}")))?;
    let seconds = |flag: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 86_400.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(Error::Other(format!(
                "--{flag} {v}: must be a number of seconds in (0, 86400]"
            )))
        }
    };
    if a.queue == 0 || a.max_connections == 0 {
        return Err(Error::Other(
            "--queue and --max-connections must be at least 1".into(),
        ));
    }
    let scfg = ServeConfig {
        addr,
        token,
        max_body_bytes: a.max_body,
        max_queue: a.queue,
        request_timeout: seconds("request-timeout", a.request_timeout)?,
        drain_timeout: seconds("drain-timeout", a.drain_timeout)?,
        header_timeout: seconds("header-timeout", a.header_timeout)?,
        max_connections: a.max_connections,
    };

    rt.block_on(pw_llm::serve::serve(
        engine,
        scfg,
        |bound| {
            use std::io::Write;
            println!("listening on http://{bound}/v1 (model {name})");
            let _ = std::io::stdout().flush();
        },
        std::future::pending(),
    ))?;
    eprintln!("stopped");
    Ok(())
}
