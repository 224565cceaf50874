//! The miniature reproduction of p-diff on Fashion-MNIST, orchestration only: the CNN and its
//! K subset snapshots ([`crate::train`]), the autoencoder + latent DDPM fitted to them and the
//! generated models ([`crate::diffusion`]), the baselines an honest comparison needs (original
//! checkpoints, their weight average, the autoencoder alone, and checkpoints plus noise of the
//! generated models' size), scored by [`crate::evaluate`]; the report is [`crate::report`].

use crate::config::PdiffConfig;
use crate::data::load_splits;
use crate::diffusion::{ParamDataset, ParamGenerator, fit};
use crate::evaluate::{EvalData, SetSummary, max_similarity, mean, score_rows, summarize};
use crate::report::{self, Measured, Scored};
use crate::train::{collect_snapshots, features, train_base};
use pw_core::{Claim, ReproContext, ReproOutcome, Reproduction, Size, Stopwatch, resolve_config};
use pw_nn::burn::tensor::Device;
use pw_nn::checkpoint::save_tensors;
use pw_nn::{seed_everything, train_device};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// The registered reproduction; `config` overrides the size's defaults (tests use a tiny one).
#[derive(Default)]
pub struct PdiffReproduction {
    pub config: Option<PdiffConfig>,
}

