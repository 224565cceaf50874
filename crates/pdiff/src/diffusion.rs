//! Stages 2-3 of p-diff (§3.2-3.3): the parameter dataset, the autoencoder fitted to it, the
//! latent DDPM, and generation of new parameter vectors.
//!
//! Vectors are standardised per coordinate over the K checkpoints before the autoencoder (their
//! spread is tiny next to their values), and latents are standardised by their overall mean and
//! standard deviation before the DDPM so its input is well scaled. Each fitted piece is saved
//! and reused when present: `ae.safetensors`, `ddpm_ema.safetensors`, `generator.json`.

use crate::autoencoder::{ConvAeConfig, ConvAutoencoder};
use pw_core::{Error, IoContext, Result, write_json_atomic};
use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::{Device, Tensor, TensorData};
use pw_nn::checkpoint::{
    NamedTensors, load_float_tensors, load_float_tensors_typed, load_module, load_or_train,
};
use pw_nn::ddpm::{Denoiser, DenoiserConfig, Ema, Schedule, ddpm_loss, ddpm_sample};
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// K parameter vectors that share tensor names and shapes, flattened in name order.
#[derive(Debug, Clone)]
pub struct ParamDataset {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub rows: Vec<Vec<f32>>,
    /// Each tensor's stored dtype in the first checkpoint (`F16`, `BF16`, ...; F32 when
    /// absent), so generated checkpoints are written as the inputs were.
    pub dtypes: std::collections::BTreeMap<String, String>,
}

