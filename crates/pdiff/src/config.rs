//! p-diff's configuration: the paper's settings where the miniature keeps them (the
//! autoencoder's noise augmentation, 200 snapshots, 100 generated models, §3-4), and the
//! quick / full sizes chosen for a 2-core CPU.

use crate::diffusion::FitConfig;
use crate::train::CollectConfig;
use pw_core::{ReproConfig, Size};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdiffConfig {
    pub collect: CollectConfig,
    /// Autoencoder channels per level: the paper's [32, 64, 128, 128]. With pw-nn's im2col
    /// convolution a step of 50 vectors costs 0.11 s on 2 cores (PyTorch 2.9.0: 0.125 s); burn's
    /// own conv1d had cost 0.13 s for the half-width [16, 32, 64, 64], which these sizes used.
    pub ae_channels: Vec<usize>,
    pub ae_steps: usize,
    pub denoiser_hidden: usize,
    pub ddpm_steps: usize,
    /// Models generated (paper: 100).
    pub generated: usize,
    /// Keep only this many training images (smoke tests).
    pub limit: Option<usize>,
    /// Run the ablations: no noise augmentation, and K = 10.
    pub ablations: bool,
}

impl ReproConfig for PdiffConfig {
    fn for_size(size: Size) -> Self {
        match size {
            Size::Quick => PdiffConfig {
                collect: CollectConfig::default(),
                ae_channels: vec![32, 64, 128, 128],
                ae_steps: 1200,
                denoiser_hidden: 32,
                ddpm_steps: 3000,
                generated: 100,
                limit: None,
                ablations: false,
            },
            Size::Full => PdiffConfig {
                collect: CollectConfig {
                    epochs: 5,
                    ..Default::default()
                },
                ae_channels: vec![32, 64, 128, 128],
                ae_steps: 3000,
                denoiser_hidden: 64,
                ddpm_steps: 5000,
                generated: 100,
                limit: None,
                ablations: true,
            },
        }
    }
}

impl PdiffConfig {
    /// The autoencoder + DDPM fit of a `dim`-value parameter vector, with or without the
    /// paper's noise augmentation.
    pub fn fit_config(&self, dim: usize, noise: bool) -> FitConfig {
        let mut f = FitConfig::paper(dim);
        f.ae.channels = self.ae_channels.clone();
        f.denoiser.hidden = self.denoiser_hidden;
        f.ae_steps = self.ae_steps;
        f.ddpm_steps = self.ddpm_steps;
        if !noise {
            f.ae.input_noise = 0.0;
            f.ae.latent_noise = 0.0;
        }
        f
    }
}
