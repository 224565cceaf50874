//! `paperworks pdiff fit` / `generate` on checkpoints this test writes: the generated files carry
//! the same tensor names and shapes, and a checkpoint with a mismatched shape is refused with
//! one line naming the file and the tensor.

use pw_nn::checkpoint::{NamedTensors, load_tensors, save_tensors};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paperworks"))
}

fn checkpoint(i: usize, w_shape: Vec<usize>) -> NamedTensors {
    let n: usize = w_shape.iter().product();
    let mut t = NamedTensors::new();
    t.insert(
        "layer.weight".into(),
        (
            w_shape,
            (0..n)
                .map(|j| (j as f32 * 0.01).sin() + i as f32 * 1e-3)
                .collect(),
        ),
    );
    t.insert(
        "layer.bias".into(),
        (
            vec![6],
            (0..6).map(|j| j as f32 * 0.1 - i as f32 * 1e-3).collect(),
        ),
    );
    t
}

#[test]
fn fit_then_generate_keeps_names_and_shapes_and_mismatches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir_all(&ckpts).unwrap();
    for i in 0..8 {
        save_tensors(
            &ckpts.join(format!("step-{i:02}.safetensors")),
            &checkpoint(i, vec![6, 5]),
            None,
        )
        .unwrap();
    }
    let fitted = dir.path().join("gen-model");
    let o = bin()
        .args([
            "--quiet",
            "pdiff",
            "fit",
            "--ae-steps",
            "20",
            "--ddpm-steps",
            "20",
            "--checkpoints",
        ])
        .arg(&ckpts)
        .arg("--run-dir")
        .arg(&fitted)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("fitted on 8 checkpoints of 36 values"));
    for f in [
        "ae.safetensors",
        "ddpm_ema.safetensors",
        "generator.json",
        "manifest.json",
    ] {
        assert!(fitted.join(f).exists(), "{f} missing");
    }

    let out = dir.path().join("new");
    let o = bin()
        .args(["--quiet", "pdiff", "generate", "-n", "3", "--generator"])
        .arg(&fitted)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let original = checkpoint(0, vec![6, 5]);
    for i in 0..3 {
        let g = load_tensors(&out.join(format!("gen-{i:04}.safetensors"))).unwrap();
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            original.keys().collect::<Vec<_>>()
        );
        for (k, (shape, values)) in &g {
            assert_eq!(shape, &original[k].0, "{k}");
            assert!(values.iter().all(|v| v.is_finite()));
        }
    }

    save_tensors(
        &ckpts.join("step-99.safetensors"),
        &checkpoint(9, vec![5, 6]),
        None,
    )
    .unwrap();
    let o = bin()
        .args(["pdiff", "fit", "--checkpoints"])
        .arg(&ckpts)
        .arg("--run-dir")
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        line.contains("step-99.safetensors")
            && line.contains("layer.weight")
            && line.contains("shape"),
        "{err}"
    );
}