impl ParamDataset {
    /// Reads `paths` (safetensors), keeping `names` (all float tensors of the first file when
    /// `None`; integer buffers such as `num_batches_tracked` are left out, as are unselected
    /// tensors of any dtype). Every file must hold the same tensors with the same shapes; an
    /// error names the file and the tensor that differs.
    pub fn from_files(paths: &[PathBuf], names: Option<&[String]>) -> Result<Self> {
        let first = paths
            .first()
            .ok_or_else(|| Error::Other("no checkpoints given".into()))?;
        let (t0, mut dtypes, others) = load_float_tensors_typed(first)?;
        let names: Vec<String> = match names {
            Some(n) => {
                if let Some(bad) = n.iter().find(|x| others.contains_key(*x)) {
                    return Err(Error::invalid(
                        first,
                        format!(
                            "tensor {bad} is {}, not a float type: only float tensors can be modelled",
                            others[bad]
                        ),
                    ));
                }
                n.to_vec()
            }
            None => {
                if !others.is_empty() {
                    tracing::info!(
                        "{}: left out {} non-float tensors ({})",
                        first.display(),
                        others.len(),
                        others
                            .keys()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                t0.keys().cloned().collect()
            }
        };
        if names.is_empty() {
            return Err(Error::invalid(first, "no tensors to model"));
        }
        let mut shapes = Vec::new();
        for n in &names {
            let (shape, _) = t0
                .get(n)
                .ok_or_else(|| Error::invalid(first, format!("has no tensor {n}")))?;
            if shape.iter().product::<usize>() == 0 {
                return Err(Error::invalid(
                    first,
                    format!("tensor {n} has no values (shape {shape:?})"),
                ));
            }
            shapes.push(shape.clone());
        }
        let mut rows = Vec::with_capacity(paths.len());
        for p in paths {
            let t = if p == first {
                t0.clone()
            } else {
                load_float_tensors(p)?.0
            };
            let mut row = Vec::new();
            for (n, shape) in names.iter().zip(&shapes) {
                let (s, v) = t
                    .get(n)
                    .ok_or_else(|| Error::invalid(p, format!("has no tensor {n}")))?;
                if s != shape {
                    return Err(Error::invalid(
                        p,
                        format!(
                            "tensor {n} has shape {s:?}, {} has {shape:?}",
                            first.display()
                        ),
                    ));
                }
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    let bad = v.iter().filter(|x| !x.is_finite()).count();
                    return Err(Error::invalid(
                        p,
                        format!(
                            "tensor {n} holds {bad} non-finite values (NaN or Inf), the first \
                             at flat index {i}: a diverged checkpoint cannot be modelled"
                        ),
                    ));
                }
                row.extend_from_slice(v);
            }
            rows.push(row);
        }
        dtypes.retain(|k, _| names.contains(k));
        Ok(ParamDataset {
            names,
            shapes,
            rows,
            dtypes,
        })
    }

    pub fn dim(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    /// A flat vector back into named tensors.
    pub fn to_named(&self, row: &[f32]) -> NamedTensors {
        let mut out = NamedTensors::new();
        let mut at = 0;
        for (n, s) in self.names.iter().zip(&self.shapes) {
            let len: usize = s.iter().product();
            out.insert(n.clone(), (s.clone(), row[at..at + len].to_vec()));
            at += len;
        }
        out
    }
}

/// Per-coordinate standardisation over the checkpoints (std floored so frozen coordinates do not
/// blow up), and the scalar standardisation of latents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scaling {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub latent_mean: f32,
    pub latent_std: f32,
}

impl Scaling {
    fn fit(rows: &[Vec<f32>]) -> Scaling {
        let (k, p) = (rows.len() as f32, rows[0].len());
        let mut mean = vec![0f32; p];
        rows.iter()
            .for_each(|r| mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / k));
        let mut std = vec![0f32; p];
        rows.iter().for_each(|r| {
            std.iter_mut()
                .zip(r)
                .zip(&mean)
                .for_each(|((s, v), m)| *s += (v - m) * (v - m) / k)
        });
        std.iter_mut().for_each(|s| *s = s.sqrt());
        let typical = std.iter().sum::<f32>() / p as f32;
        let floor = (typical * 1e-2).max(1e-8);
        std.iter_mut().for_each(|s| *s = s.max(floor));
        Scaling {
            mean,
            std,
            latent_mean: 0.0,
            latent_std: 1.0,
        }
    }
    fn params_to_unit(&self, row: &[f32]) -> Vec<f32> {
        row.iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }
    fn unit_to_params(&self, row: &[f32]) -> Vec<f32> {
        row.iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((v, m), s)| v * s + m)
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitConfig {
    pub ae: ConvAeConfig,
    pub ae_steps: usize,
    pub ae_batch: usize,
    pub ae_lr: f64,
    pub denoiser: DenoiserConfig,
    pub ddpm_steps: usize,
    pub ddpm_batch: usize,
    pub ddpm_lr: f64,
    /// Diffusion steps T (paper: 1000) and the linear beta range (paper: 1e-4 .. 2e-2).
    pub timesteps: usize,
    pub beta_1: f64,
    pub beta_t: f64,
    pub ema_decay: f32,
}

impl FitConfig {
    /// The paper's settings for vectors of `dim` values, with step counts for a 2-core CPU.
    pub fn paper(dim: usize) -> Self {
        FitConfig {
            ae: ConvAeConfig::paper(dim),
            ae_steps: 2000,
            ae_batch: 50,
            ae_lr: 1e-3,
            denoiser: DenoiserConfig {
                channels: ConvAeConfig::paper(dim).latent_channels,
                ..Default::default()
            },
            ddpm_steps: 3000,
            ddpm_batch: 50,
            ddpm_lr: 1e-3,
            timesteps: 1000,
            beta_1: 1e-4,
            beta_t: 2e-2,
            ema_decay: 0.999,
        }
    }
}

impl FitConfig {
    /// Range checks, so a bad setting fails before training instead of producing NaNs.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.timesteps == 0 || self.timesteps > 100_000 {
            return Err(format!(
                "timesteps {} must be in 1..=100000",
                self.timesteps
            ));
        }
        let betas_ok = self.beta_1.is_finite()
            && self.beta_t.is_finite()
            && self.beta_1 > 0.0
            && self.beta_1 <= self.beta_t
            && self.beta_t < 1.0;
        if !betas_ok {
            return Err(format!(
                "beta_1 {} and beta_t {} must satisfy 0 < beta_1 <= beta_t < 1",
                self.beta_1, self.beta_t
            ));
        }
        if self.ae.channels.is_empty() || self.ae.channels.contains(&0) {
            return Err(format!(
                "autoencoder channels {:?} must be non-empty and positive",
                self.ae.channels
            ));
        }
        if self.ae.latent_channels == 0 || self.ae.kernel == 0 || self.ae.stride == 0 {
            return Err("autoencoder latent_channels, kernel and stride must be positive".into());
        }
        if self.ae.input_len == 0 {
            return Err("autoencoder input_len must be positive".into());
        }
        if self.denoiser.channels != self.ae.latent_channels {
            return Err(format!(
                "denoiser channels {} must equal the latent channels {}",
                self.denoiser.channels, self.ae.latent_channels
            ));
        }
        if self.denoiser.hidden == 0 || self.denoiser.blocks == 0 || self.denoiser.kernel == 0 {
            return Err("denoiser hidden, blocks and kernel must be positive".into());
        }
        if self.ae_batch == 0 || self.ddpm_batch == 0 {
            return Err("batch sizes must be positive".into());
        }
        for (name, lr) in [("ae_lr", self.ae_lr), ("ddpm_lr", self.ddpm_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(format!("{name} {lr} must be a positive number"));
            }
        }
        if !(self.ema_decay.is_finite() && (0.0..1.0).contains(&self.ema_decay)) {
            return Err(format!("ema_decay {} must be in [0, 1)", self.ema_decay));
        }
        Ok(())
    }
}

