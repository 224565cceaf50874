//! Training one level of the captioner: next-word cross-entropy on the caption after the
//! prefix (video mapper + text mapper), AdamW through pw-nn's loop. A level starts from a
//! fresh model or from the level below's weights (the curriculum); validation CIDEr-D is
//! measured `evals` times and the best step is kept.

use crate::config::TrainConfig;
use crate::metrics;
use crate::model::{Batch, Captioner, Decoding, Input, ModelConfig, ReCap};
use pw_core::Result;
use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::activation::log_softmax;
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::checkpoint::load_or_train;
use pw_nn::tokenizer::WordVocab;
use pw_nn::train::{StepOutput, train_loop};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// One training pair of a level.
#[derive(Debug, Clone)]
pub struct Example {
    pub input: Input,
    pub target: String,
}

/// `<sep> caption <eos>`, cut to the model's caption length.
pub fn target_ids(vocab: &WordVocab, caption: &str, max_words: usize) -> Vec<u32> {
    let mut t = vec![WordVocab::SEP];
    t.extend(vocab.encode(caption).into_iter().take(max_words));
    t.push(WordVocab::EOS);
    t
}

/// What a training run measured.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TrainLog {
    pub loss: Vec<(usize, f32)>,
    /// (step, validation CIDEr-D x100)
    pub validation: Vec<(usize, f64)>,
    pub best_step: usize,
    pub best_cider: f64,
}

/// Trains (or loads from `path`) one level. `init` is the curriculum's starting point (on the
/// plain device); `val` the validation inputs and references that choose the step.
#[allow(clippy::too_many_arguments)]
pub fn train_level(
    label: &str,
    cfg: &ModelConfig,
    d_feat: usize,
    vocab: &WordVocab,
    examples: &[Example],
    val: (&[Input], &[String]),
    init: Option<&ReCap>,
    tc: &TrainConfig,
    evals: usize,
    path: &Path,
    (ad, plain): (&Device, &Device),
    seed: u64,
) -> Result<(ReCap, TrainLog)> {
    let log_path = path.with_extension("log.json");
    let mut log = TrainLog::default();
    let model = load_or_train(
        path,
        || ReCap::new(cfg, d_feat, vocab.len(), plain),
        || {
            ad.seed(seed);
            let start = match init {
                Some(m) => m.clone().fork(ad).train(),
                None => ReCap::new(cfg, d_feat, vocab.len(), ad),
            };
            let mut rng = StdRng::seed_from_u64(seed);
            let every = (tc.steps / evals.max(1)).max(1);
            let mut best: Option<(f64, usize, ReCap)> = None;
            let mut curve = Vec::new();
            let mut eval = |m: &ReCap, step: usize| -> Result<()> {
                let frozen = m.valid();
                let c = Captioner::new(frozen.clone(), *cfg, vocab.clone())?;
                let preds = c.caption(val.0, Decoding::Greedy)?;
                let cider = metrics::score(&preds, val.1).cider;
                curve.push((step, cider));
                if best.as_ref().is_none_or(|(b, _, _)| cider > *b) {
                    best = Some((cider, step, frozen));
                }
                Ok(())
            };
            let mut failed = None;
            let p = cfg.prefix_len();
            let (m, logs) = train_loop(
                start,
                tc.steps,
                &tc.optim(),
                label,
                25,
                |m, step| {
                    if step > 0 && step % every == 0 && failed.is_none() {
                        failed = eval(m, step).err();
                    }
                    let batch: Vec<&Example> = (0..tc.batch)
                        .map(|_| &examples[rng.random_range(0..examples.len())])
                        .collect();
                    let inputs: Vec<&Input> = batch.iter().map(|e| &e.input).collect();
                    let b = Batch::new(&inputs, vocab, cfg, d_feat);
                    let seqs: Vec<Vec<u32>> = batch
                        .iter()
                        .map(|e| target_ids(vocab, &e.target, cfg.max_words))
                        .collect();
                    let t = seqs.iter().map(Vec::len).max().unwrap_or(2);
                    let n = batch.len();
                    let mut ids = vec![WordVocab::PAD as i64; n * t];
                    let mut mask = vec![0f32; n * (t - 1)];
                    for (r, s) in seqs.iter().enumerate() {
                        for (j, &id) in s.iter().enumerate() {
                            ids[r * t + j] = id as i64;
                            if j > 0 {
                                mask[r * (t - 1) + j - 1] = 1.0;
                            }
                        }
                    }
                    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, t]), ad);
                    let prefix = m.prefix(&b);
                    let logits = m.lm.forward_with_prefix(prefix, tokens.clone());
                    let v = logits.dims()[2];
                    // Position p + j (the j-th token) predicts token j + 1.
                    let logp = log_softmax(logits.slice([0..n, p..p + t - 1, 0..v]), 2);
                    let next = tokens.slice([0..n, 1..t]).reshape([n, t - 1, 1]);
                    let picked = logp.gather(2, next).reshape([n, t - 1]);
                    let total: f32 = mask.iter().sum::<f32>().max(1.0);
                    let w = Tensor::<2>::from_data(TensorData::new(mask, [n, t - 1]), ad);
                    StepOutput {
                        loss: -(picked * w).sum() / total,
                        items: n,
                    }
                },
                |_| true,
            );
            if let Some(e) = failed {
                return Err(e);
            }
            eval(&m, tc.steps)?;
            let (cider, step, frozen) = best.expect("evaluated at least once");
            tracing::info!("{label}: validation picked step {step} (CIDEr {cider:.1})");
            log.loss = logs.iter().map(|l| (l.step, l.loss)).collect();
            log.validation = curve;
            log.best_step = step;
            log.best_cider = cider;
            pw_core::write_json_atomic(&log_path, &log)?;
            Ok(frozen)
        },
    )?;
    if log.validation.is_empty() && log_path.exists() {
        let bytes = std::fs::read(&log_path).map_err(|e| pw_core::Error::io(&log_path, e))?;
        log = serde_json::from_slice(&bytes)
            .map_err(|e| pw_core::Error::invalid(&log_path, format!("bad training log: {e}")))?;
    }
    Ok((model, log))
}
