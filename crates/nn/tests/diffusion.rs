//! The latent DDPM (per-sample timestep embedding, EMA) learns a two-mode distribution.

use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::{Tensor, TensorData};
use pw_nn::ddpm::{Denoiser, DenoiserConfig, Ema, Schedule, ddpm_loss, ddpm_sample};
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use pw_nn::{seed_everything, train_device};
use rand::Rng;

#[test]
fn denoiser_embeds_each_samples_own_timestep() {
    let dev = train_device(false).unwrap();
    seed_everything(&dev, 1);
    let model = Denoiser::new(
        &DenoiserConfig {
            channels: 2,
            hidden: 16,
            blocks: 2,
            kernel: 3,
        },
        &dev,
    );
    let x = Tensor::<3>::random(
        [3, 2, 8],
        pw_nn::burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev,
    );
    let t = [5usize, 500, 999];
    let batched = model
        .forward(x.clone(), &t)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    for (i, &ti) in t.iter().enumerate() {
        let single = model
            .forward(x.clone().narrow(0, i, 1), &[ti])
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let part = &batched[i * 16..(i + 1) * 16];
        let d = part
            .iter()
            .zip(&single)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            d < 1e-5,
            "sample {i} (t = {ti}) differs from its own forward by {d}"
        );
    }
}

#[test]
fn ddpm_learns_a_two_mode_distribution() {
    let dev = train_device(true).unwrap();
    let mut rng = seed_everything(&dev, 11);
    let schedule = Schedule::linear(1000, 1e-4, 2e-2);
    assert!(
        (schedule.alpha_bar[999] - 4.0e-5).abs() < 2e-5,
        "alpha_bar_T = {}",
        schedule.alpha_bar[999]
    );
    let cfg = DenoiserConfig {
        channels: 1,
        hidden: 32,
        blocks: 3,
        kernel: 3,
    };
    let model = Denoiser::new(&cfg, &dev);
    let mut ema = Ema::new(&model, 0.99);
    let optim = OptimConfig {
        lr: 2e-3,
        warmup_steps: 50,
        weight_decay: 0.0,
        ..Default::default()
    };
    let (model, _) = train_loop(
        model,
        1500,
        &optim,
        "ddpm",
        100,
        |m, _| {
            // The closure sees the weights after the previous optimiser step.
            ema.update(m);
            let b = 64;
            let mut v = Vec::with_capacity(b * 8);
            for _ in 0..b {
                let s = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                v.extend((0..8).map(|_| s + rng.random_range(-0.05..0.05)));
            }
            let x0 = Tensor::<3>::from_data(TensorData::new(v, [b, 1, 8]), &dev);
            StepOutput {
                loss: ddpm_loss(m, &schedule, x0, &mut rng),
                items: b,
            }
        },
        |_| true,
    );
    ema.update(&model);
    let plain = train_device(false).unwrap();
    let sampler = ema.apply(Denoiser::new(&cfg, &plain)).unwrap();
    let _ = model.valid();
    let samples = ddpm_sample(&sampler, &schedule, 64, [1, 8], &plain)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    let (mut pos, mut neg, mut good) = (0, 0, 0);
    for s in samples.chunks(8) {
        let mean = s.iter().sum::<f32>() / 8.0;
        let consistent = s.iter().all(|v| v.signum() == mean.signum());
        if consistent && (0.7..1.3).contains(&mean.abs()) {
            good += 1;
            if mean > 0.0 { pos += 1 } else { neg += 1 }
        }
    }
    eprintln!("DDPM samples: {good}/64 on a mode ({pos} at +1, {neg} at -1)");
    assert!(good >= 52, "only {good}/64 samples landed on a mode");
    assert!(pos >= 10 && neg >= 10, "a mode was dropped: {pos} / {neg}");
}
