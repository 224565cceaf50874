//! `make bench` for p-diff: autoencoder and denoiser training throughput (samples/s) at the
//! quick reproduction's sizes, and generation throughput (models/s: DDPM sampling, decoding and
//! evaluating each generated model's head on 15,000 cached feature rows).

use criterion::Criterion;
use pw_core::ReproConfig;
use pw_nn::burn::module::Module;
use pw_nn::burn::tensor::{Distribution, Tensor};
use pw_nn::ddpm::{Denoiser, DenoiserConfig, Schedule, ddpm_loss};
use pw_nn::schedule::OptimConfig;
use pw_nn::{seed_everything, train_device};
use pw_pdiff::autoencoder::{ConvAeConfig, ConvAutoencoder};
use pw_pdiff::config::PdiffConfig;
use pw_pdiff::diffusion::{ParamDataset, ParamGenerator, Scaling};
use pw_pdiff::model::{Cnn, H1, SUBSET};
use pw_pdiff::train::{evaluate_head, with_subset};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seconds per iteration of each benchmark, from criterion's own samples.
static SAMPLES: pw_core::samples::Samples = pw_core::samples::Samples::new();

const DIM: usize = 1536;
const BATCH: usize = 50;

fn main() {
    pw_nn::alloc::tune_mimalloc_for_tensors();
    let mut c = Criterion::default().configure_from_args();
    let quick = PdiffConfig::for_size(pw_core::Size::Quick);
    let (ad, plain) = (train_device(true).unwrap(), train_device(false).unwrap());
    let mut rng = seed_everything(&ad, 0);
    let ae_cfg = ConvAeConfig {
        channels: quick.ae_channels.clone(),
        ..ConvAeConfig::paper(DIM)
    };
    let den_cfg = DenoiserConfig {
        channels: ae_cfg.latent_channels,
        hidden: quick.denoiser_hidden,
        ..Default::default()
    };
    let mut g = c.benchmark_group("pdiff");
    g.sample_size(10).measurement_time(Duration::from_secs(8));

    let x = Tensor::<2>::random([BATCH, DIM], Distribution::Normal(0.0, 1.0), &ad);
    let mut ae = Some(ConvAutoencoder::new(&ae_cfg, &ad));
    let mut opt = OptimConfig::default().adamw();
    g.bench_function("ae_train_step", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let m = ae.take().unwrap();
                let grads = pw_nn::burn::optim::GradientsParams::from_grads(
                    m.loss(x.clone()).backward(),
                    &m,
                );
                ae = Some(opt.step(1e-4, m, grads));
            }
            // A GPU device runs the steps asynchronously: wait for the last one.
            ad.sync().expect("device sync");
            SAMPLES.record("ae", iters, t.elapsed())
        })
    });

    let shape = ae_cfg.latent_shape();
    let z = Tensor::<3>::random(
        [BATCH, shape[0], shape[1]],
        Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let schedule = Schedule::linear(1000, 1e-4, 2e-2);
    let mut den = Some(Denoiser::new(&den_cfg, &ad));
    let mut opt = OptimConfig::default().adamw();
    g.bench_function("denoiser_train_step", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let m = den.take().unwrap();
                let grads = pw_nn::burn::optim::GradientsParams::from_grads(
                    ddpm_loss(&m, &schedule, z.clone(), &mut rng).backward(),
                    &m,
                );
                den = Some(opt.step(1e-4, m, grads));
            }
            ad.sync().expect("device sync");
            SAMPLES.record("denoiser", iters, t.elapsed())
        })
    });

    // Generation of 10 models with untrained weights (cost does not depend on the weights).
    let generator = ParamGenerator {
        scaling: Scaling {
            mean: vec![0.0; DIM],
            std: vec![1.0; DIM],
            latent_mean: 0.0,
            latent_std: 1.0,
        },
        ae: ConvAutoencoder::new(&ae_cfg, &plain),
        denoiser: Denoiser::new(&den_cfg, &plain),
        schedule: schedule.clone(),
        latent_shape: shape,
    };
    let base = Cnn::new(&plain);
    let layout = ParamDataset {
        names: SUBSET.iter().map(|s| s.to_string()).collect(),
        shapes: vec![vec![H1], vec![H1], vec![256], vec![256]],
        rows: Vec::new(),
        dtypes: Default::default(),
    };
    let feats: Vec<f32> = (0..15_000 * H1)
        .map(|i| ((i % 97) as f32 - 48.0) * 0.02)
        .collect();
    let labels: Vec<u8> = (0..15_000).map(|i| (i % 10) as u8).collect();
    let n = 10;
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("generate_and_evaluate_10_models", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                for row in generator.generate(n, &plain) {
                    let m = with_subset(
                        &base,
                        &layout.to_named(&row),
                        std::path::Path::new("<bench>"),
                    )
                    .unwrap();
                    std::hint::black_box(evaluate_head(&m, &feats, &labels, &plain));
                }
            }
            plain.sync().expect("device sync");
            SAMPLES.record("generate", iters, t.elapsed())
        })
    });
    g.finish();
    let _ = base.num_params();
    c.final_summary();

    let (Some(a), Some(d), Some(generation)) = (
        SAMPLES.median("ae"),
        SAMPLES.median("denoiser"),
        SAMPLES.median("generate"),
    ) else {
        println!("(summary table needs all three benchmarks; run `make bench` without a filter)");
        return;
    };
    println!();
    println!("| p-diff benchmark                                      | result                |");
    println!("|-------------------------------------------------------|-----------------------|");
    println!(
        "| autoencoder training ({:?}, {DIM} values)   | {:>10.0} samples/s   |",
        ae_cfg.channels,
        BATCH as f64 / a
    );
    println!(
        "| denoiser training (hidden {}, latent {:?})           | {:>10.0} samples/s   |",
        den_cfg.hidden,
        shape,
        BATCH as f64 / d
    );
    println!(
        "| generation (1000 DDPM steps, decode, evaluate 15k rows) | {:>10.2} models/s    |",
        n as f64 / generation
    );
    use pw_core::samples::report_figure;
    use pw_nn::on_selected_device as on;
    report_figure(
        &on("p-diff autoencoder step"),
        BATCH as f64 / a,
        "samples/s",
    );
    report_figure(&on("p-diff denoiser step"), BATCH as f64 / d, "samples/s");
}