impl GeneratorFile {
    /// Everything `load` and `generate` rely on, checked against each other: the fit settings,
    /// names and shapes of equal length with no empty tensor, the scaling of the same length
    /// as the vectors and finite, the latent shape the autoencoder produces.
    fn validate(&self) -> std::result::Result<(), String> {
        self.fit.validate()?;
        if self.names.len() != self.shapes.len() {
            return Err(format!(
                "names has {} entries but shapes has {}",
                self.names.len(),
                self.shapes.len()
            ));
        }
        for (name, dt) in &self.dtypes {
            if !self.names.contains(name) {
                return Err(format!("dtypes names {name}, which is not among names"));
            }
            if !matches!(dt.as_str(), "F32" | "F16" | "BF16" | "F64") {
                return Err(format!(
                    "dtypes: {name} is {dt:?}, not one of F32, F16, BF16, F64"
                ));
            }
        }
        if self.names.is_empty() {
            return Err("names is empty: the generator makes no tensor".into());
        }
        let mut dim = 0usize;
        for (n, s) in self.names.iter().zip(&self.shapes) {
            let len = s
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| format!("tensor {n}: shape {s:?} overflows"))?;
            if len == 0 {
                return Err(format!("tensor {n} has no values (shape {s:?})"));
            }
            dim = dim
                .checked_add(len)
                .ok_or_else(|| "the shapes' sizes overflow".to_string())?;
        }
        if dim != self.fit.ae.input_len {
            return Err(format!(
                "the shapes hold {dim} values but the autoencoder's input_len is {}",
                self.fit.ae.input_len
            ));
        }
        let sc = &self.scaling;
        if sc.mean.len() != dim || sc.std.len() != dim {
            return Err(format!(
                "scaling has {} means and {} stds for {dim} values",
                sc.mean.len(),
                sc.std.len()
            ));
        }
        let finite = sc.mean.iter().chain(&sc.std).all(|v| v.is_finite())
            && sc.latent_mean.is_finite()
            && sc.latent_std.is_finite()
            && sc.latent_std > 0.0;
        if !finite {
            return Err("scaling holds non-finite values (or a latent_std <= 0)".into());
        }
        if self.latent_shape != self.fit.ae.latent_shape() {
            return Err(format!(
                "latent_shape {:?} is not the {:?} the autoencoder produces",
                self.latent_shape,
                self.fit.ae.latent_shape()
            ));
        }
        Ok(())
    }
}

