//! `paperworks pdiff fit` / `generate` on checkpoints this test writes: the generated files carry
//! the same tensor names and shapes, and a checkpoint with a mismatched shape is refused with
//! one line naming the file and the tensor.

use pw_nn::checkpoint::{
    NamedTensors, load_float_tensors_typed, load_tensors, save_tensors, save_tensors_as,
};
use std::process::Command;

mod common;

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
    // the weight stored as half precision (as many PyTorch checkpoints are), the bias as f32
    let dtypes = [("layer.weight".to_string(), "F16".to_string())].into();
    for i in 0..8 {
        save_tensors_as(
            &ckpts.join(format!("step-{i:02}.safetensors")),
            &checkpoint(i, vec![6, 5]),
            &dtypes,
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
        let (_, kinds, _) =
            load_float_tensors_typed(&out.join(format!("gen-{i:04}.safetensors"))).unwrap();
        assert_eq!(kinds["layer.weight"], "F16", "written in the inputs' dtype");
        assert_eq!(kinds["layer.bias"], "F32");
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

/// A hand edit of generator.json.
type Edit = fn(&mut serde_json::Value);

/// One line on stderr, exit 1 (an error, not a panic's 101), naming `what`.
fn refused(o: &std::process::Output, what: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for w in what {
        assert!(err.contains(w), "{w:?} not in {err}");
    }
}

fn fit(ckpts: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    bin()
        .args([
            "--quiet",
            "pdiff",
            "fit",
            "--ae-steps",
            "10",
            "--ddpm-steps",
            "10",
            "--checkpoints",
        ])
        .arg(ckpts)
        .arg("--run-dir")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn bad_checkpoints_and_broken_generators_are_refused_in_one_line_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir_all(&ckpts).unwrap();
    for i in 0..4 {
        save_tensors(
            &ckpts.join(format!("c{i}.safetensors")),
            &checkpoint(i, vec![6, 5]),
            None,
        )
        .unwrap();
    }
    let fitted = dir.path().join("fitted");
    let o = fit(&ckpts, &fitted);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Another checkpoint set must not reuse the fitted pieces of this one.
    save_tensors(
        &ckpts.join("c9.safetensors"),
        &checkpoint(9, vec![6, 5]),
        None,
    )
    .unwrap();
    refused(&fit(&ckpts, &fitted), &["c9.safetensors is new", "--fresh"]);
    std::fs::remove_file(ckpts.join("c9.safetensors")).unwrap();

    // A diverged checkpoint (NaN) and an empty tensor (shape [0]) are named, not fitted.
    let nan_dir = dir.path().join("nan");
    std::fs::create_dir_all(&nan_dir).unwrap();
    for i in 0..3 {
        let mut t = checkpoint(i, vec![6, 5]);
        if i == 2 {
            t.get_mut("layer.bias").unwrap().1[3] = f32::NAN;
        }
        save_tensors(&nan_dir.join(format!("c{i}.safetensors")), &t, None).unwrap();
    }
    refused(
        &fit(&nan_dir, &dir.path().join("o1")),
        &["c2.safetensors", "layer.bias", "non-finite"],
    );
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();
    for i in 0..3 {
        let mut t = NamedTensors::new();
        t.insert("w".into(), (vec![0], vec![]));
        t.insert("b".into(), (vec![2], vec![i as f32, 1.0]));
        save_tensors(&empty_dir.join(format!("c{i}.safetensors")), &t, None).unwrap();
    }
    refused(
        &fit(&empty_dir, &dir.path().join("o2")),
        &["c0.safetensors", "tensor w has no values"],
    );

    // generator.json edited by hand: each a one-line refusal before any sampling.
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fitted.join("generator.json")).unwrap()).unwrap();
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("beta_t = 5", |v| v["fit"]["beta_t"] = 5.0.into(), "beta_t"),
        (
            "names and shapes of different lengths",
            |v| {
                v["shapes"].as_array_mut().unwrap().pop();
            },
            "names has 2 entries but shapes has 1",
        ),
        (
            "a bad latent shape",
            |v| v["latent_shape"] = serde_json::json!([4, 999]),
            "latent_shape",
        ),
        (
            "empty channels",
            |v| v["fit"]["ae"]["channels"] = serde_json::json!([]),
            "channels",
        ),
        (
            "an empty tensor shape",
            |v| v["shapes"][0] = serde_json::json!([0]),
            "no values",
        ),
    ];
    for (what, edit, says) in cases {
        let g = dir.path().join(format!("gen-{}", what.replace(' ', "-")));
        std::fs::create_dir_all(&g).unwrap();
        for f in ["ae.safetensors", "ddpm_ema.safetensors"] {
            std::fs::copy(fitted.join(f), g.join(f)).unwrap();
        }
        let mut v = original.clone();
        edit(&mut v);
        std::fs::write(g.join("generator.json"), v.to_string()).unwrap();
        let o = bin()
            .args(["--quiet", "pdiff", "generate", "-n", "2", "--generator"])
            .arg(&g)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        refused(&o, &["generator.json", says]);
    }
    assert!(!dir.path().join("out").join("gen-0000.safetensors").exists());
}

