//! The loaders on the real shipped assets (fetched by scripts/setup.sh, which `make test` runs
//! first) and on corrupt copies of them.

use pw_data::digits::load_digits;
use pw_data::humaneval::load_humaneval;
use pw_data::idx::{Split, load_fashion_mnist};
use std::io::Write;
use std::path::PathBuf;

fn assets() -> PathBuf {
    std::env::var_os("PAPERWORKS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"))
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn fashion_mnist_loads_both_splits_with_balanced_classes() {
    let dir = assets().join("data/fashion-mnist");
    let train = load_fashion_mnist(&dir, Split::Train).unwrap();
    let test = load_fashion_mnist(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    let mut counts = [0usize; 10];
    test.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert!(counts.iter().all(|&c| c == 1000), "{counts:?}");
    assert!(train.image(0).iter().any(|&p| p > 0));
}

#[test]
fn digits_and_humaneval_load_completely() {
    let d = load_digits(&assets().join("data/digits.csv.gz")).unwrap();
    assert_eq!((d.len(), d.rows, d.cols), (1797, 8, 8));
    let he = load_humaneval(&assets().join("data/HumanEval.jsonl.gz"), true).unwrap();
    assert_eq!(he.len(), 164);
    assert_eq!(he[0].task_id, "HumanEval/0");
}

/// Copies the real Fashion-MNIST test split into `dir`, letting `mangle` spoil the image file.
fn spoiled_copy(dir: &std::path::Path, mangle: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let src = assets().join("data/fashion-mnist");
    let images = pw_data::read_maybe_gz(&src.join("t10k-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(&mangle(images))).unwrap();
    std::fs::copy(
        src.join("t10k-labels-idx1-ubyte.gz"),
        dir.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
}

#[test]
fn truncated_idx_is_rejected_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    spoiled_copy(dir.path(), |mut b| {
        b.truncate(b.len() - 784 * 3 - 100);
        b
    });
    let e = load_fashion_mnist(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn wrong_magic_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    spoiled_copy(dir.path(), |mut b| {
        b[2] = 0x0c;
        b
    });
    let e = load_fashion_mnist(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("type code"), "{e}");
    spoiled_copy(dir.path(), |mut b| {
        b[0] = 0x1f;
        b
    });
    let e = load_fashion_mnist(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("magic"), "{e}");
}

#[test]
fn truncated_gzip_stream_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read(assets().join("data/fashion-mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        &src[..src.len() / 2],
    )
    .unwrap();
    std::fs::copy(
        assets().join("data/fashion-mnist/t10k-images-idx3-ubyte.gz"),
        dir.path().join("t10k-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let e = load_fashion_mnist(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("gzip"),
        "{e}"
    );
}

#[test]
fn a_missing_asset_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_fashion_mnist(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing asset") && e.contains("setup.sh"), "{e}");
}

#[test]
fn corrupt_digits_and_humaneval_rows_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("digits.csv");
    std::fs::write(&p, "0,1,2\n").unwrap();
    let e = load_digits(&p).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("65"), "{e}");
    let p = dir.path().join("he.jsonl");
    std::fs::write(&p, "{\"task_id\":\"a\",\"prompt\":\"p\",\"canonical_solution\":\"s\",\"test\":\"t\",\"entry_point\":\"f\"}\n{\"task_id\":\n").unwrap();
    let e = load_humaneval(&p, false).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
}
