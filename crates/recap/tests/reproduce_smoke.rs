//! End-to-end smoke test of the Video ReCap reproduction at a tiny size: pseudo-labels (when
//! the SmolLM2 asset is there), the encoder, every level and variant train, the three claims
//! come out, and a rerun reuses every checkpoint and gives the same figures.

use pw_core::{ReproConfig, ReproContext, Reproduction, Size};
use pw_recap::config::{RecapConfig, TrainConfig};
use pw_recap::reproduce::RecapReproduction;
use std::path::PathBuf;

fn tiny(pseudo: usize) -> RecapConfig {
    let mut c = RecapConfig::for_size(Size::Quick);
    c.train_videos = 12;
    c.validation_videos = 4;
    c.test_videos = 4;
    c.pseudo_videos = pseudo;
    c.encoder_steps = 3;
    c.encoder_pairs = 64;
    c.evals = 1;
    c.parallel = 4;
    c.model.d_model = 32;
    c.model.n_heads = 2;
    c.model.n_layers = 1;
    let t = TrainConfig {
        steps: 4,
        batch: 4,
        lr: 1e-3,
        warmup: 1,
    };
    (c.clip, c.segment, c.video_level) = (t, t, t);
    c
}

#[test]
fn recap_reproduction_runs_end_to_end_at_tiny_size() {
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let have_llm = pw_data::assets::default_model(&assets).exists();
    if !have_llm {
        println!("no SmolLM2 asset (run scripts/setup.sh): running without pseudo-labels");
    }
    let dir = tempfile::tempdir().unwrap();
    let r = RecapReproduction {
        config: Some(tiny(if have_llm { 3 } else { 0 })),
    };
    let ctx = ReproContext {
        name: "recap".into(),
        dir: dir.path().to_path_buf(),
        assets,
        size: Size::Quick,
        seed: 1,
        overrides: None,
    };
    let out = r.run(&ctx).unwrap();
    let ids: Vec<&str> = out.claims.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "recursive_beats_direct",
            "curriculum_helps",
            "pseudo_labels_help"
        ]
    );
    // measured (held, not held, or not resolved at this size), not undecided
    let measured = |c: &pw_core::ClaimResult| c.verdict() != pw_core::report::VERDICT_UNDECIDED;
    assert!(measured(&out.claims[0]) && measured(&out.claims[1]));
    assert_eq!(measured(&out.claims[2]), have_llm);
    for f in [
        "models/clip.safetensors",
        "models/segment.safetensors",
        "models/video-curriculum.safetensors",
        "models/video-direct.safetensors",
        "encoder/stage1.safetensors",
        "hcap/test.json",
        "predictions/curriculum.json",
        "predictions/direct.json",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let test = pw_recap::data::read_hcap(&dir.path().join("hcap/test.json")).unwrap();
    assert_eq!(test.videos.len(), 4);
    let key = "recap.recursive__clip____segment____video.summary.cider";
    let first = out
        .metrics
        .get_f64(key)
        .unwrap_or_else(|| panic!("no {key}: {:?}", out.metrics.0.keys()));
    // The rerun trains nothing and measures the same.
    let again = r.run(&ctx).unwrap();
    assert_eq!(again.metrics.get_f64(key), Some(first));
    // A fresh run after other work reseeded burn's process-wide generator (as the systems
    // before it do in `paperworks reproduce`) measures the same: every model's starting
    // weights come from the run's own seed.
    pw_nn::seed_everything(&pw_nn::train_device(true).unwrap(), 99);
    let fresh = tempfile::tempdir().unwrap();
    let other = r
        .run(&ReproContext {
            dir: fresh.path().to_path_buf(),
            ..ctx
        })
        .unwrap();
    assert_eq!(other.metrics.get_f64(key), Some(first));
    for f in ["encoder/stage1.safetensors", "models/clip.safetensors"] {
        let read = |d: &std::path::Path| std::fs::read(d.join(f)).unwrap();
        assert!(read(dir.path()) == read(fresh.path()), "{f} differs");
    }
}
