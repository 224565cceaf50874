//! The released checkpoint layout: our `.npz` reader and writer, the loader's errors, and the
//! numerics of our encoder against the official Flax model on the same random checkpoint and
//! frames (when Python with jax + flax and the official source are on the machine; otherwise a
//! stored-figures check of the same forward pass).

use pw_nn::burn::tensor::{Tensor, TensorData};
use pw_nn::train_device;
use pw_nn::vivit::VivitConfig;
use pw_videoprism::npz::{
    NpArray, load_encoder, npy_bytes, parse_npy, random_official, read_npz, write_npz,
};
use std::path::{Path, PathBuf};
use std::process::Command;

fn small() -> VivitConfig {
    VivitConfig {
        patch: 6,
        d_model: 24,
        n_heads: 3,
        spatial_layers: 2,
        temporal_layers: 2,
        mlp_dim: 48,
        grid: (4, 4),
        frames: 4,
        logit_cap: 50.0,
    }
}

/// Deterministic frames in [0, 1]: `[1, frames, size, size, 3]`.
fn frames(t: usize, size: usize) -> Vec<f32> {
    (0..t * size * size * 3)
        .map(|i| (i as f32 * 0.618_034).fract() * 0.9 + 0.05)
        .collect()
}

fn ours(ckpt: &Path, t: usize, size: usize) -> Vec<f32> {
    let dev = train_device(false).unwrap();
    let (enc, _) = load_encoder(ckpt, 50.0, &dev).unwrap();
    let x = Tensor::<5>::from_data(
        TensorData::new(frames(t, size), [1, t, size, size, 3]),
        &dev,
    );
    enc.forward(x).into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn npz_round_trips_and_the_config_is_read_from_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck.npz");
    let arrays = random_official(&small(), 3);
    write_npz(&p, &arrays).unwrap();
    let back = read_npz(&p).unwrap();
    assert_eq!(back, arrays);
    let dev = train_device(false).unwrap();
    let (_, cfg) = load_encoder(&p, 50.0, &dev).unwrap();
    assert_eq!(cfg, small());
    // numpy's own header variants parse: a 0-d and a 1-d array.
    let a = NpArray {
        shape: vec![3],
        data: vec![1.0, 2.0, 3.0],
    };
    assert_eq!(parse_npy(&npy_bytes(&a), "a").unwrap(), a);
}

#[test]
fn missing_and_misshaped_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dev = train_device(false).unwrap();
    let mut arrays = random_official(&small(), 3);
    arrays.remove("temporal_ln/bias");
    let p = dir.path().join("missing.npz");
    write_npz(&p, &arrays).unwrap();
    let e = load_encoder(&p, 50.0, &dev).err().unwrap().to_string();
    assert!(
        e.contains("temporal_ln/bias is missing") && e.contains("missing.npz"),
        "{e}"
    );

    let mut arrays = random_official(&small(), 3);
    let k = "spatial_encoder/transformers_stack/x_layers/ff_layer/ffn_layer2/linear/bias";
    arrays.insert(
        k.into(),
        NpArray {
            shape: vec![2, 7],
            data: vec![0.0; 14],
        },
    );
    let p = dir.path().join("shape.npz");
    write_npz(&p, &arrays).unwrap();
    let e = load_encoder(&p, 50.0, &dev).err().unwrap().to_string();
    assert!(e.contains(k) && e.contains("[2, 7]"), "{e}");

    let p = dir.path().join("garbage.npz");
    std::fs::write(&p, b"not a zip").unwrap();
    let e = load_encoder(&p, 50.0, &dev).err().unwrap().to_string();
    assert!(e.contains("not an .npz") && !e.contains('\n'), "{e}");
}

/// Output of the official model on `random_official(small(), 3)` and `frames(4, 24)`, from the
/// harness below (jax 0.10.2, flax 0.12.8, matmul precision "highest"): the first values and
/// the sum of all 64 x 24 values.
const OFFICIAL_FIRST: [f32; 4] = [0.662603, -0.735_289_9, -1.914_642_5, -1.518_564_3];
const OFFICIAL_SUM: f64 = -13.704973;

