//! VideoPrism — a foundational video encoder (Zhao et al., arXiv 2402.13217).
//!
//! The paper: a factorized ViViT trained in two stages. Stage 1 aligns video and text with a
//! symmetric contrastive loss (video tokens pooled by a MAP pooler, text at a class token).
//! Stage 2 keeps the video side only: a student, initialised from stage 1, sees a clip with
//! 65% of its tubes masked and learns to predict the frozen stage-1 teacher's every token
//! (token-wise distillation, with the decoder's input shuffled before its position
//! embeddings) and the teacher's global embedding (global distillation). The frozen encoder
//! then serves appearance and motion tasks through small attention-pooler probes.
//!
//! Where each step lives (the file roles every paper crate shares):
//! - [`config`]: the miniature's sizes; [`data`]: synthetic captioned clips
//!   ([`pw_data::synthvideo`]) split into pairs / video-only / probe sets, tube masking, users'
//!   JSONL records;
//! - [`model`]: the stage-1 video-text model, the stage-2 distillation model and the probe,
//!   built from [`pw_nn::vivit`] (factorized encoder, MAP pooler, text encoder);
//! - [`train`]: stage 1 (InfoNCE) and stage 2 (token-wise + global distillation, shuffling);
//! - [`evaluate`]: frozen features, attention-pooler probes, zero-shot retrieval;
//! - [`npz`]: the released `.npz` checkpoints loaded into our encoder;
//! - [`report`]: claims and tables; [`reproduce`]: the ablation ladder of the paper;
//!   [`run`]: `paperworks videoprism embed | train | probe` on real videos.

pub mod config;
pub mod data;
pub mod evaluate;
pub mod model;
pub mod npz;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod train;
