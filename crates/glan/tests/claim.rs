//! The central-claim experiment end to end at a tiny size: a base model pre-trained on a
//! WordNet-format file, two arms tuned from it, the verdict's figures; a rerun reuses every
//! model, and a changed setting trains anew beside the old results instead of reusing them.

use pw_glan::claim::{self, ARM_GLAN, ARM_SELF_INSTRUCT};
use pw_glan::config::ClaimConfig;
use pw_glan::dataset::Pair;

fn pair(id: &str, q: &str, a: &str) -> Pair {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        "field": "", "subfield": "", "discipline": "d", "subject": "", "level": "",
        "difficulty": "", "sessions": [], "key_concepts": [], "question_model": "m",
        "answer_model": "m", "question_seed": null, "answer_seed": null
    }))
    .expect("a pair")
}

fn tiny(corpus: &std::path::Path) -> ClaimConfig {
    let mut c = ClaimConfig {
        enabled: true,
        corpus: corpus.to_path_buf(),
        pretrain_bytes: 4000,
        eval_every: 2,
        seeds: 2,
        ..Default::default()
    };
    c.lm.d_model = 32;
    c.lm.n_heads = 2;
    c.lm.n_layers = 1;
    c.lm.max_len = 320;
    c.pretrain.steps = 4;
    c.pretrain.batch = 4;
    c.sft.steps = 4;
    c.sft.batch = 4;
    c
}

#[test]
fn the_experiment_runs_resumes_and_keys_its_models_by_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("data.noun");
    let mut text = String::from("  1 This software and database is being provided\n");
    for (i, (w, g)) in [
        (
            "heat",
            "energy transferred because of a difference in temperature",
        ),
        (
            "rock",
            "a lump or mass of hard consolidated mineral matter; \"he threw a rock\"",
        ),
        (
            "chord",
            "a combination of three or more notes that blend harmoniously",
        ),
        (
            "median",
            "the value below and above which there is an equal number of values",
        ),
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!("0000000{i} 05 n 01 {w} 0 000 | {g}  \n"));
    }
    std::fs::write(&corpus, text.repeat(20)).unwrap();
    let glan: Vec<Pair> = (0..6)
        .map(|i| {
            pair(
                &format!("g{i}"),
                &format!("What is heat transfer number {i}?"),
                "Heat is energy that flows from a hotter body to a colder one.",
            )
        })
        .collect();
    let si: Vec<Pair> = (0..4)
        .map(|i| {
            pair(
                &format!("s{i}"),
                &format!("Write a haiku about cats, version {i}."),
                "Soft paws in the sun / a cat dreams of quiet birds / the window is warm",
            )
        })
        .collect();
    let cfg = tiny(&corpus);
    let out = dir.path().join("claim");
    let a = claim::run(&cfg, &out, &glan, &si, 3).unwrap();
    assert_eq!(a.pairs, 4, "the same budget: the smaller arm's count");
    assert_eq!(a.runs.len(), 4);
    for r in &a.runs {
        assert!([2, 4].contains(&r.kept_step), "{r:?}");
        assert_eq!(r.curve.len(), 2);
        let v = r.scores.mean("validation");
        let best = r.curve.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
        assert!(
            (v - best).abs() < 1e-6,
            "the kept model is the best on validation"
        );
        assert_eq!(r.scores.by_split["test"].len(), 30);
    }
    assert!(a.base.mean("test").is_finite() && a.base.mean("test") > 0.0);
    assert_eq!(a.glan_vs_self_instruct.n, 30);
    assert_eq!(a.test_disciplines.len(), 30);
    assert!(a.seed_sd.contains_key(ARM_GLAN) && a.seed_sd.contains_key(ARM_SELF_INSTRUCT));
    let folders = |p: &std::path::Path| {
        std::fs::read_dir(p)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count()
    };
    assert_eq!(folders(&out), 1);

    // a rerun trains nothing and gives the same figures
    let b = claim::run(&cfg, &out, &glan, &si, 3).unwrap();
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    assert_eq!(a.held, b.held);
    assert_eq!(
        a.pretrain_wall_s, b.pretrain_wall_s,
        "the base model's own time"
    );
    assert!(close(
        a.glan_vs_self_instruct.mean,
        b.glan_vs_self_instruct.mean
    ));
    assert!(close(a.glan_vs_base.hi, b.glan_vs_base.hi));
    for (x, y) in a.runs.iter().zip(&b.runs) {
        assert_eq!((x.kept_step, &x.curve.len()), (y.kept_step, &y.curve.len()));
        assert!(close(x.scores.mean("test"), y.scores.mean("test")));
        assert_eq!(
            x.wall_s, y.wall_s,
            "{} seed {} was not trained again",
            x.arm, x.seed
        );
    }

    // a changed setting is a new experiment beside the old one
    let mut cfg2 = cfg.clone();
    cfg2.sft.steps = 2;
    cfg2.seeds = 1;
    let c = claim::run(&cfg2, &out, &glan, &si, 3).unwrap();
    assert_eq!(c.runs.len(), 2);
    assert_eq!(folders(&out), 2);
    assert_eq!(
        c.pretrain_wall_s, a.pretrain_wall_s,
        "the same base model, not trained again"
    );
    let mut cfg5 = cfg2.clone();
    cfg5.pretrain.steps = 2;
    let e = claim::run(&cfg5, &out, &glan, &si, 3).unwrap();
    assert_ne!(e.pretrain_wall_s, a.pretrain_wall_s, "another base model");

    // a missing corpus names the file and the package
    let mut cfg3 = cfg.clone();
    cfg3.corpus = dir.path().join("nope");
    cfg3.seeds = 3;
    let e = claim::run(&cfg3, &out, &glan, &si, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("wordnet-base"), "{e}");
    // references longer than the context are refused, not scored in part
    let mut cfg4 = cfg.clone();
    cfg4.lm.max_len = 96;
    let e = claim::run(&cfg4, &out, &glan, &si, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("claim.lm.max_len 96"), "{e}");
    // an arm with no pairs is refused before anything trains
    let e = claim::run(&cfg, &out, &glan, &[], 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no pairs"), "{e}");
}
