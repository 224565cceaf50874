//! `paperworks pdiff fit | generate`: flags to one pw-pdiff call each, and the printed summary.

use crate::Global;
use clap::Subcommand;
use pw_core::{Result, RunDir};
use pw_pdiff::run::{FitOptions, fit_checkpoints, generate_files};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum PdiffCommand {
    /// Fit the autoencoder and the latent DDPM to a folder of checkpoints.
    ///
    /// Every `*.safetensors` file of --checkpoints must hold the chosen tensors with the same
    /// shapes; a file that differs is named with the tensor. The fitted generator goes to
    /// <run-dir> (default runs/pdiff-fit): ae.safetensors, ddpm_ema.safetensors,
    /// generator.json. Rerunning reuses what is there.
    Fit {
        /// Folder of checkpoints (at least 2; p-diff used 200 consecutive training snapshots).
        #[arg(long, value_name = "DIR")]
        checkpoints: PathBuf,
        /// Tensors to model, comma-separated (default: every tensor of the first file).
        #[arg(long, value_delimiter = ',', value_name = "NAME")]
        tensors: Vec<String>,
        /// Autoencoder training steps (default: the quick reproduction's).
        #[arg(long)]
        ae_steps: Option<usize>,
        /// Denoiser training steps (default: the quick reproduction's).
        #[arg(long)]
        ddpm_steps: Option<usize>,
    },
    /// Write new checkpoints from a fitted generator.
    Generate {
        /// The folder `pdiff fit` wrote.
        #[arg(long, value_name = "DIR")]
        generator: PathBuf,
        /// How many checkpoints to write.
        #[arg(long, short, default_value_t = 100)]
        n: usize,
        /// Output folder for gen-NNNN.safetensors (default: <run-dir>, else runs/pdiff-generate).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

pub fn run(g: &Global, cmd: &PdiffCommand) -> Result<()> {
    match cmd {
        PdiffCommand::Fit {
            checkpoints,
            tensors,
            ae_steps,
            ddpm_steps,
        } => {
            let out = g
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/pdiff-fit"));
            let defaults = FitOptions::default();
            let opts = FitOptions {
                tensors: tensors.clone(),
                ae_steps: ae_steps.unwrap_or(defaults.ae_steps),
                ddpm_steps: ddpm_steps.unwrap_or(defaults.ddpm_steps),
                seed: g.seed,
                ..defaults
            };
            let config = serde_json::to_value(&opts).unwrap_or_default();
            let (k, p) = RunDir::scope(&out, config.clone(), g.seed, g.fresh, |run| {
                // The fitted pieces are reused when present: only for the same checkpoints.
                let files = pw_pdiff::run::checkpoint_files(checkpoints)?;
                let inputs: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
                run.check_inputs("pdiff fit", &inputs, config)?;
                fit_checkpoints(checkpoints, &out, &opts)
            })?;
            println!("fitted on {k} checkpoints of {p} values: {}", out.display());
            Ok(())
        }
        PdiffCommand::Generate { generator, n, out } => {
            let out = out
                .clone()
                .or_else(|| g.run_dir.clone())
                .unwrap_or_else(|| PathBuf::from("runs/pdiff-generate"));
            let paths = generate_files(generator, *n, &out, g.seed)?;
            println!("wrote {} checkpoints to {}", paths.len(), out.display());
            Ok(())
        }
    }
}
