//! The miniature reproduction of p-diff on Fashion-MNIST, with the baselines an honest
//! comparison needs (original checkpoints, their weight average, the autoencoder alone, and
//! checkpoints plus noise of the generated models' size) and the similarity analysis of §4.

use crate::collect::{CollectConfig, collect_snapshots, features, train_base};
use crate::data::load_splits;
use crate::evaluate::{
    EvalData, ModelScore, SetSummary, max_similarity, mean, score_rows, summarize,
};
use crate::generate::{FitConfig, Generator, ParamDataset, fit};
use pw_core::{
    Block, Claim, ClaimResult, Metrics, Plot, PlotKind, ReproContext, ReproOutcome, Reproduction,
    Series, Size, Table,
};
use pw_nn::burn::tensor::Device;
use pw_nn::checkpoint::save_tensors;
use pw_nn::{DeviceKind, device, seed_everything};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdiffConfig {
    pub collect: CollectConfig,
    /// Autoencoder channels per level. Burn's CPU conv1d runs at a few tens of GFLOP/s, so the
    /// sizes trade the paper's width for steps: [16, 32, 64, 64] costs ~0.1 s per step of 50
    /// vectors on 2 cores, [32, 64, 128, 128] ~0.3 s.
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

impl PdiffConfig {
    pub fn for_size(size: Size) -> Self {
        match size {
            Size::Quick => PdiffConfig {
                collect: CollectConfig::default(),
                ae_channels: vec![16, 32, 64, 64],
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
                ae_channels: vec![16, 32, 64, 64],
                ae_steps: 3000,
                denoiser_hidden: 64,
                ddpm_steps: 5000,
                generated: 100,
                limit: None,
                ablations: true,
            },
        }
    }

    fn fit_config(&self, dim: usize, noise: bool) -> FitConfig {
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

/// The registered reproduction; `config` overrides the size's defaults (tests use a tiny one).
#[derive(Default)]
pub struct PdiffReproduction {
    pub config: Option<PdiffConfig>,
}

const CLAIM_MEAN: &str = "mean";
const CLAIM_BEST: &str = "best";
const CLAIM_SIM: &str = "similarity";

/// Loads `dir/*.safetensors` rows when all `n` exist, else generates, saves and returns them.
fn generated_rows(
    g: &Generator,
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

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

struct Scored {
    name: &'static str,
    scores: Vec<ModelScore>,
    summary: SetSummary,
}

impl Reproduction for PdiffReproduction {
    fn name(&self) -> &'static str {
        "pdiff"
    }

    fn title(&self) -> &'static str {
        "Neural Network Diffusion (p-diff): generating network parameters with a latent DDPM"
    }

    fn claims(&self) -> Vec<Claim> {
        vec![
            Claim {
                id: CLAIM_MEAN,
                text: "Generated models perform like the trained ones: p-diff mean test accuracy within 1 point of the original checkpoints' mean",
                paper_figure: "ResNet-18 CIFAR-100: original 77.4 / p-diff 77.9 (best); MNIST-scale models comparable (Table 1)",
            },
            Claim {
                id: CLAIM_BEST,
                text: "p-diff's validation-selected best model is at least as good as the originals' validation-selected best",
                paper_figure: "p-diff best >= original best on every dataset (Table 1)",
            },
            Claim {
                id: CLAIM_SIM,
                text: "Generated models differ from the training checkpoints: their max IoU-of-mistakes similarity to the checkpoints is lower than the checkpoints' among themselves",
                paper_figure: "originals 0.93-0.98 among themselves, p-diff 0.85-0.87 (Fig. 4)",
            },
        ]
    }

    fn run(
        &self,
        ctx: &ReproContext,
    ) -> Result<ReproOutcome, Box<dyn std::error::Error + Send + Sync>> {
        let defaults = self
            .config
            .clone()
            .unwrap_or_else(|| PdiffConfig::for_size(ctx.size));
        let cfg = pw_core::apply_overrides(&defaults, ctx.overrides.as_ref())
            .map_err(|e| format!("[reproduce.overrides.pdiff] {e}"))?;
        let (ad, plain) = (
            device(DeviceKind::Cpu, true)?,
            device(DeviceKind::Cpu, false)?,
        );
        let mut rng = seed_everything(&ad, ctx.seed);
        let mut times: Vec<(&str, f64)> = Vec::new();
        let mut clock = Instant::now();
        let mut lap = |name: &'static str, times: &mut Vec<(&str, f64)>| {
            times.push((name, clock.elapsed().as_secs_f64()));
            clock = Instant::now();
        };

        let splits = load_splits(&ctx.assets.join("data/fashion-mnist"), ctx.seed, cfg.limit)?;
        let stage1 = ctx.dir.join("stage1");
        let base = train_base(&splits, &cfg.collect, &stage1, &ad, &plain, &mut rng)?;
        lap("train the CNN", &mut times);
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
        lap("features + K snapshots", &mut times);

        let g = fit(
            &ds,
            &cfg.fit_config(ds.dim(), true),
            &ctx.dir.join("fit"),
            &ad,
            &plain,
            &mut rng,
        )?;
        lap("fit AE + DDPM", &mut times);
        let gen_rows = generated_rows(&g, &ds, cfg.generated, &ctx.dir.join("generated"), &plain)?;
        lap("generate", &mut times);

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
        lap("evaluate", &mut times);

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
            lap("ablations", &mut times);
        }

        // Claims, decided by the rules stated in `claims()`.
        let (o, q) = (originals.summary, pdiff.summary);
        let gap = 100.0 * (q.mean - o.mean);
        let (so, sp) = (mean(&sim_orig), mean(&sim_pdiff));
        let claims = vec![
            ClaimResult {
                id: CLAIM_MEAN.into(),
                held: Some(gap.abs() <= 1.0),
                measured: format!(
                    "p-diff mean {} vs originals {} ({gap:+.2} points)",
                    pct(q.mean),
                    pct(o.mean)
                ),
            },
            ClaimResult {
                id: CLAIM_BEST.into(),
                held: Some(q.best_by_val >= o.best_by_val),
                measured: format!(
                    "p-diff best-by-validation {} vs originals {}",
                    pct(q.best_by_val),
                    pct(o.best_by_val)
                ),
            },
            ClaimResult {
                id: CLAIM_SIM.into(),
                held: Some(sp < so),
                measured: format!(
                    "mean max IoU: p-diff {sp:.3} vs originals among themselves {so:.3}"
                ),
            },
        ];

        let mut metrics = Metrics::default();
        for s in [&originals, &pdiff, &ensemble, &ae_only, &noisy] {
            metrics.set(format!("test_acc.{}", s.name), s.summary);
        }
        metrics.set("similarity.originals", so);
        metrics.set("similarity.pdiff", sp);
        metrics.set("similarity.noise", mean(&sim_noise));
        metrics.set("generated_nearest_l2", gen_dist);
        metrics.set("noise_sigma", sigma);
        metrics.set("k", k);
        metrics.set("subset_values", p);
        metrics.set(
            "stage_seconds",
            times
                .iter()
                .map(|(n, t)| (n.to_string(), *t))
                .collect::<std::collections::BTreeMap<_, _>>(),
        );

        let mut blocks = Vec::new();
        blocks.push(Block::Paragraph(format!(
            "A CNN with GroupNorm and LayerNorm layers was trained on Fashion-MNIST ({} training / {} validation / {} test images); then only its parameter subset {:?} ({p} values) kept training for K = {k} steps, one snapshot per step. The autoencoder and the latent DDPM were fitted to those K vectors and {} parameter vectors generated. Best models are chosen on validation accuracy; the table gives test accuracy (%).",
            splits.train.len(), splits.val.len(), splits.test.len(), cfg.collect.subset.names(), cfg.generated
        )));
        let mut t = Table::new([
            "method",
            "models",
            "best (by validation)",
            "mean",
            "median",
            "min",
            "max",
        ]);
        for s in [&originals, &pdiff, &ensemble, &ae_only, &noisy] {
            let m = s.summary;
            t.row([
                s.name.to_string(),
                s.scores.len().to_string(),
                pct(m.best_by_val),
                pct(m.mean),
                pct(m.median),
                pct(m.min),
                pct(m.max),
            ]);
        }
        blocks.push(Block::Table(t));
        let versus = |other: &Scored| {
            let d = 100.0 * (q.best_by_val - other.summary.best_by_val);
            let word = if d > 0.0 {
                "beats"
            } else if d < 0.0 {
                "trails"
            } else {
                "ties"
            };
            format!(
                "{word} {} ({} vs {}, {d:+.2} points)",
                other.name,
                pct(q.best_by_val),
                pct(other.summary.best_by_val)
            )
        };
        blocks.push(Block::Paragraph(format!(
            "Against the simple baselines (best by validation): p-diff {}; it {}; it {}. Later work (Zeng et al., arXiv 2506.07998) reports that parameter generators do not beat these, so they are shown beside every p-diff figure.",
            versus(&noisy),
            versus(&ensemble),
            versus(&ae_only)
        )));
        // Resolution of the test split: one binomial standard error at the originals' accuracy.
        let n_test = data.test_labels.len() as f64;
        let se = 100.0 * (o.mean * (1.0 - o.mean) / n_test).sqrt();
        metrics.set("test_standard_error_points", se);
        blocks.push(Block::Paragraph(format!(
            "Resolution: the test split has {n_test} images, so 0.01 points is one image and one binomial standard error at {}% accuracy is {se:.2} points; differences between these methods smaller than about {:.2} points (two standard errors) are not resolved by this test set, and a claim decided by such a margin can flip with the seed.",
            pct(o.mean),
            2.0 * se
        )));
        let ae_gap = 100.0 * (ae_only.summary.mean - o.mean);
        metrics.set("ae_sanity_gap_points", ae_gap);
        blocks.push(Block::Paragraph(format!(
            "Autoencoder sanity check: encoding and decoding the {k} originals changes their mean test accuracy by {ae_gap:+.2} points ({} the 0.5-point bound).",
            if ae_gap.abs() <= 0.5 { "within" } else { "OUTSIDE" }
        )));
        blocks.push(Block::Paragraph(format!(
            "The noise baseline adds Gaussian noise with sigma {sigma:.2e} per value to the originals, so its models lie as far from a checkpoint (L2 {gen_dist:.4} on average) as the generated ones lie from their nearest checkpoint."
        )));
        let mut st = Table::new([
            "models",
            "mean max similarity (IoU of mistakes)",
            "min",
            "max",
        ]);
        for (name, v) in [
            ("originals (to the other originals)", &sim_orig),
            ("p-diff (to the originals)", &sim_pdiff),
            ("original + noise (to the originals)", &sim_noise),
        ] {
            st.row([
                name.to_string(),
                format!("{:.3}", mean(v)),
                format!("{:.3}", v.iter().cloned().fold(1.0, f64::min)),
                format!("{:.3}", v.iter().cloned().fold(0.0, f64::max)),
            ]);
        }
        blocks.push(Block::Table(st));
        let pts = |scores: &[ModelScore], sims: &[f64]| {
            scores
                .iter()
                .zip(sims)
                .map(|(s, &x)| (x, 100.0 * s.test_acc))
                .collect::<Vec<_>>()
        };
        blocks.push(Block::Plot(Plot {
            id: "pdiff_similarity".into(),
            title: "Test accuracy against max similarity to the training checkpoints".into(),
            x_label: "max IoU of mistakes with a training checkpoint".into(),
            y_label: "test accuracy (%)".into(),
            kind: PlotKind::Scatter,
            series: vec![
                Series::new("original", pts(&originals.scores, &sim_orig)),
                Series::new("p-diff", pts(&pdiff.scores, &sim_pdiff)),
                Series::new("original + noise", pts(&noisy.scores, &sim_noise)),
            ],
            log_y: false,
        }));
        if !ablations.is_empty() {
            let mut at = Table::new([
                "ablation",
                "best (by validation)",
                "mean",
                "median",
                "mean max similarity",
            ]);
            at.row([
                "p-diff (paper settings)".to_string(),
                pct(q.best_by_val),
                pct(q.mean),
                pct(q.median),
                format!("{sp:.3}"),
            ]);
            for (name, s, sim) in &ablations {
                at.row([
                    name.clone(),
                    pct(s.best_by_val),
                    pct(s.mean),
                    pct(s.median),
                    format!("{sim:.3}"),
                ]);
            }
            blocks.push(Block::Table(at));
        }
        let total: f64 = times.iter().map(|(_, t)| t).sum();
        let mut tt = Table::new(["stage", "seconds", "share"]);
        for (n, s) in &times {
            tt.row([
                n.to_string(),
                format!("{s:.1}"),
                format!("{:.0}%", 100.0 * s / total.max(1e-9)),
            ]);
        }
        blocks.push(Block::Table(tt));
        Ok(ReproOutcome {
            claims,
            metrics,
            blocks,
        })
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
