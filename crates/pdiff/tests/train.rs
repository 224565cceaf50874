//! Stage 1 of p-diff at a tiny size on the real Fashion-MNIST files: the CNN learns, the K subset
//! snapshots are written with the model's tensor names, reused on a second call, and loading a
//! snapshot into the base model reproduces the accuracy that the snapshot's own head gives.

use pw_nn::{seed_everything, train_device};
use pw_pdiff::data::load_splits;
use pw_pdiff::model::{H1, SUBSET};
use pw_pdiff::train::{
    CollectConfig, collect_snapshots, evaluate_head, features, train_base, with_subset,
};
use std::path::PathBuf;
use std::time::Instant;

fn fashion_dir() -> PathBuf {
    std::env::var_os("PAPERWORKS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"))
        .join("data/fashion-mnist")
}

#[test]
fn base_training_and_subset_snapshots_at_tiny_size() {
    let (ad, plain) = (train_device(true).unwrap(), train_device(false).unwrap());
    let mut rng = seed_everything(&ad, 5);
    let splits = load_splits(&fashion_dir(), 5, Some(4000)).unwrap();
    assert_eq!(
        (splits.train.len(), splits.val.len(), splits.test.len()),
        (4000, 800, 800)
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectConfig {
        epochs: 2,
        snapshots: 6,
        ..Default::default()
    };

    let t0 = Instant::now();
    let base = train_base(&splits, &cfg, dir.path(), &ad, &plain, &mut rng).unwrap();
    let t_train = t0.elapsed().as_secs_f64();
    let val_feats = features(&base, &splits.val, &plain);
    assert_eq!(val_feats.len(), 800 * H1);
    let (acc, wrong) = evaluate_head(&base, &val_feats, &splits.val.labels, &plain);
    eprintln!(
        "base: validation accuracy {acc:.3} after {t_train:.1} s of training on 4,000 images"
    );
    assert!(
        acc > 0.70,
        "the CNN did not learn: validation accuracy {acc}"
    );
    assert_eq!(
        wrong.iter().filter(|w| **w).count(),
        ((1.0 - acc) * 800.0).round() as usize
    );

    let train_feats = features(&base, &splits.train, &plain);
    let paths = collect_snapshots(
        &base,
        &train_feats,
        &splits.train.labels,
        &cfg,
        dir.path(),
        &ad,
        &mut rng,
    )
    .unwrap();
    assert_eq!(paths.len(), 6);
    let first = pw_nn::checkpoint::load_tensors(&paths[0]).unwrap();
    assert_eq!(first.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut s = SUBSET.to_vec();
        s.sort();
        s
    });
    let last = pw_nn::checkpoint::load_tensors(&paths[5]).unwrap();
    assert_ne!(
        first["ln1.weight"].1, last["ln1.weight"].1,
        "the subset must keep training between snapshots"
    );

    // A snapshot loaded into the base model gives a working network.
    let m = with_subset(&base, &last, &paths[5]).unwrap();
    let (acc_last, _) = evaluate_head(&m, &val_feats, &splits.val.labels, &plain);
    eprintln!("snapshot 5: validation accuracy {acc_last:.3}");
    assert!(acc_last > 0.70);

    // Both stages are reused on a second call (no retraining: the files stay as they were).
    let stamp = std::fs::metadata(&paths[3]).unwrap().modified().unwrap();
    let again = train_base(&splits, &cfg, dir.path(), &ad, &plain, &mut rng).unwrap();
    assert_eq!(
        pw_nn::checkpoint::module_tensors(&again),
        pw_nn::checkpoint::module_tensors(&base)
    );
    collect_snapshots(
        &base,
        &train_feats,
        &splits.train.labels,
        &cfg,
        dir.path(),
        &ad,
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&paths[3]).unwrap().modified().unwrap(),
        stamp
    );

    // A snapshot of another shape is refused, naming the tensor.
    let mut bad = last.clone();
    bad.get_mut("ln2.bias").unwrap().0 = vec![128, 2];
    let err = with_subset(&base, &bad, &paths[5])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ln2.bias") && err.contains("shape"), "{err}");
}