/// PyTorch state dicts in, PyTorch state dicts out: snapshots of an `nn.Module` with BatchNorm
/// (integer `num_batches_tracked`, a float16 weight) fit on the BatchNorm's weight and bias, and
/// the generated files load back with `load_state_dict(strict=False)`; the reproduction's base
/// CNN, written as the reproduction writes it, loads with `strict=True` into the same network
/// written in PyTorch and gives the same logits.
#[test]
fn pytorch_state_dicts_round_trip_and_the_base_cnn_loads_in_torch() {
    use pw_nn::burn::tensor::{Device, Tensor, TensorData};
    let dir = tempfile::tempdir().unwrap();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir_all(&ckpts).unwrap();
    let made = common::python_check(
        "pdiff_torch.py",
        "torch, safetensors",
        &["make".as_ref(), ckpts.as_os_str(), "8".as_ref()],
        "PyTorch state dicts through pdiff fit/generate",
    );
    if made.is_some() {
        let fitted = dir.path().join("fit");
        let o = bin()
            .args([
                "--quiet",
                "pdiff",
                "fit",
                "--ae-steps",
                "20",
                "--ddpm-steps",
                "20",
            ])
            .args(["--tensors", "1.weight,1.bias", "--checkpoints"])
            .arg(&ckpts)
            .arg("--run-dir")
            .arg(&fitted)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = dir.path().join("gen");
        let o = bin()
            .args(["--quiet", "pdiff", "generate", "-n", "3", "--generator"])
            .arg(&fitted)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut args: Vec<std::path::PathBuf> =
            vec!["load".into(), ckpts.join("ckpt-00.safetensors")];
        args.extend((0..3).map(|i| out.join(format!("gen-{i:04}.safetensors"))));
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|p| p.as_os_str()).collect();
        common::python_check(
            "pdiff_torch.py",
            "torch, safetensors",
            &args,
            "generated in torch",
        );
    }

    // the base CNN as the reproduction writes it, and paperworks' logits on a probe input
    let device = Device::flex();
    let cnn = pw_pdiff::model::Cnn::new(&device);
    let base = dir.path().join("base.safetensors");
    save_tensors(
        &base,
        &pw_pdiff::model::to_torch(&pw_nn::checkpoint::module_tensors(&cnn)),
        None,
    )
    .unwrap();
    let x: Vec<f32> = (0..2 * 28 * 28)
        .map(|i| ((i * 37 % 101) as f32) / 101.0)
        .collect();
    let logits = cnn.forward(Tensor::from_data(
        TensorData::new(x.clone(), [2, 1, 28, 28]),
        &device,
    ));
    let logits: Vec<f32> = logits.into_data().try_into_vec_as::<f32>().unwrap();
    let mut probe = NamedTensors::new();
    probe.insert("x".into(), (vec![2, 1, 28, 28], x));
    probe.insert("logits".into(), (vec![2, 10], logits));
    let probe_path = dir.path().join("probe.safetensors");
    save_tensors(&probe_path, &probe, None).unwrap();
    common::python_check(
        "pdiff_torch.py",
        "torch, safetensors",
        &["cnn".as_ref(), base.as_os_str(), probe_path.as_os_str()],
        "the base CNN in torch",
    );
}
