//! Training the tiny VLM: next-word prediction on the answer (and its end token) after the
//! image prefix and the question, pw-nn's AdamW loop; the caller sees the model every
//! `eval_every` steps to keep the best on validation.

use crate::config::TrainConfig;
use crate::model::{TinyVlm, VlmConfig, Vocab, patches_tensor};
use pw_nn::burn::tensor::activation::log_softmax;
use pw_nn::burn::tensor::{Int, Tensor, TensorData};
use pw_nn::train::{StepOutput, train_loop};
use rand::Rng;
use rand::rngs::StdRng;

/// One training example: an image (index into the patch rows) and a question with its answer.
#[derive(Debug, Clone)]
pub struct Example {
    pub image: usize,
    pub question: String,
    pub answer: String,
}

/// `question <sep> answer <eos>` and the mask of the answer positions.
pub fn sequence(vocab: &Vocab, e: &Example, max_words: usize) -> (Vec<u32>, Vec<f32>) {
    let mut t = vocab.prompt(&e.question, max_words);
    let q = t.len();
    t.extend(vocab.encode(&e.answer));
    t.push(Vocab::EOS);
    t.truncate(max_words);
    let mask = (0..t.len())
        .map(|i| if i >= q { 1.0 } else { 0.0 })
        .collect();
    (t, mask)
}

#[allow(clippy::too_many_arguments)]
pub fn train_vlm(
    model: TinyVlm,
    cfg: &VlmConfig,
    vocab: &Vocab,
    patches: &[Vec<f32>],
    examples: &[Example],
    tc: &TrainConfig,
    rng: &mut StdRng,
    label: &str,
    eval_every: usize,
    eval: &mut dyn FnMut(&TinyVlm, usize),
) -> (TinyVlm, Vec<(usize, f32)>) {
    let device = model.lm.head.weight.val().device();
    let n = cfg.patches();
    let (model, logs) = train_loop(
        model,
        tc.steps,
        &tc.optim(),
        label,
        25,
        |m, step| {
            if step > 0 && step % eval_every.max(1) == 0 {
                eval(m, step);
            }
            let batch: Vec<&Example> = (0..tc.batch)
                .map(|_| &examples[rng.random_range(0..examples.len())])
                .collect();
            let seqs: Vec<(Vec<u32>, Vec<f32>)> = batch
                .iter()
                .map(|e| sequence(vocab, e, cfg.max_words))
                .collect();
            let t = seqs.iter().map(|s| s.0.len()).max().unwrap_or(1);
            let b = batch.len();
            let mut ids = vec![Vocab::PAD as i64; b * t];
            let mut mask = vec![0f32; b * t];
            for (r, (s, mk)) in seqs.iter().enumerate() {
                for (j, (&id, &w)) in s.iter().zip(mk).enumerate() {
                    ids[r * t + j] = id as i64;
                    mask[r * t + j] = w;
                }
            }
            let rows: Vec<&[f32]> = batch.iter().map(|e| patches[e.image].as_slice()).collect();
            let x = patches_tensor(&rows, cfg, &device);
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
            let logits = m.forward(x, tokens.clone());
            let v = logits.dims()[2];
            // Position n - 1 + j (the last image row, then each token) predicts token j.
            let logp = log_softmax(logits.slice([0..b, n - 1..n - 1 + t, 0..v]), 2);
            let picked = logp.gather(2, tokens.reshape([b, t, 1])).reshape([b, t]);
            let w = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &device);
            let total: f32 = mask.iter().sum::<f32>().max(1.0);
            StepOutput {
                loss: -(picked * w).sum() / total,
                items: b,
            }
        },
        |_| true,
    );
    let curve = logs.iter().map(|l| (l.step, l.loss)).collect();
    (model, curve)
}
