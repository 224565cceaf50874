//! Stage 1 of p-diff (§3.1): train the CNN, then keep training only the parameter subset
//! ([`crate::model::SUBSET`]) and save one snapshot per step: the K training checkpoints of the
//! parameter dataset. The trunk is frozen in that stage, so its features are computed once and
//! the subset is trained (and every model later evaluated) on cached features.
//!
//! Outputs, each reused when present (delete to recompute):
//! `base.safetensors` (the whole trained CNN) and `snapshots/ckpt-NNNN.safetensors` (the subset
//! tensors only, named as in the model, loadable by `paperworks pdiff fit`).

use crate::data::{FashionSplits, Split};
use crate::model::{
    Cnn, H1, Subset, burn_name, from_torch, from_torch_one, to_torch, to_torch_one,
};
use pw_core::{Error, Result};
use pw_nn::burn::module::Module;
use pw_nn::burn::nn::loss::CrossEntropyLossConfig;
use pw_nn::burn::optim::GradientsParams;
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::checkpoint::{NamedTensors, assign_tensors, load_tensors, module_tensors, save_tensors};
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Epochs of whole-model training before the snapshots.
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// K: snapshots of the subset, one per training step (paper's later version: K = 200).
    pub snapshots: usize,
    /// Constant learning rate of the subset-only stage.
    pub subset_lr: f64,
    pub subset_batch: usize,
    /// Which parameters keep training and get generated (default: the last two norm layers).
    #[serde(default)]
    pub subset: Subset,
}

impl Default for CollectConfig {
    fn default() -> Self {
        CollectConfig {
            epochs: 3,
            batch: 128,
            lr: 2e-3,
            snapshots: 200,
            subset_lr: 5e-3,
            subset_batch: 256,
            subset: Subset::LastTwoNorms,
        }
    }
}

/// Trains the CNN on the training split, or loads `dir/base.safetensors` when present (a
/// PyTorch state dict: `weight`/`bias` norms, [out, in] linear weights). Returns the model on
/// `plain` (no autodiff).
pub fn train_base(
    splits: &FashionSplits,
    cfg: &CollectConfig,
    dir: &Path,
    ad: &Device,
    plain: &Device,
    rng: &mut impl Rng,
) -> Result<Cnn> {
    // written in PyTorch's names and layout, so an equivalent `nn.Module` loads it as it is
    let path = dir.join("base.safetensors");
    if path.exists() {
        tracing::info!("reusing {}", path.display());
    } else {
        let trained = train_cnn(splits, cfg, ad, rng);
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        save_tensors(&path, &to_torch(&module_tensors(&trained)), Some(meta))?;
    }
    assign_tensors(Cnn::new(plain), &from_torch(&load_tensors(&path)?), &path)
}

/// The base CNN trained from scratch on `ad` (the paper's Sec. 3 training before the subset
/// snapshots), without autodiff.
fn train_cnn(splits: &FashionSplits, cfg: &CollectConfig, ad: &Device, rng: &mut impl Rng) -> Cnn {
    let n = splits.train.len();
    let per_epoch = n.div_ceil(cfg.batch);
    let steps = per_epoch * cfg.epochs;
    let mut order: Vec<usize> = (0..n).collect();
    let ce = CrossEntropyLossConfig::new().init(ad);
    let optim = OptimConfig {
        lr: cfg.lr,
        warmup_steps: per_epoch / 10,
        min_lr_ratio: 0.05,
        weight_decay: 1e-4,
        ..Default::default()
    };
    let (model, _) = train_loop(
        Cnn::new(ad),
        steps,
        &optim,
        "cnn",
        50,
        |m, step| {
            if step % per_epoch == 0 {
                order.shuffle(rng);
            }
            let s = (step % per_epoch) * cfg.batch;
            let idx = &order[s..(s + cfg.batch).min(n)];
            let (x, y) = splits.train.batch(idx, ad);
            StepOutput {
                loss: ce.forward(m.forward(x), y),
                items: idx.len(),
            }
        },
        |_| true,
    );
    model.valid()
}

/// Trunk features of a whole split: [n, H1] row-major.
pub fn features(model: &Cnn, split: &Split, device: &Device) -> Vec<f32> {
    let mut out = Vec::with_capacity(split.len() * H1);
    let chunk = 1000;
    for s in (0..split.len()).step_by(chunk) {
        let len = chunk.min(split.len() - s);
        let f = model.features(split.range(s, len, device));
        out.extend(
            f.into_data()
                .try_into_vec_as::<f32>()
                .expect("f32 features"),
        );
    }
    out
}

/// `features` rows `idx` as a tensor, with their labels.
fn feature_batch(
    feats: &[f32],
    labels: &[u8],
    idx: &[usize],
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let mut x = Vec::with_capacity(idx.len() * H1);
    for &i in idx {
        x.extend_from_slice(&feats[i * H1..(i + 1) * H1]);
    }
    let y: Vec<i64> = idx.iter().map(|&i| labels[i] as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [idx.len(), H1]), device),
        Tensor::from_data(TensorData::new(y, [idx.len()]), device),
    )
}

