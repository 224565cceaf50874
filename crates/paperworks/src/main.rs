//! The `paperworks` binary: clap wiring only. Every capability lives in a library crate.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use pw_core::{Error, Result, RunDir, Size};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod comments;
mod glan;
mod glore;
mod llm;
mod madbench;
mod pdiff;
mod recap;
mod registry;
mod videoprism;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seven recent ML research systems as one offline toolkit: each reproduces its paper's central
/// claim in miniature on a laptop, and runs the same code on your own data, models and GPUs.
///
/// Every command writes under a run directory (--run-dir): manifest.json (command, config, seed,
/// revision, times), metrics.json, stage outputs and report.md / report.html. Re-running into
/// the same directory resumes; --fresh starts over.
#[derive(Parser, Debug)]
#[command(
    name = "paperworks",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("PW_GIT_REVISION"), ")"),
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Global {
    /// Run directory for outputs (default: runs/<command>).
    #[arg(long, global = true, value_name = "DIR")]
    #[serde(serialize_with = "pw_core::cpath::lossy_opt")]
    pub(crate) run_dir: Option<PathBuf>,
    /// Seed for every random choice of the run.
    #[arg(long, global = true, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Worker threads for CPU kernels (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Device for training and model compute: cpu (default; burn's flex backend with the fused
    /// CPU kernels), cuda[:N] (burn's LibTorch backend on GPU N) or torch-cpu (the LibTorch
    /// backend on the CPU). The last two need the GPU build: `scripts/setup.sh --gpu && make
    /// build-gpu`, then target/gpu/release/paperworks. LLM decoding is set apart, by
    /// --gpu-layers.
    #[arg(long, global = true, env = "PW_DEVICE", value_name = "DEVICE")]
    pub(crate) device: Option<pw_nn::DeviceKind>,
    /// No progress bars and only warnings and errors on stderr.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    /// TOML file with the full configuration; command-line flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    #[serde(serialize_with = "pw_core::cpath::lossy_opt")]
    pub(crate) config: Option<PathBuf>,
    /// Clear the run directory's earlier outputs instead of resuming.
    #[arg(long, global = true)]
    pub(crate) fresh: bool,
    /// Where scripts/setup.sh put the offline assets.
    #[arg(
        long,
        global = true,
        env = "PAPERWORKS_ASSETS",
        default_value = "assets",
        value_name = "DIR"
    )]
    #[serde(serialize_with = "pw_core::cpath::lossy")]
    pub(crate) assets: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registered paper reproductions and write one combined report.
    ///
    /// Each system trains and evaluates its paper's method on data that ships with the project,
    /// states the paper's claims with the paper's figures beside what it measured, and says for
    /// each claim whether it held. The report is <run-dir>/report.md and report.html.
    Reproduce(ReproduceArgs),
    /// Neural Network Diffusion (p-diff) on your own checkpoints: fit, then generate.
    ///
    /// `fit` trains the parameter autoencoder and latent DDPM on a folder of safetensors
    /// checkpoints that share tensor names and shapes; `generate` writes new checkpoints with the
    /// same names and shapes. The miniature reproduction is `paperworks reproduce --only pdiff`.
    #[command(subcommand)]
    Pdiff(pdiff::PdiffCommand),
    /// List the offline assets and check them against assets/SHA256SUMS.
    ///
    /// Exits non-zero when an asset is missing or (with --verify) does not match its checksum.
    /// `scripts/setup.sh` fetches them.
    Assets(AssetsArgs),
    /// Language models: answer a prompt, or benchmark a backend.
    ///
    /// The embedded backend runs any local GGUF through llama.cpp (default: the SmolLM2-135M
    /// that setup fetches); --endpoint uses OpenAI-compatible servers (vLLM, llama.cpp server,
    /// Ollama, OpenAI) with retries and backoff instead.
    #[command(subcommand)]
    Llm(llm::LlmCommand),
    /// GLAN: instruction data from a taxonomy of human knowledge.
    ///
    /// `taxonomy` writes an editable taxonomy TOML; `run` generates subjects, syllabi,
    /// homework questions and answers (each step resumable, structured, with rejects), filters
    /// them and writes glan.jsonl + glan.parquet; `merge` joins `run --shard I/N` outputs. The
    /// full configuration goes in the config file's [glan] table.
    #[command(subcommand)]
    Glan(glan::GlanCommand),
    /// GLoRe: step-level reward models (ORM, SORM) and global/local refinement.
    ///
    /// `generate` writes GSM8K-style problems with exact step truth; `label` runs SORM labelling
    /// (K verifying rollouts per step prefix) with any model and exports TRL PRM and
    /// Math-Shepherd rows; `refine` asks any model for global and local refinements of the wrong
    /// rollouts. The miniature (student, ORM, SORM, refiners trained here) is
    /// `paperworks reproduce --only glore`.
    #[command(subcommand)]
    Glore(glore::GloreCommand),
    /// VideoPrism: a frozen video encoder for your videos (embed), its two-stage training on
    /// your video-caption pairs (train), and attention-pooler probes on your labels (probe).
    ///
    /// The encoder is a factorized ViViT; released VideoPrism .npz checkpoints load into it
    /// too. The miniature reproduction (the paper's ablation ladder) is
    /// `paperworks reproduce --only videoprism`.
    #[command(subcommand)]
    Videoprism(videoprism::VideoPrismCommand),
    /// Code Needs Comments: comment density of code (a lexical scanner or tree-sitter, 9
    /// languages) and comment augmentation that never changes a byte of code.
    ///
    /// `density` counts code, comment and blank lines, comment characters and words per file,
    /// language and total, for source trees or JSONL corpora in The Stack's format.
    #[command(subcommand)]
    Comments(comments::CommentsCommand),
    /// MAD-Bench: deceptive prompts for vision-language models, with paired neutral prompts,
    /// any model under test, judges and the remedy paragraph.
    ///
    /// `scenes` renders synthetic scenes with COCO annotations; `build` writes deceptive +
    /// neutral prompts with their truth from any COCO-format annotations; `run` asks a model
    /// (a vision endpoint, the tiny VLM, or describe-then-answer) every variant; `judge`
    /// grades the answers (exact and/or LLM judge); `report` draws the tables and charts.
    /// The miniature is `paperworks reproduce --only madbench`.
    #[command(subcommand)]
    Madbench(madbench::MadBenchCommand),
    /// Video ReCap: recursive captioning of long videos (clip captions, segment descriptions,
    /// a summary).
    ///
    /// `caption` captions a real video zero-shot with a vision endpoint and an LLM (JSON
    /// hierarchy + WebVTT); `features` encodes your videos per 4-s clip; `train` trains the
    /// recursive captioner on Ego4D-HCap-style records
    /// and features; `eval` scores predictions (CIDEr-D, ROUGE-L, BLEU-4); `videos` writes the
    /// miniature's synthetic hierarchy. The miniature is `paperworks reproduce --only recap`.
    #[command(subcommand)]
    Recap(recap::RecapCommand),
    /// Serve a local GGUF over an OpenAI-compatible HTTP API.
    ///
    /// POST /v1/chat/completions (streaming, structured output as json_schema, json_object +
    /// schema, guided_json or format), the legacy POST /v1/completions, GET /v1/models,
    /// GET /health. Binds 127.0.0.1:8080 by default; requests whose sequences (n each) would
    /// pass --queue get 429 with Retry-After; a request whose client leaves, or that passes
    /// --request-timeout, is cancelled; slow or idle connections are closed after
    /// --header-timeout; SIGTERM lets running requests finish for --drain-timeout, then exits.
    Serve(llm::ServeArgs),
    /// Print a shell completion script to standard output.
    ///
    /// bash: `paperworks completions bash > ~/.local/share/bash-completion/completions/paperworks`;
    /// zsh: `paperworks completions zsh > ~/.zfunc/_paperworks` (with `~/.zfunc` on fpath);
    /// fish: `paperworks completions fish > ~/.config/fish/completions/paperworks.fish`.
    Completions(CompletionsArgs),
}