/// A fitted p-diff generator.
pub struct ParamGenerator {
    pub scaling: Scaling,
    pub ae: ConvAutoencoder,
    pub denoiser: Denoiser,
    pub schedule: Schedule,
    pub latent_shape: [usize; 2],
}

fn matrix(rows: &[Vec<f32>], device: &Device) -> Tensor<2> {
    let (k, p) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [k, p]), device)
}

/// Fits the autoencoder and the latent DDPM to `ds`, reusing what `dir` already holds.
pub fn fit(
    ds: &ParamDataset,
    cfg: &FitConfig,
    dir: &Path,
    ad: &Device,
    plain: &Device,
    rng: &mut impl Rng,
) -> Result<ParamGenerator> {
    cfg.validate()
        .map_err(|e| Error::Other(format!("p-diff settings: {e}")))?;
    std::fs::create_dir_all(dir).at(dir)?;
    if cfg.ae.input_len != ds.dim() {
        return Err(Error::Other(format!(
            "autoencoder input_len {} does not match the {}-value parameter vectors",
            cfg.ae.input_len,
            ds.dim()
        )));
    }
    let mut scaling = Scaling::fit(&ds.rows);
    let unit: Vec<Vec<f32>> = ds.rows.iter().map(|r| scaling.params_to_unit(r)).collect();
    let k = unit.len();

    let ae = load_or_train(
        &dir.join("ae.safetensors"),
        || ConvAutoencoder::new(&cfg.ae, plain),
        || {
            let data = matrix(&unit, ad);
            let optim = OptimConfig {
                lr: cfg.ae_lr,
                warmup_steps: cfg.ae_steps / 20,
                weight_decay: 0.0,
                ..Default::default()
            };
            let batch = cfg.ae_batch.min(k);
            let (ae, _) = train_loop(
                ConvAutoencoder::new(&cfg.ae, ad),
                cfg.ae_steps,
                &optim,
                "autoencoder",
                100,
                |m, _| {
                    let idx: Vec<i64> = (0..batch).map(|_| rng.random_range(0..k as i64)).collect();
                    let sel = Tensor::<1, pw_nn::burn::tensor::Int>::from_data(
                        TensorData::new(idx, [batch]),
                        ad,
                    );
                    StepOutput {
                        loss: m.loss(data.clone().select(0, sel)),
                        items: batch,
                    }
                },
                |_| true,
            );
            Ok(ae.valid())
        },
    )?;

    // Latents of the checkpoints (no noise), standardised for the DDPM.
    let z = ae.encode(matrix(&unit, plain));
    let latent_shape = [z.dims()[1], z.dims()[2]];
    let zv = z.into_data().try_into_vec_as::<f32>().expect("f32 latents");
    let m = zv.iter().sum::<f32>() / zv.len() as f32;
    let s = (zv.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / zv.len() as f32)
        .sqrt()
        .max(1e-6);
    scaling.latent_mean = m;
    scaling.latent_std = s;
    let zn: Vec<f32> = zv.iter().map(|v| (v - m) / s).collect();

    let schedule = Schedule::linear(cfg.timesteps, cfg.beta_1, cfg.beta_t);
    let denoiser = load_or_train(
        &dir.join("ddpm_ema.safetensors"),
        || Denoiser::new(&cfg.denoiser, plain),
        || {
            let lat = Tensor::<3>::from_data(
                TensorData::new(zn, [k, latent_shape[0], latent_shape[1]]),
                ad,
            );
            let model = Denoiser::new(&cfg.denoiser, ad);
            let mut ema = Ema::new(&model, cfg.ema_decay);
            let optim = OptimConfig {
                lr: cfg.ddpm_lr,
                warmup_steps: cfg.ddpm_steps / 20,
                weight_decay: 0.0,
                ..Default::default()
            };
            let batch = cfg.ddpm_batch.min(k);
            let _ = train_loop(
                model,
                cfg.ddpm_steps,
                &optim,
                "ddpm",
                100,
                |m, _| {
                    ema.update(m);
                    let idx: Vec<i64> = (0..batch).map(|_| rng.random_range(0..k as i64)).collect();
                    let sel = Tensor::<1, pw_nn::burn::tensor::Int>::from_data(
                        TensorData::new(idx, [batch]),
                        ad,
                    );
                    StepOutput {
                        loss: ddpm_loss(m, &schedule, lat.clone().select(0, sel), rng),
                        items: batch,
                    }
                },
                |_| true,
            );
            ema.apply(Denoiser::new(&cfg.denoiser, plain))
        },
    )?;
    let manifest = GeneratorFile {
        fit: cfg.clone(),
        scaling: scaling.clone(),
        names: ds.names.clone(),
        shapes: ds.shapes.clone(),
        latent_shape,
        dtypes: ds.dtypes.clone(),
    };
    write_json_atomic(dir.join("generator.json"), &manifest)?;
    Ok(ParamGenerator {
        scaling,
        ae,
        denoiser,
        schedule,
        latent_shape,
    })
}