fn python_with_jax() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PW_JAX_PYTHON").map(PathBuf::from),
        Some(PathBuf::from("/tmp/vpenv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import jax, flax, einops, einshape"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

fn official_git_dir() -> Option<PathBuf> {
    let p = std::env::var_os("VIDEOPRISM_GIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/.mirror/google-deepmind+videoprism/repo"));
    p.join("HEAD").exists().then_some(p)
}

#[test]
fn forward_matches_the_official_flax_model() {
    compare_with_official(4, 24, Some((OFFICIAL_FIRST, OFFICIAL_SUM)));
}

/// 6 frames at 30x30 (a 5x5 grid): both position embeddings go through the resize.
#[test]
fn interpolated_position_embeddings_match_the_official_model() {
    compare_with_official(6, 30, None);
}

fn compare_with_official(t: usize, size: usize, stored: Option<([f32; 4], f64)>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    let g = size / cfg.patch;
    let ckpt = dir.path().join("ck.npz");
    write_npz(&ckpt, &random_official(&cfg, 3)).unwrap();
    let mine = ours(&ckpt, t, size);
    assert_eq!(mine.len(), t * g * g * cfg.d_model);
    let sum: f64 = mine.iter().map(|&v| v as f64).sum();
    println!("ours: first {:?} sum {sum:.6}", &mine[..4]);

    let (Some(py), Some(git)) = (python_with_jax(), official_git_dir()) else {
        println!(
            "skipped the live comparison: needs Python with jax, flax, einops, einshape (PW_JAX_PYTHON) and the official source (VIDEOPRISM_GIT_DIR); checking the stored figures"
        );
        if let Some((first, stored_sum)) = stored {
            for (a, b) in mine.iter().zip(first) {
                assert!((a - b).abs() < 1e-4, "{a} vs stored official {b}");
            }
            assert!(
                (sum - stored_sum).abs() < 1e-2,
                "{sum} vs stored official {stored_sum}"
            );
        }
        return;
    };
    let frames_path = dir.path().join("frames.npy");
    let arr = NpArray {
        shape: vec![1, t, size, size, 3],
        data: frames(t, size),
    };
    std::fs::write(&frames_path, npy_bytes(&arr)).unwrap();
    let out = dir.path().join("out.npy");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/numerics/official_forward.py");
    let s = |v: usize| v.to_string();
    let status = Command::new(&py)
        .arg(&script)
        .args(["--git-dir", &git.display().to_string()])
        .args([
            "--ckpt",
            &ckpt.display().to_string(),
            "--frames",
            &frames_path.display().to_string(),
        ])
        .args(["--out", &out.display().to_string()])
        .args([
            "--patch",
            &s(cfg.patch),
            "--dim",
            &s(cfg.d_model),
            "--heads",
            &s(cfg.n_heads),
        ])
        .args([
            "--spatial",
            &s(cfg.spatial_layers),
            "--temporal",
            &s(cfg.temporal_layers),
        ])
        .args([
            "--mlp",
            &s(cfg.mlp_dim),
            "--grid",
            &s(cfg.grid.0),
            "--frames-emb",
            &s(cfg.frames),
        ])
        .args(["--cap", "50"])
        .status()
        .unwrap();
    assert!(status.success(), "the official harness failed");
    let theirs = parse_npy(&std::fs::read(&out).unwrap(), "out.npy").unwrap();
    assert_eq!(theirs.shape, vec![1, t * g * g, cfg.d_model]);
    let max_diff = mine
        .iter()
        .zip(&theirs.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let tsum: f64 = theirs.data.iter().map(|&v| v as f64).sum();
    println!(
        "official: first {:?} sum {tsum:.6}; max |ours - official| = {max_diff:.3e}",
        &theirs.data[..4]
    );
    assert!(max_diff < 1e-4, "max abs difference {max_diff}");
}