#[derive(Args, Debug, Clone)]
struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
struct ReproduceArgs {
    /// Run only these systems (comma-separated names from --list).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    only: Vec<String>,
    /// Minutes on a 2-core CPU (the default).
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The larger size that shows the effects clearly.
    #[arg(long)]
    full: bool,
    /// List the registered reproductions and their claims, and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Args, Debug, Clone)]
struct AssetsArgs {
    /// Hash every asset (slower: about a second per 300 MB).
    #[arg(long)]
    verify: bool,
}

/// What `--config` may hold: a table per command, same names as the flags.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    seed: Option<u64>,
    threads: Option<usize>,
    /// `device = "cuda:0"`: as `--device`, which overrides it.
    device: Option<pw_nn::DeviceKind>,
    #[serde(default)]
    reproduce: ReproduceConfig,
    /// `[glan]`: the whole GLAN configuration (stages, models, filters).
    glan: Option<pw_glan::GlanConfig>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ReproduceConfig {
    only: Option<Vec<String>>,
    size: Option<Size>,
    /// Per-system settings, e.g. `[reproduce.overrides.pdiff]` with `ae_steps = 500`.
    #[serde(default)]
    overrides: BTreeMap<String, serde_json::Value>,
}

fn load_config(path: &Path) -> Result<ConfigFile> {
    pw_core::read_toml(path)
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAPERWORKS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal, and never when NO_COLOR is set (no-color.org): logs that go to
    // files and pipes stay plain text.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn reproduce(g: &Global, args: &ReproduceArgs, cfg: &ConfigFile) -> Result<()> {
    let all = registry::reproductions();
    if args.list {
        if all.is_empty() {
            println!("No reproduction is registered in this build.");
        }
        for r in &all {
            println!("{:<12} {}", r.name(), r.title());
            for c in r.claims() {
                println!("    - {} (paper: {})", c.text, c.paper_figure);
            }
        }
        return Ok(());
    }
    let size = if args.full {
        Size::Full
    } else if args.quick {
        Size::Quick
    } else {
        cfg.reproduce.size.unwrap_or(Size::Quick)
    };
    let only: Vec<String> = if args.only.is_empty() {
        cfg.reproduce.only.clone().unwrap_or_default()
    } else {
        args.only.clone()
    };
    for name in &only {
        if !all.iter().any(|r| r.name() == name) {
            let known: Vec<&str> = all.iter().map(|r| r.name()).collect();
            return Err(Error::Other(format!(
                "--only {name}: no such reproduction (registered: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    for name in cfg.reproduce.overrides.keys() {
        if !all.iter().any(|r| r.name() == name) {
            let known: Vec<&str> = all.iter().map(|r| r.name()).collect();
            return Err(Error::Other(format!(
                "[reproduce.overrides.{name}]: no such reproduction (registered: {})",
                known.join(", ")
            )));
        }
    }
    let selected: Vec<&dyn pw_core::Reproduction> = all
        .iter()
        .filter(|r| only.is_empty() || only.iter().any(|o| o == r.name()))
        .map(|r| r.as_ref())
        .collect();
    let root = g
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/reproduce"));
    let effective = serde_json::json!({ "global": g, "reproduce": { "only": only, "size": size, "overrides": cfg.reproduce.overrides } });
    RunDir::scope(&root, effective, g.seed, g.fresh, |run| {
        pw_core::run_reproductions(
            run,
            &selected,
            size,
            g.assets.clone(),
            g.seed,
            &cfg.reproduce.overrides,
        )
    })?;
    println!("report: {}", root.join("report.md").display());
    println!("        {}", root.join("report.html").display());
    Ok(())
}

fn assets(g: &Global, args: &AssetsArgs) -> Result<()> {
    use pw_data::assets::{AssetState, check_assets};
    let list = check_assets(&g.assets, args.verify)?;
    let mut bad = Vec::new();
    for a in &list {
        let size = a
            .size
            .map(|s| format!("{:.1} MB", s as f64 / 1e6))
            .unwrap_or_default();
        let state = match &a.state {
            AssetState::Ok => "ok (sha256 verified)".to_string(),
            AssetState::Present => "present".to_string(),
            AssetState::Missing => {
                bad.push(a.rel.clone());
                "MISSING".to_string()
            }
            AssetState::Mismatch { actual } => {
                bad.push(a.rel.clone());
                format!("CHECKSUM MISMATCH (got {}…)", &actual[..12])
            }
        };
        println!("{:<44} {:>10}  {state}", a.rel, size);
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingAsset {
            path: g.assets.join(&bad[0]),
            hint: format!(
                "{} asset(s) missing or corrupt; run scripts/setup.sh",
                bad.len()
            ),
        })
    }
}

/// The most worker threads `--threads` takes: beyond any machine this runs on, and few enough
/// that a typo cannot spawn threads for minutes.
const MAX_THREADS: usize = 1024;

fn run(cli: Cli, seed_given: bool) -> Result<()> {
    if let Command::Completions(a) = &cli.command {
        let mut out = std::io::stdout().lock();
        clap_complete::generate(a.shell, &mut Cli::command(), "paperworks", &mut out);
        return Ok(());
    }
    let cfg = match &cli.global.config {
        Some(p) => load_config(p)?,
        None => ConfigFile::default(),
    };
    let mut g = cli.global.clone();
    if let (Some(seed), 0) = (cfg.seed, g.seed) {
        g.seed = seed;
    }
    let threads = g.threads.or(cfg.threads);
    if let Some(n) = threads {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        if n == 0 || n > MAX_THREADS {
            return Err(Error::Other(format!(
                "--threads {n}: must be in 1..={MAX_THREADS} (this machine has {cores} cores; \
                 more threads than cores only makes the spinning kernels slower)"
            )));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Other(format!("--threads: {e}")))?;
        pw_llm::embedded::set_default_threads(n);
        pw_nn::set_torch_threads(n);
    }
    // Resolved once, so the manifest records the device the run used, default included.
    let device = g.device.or(cfg.device).unwrap_or_default();
    pw_nn::select_device(device)?;
    g.device = Some(device);
    match &cli.command {
        Command::Reproduce(a) => reproduce(&g, a, &cfg),
        Command::Pdiff(c) => pdiff::run(&g, c),
        Command::Assets(a) => assets(&g, a),
        Command::Llm(llm::LlmCommand::Complete(a)) => {
            llm::complete(&g, a, seed_given || cfg.seed.is_some())
        }
        Command::Llm(llm::LlmCommand::Bench(a)) => llm::bench(&g, a),
        Command::Serve(a) => llm::serve(&g, a),
        Command::Glan(c) => glan::run(&g, c, cfg.glan.clone()),
        Command::Glore(c) => glore::run(&g, c),
        Command::Videoprism(c) => videoprism::run(&g, c),
        Command::Comments(c) => comments::run(&g, c),
        Command::Madbench(c) => madbench::run(&g, c),
        Command::Recap(c) => recap::run(&g, c),
        Command::Completions(_) => Ok(()),
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`paperworks reproduce --list | head`)
/// panicked on the failed write. A command-line tool ends quietly there, as `cat` does. Sockets
/// are unaffected: std (and tokio through it) sends with MSG_NOSIGNAL and gets an error instead.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    end_quietly_on_a_closed_pipe();
    pw_core::rundir::set_git_revision(env!("PW_GIT_REVISION"));
    pw_nn::alloc::tune_mimalloc_for_tensors();
    let matches = Cli::command().get_matches();
    let seed_given = matches.value_source("seed") == Some(clap::parser::ValueSource::CommandLine);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    pw_core::progress::set_quiet(cli.global.quiet);
    init_logging(cli.global.quiet);
    match run(cli, seed_given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", pw_core::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
