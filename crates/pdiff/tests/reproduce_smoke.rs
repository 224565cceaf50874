//! End-to-end smoke test of the p-diff reproduction at a tiny size: every stage runs on the real
//! Fashion-MNIST files, the report blocks and the three claims come out decided, and a rerun
//! reuses the stage outputs.

use pw_core::{ReproContext, Reproduction, Size};
use pw_pdiff::config::PdiffConfig;
use pw_pdiff::reproduce::PdiffReproduction;
use pw_pdiff::train::CollectConfig;
use std::path::PathBuf;

fn assets() -> PathBuf {
    std::env::var_os("PAPERWORKS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"))
}

#[test]
fn pdiff_reproduction_runs_end_to_end_at_tiny_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = PdiffConfig {
        collect: CollectConfig {
            epochs: 1,
            snapshots: 12,
            ..Default::default()
        },
        ae_channels: vec![8, 8],
        ae_steps: 30,
        denoiser_hidden: 16,
        ddpm_steps: 30,
        generated: 6,
        limit: Some(2000),
        ablations: true,
    };
    let r = PdiffReproduction {
        config: Some(config),
    };
    let ctx = ReproContext {
        name: "pdiff".into(),
        dir: dir.path().to_path_buf(),
        assets: assets(),
        size: Size::Quick,
        seed: 1,
        overrides: None,
    };
    let out = r.run(&ctx).unwrap();
    assert_eq!(out.claims.len(), 3);
    assert!(
        out.claims.iter().all(|c| c.held.is_some()),
        "every claim must be decided"
    );
    assert!(
        out.blocks
            .iter()
            .any(|b| matches!(b, pw_core::Block::Plot(_)))
    );
    for key in [
        "test_acc.p-diff",
        "test_acc.original checkpoints",
        "similarity.pdiff",
        "stage_seconds",
    ] {
        assert!(out.metrics.0.contains_key(key), "metric {key} missing");
    }
    for f in [
        "stage1/base.safetensors",
        "stage1/snapshots/ckpt-0011.safetensors",
        "fit/ae.safetensors",
        "fit/ddpm_ema.safetensors",
        "generated/gen-0005.safetensors",
        "fit_k10/ae.safetensors",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    // A rerun reuses everything (the generated files are not rewritten).
    let stamp = std::fs::metadata(dir.path().join("generated/gen-0003.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let again = r.run(&ctx).unwrap();
    assert_eq!(again.claims.len(), 3);
    assert_eq!(
        std::fs::metadata(dir.path().join("generated/gen-0003.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
}
