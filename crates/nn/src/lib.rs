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
//! Devices: [`device`] gives the CPU (flex, rayon) device, or CUDA with the `cuda` feature.
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

/// Which device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn's flex backend on all CPU cores.
    #[default]
    Cpu,
    /// burn's CUDA backend (build with `--features cuda`).
    Cuda,
}

/// The device for `kind`; `autodiff` enables gradient recording.
pub fn device(kind: DeviceKind, autodiff: bool) -> pw_core::Result<Device> {
    let d = match kind {
        DeviceKind::Cpu => Device::flex(),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Device::cuda(0),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => {
            return Err(pw_core::Error::Other(
                "this build has no CUDA support: rebuild with `--features cuda`".into(),
            ));
        }
    };
    Ok(if autodiff { d.autodiff() } else { d })
}

/// Seeds burn's generator on `device` and returns a seeded `StdRng` for the caller's own
/// sampling (data order, noise), so a run is a function of its seed.
pub fn seed_everything(device: &Device, seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    device.seed(seed);
    rand::rngs::StdRng::seed_from_u64(seed)
}