/// The subset tensors of `m`, by PyTorch name and in PyTorch's layout. Only the subset is
/// converted (this runs once per snapshot; the rest of the model stays as it is).
pub fn subset_of(m: &Cnn, subset: Subset) -> NamedTensors {
    let all = module_tensors(m);
    subset
        .names()
        .iter()
        .map(|k| {
            let b = burn_name(k);
            to_torch_one(&b, &all[&b])
        })
        .collect()
}

/// `base` with its subset replaced by `subset` (names and shapes checked).
pub fn with_subset(base: &Cnn, subset: &NamedTensors, source: &Path) -> Result<Cnn> {
    with_subset_from(base, &module_tensors(base), subset, source)
}

/// [`with_subset`] with `base`'s tensors already read (`module_tensors(base)`), for loops that
/// load many subsets into one base model.
pub fn with_subset_from(
    base: &Cnn,
    base_tensors: &NamedTensors,
    subset: &NamedTensors,
    source: &Path,
) -> Result<Cnn> {
    let mut all = base_tensors.clone();
    for (k, v) in subset {
        // `v` is in PyTorch's name and layout; `all` in burn's
        let (name, converted) = from_torch_one(k, v);
        match all.get(&name) {
            Some((shape, _)) if *shape == converted.0 => {
                all.insert(name, converted);
            }
            Some((shape, _)) => {
                let expected = crate::model::torch_shape(&name, shape);
                return Err(Error::invalid(
                    source,
                    format!(
                        "tensor {k} has shape {:?}, the model expects {expected:?}",
                        v.0
                    ),
                ));
            }
            None => {
                return Err(Error::invalid(
                    source,
                    format!("tensor {k} is not a parameter of the model"),
                ));
            }
        }
    }
    assign_tensors(base.clone(), &all, source)
}

/// Trains only the subset, from `base`, for K steps on cached training features, saving a
/// snapshot after each step. Reuses a complete set of snapshots; an incomplete set is redone.
pub fn collect_snapshots(
    base: &Cnn,
    train_feats: &[f32],
    labels: &[u8],
    cfg: &CollectConfig,
    dir: &Path,
    ad: &Device,
    rng: &mut impl Rng,
) -> Result<Vec<PathBuf>> {
    let snap_dir = dir.join("snapshots");
    let paths: Vec<PathBuf> = (0..cfg.snapshots)
        .map(|i| snap_dir.join(format!("ckpt-{i:04}.safetensors")))
        .collect();
    if paths.iter().all(|p| p.exists()) {
        tracing::info!(
            "reusing {} snapshots in {}",
            paths.len(),
            snap_dir.display()
        );
        return Ok(paths);
    }
    // Only the subset records gradients: the rest of the head is fixed in this stage.
    let loaded = assign_tensors(
        Cnn::new(ad),
        &module_tensors(base),
        &dir.join("base.safetensors"),
    )?;
    let (base_ad, ids) = cfg.subset.trainable(loaded);
    let ce = CrossEntropyLossConfig::new().init(ad);
    let mut opt = OptimConfig {
        lr: cfg.subset_lr,
        warmup_steps: 0,
        min_lr_ratio: 1.0,
        weight_decay: 0.0,
        grad_clip: None,
        ..Default::default()
    }
    .adamw();
    let n = labels.len();
    let mut model = base_ad;
    let bar = pw_core::progress::bar(cfg.snapshots as u64, "snapshots");
    for (step, path) in paths.iter().enumerate() {
        let idx: Vec<usize> = (0..cfg.subset_batch)
            .map(|_| rng.random_range(0..n))
            .collect();
        let (f, y) = feature_batch(train_feats, labels, &idx, ad);
        let loss = ce.forward(model.head(f), y);
        let mut grads = loss.backward();
        let grads = GradientsParams::from_params(&mut grads, &model, &ids);
        model = opt.step(cfg.subset_lr, model, grads);
        let meta = HashMap::from([
            ("step".to_string(), step.to_string()),
            ("format".to_string(), "pt".to_string()),
        ]);
        save_tensors(path, &subset_of(&model, cfg.subset), Some(meta))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(paths)
}

/// Test-time evaluation of `model`'s head on cached features: accuracy and, per sample,
/// whether it was predicted wrongly (for the IoU similarity of §4).
pub fn evaluate_head(
    model: &Cnn,
    feats: &[f32],
    labels: &[u8],
    device: &Device,
) -> (f64, Vec<bool>) {
    let n = labels.len();
    let mut wrong = Vec::with_capacity(n);
    let chunk = 2500;
    for s in (0..n).step_by(chunk) {
        let len = chunk.min(n - s);
        let idx: Vec<usize> = (s..s + len).collect();
        let (f, _) = feature_batch(feats, labels, &idx, device);
        let pred = model
            .head(f)
            .argmax(1)
            .into_data()
            .try_into_vec_as::<i64>()
            .expect("int predictions");
        wrong.extend(
            pred.iter()
                .zip(&labels[s..s + len])
                .map(|(&p, &l)| p != l as i64),
        );
    }
    let errors = wrong.iter().filter(|w| **w).count();
    (1.0 - errors as f64 / n.max(1) as f64, wrong)
}
