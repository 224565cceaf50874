//! A small causal transformer, trained with the project's training loop, learns to reverse a
//! sequence of digits: `3 1 4 1 5 9 2 6 | 6 2 9 5 1 4 1 3`. Token accuracy on held-out sequences
//! must reach 99%. Also checks that a safetensors checkpoint round-trips exactly.

use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::checkpoint::{load_module, save_module};
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use pw_nn::transformer::{CausalLm, TransformerConfig};
use pw_nn::{seed_everything, train_device};
use rand::Rng;

const L: usize = 8; // digits to reverse
const SEP: i64 = 10;
const SEQ: usize = 2 * L + 1;

/// `n` sequences [digits | SEP | reversed digits] as (inputs, targets) of length SEQ - 1.
fn batch(rng: &mut impl Rng, n: usize, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let mut all = Vec::with_capacity(n * SEQ);
    for _ in 0..n {
        let d: Vec<i64> = (0..L).map(|_| rng.random_range(0..10)).collect();
        all.extend(&d);
        all.push(SEP);
        all.extend(d.iter().rev());
    }
    let t = Tensor::<2, Int>::from_data(TensorData::new(all, [n, SEQ]), device);
    (t.clone().narrow(1, 0, SEQ - 1), t.narrow(1, 1, SEQ - 1))
}

fn cfg() -> TransformerConfig {
    TransformerConfig {
        vocab_size: 11,
        max_len: SEQ,
        d_model: 64,
        n_heads: 4,
        n_layers: 2,
        mlp_ratio: 4,
        causal: true,
    }
}

/// Accuracy on the reversed half only (positions whose target is an output digit).
fn reversal_accuracy(model: &CausalLm, inputs: Tensor<2, Int>, targets: Tensor<2, Int>) -> f64 {
    let [n, t] = targets.dims();
    let logits = model.forward(inputs);
    let pred = logits.argmax(2).reshape([n, t]);
    let out = L..t; // targets from index L on are the reversed digits
    let p = pred.narrow(1, out.start, out.len());
    let g = targets.narrow(1, out.start, out.len());
    let correct: i64 = p.equal(g).int().sum().into_scalar();
    correct as f64 / (n * out.len()) as f64
}

#[test]
fn causal_transformer_learns_sequence_reversal() {
    let dev = train_device(true).unwrap();
    let mut rng = seed_everything(&dev, 7);
    let model = CausalLm::new(&cfg(), &dev);
    let optim = OptimConfig {
        lr: 3e-3,
        warmup_steps: 50,
        min_lr_ratio: 0.05,
        weight_decay: 0.0,
        grad_clip: Some(1.0),
        ..Default::default()
    };
    let ce = pw_nn::burn::nn::loss::CrossEntropyLossConfig::new().init(&dev);
    let steps = 800;
    let (model, logs) = train_loop(
        model,
        steps,
        &optim,
        "reversal",
        50,
        |m, _| {
            let (x, y) = batch(&mut rng, 64, &dev);
            let [b, t] = x.dims();
            let logits = m.forward(x).reshape([b * t, 11]);
            StepOutput {
                loss: ce.forward(logits, y.reshape([b * t])),
                items: b * t,
            }
        },
        |_| true,
    );
    assert!(logs.last().unwrap().loss < logs[0].loss);

    let eval_dev = train_device(false).unwrap();
    let model = pw_nn::burn::module::Module::valid(&model);
    let (x, y) = batch(&mut rng, 512, &eval_dev);
    let acc = reversal_accuracy(&model, x.clone(), y.clone());
    eprintln!(
        "reversal token accuracy {acc:.4} after {steps} steps, final loss {:.4}",
        logs.last().unwrap().loss
    );
    assert!(acc >= 0.99, "token accuracy {acc:.4} < 0.99");

    // The checkpoint round-trips: a fresh model loaded from it predicts identically.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rev.safetensors");
    save_module(&model, &path).unwrap();
    let fresh = CausalLm::new(&cfg(), &eval_dev);
    let loaded = load_module(fresh, &path).unwrap();
    let a = model
        .forward(x.clone())
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    let b = loaded
        .forward(x)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn loading_a_checkpoint_of_another_shape_names_the_tensor() {
    let dev = train_device(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.safetensors");
    save_module(&CausalLm::new(&cfg(), &dev), &path).unwrap();
    let bigger = TransformerConfig {
        d_model: 32,
        ..cfg()
    };
    let err = load_module(CausalLm::new(&bigger, &dev), &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("small.safetensors") && err.contains("shape"),
        "{err}"
    );
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let err = load_module(CausalLm::new(&cfg(), &dev), &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid safetensors"), "{err}");
}
