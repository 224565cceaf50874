//! `paperworks recap caption | features | train | eval | videos`: flags to one pw-recap call each, and the
//! printed summary.

use crate::Global;
use clap::{Args, Subcommand};
use pw_core::{Error, Result, RunDir};
use pw_llm::{EmbeddedConfig, Generator, HttpConfig, LlmConfig};
use pw_recap::caption::{CaptionOptions, caption_video};
use pw_recap::config::TrainConfig;
use pw_recap::data::{Hcap, SynthVideo};
use pw_recap::model::ModelConfig;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Model name sent to the endpoints.
    #[arg(long, default_value = "default", value_name = "NAME")]
    api_model: String,
    /// Environment variable holding the endpoints' API key (sent as a bearer token).
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// HTTP: retries after the first attempt (429, 5xx, timeouts, connection errors).
    #[arg(long, default_value_t = 4, value_name = "N")]
    retries: u32,
    /// HTTP: seconds to wait for one attempt.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    timeout: f64,
}

#[derive(Subcommand, Debug)]
pub enum RecapCommand {
    /// Zero-shot recursive captioning of one video: clip captions every --clip-seconds from a
    /// vision model, segment descriptions and a summary from an LLM.
    ///
    /// Frames sampled in each clip go to --clip-endpoint as image parts (PNG data URIs, an
    /// OpenAI-compatible vision server such as llama.cpp's or vLLM's). Segment descriptions
    /// (one per --segment-clips clips) and the summary come from --llm-endpoint, or from the
    /// embedded GGUF (--llm-model; default the strongest instruct GGUF in the assets,
    /// Qwen2.5-Coder-0.5B, else SmolLM2). Each level is resumable: a killed run asks again
    /// only what has no answer. Writes hierarchy.json (timestamps at every level) and
    /// clips.vtt (WebVTT) in the run directory (default runs/recap-caption).
    ///
    /// Example: paperworks recap caption assets/video/bikes.mp4 --clip-endpoint
    /// http://127.0.0.1:8000/v1 --llm-endpoint http://127.0.0.1:8001/v1
    Caption {
        #[arg(value_name = "VIDEO")]
        video: PathBuf,
        #[arg(long, value_delimiter = ',', value_name = "URL", required = true)]
        clip_endpoint: Vec<String>,
        #[arg(long, value_delimiter = ',', value_name = "URL")]
        llm_endpoint: Vec<String>,
        /// Embedded LLM for segments and the summary when no --llm-endpoint is given.
        #[arg(long, value_name = "GGUF")]
        llm_model: Option<PathBuf>,
        #[arg(long, default_value_t = 4.0, value_name = "SECS")]
        clip_seconds: f64,
        /// Frames sent per clip.
        #[arg(long, default_value_t = 4, value_name = "N")]
        frames: usize,
        /// Side of the (square, centre-cropped) frames sent.
        #[arg(long, default_value_t = 336, value_name = "PX")]
        size: usize,
        /// Clips per segment (45 = the paper's 3 minutes of 4-s clips).
        #[arg(long, default_value_t = 45, value_name = "N")]
        segment_clips: usize,
        #[arg(long, default_value_t = 64, value_name = "TOKENS")]
        max_tokens: u32,
        /// Bypass the response cache.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Train the recursive captioner (curriculum clip -> segment -> video) on your records and
    /// features.
    ///
    /// --data is an Ego4D-HCap-style JSON ({"clips": [...], "segments": [...], "videos":
    /// [...]}, fields video_uid, start, end, caption / clip_captions + description /
    /// segment_descriptions + summary) or JSONL; --features holds <video_uid>.safetensors with
    /// `clip_features` [clips, d] (one row per 4-s clip) and optionally `frame_features`
    /// [clips, frames, d]. Without --validation every tenth video is held out. Writes the
    /// three checkpoints, vocab.json, model.json and predictions-validation.json (score it with
    /// `recap eval`) to --out.
    ///
    /// Example: paperworks recap train --data runs/reproduce/recap/hcap/train.json --features
    /// runs/reproduce/recap/features --out runs/recap-model
    Train {
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        #[arg(long, value_name = "FILE")]
        validation: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        features: PathBuf,
        #[arg(long, value_name = "DIR", default_value = "runs/recap-model")]
        out: PathBuf,
        /// Clips per inference segment (fixed windows; no ground-truth boundaries).
        #[arg(long, default_value_t = 4, value_name = "N")]
        segment_clips: usize,
        /// Training steps of the clip, segment and video levels.
        #[arg(long, value_delimiter = ',', default_values_t = [700, 400, 300], value_name = "C,S,V")]
        steps: Vec<usize>,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        evals: usize,
    },
    /// Score predictions against references per level: CIDEr-D, ROUGE-L, BLEU-4 (x100) with
    /// the official evaluation's conventions (lower case, whitespace tokens, one reference).
    ///
    /// Both files are Ego4D-HCap-style records (JSON or JSONL); records are matched by video
    /// and start time, and a reference without a prediction scores as an empty caption.
    ///
    /// Example: paperworks recap eval --pred runs/recap-model/predictions-validation.json
    /// --ref hcap-val.json
    Eval {
        #[arg(long, value_name = "FILE")]
        pred: PathBuf,
        #[arg(long = "ref", value_name = "FILE")]
        reference: PathBuf,
    },
    /// Frozen features of your videos for `recap train`: each video cut into clips of
    /// --clip-seconds, the encoder's frames sampled in each, one pooled row per clip
    /// (`clip_features`) and the clip's space-time tokens (`dense_features`).
    ///
    /// The encoder is a VideoPrism folder this project wrote (`videoprism train`, a
    /// reproduction's `recap/encoder` or `videoprism/seed0`) or a released .npz. Writes
    /// <out>/<file stem>.safetensors per video; the stem is the video_uid your records use.
    ///
    /// Example: paperworks recap features assets/video/bikes.mp4 --encoder
    /// runs/reproduce/recap/encoder --out feats
    Features {
        #[arg(value_name = "VIDEO", required = true)]
        videos: Vec<PathBuf>,
        #[arg(long, value_name = "DIR|NPZ")]
        encoder: PathBuf,
        #[arg(long, default_value_t = 4.0, value_name = "SECS")]
        clip_seconds: f64,
        #[arg(long, value_name = "DIR", default_value = "runs/recap-features")]
        out: PathBuf,
    },
    /// Write synthetic long videos' captions at the three levels as Ego4D-HCap-style JSON
    /// (the miniature's data; a story with a goal -> activities -> atomic actions).
    ///
    /// Example: paperworks recap videos --n 20 --out hcap.json
    Videos {
        #[arg(long, default_value_t = 20)]
        n: usize,
        #[arg(long, default_value_t = 3)]
        segments: usize,
        #[arg(long, default_value_t = 4)]
        clips_per_segment: usize,
        #[arg(long, value_name = "FILE", default_value = "hcap.json")]
        out: PathBuf,
    },
}

fn http(
    urls: &[String],
    e: &EndpointArgs,
    embedded: EmbeddedConfig,
    cache: Option<PathBuf>,
) -> LlmConfig {
    LlmConfig {
        embedded,
        http: HttpConfig {
            endpoints: urls.to_vec(),
            model: e.api_model.clone(),
            api_key_env: e.api_key_env.clone(),
            max_retries: e.retries,
            timeout_s: e.timeout,
            ..Default::default()
        },
        cache,
    }
}

pub fn run(g: &Global, cmd: &RecapCommand) -> Result<()> {
    match cmd {
        RecapCommand::Caption {
            video,
            clip_endpoint,
            llm_endpoint,
            llm_model,
            clip_seconds,
            frames,
            size,
            segment_clips,
            max_tokens,
            no_cache,
            endpoint,
        } => {
            let dir = g
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/recap-caption"));
            if !video.is_file() {
                return Err(Error::invalid(video, "video file not found"));
            }
            // A file FFmpeg cannot read is refused before any model is opened.
            pw_data::video::probe(video)?;
            let config = serde_json::json!({
                "video": video.to_string_lossy(), "clip_endpoint": clip_endpoint, "llm_endpoint": llm_endpoint,
                "clip_seconds": clip_seconds, "frames": frames, "size": size,
                "segment_clips": segment_clips,
            });
            let s = RunDir::scope(&dir, config, g.seed, g.fresh, |run| {
                // One cache file per backend (a redb file is held by one opener).
                let cache = |name: &str| (!no_cache).then(|| run.root().join(name));
                let model = llm_model
                    .clone()
                    .unwrap_or_else(|| pw_data::assets::instruct_model(&g.assets));
                let embedded = EmbeddedConfig {
                    model,
                    threads: g.threads,
                    ..Default::default()
                };
                let vision_cfg = http(
                    clip_endpoint,
                    endpoint,
                    embedded.clone(),
                    cache("vision-cache.redb"),
                );
                let llm_cfg = http(llm_endpoint, endpoint, embedded, cache("llm-cache.redb"));
                // The caption ledgers belong to this video, these models and these sizes: a
                // rerun with another of them is refused instead of resuming from them.
                run.check_inputs(
                    "recap caption",
                    &[video.as_path()],
                    serde_json::json!({
                        "vision": vision_cfg.identity(), "llm": llm_cfg.identity(),
                        "clip_seconds": clip_seconds, "frames": frames, "size": size,
                        "segment_clips": segment_clips, "max_tokens": max_tokens,
                    }),
                )?;
                let vision: Arc<dyn Generator> =
                    pw_llm::backend::open(&vision_cfg).map_err(|e| Error::Other(e.to_string()))?;
                let llm: Arc<dyn Generator> =
                    pw_llm::backend::open(&llm_cfg).map_err(|e| Error::Other(e.to_string()))?;
                caption_video(
                    vision.as_ref(),
                    llm.as_ref(),
                    &CaptionOptions {
                        video: video.clone(),
                        out: run.root().to_path_buf(),
                        clip_seconds: *clip_seconds,
                        frames: *frames,
                        size: *size,
                        segment_clips: *segment_clips,
                        max_tokens: *max_tokens,
                    },
                )
            })?;
            let h = &s.hierarchy;
            println!(
                "{}: {:.1} s, {} clips ({} asked now, {} from before), {} segments, summary: {}",
                video.display(),
                h.duration_s,
                h.clips.len(),
                s.stats[0].done,
                s.stats[0].already_done,
                h.segments.len(),
                h.summary
            );
            println!("wrote {} and {}", s.json.display(), s.vtt.display());
            Ok(())
        }
        RecapCommand::Train {
            data,
            validation,
            features,
            out,
            segment_clips,
            steps,
            batch,
            evals,
        } => {
            let [c, s, v] = steps[..] else {
                return Err(Error::Other(
                    "--steps takes three numbers: clip,segment,video".into(),
                ));
            };
            let tc = |steps: usize, lr: f64| TrainConfig {
                steps,
                batch: *batch,
                lr,
                warmup: (steps / 12).max(1),
            };
            let config = serde_json::json!({
                "data": data.to_string_lossy(),
                "features": features.to_string_lossy(),
                "steps": steps,
            });
            let sum = RunDir::scope(out, config, g.seed, g.fresh, |run| {
                pw_recap::run::train(&pw_recap::run::TrainOptions {
                    data: data.clone(),
                    validation: validation.clone(),
                    features: features.clone(),
                    out: run.root().to_path_buf(),
                    model: ModelConfig::default(),
                    segment_clips: *segment_clips,
                    clip: tc(c, 2e-3),
                    segment: tc(s, 1e-3),
                    video: tc(v, 1e-3),
                    evals: *evals,
                    seed: g.seed,
                })
            })?;
            println!(
                "trained on {} videos, validated on {}; validation CIDEr-D clip {:.2}, segment {:.2}, summary {:.2}",
                sum.videos.0,
                sum.videos.1,
                sum.validation[0].cider,
                sum.validation[1].cider,
                sum.validation[2].cider
            );
            for (n, l) in &sum.logs {
                println!(
                    "  {n}: step {} chosen (validation CIDEr-D {:.2})",
                    l.best_step, l.best_cider
                );
            }
            println!(
                "wrote {} and the checkpoints in {}",
                sum.predictions.display(),
                sum.out.display()
            );
            Ok(())
        }
        RecapCommand::Eval { pred, reference } => {
            let levels = pw_recap::run::eval(pred, reference)?;
            if levels.is_empty() {
                return Err(Error::invalid(reference, "no references to score"));
            }
            println!(
                "{:<8} {:>6} {:>8} {:>8} {:>8} {:>8}",
                "level", "n", "CIDEr-D", "ROUGE-L", "BLEU-4", "missing"
            );
            for l in levels {
                println!(
                    "{:<8} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8}",
                    l.level,
                    l.scores.n,
                    l.scores.cider,
                    l.scores.rouge_l,
                    l.scores.bleu4,
                    l.missing
                );
            }
            Ok(())
        }
        RecapCommand::Features {
            videos,
            encoder,
            clip_seconds,
            out,
        } => {
            if *clip_seconds <= 0.0 {
                return Err(Error::Other("--clip-seconds must be positive".into()));
            }
            let device = pw_nn::train_device(false)?;
            let enc = pw_videoprism::run::load_encoder(encoder, &device)?;
            let s = pw_recap::features::video_features(&enc, videos, *clip_seconds, out, &device)?;
            for (v, n) in &s.videos {
                let plural = if *n == 1 { "" } else { "s" };
                println!("{}: {n} clip{plural} of {clip_seconds} s", v.display());
            }
            println!(
                "wrote {} feature files ({} frames at {}x{} per clip, {}) to {}",
                s.videos.len(),
                enc.frames,
                enc.size,
                enc.size,
                enc.source,
                s.out.display()
            );
            Ok(())
        }
        RecapCommand::Videos {
            n,
            segments,
            clips_per_segment,
            out,
        } => {
            if *segments < 1 || *clips_per_segment < 1 || *n == 0 {
                return Err(Error::Other(
                    "--n, --segments and --clips-per-segment must be at least 1".into(),
                ));
            }
            let vs: Vec<SynthVideo> = (0..*n)
                .map(|i| SynthVideo::generate(g.seed, i, *segments, *clips_per_segment))
                .collect();
            let h = Hcap::from_videos(&vs, *clips_per_segment);
            pw_core::write_json_atomic(out, &h)?;
            println!(
                "{} videos: {} clips, {} segments, {} summaries in {}",
                n,
                h.clips.len(),
                h.segments.len(),
                h.videos.len(),
                out.display()
            );
            if let Some(v) = vs.first() {
                println!("e.g. {}: {}", v.uid, v.summary);
            }
            Ok(())
        }
    }
}
