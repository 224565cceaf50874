//! p-diff on your own checkpoints: fit the autoencoder and latent DDPM to any set of
//! safetensors files (e.g. exported from PyTorch with `safetensors.torch.save_file`), then write
//! new files with the same tensor names and shapes. `paperworks pdiff fit` / `generate`.

use crate::diffusion::{FitConfig, ParamDataset, ParamGenerator, fit};
use pw_core::{Error, IoContext, Result};
use pw_nn::checkpoint::save_tensors_as;
use pw_nn::{seed_everything, train_device};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitOptions {
    /// Tensors to model (all tensors of the first checkpoint when empty).
    pub tensors: Vec<String>,
    pub ae_steps: usize,
    pub ddpm_steps: usize,
    pub ae_channels: Vec<usize>,
    pub denoiser_hidden: usize,
    pub seed: u64,
}

impl Default for FitOptions {
    /// The quick reproduction's sizes (`PdiffConfig::for_size(Size::Quick)`), defined there once.
    fn default() -> Self {
        use pw_core::ReproConfig;
        let q = crate::config::PdiffConfig::for_size(pw_core::Size::Quick);
        FitOptions {
            tensors: Vec::new(),
            ae_steps: q.ae_steps,
            ddpm_steps: q.ddpm_steps,
            ae_channels: q.ae_channels,
            denoiser_hidden: q.denoiser_hidden,
            seed: 0,
        }
    }
}

/// The `*.safetensors` files of `dir`, sorted by name.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.len() < 2 {
        return Err(Error::invalid(
            dir,
            format!(
                "needs at least 2 .safetensors checkpoints, found {}",
                files.len()
            ),
        ));
    }
    Ok(files)
}

/// Fits a generator to the checkpoints in `checkpoints` and saves it in `out` (reusing what
/// `out` already holds). Returns the number of checkpoints and values per checkpoint.
pub fn fit_checkpoints(
    checkpoints: &Path,
    out: &Path,
    opts: &FitOptions,
) -> Result<(usize, usize)> {
    let files = checkpoint_files(checkpoints)?;
    let names = (!opts.tensors.is_empty()).then_some(opts.tensors.as_slice());
    let ds = ParamDataset::from_files(&files, names)?;
    let (ad, plain) = (train_device(true)?, train_device(false)?);
    let mut rng = seed_everything(&ad, opts.seed);
    let mut cfg = FitConfig::paper(ds.dim());
    cfg.ae.channels = opts.ae_channels.clone();
    cfg.ae_steps = opts.ae_steps;
    cfg.ddpm_steps = opts.ddpm_steps;
    cfg.denoiser.hidden = opts.denoiser_hidden;
    fit(&ds, &cfg, out, &ad, &plain, &mut rng)?;
    Ok((ds.rows.len(), ds.dim()))
}

/// Writes `n` generated checkpoints `gen-NNNN.safetensors` into `out` from the generator saved in
/// `generator`. Returns their paths.
pub fn generate_files(generator: &Path, n: usize, out: &Path, seed: u64) -> Result<Vec<PathBuf>> {
    if n == 0 {
        return Err(Error::Other("-n 0: asked for no checkpoints".into()));
    }
    let plain = train_device(false)?;
    seed_everything(&plain, seed);
    let (g, layout) = ParamGenerator::load(generator, &plain)?;
    std::fs::create_dir_all(out).at(out)?;
    let rows = g.generate(n, &plain);
    if let Some(i) = rows.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
        return Err(Error::invalid(
            generator,
            format!(
                "generated checkpoint {i} holds non-finite values (NaN or Inf): the generator's \
                 weights are broken; fit it again"
            ),
        ));
    }
    let mut paths = Vec::with_capacity(n);
    for (i, row) in rows.iter().enumerate() {
        let p = out.join(format!("gen-{i:04}.safetensors"));
        save_tensors_as(&p, &layout.to_named(row), &layout.dtypes)?;
        paths.push(p);
    }
    Ok(paths)
}
