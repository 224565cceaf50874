//! p-diff's 1-D conv parameter autoencoder reconstructs held-out structured vectors.

use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::{Tensor, TensorData};
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use pw_nn::{seed_everything, train_device};
use pw_pdiff::autoencoder::{ConvAeConfig, ConvAutoencoder};
use rand::Rng;

/// Vectors of length `n` that are random mixtures of three smooth profiles.
fn structured_vectors(rng: &mut impl Rng, count: usize, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(count * n);
    for _ in 0..count {
        let c: [f32; 3] = [
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
        ];
        for i in 0..n {
            let x = i as f32 / n as f32;
            out.push(c[0] * (6.0 * x).sin() + c[1] * (2.0 * x - 1.0) + c[2] * (13.0 * x).cos());
        }
    }
    out
}

#[test]
fn conv_autoencoder_reconstructs_held_out_vectors() {
    let dev = train_device(true).unwrap();
    let mut rng = seed_everything(&dev, 3);
    let n = 300;
    let cfg = ConvAeConfig {
        channels: vec![16, 32, 32],
        latent_channels: 4,
        ..ConvAeConfig::paper(n)
    };
    assert_eq!(cfg.padded_len(), 304);
    assert_eq!(cfg.latent_shape(), [4, 38]);
    let train = structured_vectors(&mut rng, 256, n);
    let data = Tensor::<2>::from_data(TensorData::new(train, [256, n]), &dev);
    let model = ConvAutoencoder::new(&cfg, &dev);
    let optim = OptimConfig {
        lr: 2e-3,
        warmup_steps: 20,
        weight_decay: 0.0,
        ..Default::default()
    };
    let (model, logs) = train_loop(
        model,
        300,
        &optim,
        "ae",
        50,
        |m, step| {
            let start = (step * 32) % 256;
            StepOutput {
                loss: m.loss(data.clone().narrow(0, start, 32)),
                items: 32,
            }
        },
        |_| true,
    );
    let model = model.valid();
    let plain = train_device(false).unwrap();
    let test = structured_vectors(&mut rng, 64, n);
    let variance = test.iter().map(|v| v * v).sum::<f32>() / test.len() as f32;
    let x = Tensor::<2>::from_data(TensorData::new(test, [64, n]), &plain);
    let z = model.encode(x.clone());
    assert_eq!(z.dims(), [64, 4, 38]);
    assert!(
        z.clone().abs().max().into_scalar::<f32>() <= 1.0,
        "latent must be tanh-bounded"
    );
    let mse: f32 = (model.decode(z) - x).powi_scalar(2).mean().into_scalar();
    eprintln!(
        "AE held-out MSE {mse:.5} (data variance {variance:.3}), final train loss {:.5}",
        logs.last().unwrap().loss
    );
    assert!(
        mse < 0.05 * variance,
        "reconstruction MSE {mse} is not well below the variance {variance}"
    );
}
