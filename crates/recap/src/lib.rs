//! Video ReCap (Islam et al., CVPR 2024, arXiv 2402.13250): captions of long videos at three
//! levels — a clip caption every 4 s, a segment description every few minutes, a summary of
//! the whole video — by ONE recursive captioner: level l reads sparse video features and the
//! captions it PREDICTED at level l-1. It is trained by a curriculum (clip, then segment from
//! the clip weights on predicted clip captions, then video from the segment weights on
//! predicted descriptions), and LLM pseudo-labels add segment and summary targets for videos
//! that only have clip captions.
//!
//! Where each step lives:
//! - [`data`]: the synthetic long videos (atomic action -> activity -> story with a goal) and
//!   Ego4D-HCap's records; [`features`]: the frozen VideoPrism features and feature files;
//! - [`model`]: video mapper, text mapper, caption decoder ([`model::ReCap`]) and the
//!   [`model::Captioner`] (greedy / beam through pw-nn's decoder);
//! - [`train`]: one level's training, its step chosen on validation CIDEr-D;
//! - [`evaluate`]: each level's inputs, the recursive inference without boundaries, scoring;
//! - [`metrics`]: CIDEr-D, ROUGE-L, BLEU-4 as pycocoevalcap computes them;
//! - [`pseudo`]: LLM pseudo-labels through any Generator;
//! - [`caption`]: zero-shot recursive captioning of a real video over endpoints (JSON + WebVTT);
//! - [`config`], [`report`], [`reproduce`] (the miniature; orchestration only), [`run`] (the
//!   CLI's `train` / `eval` entry points).

pub mod caption;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod features;
pub mod metrics;
pub mod model;
pub mod pseudo;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod train;
