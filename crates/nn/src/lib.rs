//! pw-nn: the burn (0.22.1) building blocks the paper crates share.
//!
//! - [`transformer`]: pre-norm causal decoder / bidirectional encoder blocks, the trunk and a
//!   causal LM;
//! - [`heads`]: classifier and scalar value heads;
//! - [`bytelm`]: a byte-level causal LM: window training on a packed corpus and the bits per
//!   byte of a text given a prompt;
//! - [`tokenizer`]: a serialisable character-level tokenizer with special tokens;
//! - [`schedule`]: AdamW with warmup + cosine decay;
//! - [`train`]: the training loop helper (progress bar, per-step metrics);
//! - [`checkpoint`]: safetensors save/load by module path, atomic;
//! - [`decode`]: the KV-cached CPU decoder of a [`transformer::CausalLm`]: greedy, temperature,
//!   top-p and beam search, with an optional prefix of continuous embeddings;
//! - [`fused`]: fused CPU kernels (GELU, SiLU, LeakyReLU, layer and group norm, causal and
//!   softcapped attention, im2col + gemm 1-D convolutions) with their own autodiff nodes, and
//!   [`alloc`]: allocator settings for tensor workloads;
//! - [`ddpm`]: a DDPM over latent vectors (linear schedule, per-sample timestep embedding,
//!   EMA), p-diff's generator.
//!
//! - [`vivit`]: VideoPrism's video encoder: factorized ViViT, MAP pooler, text encoder, with
//!   the layer details of the released weights.
//!
//! Devices: [`train_device`] gives the process's device: the CPU (flex, rayon) by default, or
//! burn's LibTorch backend on CUDA / the CPU with the `torch` feature ([`DeviceKind`]).
//! [`seed_everything`] makes initialisation and sampling deterministic.

pub mod alloc;
pub mod bytelm;
pub mod checkpoint;
pub mod ddpm;
pub mod decode;
pub mod fused;
pub mod heads;
pub mod schedule;
pub mod tokenizer;
pub mod train;
pub mod transformer;
pub mod vivit;

pub use burn;
use burn::tensor::Device;

/// Which device a command runs on: `cpu` (burn's flex backend on all cores, the default),
/// `cuda[:N]` (burn's LibTorch backend on GPU N) or `torch-cpu` (the LibTorch backend on the CPU:
/// the GPU build's code path on a machine without a GPU). The last two need a build with the
/// `torch` feature (`make build-gpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// burn's flex backend on all CPU cores, with the fused CPU kernels.
    #[default]
    Cpu,
    /// burn's LibTorch backend on the CPU.
    TorchCpu,
    /// burn's LibTorch backend on CUDA device N.
    Cuda(usize),
}