/// What `generator.json` holds: everything but the weights, so [`ParamGenerator::load`] can rebuild
/// the generator without the checkpoints it was fitted on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratorFile {
    pub fit: FitConfig,
    pub scaling: Scaling,
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub latent_shape: [usize; 2],
    /// The inputs' dtypes by tensor (absent in files written before: F32).
    #[serde(default)]
    pub dtypes: std::collections::BTreeMap<String, String>,
}

impl ParamGenerator {
    /// Loads a generator fitted into `dir`; returns it with the tensor layout it generates.
    pub fn load(dir: &Path, device: &Device) -> Result<(ParamGenerator, ParamDataset)> {
        let path = dir.join("generator.json");
        let bytes = std::fs::read(&path).at(&path)?;
        let f: GeneratorFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(&path, format!("not a generator file: {e}")))?;
        f.validate().map_err(|e| Error::invalid(&path, e))?;
        let ae = load_module(
            ConvAutoencoder::new(&f.fit.ae, device),
            &dir.join("ae.safetensors"),
        )?;
        let denoiser = load_module(
            Denoiser::new(&f.fit.denoiser, device),
            &dir.join("ddpm_ema.safetensors"),
        )?;
        let schedule = Schedule::linear(f.fit.timesteps, f.fit.beta_1, f.fit.beta_t);
        let layout = ParamDataset {
            names: f.names,
            shapes: f.shapes,
            rows: Vec::new(),
            dtypes: f.dtypes,
        };
        Ok((
            ParamGenerator {
                scaling: f.scaling,
                ae,
                denoiser,
                schedule,
                latent_shape: f.latent_shape,
            },
            layout,
        ))
    }

    /// `n` new parameter vectors: sample latents, undo their scaling, decode, undo the
    /// per-coordinate standardisation.
    pub fn generate(&self, n: usize, device: &Device) -> Vec<Vec<f32>> {
        let z = ddpm_sample(&self.denoiser, &self.schedule, n, self.latent_shape, device);
        let z = z * self.scaling.latent_std + self.scaling.latent_mean;
        let z = z.clamp(-1.0, 1.0); // the autoencoder's latents are tanh-bounded
        self.decode_rows(z)
    }

    /// Encode-decode of `rows` without noise: the "AE alone" baseline.
    pub fn reconstruct(&self, rows: &[Vec<f32>], device: &Device) -> Vec<Vec<f32>> {
        let unit: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| self.scaling.params_to_unit(r))
            .collect();
        self.decode_rows(self.ae.encode(matrix(&unit, device)))
    }

    fn decode_rows(&self, z: Tensor<3>) -> Vec<Vec<f32>> {
        let x = self.ae.decode(z);
        let p = x.dims()[1];
        let v = x
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 parameters");
        v.chunks(p)
            .map(|r| self.scaling.unit_to_params(r))
            .collect()
    }
}
