//! `paperworks videoprism embed | train | probe`: flags to one pw-videoprism call each, and
//! the printed summary.

use crate::Global;
use clap::Subcommand;
use pw_core::{Error, Result, RunDir};
use pw_nn::train_device;
use pw_videoprism::run::{
    EmbedOptions, Encoder, ProbeOptions, TrainOptions, embed, load_encoder, probe_labels,
    random_encoder, train,
};
use std::path::{Path, PathBuf};

/// Where an encoder is looked for when --checkpoint is not given, in order.
const DEFAULT_ENCODERS: [&str; 2] = ["runs/videoprism-train", "runs/reproduce/videoprism/seed0"];

#[derive(Subcommand, Debug)]
pub enum VideoPrismCommand {
    /// Embed videos with a frozen encoder: one global embedding per video (and, with --tokens,
    /// every space-time token).
    ///
    /// Frames are sampled uniformly over each video at the encoder's frame count and resized /
    /// centre-cropped to its input size; decoding runs on worker threads ahead of the encoder.
    /// Writes <out> (safetensors: `global` [videos, dim], `tokens` [videos, tokens, dim]) and
    /// <out>.jsonl (row, video, frame indices and times). The encoder is --checkpoint (a
    /// `videoprism train` folder, a reproduction's runs/reproduce/videoprism/seed0, or a
    /// released VideoPrism .npz), else the first of runs/videoprism-train and
    /// runs/reproduce/videoprism/seed0 that exists.
    Embed {
        /// Video files (mp4, webm, mkv, ... anything FFmpeg reads).
        #[arg(required = true, value_name = "VIDEO")]
        videos: Vec<PathBuf>,
        /// Encoder folder or released .npz.
        #[arg(long, value_name = "PATH")]
        checkpoint: Option<PathBuf>,
        /// Embed with a seeded random (untrained) encoder: for checking a pipeline and its
        /// speed, not for features.
        #[arg(long, conflicts_with = "checkpoint")]
        random_init: bool,
        /// Output safetensors file (default: <run-dir>/embeddings.safetensors, run dir
        /// runs/videoprism-embed).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also write every space-time token.
        #[arg(long)]
        tokens: bool,
        /// Videos per encoder batch.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Decoding worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Train both stages on your video-caption pairs.
    ///
    /// --data is JSONL with one `{"video": PATH, "caption": TEXT}` per line (paths relative to
    /// the file). Stage 1 is video-text contrastive; stage 2 distils the frozen stage-1 model
    /// into a student that sees 35% of the tubes (token-wise + global distillation, token
    /// shuffling). Writes model.json, tokenizer.json, stage1.safetensors, stage2.safetensors
    /// to the run dir (default runs/videoprism-train); a rerun resumes after the last stage.
    Train {
        #[arg(long, value_name = "JSONL")]
        data: PathBuf,
        /// Frames per clip.
        #[arg(long, default_value_t = 8)]
        frames: usize,
        /// Square frame size (a multiple of the patch size, 8).
        #[arg(long, default_value_t = 32)]
        size: usize,
        #[arg(long, default_value_t = 500)]
        stage1_steps: usize,
        #[arg(long, default_value_t = 400)]
        stage2_steps: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Train an attention-pooler probe on the frozen encoder for your labels and report its
    /// accuracy.
    ///
    /// --data is JSONL with `{"video": PATH, "label": NAME, "split": "train"|"val"|"test"}`
    /// (split optional: a hash of the path assigns 80/10/10). The probe kept is the one with
    /// the best validation accuracy; its test accuracy is printed and written to
    /// <run-dir>/probe.json (run dir runs/videoprism-probe).
    Probe {
        #[arg(long, value_name = "JSONL")]
        data: PathBuf,
        #[arg(long, value_name = "PATH")]
        checkpoint: Option<PathBuf>,
        /// Probe training steps (batches of 32). Attention probes on frozen tokens converge
        /// slowly: on the miniature, 300 steps left most probes still improving.
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
}

fn find_encoder(checkpoint: &Option<PathBuf>, random: bool, seed: u64) -> Result<Encoder> {
    let dev = train_device(false)?;
    if random {
        return Ok(random_encoder(seed, &dev));
    }
    if let Some(p) = checkpoint {
        return load_encoder(p, &dev);
    }
    for p in DEFAULT_ENCODERS {
        if Path::new(p).join(pw_videoprism::run::MODEL_FILE).exists() {
            return load_encoder(Path::new(p), &dev);
        }
    }
    Err(Error::Other(format!(
        "no encoder found: pass --checkpoint (a `videoprism train` folder or a released VideoPrism .npz), train one (`paperworks videoprism train` or `paperworks reproduce --only videoprism`, which write {}), or use --random-init for a pipeline check",
        DEFAULT_ENCODERS.join(" / ")
    )))
}

pub fn run(g: &Global, cmd: &VideoPrismCommand) -> Result<()> {
    match cmd {
        VideoPrismCommand::Embed {
            videos,
            checkpoint,
            random_init,
            out,
            tokens,
            batch,
            workers,
        } => {
            if *batch == 0 || *workers == 0 {
                return Err(Error::Other(
                    "--batch and --workers must be at least 1".into(),
                ));
            }
            let enc = find_encoder(checkpoint, *random_init, g.seed)?;
            let dir = g
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/videoprism-embed"));
            let out = out
                .clone()
                .unwrap_or_else(|| dir.join("embeddings.safetensors"));
            let opts = EmbedOptions {
                videos: videos.clone(),
                out,
                tokens: *tokens,
                batch: *batch,
                workers: *workers,
            };
            let config = serde_json::to_value(&opts).unwrap_or_default();
            let s = RunDir::scope(&dir, config, g.seed, g.fresh, |_| embed(&enc, &opts))?;
            println!(
                "embedded {} videos ({} frames at {}x{}; {} tokens of {} per video) with {}",
                s.videos, enc.frames, enc.size, enc.size, s.tokens_per_video, s.dim, s.source
            );
            println!(
                "wrote {} and {} in {:.1} s ({:.1} s waiting for the decoder)",
                s.out.display(),
                s.index.display(),
                s.total_s,
                s.decode_s
            );
            Ok(())
        }
        VideoPrismCommand::Train {
            data,
            frames,
            size,
            stage1_steps,
            stage2_steps,
            batch,
            workers,
        } => {
            let out = g
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/videoprism-train"));
            let opts = TrainOptions {
                data: data.clone(),
                out: out.clone(),
                frames: *frames,
                size: *size,
                stage1_steps: *stage1_steps,
                stage2_steps: *stage2_steps,
                batch: *batch,
                seed: g.seed,
                workers: (*workers).max(1),
            };
            let config = serde_json::to_value(&opts).unwrap_or_default();
            let s = RunDir::scope(&out, config, g.seed, g.fresh, |_| train(&opts))?;
            println!(
                "trained both stages on {} pairs (vocabulary {}): {}",
                s.pairs,
                s.vocab,
                s.out.display()
            );
            Ok(())
        }
        VideoPrismCommand::Probe {
            data,
            checkpoint,
            steps,
            workers,
        } => {
            if *steps == 0 {
                return Err(Error::Other("--steps must be at least 1".into()));
            }
            let enc = find_encoder(checkpoint, false, g.seed)?;
            let dir = g
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/videoprism-probe"));
            let opts = ProbeOptions {
                data: data.clone(),
                steps: *steps,
                seed: g.seed,
                workers: (*workers).max(1),
            };
            let config = serde_json::to_value(&opts).unwrap_or_default();
            let s = RunDir::scope(&dir, config, g.seed, g.fresh, |run| {
                let s = probe_labels(&enc, &opts)?;
                pw_core::write_json_atomic(run.path("probe.json"), &s)?;
                Ok(s)
            })?;
            println!(
                "probe on {} classes (train/val/test {:?}) with {}: val {:.1}%, test {:.1}% (best of 8 checks, step {})",
                s.classes.len(),
                s.sizes,
                s.source,
                100.0 * s.score.val_acc,
                100.0 * s.score.test_acc,
                s.score.best_step
            );
            if s.score.still_improving {
                println!(
                    "the probe was still improving at its last check; more --steps may raise it"
                );
            }
            Ok(())
        }
    }
}