impl DeviceKind {
    /// The names `--device` accepts, for help texts and errors.
    pub const CHOICES: &'static str = "cpu, cuda, cuda:N, torch-cpu";
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Cpu => f.write_str("cpu"),
            DeviceKind::TorchCpu => f.write_str("torch-cpu"),
            DeviceKind::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown device {s:?} (expected one of: {})", Self::CHOICES);
        match s.trim() {
            "cpu" => Ok(DeviceKind::Cpu),
            "torch-cpu" => Ok(DeviceKind::TorchCpu),
            "cuda" => Ok(DeviceKind::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceKind::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl serde::Serialize for DeviceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The device for `kind`; `autodiff` enables gradient recording. A device this build or
/// machine lacks is an error naming what to do, never a panic inside the backend.
// burn 0.22 marks its LibTorch devices deprecated (in favour of CubeCL backends, whose CUDA
// runtime does not build from the registries); they are the GPU path here.
#[allow(deprecated)]
pub fn device(kind: DeviceKind, autodiff: bool) -> pw_core::Result<Device> {
    let d = match kind {
        DeviceKind::Cpu => Device::flex(),
        #[cfg(feature = "torch")]
        DeviceKind::TorchCpu => Device::libtorch(),
        #[cfg(feature = "torch")]
        DeviceKind::Cuda(n) => {
            let found = torch_cuda_devices();
            if n >= found {
                return Err(pw_core::Error::Other(format!(
                    "--device cuda:{n}: libtorch sees {found} CUDA device(s) (no driver, no GPU, \
                     or CUDA_VISIBLE_DEVICES hides it)"
                )));
            }
            Device::libtorch_cuda(n)
        }
        #[cfg(not(feature = "torch"))]
        DeviceKind::TorchCpu | DeviceKind::Cuda(_) => {
            return Err(pw_core::Error::Other(format!(
                "--device {kind}: this build has no LibTorch backend; build it with \
                 `scripts/setup.sh --gpu && make build-gpu` (target/gpu/release/paperworks)"
            )));
        }
    };
    Ok(if autodiff { d.autodiff() } else { d })
}

/// How many CUDA devices libtorch can use (0 without a driver or GPU).
#[cfg(feature = "torch")]
#[allow(deprecated)]
pub fn torch_cuda_devices() -> usize {
    use burn::backend::{Backend, LibTorch};
    LibTorch::device_count(0)
}

/// Caps libtorch's intra-op threads (the `torch` build; nothing otherwise), so that `--threads`
/// bounds the LibTorch backend as it bounds rayon.
pub fn set_torch_threads(n: usize) {
    #[cfg(feature = "torch")]
    tch::set_num_threads(n.min(i32::MAX as usize) as i32);
    #[cfg(not(feature = "torch"))]
    let _ = n;
}

static SELECTED: std::sync::OnceLock<DeviceKind> = std::sync::OnceLock::new();

/// Makes `kind` the process's training device ([`train_device`]); the CLI calls it once from
/// `--device` or the config's `device`. It checks that the device can be made, so a bad choice
/// fails before any work starts. A second call with another device is an error.
pub fn select_device(kind: DeviceKind) -> pw_core::Result<()> {
    device(kind, false)?;
    let chosen = *SELECTED.get_or_init(|| kind);
    if chosen != kind {
        return Err(pw_core::Error::Other(format!(
            "the device is already {chosen}; cannot switch to {kind} in one process"
        )));
    }
    Ok(())
}

/// The process's training device: the one [`select_device`] chose, else the environment's
/// `PW_DEVICE` (how `make test-gpu` runs the same tests on another backend), else `cpu`.
pub fn selected_device() -> pw_core::Result<DeviceKind> {
    if let Some(k) = SELECTED.get() {
        return Ok(*k);
    }
    match std::env::var("PW_DEVICE") {
        Ok(s) if !s.trim().is_empty() => s
            .parse()
            .map_err(|e: String| pw_core::Error::Other(format!("PW_DEVICE: {e}"))),
        _ => Ok(DeviceKind::Cpu),
    }
}

/// `name`, with " on DEVICE" appended when the selected device is not the default `cpu`: bench
/// figures of another backend (`make bench-gpu`) sit beside the default one's in one table.
pub fn on_selected_device(name: &str) -> String {
    match selected_device() {
        Ok(DeviceKind::Cpu) => name.to_string(),
        Ok(other) => format!("{name} on {other}"),
        Err(_) => format!("{name} on an unknown device"),
    }
}

/// The device the paper crates train and run their burn models on: [`selected_device`], with
/// gradient recording when `autodiff`.
pub fn train_device(autodiff: bool) -> pw_core::Result<Device> {
    device(selected_device()?, autodiff)
}

/// Seeds burn's generator on `device` and returns a seeded `StdRng` for the caller's own
/// sampling (data order, noise), so a run is a function of its seed.
pub fn seed_everything(device: &Device, seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    device.seed(seed);
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Draws every parameter of `module` now. burn initialises a parameter lazily, on its first
/// use, from the backend's one process-wide generator: a model built right after a seed but
/// first used while other threads draw from that generator would start from weights that
/// depend on their timing. Call it while holding whatever serialises the seeding.
pub fn materialize<M: burn::module::Module>(module: &M) {
    use burn::module::{ModuleVisitor, Param};
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<burn::tensor::Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_print_and_round_trip_through_config() {
        for (name, kind, shown) in [
            ("cpu", DeviceKind::Cpu, "cpu"),
            ("torch-cpu", DeviceKind::TorchCpu, "torch-cpu"),
            ("cuda", DeviceKind::Cuda(0), "cuda:0"),
            (" cuda:3 ", DeviceKind::Cuda(3), "cuda:3"),
        ] {
            assert_eq!(name.parse::<DeviceKind>(), Ok(kind));
            assert_eq!(kind.to_string(), shown);
        }
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", ""] {
            let e = bad.parse::<DeviceKind>().unwrap_err();
            assert!(
                e.contains("expected one of: cpu, cuda, cuda:N, torch-cpu"),
                "{e}"
            );
        }
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct C {
            device: DeviceKind,
        }
        let c: C = serde_json::from_str(r#"{"device": "cuda:1"}"#).unwrap();
        assert_eq!(c.device, DeviceKind::Cuda(1));
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"device":"cuda:1"}"#);
        let e = serde_json::from_str::<C>(r#"{"device": "tpu"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown device \"tpu\""), "{e}");
    }

    #[test]
    fn the_default_device_is_the_flex_cpu_and_libtorch_needs_the_torch_build() {
        assert!(device(DeviceKind::Cpu, true).is_ok());
        #[cfg(not(feature = "torch"))]
        for kind in [DeviceKind::TorchCpu, DeviceKind::Cuda(0)] {
            let e = device(kind, false).unwrap_err().to_string();
            assert!(
                e.contains("no LibTorch backend") && e.contains("make build-gpu"),
                "{e}"
            );
        }
    }
}
