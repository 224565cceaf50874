//! The p-diff section of the report: the paper's claims, the measured figures beside the
//! baselines an honest comparison needs, the similarity analysis (Fig. 4) and the ablations.

use crate::config::PdiffConfig;
use crate::evaluate::{ModelScore, SetSummary, mean};
use pw_core::{
    Block, Claim, ClaimResult, Metrics, Plot, PlotKind, ReproOutcome, Series, Stopwatch, Table,
};

const CLAIM_MEAN: &str = "mean";
const CLAIM_BEST: &str = "best";
const CLAIM_SIM: &str = "similarity";

/// The paper's claims, in its words and numbers.
pub fn claims() -> Vec<Claim> {
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

/// Accuracy with two decimals, as the paper's tables.
fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// One evaluated set of models.
pub struct Scored {
    pub name: &'static str,
    pub scores: Vec<ModelScore>,
    pub summary: SetSummary,
}

/// Everything the reproduction measured.
pub struct Measured<'a> {
    pub cfg: &'a PdiffConfig,
    /// Training, validation and test images.
    pub split_sizes: [usize; 3],
    /// Checkpoints (K) and values per parameter vector.
    pub k: usize,
    pub p: usize,
    pub originals: Scored,
    pub pdiff: Scored,
    pub ensemble: Scored,
    pub ae_only: Scored,
    pub noisy: Scored,
    pub sim_orig: Vec<f64>,
    pub sim_pdiff: Vec<f64>,
    pub sim_noise: Vec<f64>,
    /// (variant, test summary, mean max similarity to its training checkpoints).
    pub ablations: Vec<(String, SetSummary, f64)>,
    /// Mean L2 distance of a generated vector to its nearest checkpoint.
    pub gen_dist: f64,
    /// The noise baseline's per-value sigma.
    pub sigma: f64,
    pub times: &'a Stopwatch,
}

/// Claims (decided by the rules stated in [`claims`]), metrics and the report section.
pub fn outcome(m: Measured) -> ReproOutcome {
    let Measured {
        cfg,
        split_sizes,
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
        times,
    } = m;
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
            resolution: None,
        },
        ClaimResult {
            id: CLAIM_BEST.into(),
            held: Some(q.best_by_val >= o.best_by_val),
            measured: format!(
                "p-diff best-by-validation {} vs originals {}",
                pct(q.best_by_val),
                pct(o.best_by_val)
            ),
            resolution: None,
        },
        ClaimResult {
            id: CLAIM_SIM.into(),
            held: Some(sp < so),
            measured: format!("mean max IoU: p-diff {sp:.3} vs originals among themselves {so:.3}"),
            resolution: None,
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
    metrics.set("stage_seconds", times.laps());

    let mut blocks = Vec::new();
    blocks.push(Block::Paragraph(format!(
        "A CNN with GroupNorm and LayerNorm layers was trained on Fashion-MNIST ({} training / {} validation / {} test images); then only its parameter subset {:?} ({p} values) kept training for K = {k} steps, one snapshot per step. The autoencoder and the latent DDPM were fitted to those K vectors and {} parameter vectors generated. Best models are chosen on validation accuracy; the table gives test accuracy (%).",
        split_sizes[0], split_sizes[1], split_sizes[2], cfg.collect.subset.names(), cfg.generated
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
    let n_test = split_sizes[2] as f64;
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
        x_labels: Vec::new(),
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
    blocks.push(Block::Table(times.table()));
    ReproOutcome {
        claims,
        metrics,
        blocks,
    }
}
