//! A plain training loop: forward, backward, AdamW step with the warmup-cosine schedule, a
//! progress bar and per-step metrics. The model-specific part is one closure that returns the
//! loss of a step; everything else is the same for every model in the project.

use crate::schedule::OptimConfig;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    /// Items (tokens, samples) this step processed, as reported by the closure.
    pub items: usize,
    pub elapsed_s: f64,
}

/// What a step closure returns: the scalar loss and how many items it covered.
pub struct StepOutput {
    pub loss: Tensor<1>,
    pub items: usize,
}

/// Trains `model` for `steps` steps. `step_fn(&model, step)` builds the batch and returns the
/// loss (on an autodiff device). Loss is read back every `log_every` steps (reading syncs the
/// device, so it is not done every step); `on_log` sees each log entry, e.g. to stop early by
/// returning false.
pub fn train_loop<M: Module>(
    mut model: M,
    steps: usize,
    optim: &OptimConfig,
    label: &str,
    log_every: usize,
    mut step_fn: impl FnMut(&M, usize) -> StepOutput,
    mut on_log: impl FnMut(&StepLog) -> bool,
) -> (M, Vec<StepLog>) {
    let mut opt = optim.adamw();
    let bar = pw_core::progress::bar(steps as u64, label);
    let t0 = Instant::now();
    let mut logs = Vec::new();
    let mut items = 0usize;
    for step in 0..steps {
        let out = step_fn(&model, step);
        items += out.items;
        let lr = optim.lr_at(step, steps);
        let log_now = step % log_every.max(1) == 0 || step + 1 == steps;
        let loss_value = log_now.then(|| out.loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = opt.step(lr, model, grads);
        bar.inc(1);
        if let Some(loss) = loss_value {
            let entry = StepLog {
                step,
                loss,
                lr,
                items,
                elapsed_s: t0.elapsed().as_secs_f64(),
            };
            bar.set_message(format!("loss {loss:.4}"));
            tracing::debug!(step, loss, lr, "{label}");
            items = 0;
            let go_on = on_log(&entry);
            logs.push(entry);
            if !go_on {
                break;
            }
        }
    }
    bar.finish_and_clear();
    (model, logs)
}
