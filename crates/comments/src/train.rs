//! Training of the miniature's code models: next-byte prediction on random windows of the
//! packed corpus (each text framed by BOS ... EOS), pw-nn's AdamW loop.

use crate::config::TrainConfig;
use crate::model::{BOS, EOS, encode};
use pw_nn::burn::tensor::activation::log_softmax;
use pw_nn::burn::tensor::{Int, Tensor, TensorData};
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use pw_nn::transformer::CausalLm;
use rand::Rng;
use rand::rngs::StdRng;

/// The texts packed into one token stream.
pub fn pack(texts: &[String]) -> Vec<u32> {
    let mut s = Vec::with_capacity(texts.iter().map(|t| t.len() + 2).sum());
    for t in texts {
        s.push(BOS);
        s.extend(encode(t));
        s.push(EOS);
    }
    s
}

fn optim(cfg: &TrainConfig) -> OptimConfig {
    OptimConfig {
        lr: cfg.lr,
        warmup_steps: cfg.warmup.min(cfg.steps / 2),
        min_lr_ratio: 0.1,
        weight_decay: 0.01,
        grad_clip: Some(1.0),
        ..Default::default()
    }
}

/// Trains on random windows of `stream`; every `eval_every` steps (and after the last)
/// `eval(model, step)` sees the model, e.g. to keep the best on validation. Returns the
/// model and the loss curve.
pub fn train_windows(
    model: CausalLm,
    stream: &[u32],
    cfg: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
    eval_every: Option<usize>,
    eval: &mut dyn FnMut(&CausalLm, usize),
) -> (CausalLm, Vec<(usize, f32)>) {
    let max_len = model.trunk.max_len;
    let device = model.head.weight.val().device();
    let win = max_len.min(stream.len().saturating_sub(1)).max(2);
    let (model, logs) = train_loop(
        model,
        cfg.steps,
        &optim(cfg),
        label,
        25,
        |m, step| {
            if let Some(e) = eval_every
                && step > 0
                && step % e == 0
            {
                eval(m, step);
            }
            let mut x = Vec::with_capacity(cfg.batch * win);
            let mut y = Vec::with_capacity(cfg.batch * win);
            for _ in 0..cfg.batch {
                let start = rng.random_range(0..stream.len() - win);
                x.extend(stream[start..start + win].iter().map(|&t| t as i64));
                y.extend(stream[start + 1..start + win + 1].iter().map(|&t| t as i64));
            }
            let x = Tensor::<2, Int>::from_data(TensorData::new(x, [cfg.batch, win]), &device);
            let y = Tensor::<2, Int>::from_data(TensorData::new(y, [cfg.batch, win]), &device);
            let logp = log_softmax(m.forward(x), 2);
            let picked = logp.gather(2, y.reshape([cfg.batch, win, 1]));
            StepOutput {
                loss: -picked.mean(),
                items: cfg.batch * win,
            }
        },
        |_| true,
    );
    if eval_every.is_some() {
        eval(&model, cfg.steps);
    }
    (model, logs.iter().map(|l| (l.step, l.loss)).collect())
}
