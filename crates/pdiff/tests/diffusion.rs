//! The generator on a synthetic parameter dataset (a 2-D family of vectors with a small spread,
//! like K training checkpoints): it fits, generates vectors that lie near the family without
//! copying a member, and the dataset loader refuses mismatched checkpoints naming file and tensor.

use pw_nn::checkpoint::{NamedTensors, save_tensors};
use pw_nn::ddpm::DenoiserConfig;
use pw_nn::{seed_everything, train_device};
use pw_pdiff::autoencoder::ConvAeConfig;
use pw_pdiff::diffusion::{FitConfig, ParamDataset, fit};
use rand::Rng;

fn dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

#[test]
fn generator_samples_near_the_checkpoint_family_and_checks_its_input() {
    let (ad, plain) = (train_device(true).unwrap(), train_device(false).unwrap());
    let mut rng = seed_everything(&ad, 9);
    let (k, p) = (40, 100);
    let base: Vec<f32> = (0..p).map(|_| rng.random_range(-1.0..1.0)).collect();
    let dirs: Vec<Vec<f32>> = (0..2)
        .map(|_| (0..p).map(|_| rng.random_range(-0.02..0.02)).collect())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..k {
        let (a, b): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
        let row: Vec<f32> = (0..p)
            .map(|j| base[j] + a * dirs[0][j] + b * dirs[1][j])
            .collect();
        let mut t = NamedTensors::new();
        t.insert("w".into(), (vec![10, 6], row[..60].to_vec()));
        t.insert("b".into(), (vec![40], row[60..].to_vec()));
        let path = dir.path().join(format!("ckpt-{i:03}.safetensors"));
        save_tensors(&path, &t, None).unwrap();
        paths.push(path);
    }
    let ds = ParamDataset::from_files(&paths, None).unwrap();
    assert_eq!((ds.rows.len(), ds.dim()), (k, p));
    assert_eq!(ds.names, vec!["b".to_string(), "w".to_string()]);

    let mut cfg = FitConfig::paper(p);
    cfg.ae = ConvAeConfig {
        channels: vec![16, 32],
        latent_channels: 2,
        ..ConvAeConfig::paper(p)
    };
    cfg.denoiser = DenoiserConfig {
        channels: 2,
        hidden: 32,
        blocks: 2,
        kernel: 3,
    };
    cfg.ae_steps = 400;
    cfg.ddpm_steps = 800;
    cfg.ema_decay = 0.99;
    let fit_dir = dir.path().join("fit");
    let g = fit(&ds, &cfg, &fit_dir, &ad, &plain, &mut rng).unwrap();
    let generated = g.generate(20, &plain);
    assert_eq!(generated.len(), 20);

    let mut pair = Vec::new();
    for i in 0..k {
        for j in i + 1..k {
            pair.push(dist(&ds.rows[i], &ds.rows[j]));
        }
    }
    let spread = pair.iter().sum::<f32>() / pair.len() as f32;
    let nearest: Vec<f32> = generated
        .iter()
        .map(|gv| ds.rows.iter().map(|r| dist(gv, r)).fold(f32::MAX, f32::min))
        .collect();
    let mean_nearest = nearest.iter().sum::<f32>() / nearest.len() as f32;
    // The dataset flattens tensors in name order ("b" then "w").
    let centre: Vec<f32> = base[60..].iter().chain(&base[..60]).copied().collect();
    let from_base = generated.iter().map(|gv| dist(gv, &centre)).sum::<f32>() / 20.0;
    eprintln!(
        "checkpoint spread {spread:.4}; generated: nearest checkpoint {mean_nearest:.4}, distance to the family centre {from_base:.4}"
    );
    assert!(
        mean_nearest < spread,
        "generated vectors are farther from every checkpoint ({mean_nearest}) than checkpoints are from each other ({spread})"
    );
    assert!(
        nearest.iter().all(|&d| d > 1e-4),
        "a generated vector copies a checkpoint"
    );
    assert!(
        from_base < 2.0 * spread,
        "generated vectors left the family: {from_base} from its centre"
    );

    // Reused on a second call: the saved pieces load and generate again.
    let again = fit(&ds, &cfg, &fit_dir, &ad, &plain, &mut rng).unwrap();
    assert_eq!(again.generate(2, &plain).len(), 2);

    // A checkpoint whose tensor has another shape is refused, naming the file and the tensor.
    let mut bad = NamedTensors::new();
    bad.insert("w".into(), (vec![6, 10], vec![0.0; 60]));
    bad.insert("b".into(), (vec![40], vec![0.0; 40]));
    let bad_path = dir.path().join("odd.safetensors");
    save_tensors(&bad_path, &bad, None).unwrap();
    paths.push(bad_path);
    let err = ParamDataset::from_files(&paths, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("odd.safetensors") && err.contains("tensor w"),
        "{err}"
    );
}

/// A PyTorch state dict holds integer buffers beside the parameters (BatchNorm's
/// `num_batches_tracked` is I64): they are left out when no tensors are named, selecting float
/// tensors beside them works, and selecting one is refused naming its dtype.
#[test]
fn a_pytorch_state_dict_with_integer_buffers_is_modelled_on_its_float_tensors() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for k in 0..3 {
        let w: Vec<f32> = (0..8).map(|i| (i + k) as f32 * 0.1).collect();
        let b = vec![k as f32; 4];
        let steps = (100 + k as i64).to_le_bytes();
        let views = vec![
            (
                "bn.weight",
                TensorView::new(Dtype::F32, vec![2, 4], bytemuck_bytes(&w)).unwrap(),
            ),
            (
                "bn.bias",
                TensorView::new(Dtype::F32, vec![4], bytemuck_bytes(&b)).unwrap(),
            ),
            (
                "bn.num_batches_tracked",
                TensorView::new(Dtype::I64, vec![], &steps).unwrap(),
            ),
        ];
        let path = dir.path().join(format!("ckpt{k}.safetensors"));
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        paths.push(path);
    }
    let all = ParamDataset::from_files(&paths, None).unwrap();
    assert_eq!(
        all.names,
        vec!["bn.bias".to_string(), "bn.weight".to_string()]
    );
    assert_eq!(all.dim(), 12);
    let picked = ParamDataset::from_files(&paths, Some(&["bn.weight".to_string()])).unwrap();
    assert_eq!(picked.dim(), 8);
    let e = ParamDataset::from_files(&paths, Some(&["bn.num_batches_tracked".to_string()]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bn.num_batches_tracked is I64, not a float type"),
        "{e}"
    );
}

fn bytemuck_bytes(v: &[f32]) -> &[u8] {
    // f32 slices as little-endian bytes (every supported target is little-endian)
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}
