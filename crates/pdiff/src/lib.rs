//! p-diff — Neural Network Diffusion (Wang et al., arXiv 2402.13144).
//!
//! The paper: train a network, keep training a small parameter subset and save K snapshots;
//! fit an autoencoder to the flattened subsets and a DDPM to its latents; sample new latents,
//! decode them into parameters and check that the generated networks perform like the trained
//! ones while differing from them (IoU of their mistakes).
//!
//! Where each step lives (the file roles every paper crate shares):
//! - [`config`]: the miniature's configuration and its quick / full sizes;
//! - [`data`]: Fashion-MNIST with a validation split carved from the training set;
//! - [`model`]: the CNN, split into a fixed trunk and a head holding the subset (`ln1`, `ln2`);
//!   [`autoencoder`]: the paper's 1-D conv parameter autoencoder (noise-augmented);
//! - [`train`]: base training, cached features, the K subset snapshots, head evaluation;
//! - [`diffusion`]: the parameter dataset, the AE + latent DDPM parameter generator
//!   ([`diffusion::ParamGenerator`], with `pw_nn::ddpm`), generation;
//! - [`evaluate`]: accuracy with validation-selected best, IoU-of-mistakes similarity;
//! - [`report`]: claims, tables, plots; [`reproduce`]: the registered reproduction's
//!   orchestration; [`run`]: `paperworks pdiff fit | generate` on any safetensors checkpoints.

pub mod autoencoder;
pub mod config;
pub mod data;
pub mod diffusion;
pub mod evaluate;
pub mod model;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod train;