/// Loads `dir/*.safetensors` rows when all `n` exist, else generates, saves and returns them.
fn generated_rows(
    g: &ParamGenerator,
    ds: &ParamDataset,
    n: usize,
    dir: &Path,
    device: &Device,
) -> pw_core::Result<Vec<Vec<f32>>> {
    let paths: Vec<PathBuf> = (0..n)
        .map(|i| dir.join(format!("gen-{i:04}.safetensors")))
        .collect();
    if paths.iter().all(|p| p.exists()) {
        return Ok(ParamDataset::from_files(&paths, Some(&ds.names))?.rows);
    }
    let rows = g.generate(n, device);
    for (row, p) in rows.iter().zip(&paths) {
        save_tensors(p, &ds.to_named(row), None)?;
    }
    Ok(rows)
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

impl Reproduction for PdiffReproduction {
    fn name(&self) -> &'static str {
        "pdiff"
    }

    fn title(&self) -> &'static str {
        "Neural Network Diffusion (p-diff): generating network parameters with a latent DDPM"
    }

    fn claims(&self) -> Vec<Claim> {
        report::claims()
    }

    fn check(&self, size: Size, overrides: Option<&serde_json::Value>) -> Result<(), String> {
        resolve_config(self.config.as_ref(), size, overrides).map(|_| ())
    }

    fn run(
        &self,
        ctx: &ReproContext,
    ) -> Result<ReproOutcome, Box<dyn std::error::Error + Send + Sync>> {
        let cfg: PdiffConfig = ctx.config(self.config.as_ref())?;
        let (ad, plain) = (train_device(true)?, train_device(false)?);
        let mut rng = seed_everything(&ad, ctx.seed);
        let mut times = Stopwatch::new();

        let splits = load_splits(
            &ctx.assets.join(pw_data::assets::paths::FASHION_MNIST),
            ctx.seed,
            cfg.limit,
        )?;
        let stage1 = ctx.dir.join("stage1");
        let base = train_base(&splits, &cfg.collect, &stage1, &ad, &plain, &mut rng)?;
        times.lap("train the CNN");
        let train_feats = features(&base, &splits.train, &plain);
        let data = EvalData {
            val_feats: features(&base, &splits.val, &plain),
            val_labels: splits.val.labels.clone(),
            test_feats: features(&base, &splits.test, &plain),
            test_labels: splits.test.labels.clone(),
        };
        let snapshots = collect_snapshots(
            &base,
            &train_feats,
            &splits.train.labels,
            &cfg.collect,
            &stage1,
            &ad,
            &mut rng,
        )?;
        drop(train_feats);
        let names: Vec<String> = cfg
            .collect
            .subset
            .names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ds = ParamDataset::from_files(&snapshots, Some(&names))?;
        times.lap("features + K snapshots");

        let g = fit(
            &ds,
            &cfg.fit_config(ds.dim(), true),
            &ctx.dir.join("fit"),
            &ad,
            &plain,
            &mut rng,
        )?;
        times.lap("fit AE + DDPM");
        let gen_rows = generated_rows(&g, &ds, cfg.generated, &ctx.dir.join("generated"), &plain)?;
        times.lap("generate");

        // Baselines.
        let k = ds.rows.len();
        let p = ds.dim();
        let nearest: Vec<f64> = gen_rows
            .iter()
            .map(|gr| ds.rows.iter().map(|r| dist(gr, r)).fold(f64::MAX, f64::min))
            .collect();
        let gen_dist = mean(&nearest);
        let sigma = gen_dist / (p as f64).sqrt();
        let mut noise_rng = rand::rngs::StdRng::seed_from_u64(ctx.seed ^ 0x0015e);
        let noise_rows: Vec<Vec<f32>> = (0..cfg.generated)
            .map(|i| {
                let normal = rand_distr_normal(sigma);
                ds.rows[i % k]
                    .iter()
                    .map(|v| v + normal(&mut noise_rng) as f32)
                    .collect()
            })
            .collect();
        let ensemble_row: Vec<f32> = (0..p)
            .map(|j| ds.rows.iter().map(|r| r[j]).sum::<f32>() / k as f32)
            .collect();
        let ae_rows = g.reconstruct(&ds.rows, &plain);

        let score = |name: &'static str, rows: &[Vec<f32>]| -> pw_core::Result<Scored> {
            let scores = score_rows(&base, &ds, rows, &data, &plain)?;
            let summary = summarize(&scores);
            Ok(Scored {
                name,
                scores,
                summary,
            })
        };
        let originals = score("original checkpoints", &ds.rows)?;
        let pdiff = score("p-diff", &gen_rows)?;
        let ensemble = score(
            "ensemble (averaged subset)",
            std::slice::from_ref(&ensemble_row),
        )?;
        let ae_only = score("autoencoder alone (encode-decode)", &ae_rows)?;
        let noisy = score("original + noise", &noise_rows)?;
        times.lap("evaluate");

        let sim_orig = max_similarity(&originals.scores, &originals.scores, true);
        let sim_pdiff = max_similarity(&pdiff.scores, &originals.scores, false);
        let sim_noise = max_similarity(&noisy.scores, &originals.scores, false);

        // Ablations (full size): no noise augmentation; K = 10.
        let mut ablations: Vec<(String, SetSummary, f64)> = Vec::new();
        if cfg.ablations {
            let k10 = 10.min(k);
            let ds10 = ParamDataset {
                rows: ds.rows[..k10].to_vec(),
                ..ds.clone()
            };
            let variants = [
                (
                    "no noise augmentation",
                    &ds,
                    false,
                    "no_noise",
                    &originals.scores[..],
                ),
                (
                    "K = 10 checkpoints",
                    &ds10,
                    true,
                    "k10",
                    &originals.scores[..k10],
                ),
            ];
            for (name, data_set, noise, tag, reference) in variants {
                let g = fit(
                    data_set,
                    &cfg.fit_config(p, noise),
                    &ctx.dir.join(format!("fit_{tag}")),
                    &ad,
                    &plain,
                    &mut rng,
                )?;
                let rows = generated_rows(
                    &g,
                    data_set,
                    cfg.generated,
                    &ctx.dir.join(format!("generated_{tag}")),
                    &plain,
                )?;
                let s = score("ablation", &rows)?;
                ablations.push((
                    name.to_string(),
                    s.summary,
                    mean(&max_similarity(&s.scores, reference, false)),
                ));
            }
            times.lap("ablations");
        }

        Ok(report::outcome(Measured {
            cfg: &cfg,
            split_sizes: [splits.train.len(), splits.val.len(), splits.test.len()],
            k,
            p,
            originals,
            pdiff,
            ensemble,
            ae_only,
            noisy,
            sim_orig,
            sim_pdiff,
            sim_noise,
            ablations,
            gen_dist,
            sigma,
            times: &times,
        }))
    }
}

/// A seeded N(0, sigma^2) sampler (Box-Muller), to avoid another dependency for one use.
fn rand_distr_normal(sigma: f64) -> impl Fn(&mut rand::rngs::StdRng) -> f64 {
    move |rng| {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
