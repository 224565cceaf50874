//! p-diff — Neural Network Diffusion (Wang et al., arXiv 2402.13144).
//!
//! The paper: train a network, keep training a small parameter subset and save K snapshots;
//! fit an autoencoder to the flattened subsets and a DDPM to its latents; sample new latents,
//! decode them into parameters and check that the generated networks perform like the trained
//! ones while differing from them (IoU of their mistakes).
//!
//! Where each step lives:
//! - [`data`]: Fashion-MNIST with a validation split carved from the training set;
//! - [`model`]: the CNN, split into a fixed trunk and a head holding the subset (`ln1`, `ln2`);
//! - [`collect`]: base training, cached features, the K subset snapshots, head evaluation;
//! - [`generate`]: the parameter dataset, the AE + latent DDPM generator (`pw_nn::conv_ae`,
//!   `pw_nn::ddpm`), generation;
//! - [`evaluate`]: accuracy with validation-selected best, IoU-of-mistakes similarity;
//! - [`reproduce`]: the registered reproduction with its baselines, claims and report;
//! - [`realuse`]: `paperworks pdiff fit | generate` on any safetensors checkpoints.

pub mod collect;
pub mod data;
pub mod evaluate;
pub mod generate;
pub mod model;
pub mod realuse;
pub mod reproduce;
