//! `train/encoder step`: one AdamW step of VideoPrism's factorized encoder at the quick
//! reproduction's size (patch 8, width 64, 2 + 2 layers, 4 heads, logit cap 50) on a batch of 32
//! clips of 8 x 32 x 32, loss = mean square of the tokens, on the selected device (`PW_DEVICE`).
//! `benches/videoprism_peer.py` is the PyTorch peer of this step (same shapes and ops), run beside
//! it by `make bench` and `make bench-gpu`. No video decoding here, so the binary links no FFmpeg.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pw_core::ReproConfig;
use pw_nn::burn::optim::GradientsParams;
use pw_nn::burn::tensor::{Distribution, Tensor};
use pw_nn::schedule::OptimConfig;
use pw_nn::vivit::VivitEncoder;
use pw_nn::{seed_everything, train_device};
use pw_videoprism::config::VideoPrismConfig;

// The allocator the `paperworks` binary runs with, so the step is timed as users run it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

static SAMPLES: pw_core::samples::Samples = pw_core::samples::Samples::new();

fn bench(c: &mut Criterion) {
    // And its allocator settings (freed memory stays mapped), as `main` applies them.
    pw_nn::alloc::tune_mimalloc_for_tensors();
    let cfg = VideoPrismConfig::for_size(pw_core::Size::Quick);
    let ad = train_device(true).unwrap();
    seed_everything(&ad, 1);
    let video = Tensor::<5>::random([32, 8, 32, 32, 3], Distribution::Uniform(0.0, 1.0), &ad);
    let mut opt = OptimConfig::default().adamw();
    let mut model = Some(VivitEncoder::new(&cfg.model.encoder, &ad));
    let mut g = c.benchmark_group("train");
    g.sample_size(10);
    g.throughput(Throughput::Elements(32));
    g.bench_function("encoder step, batch 32 x 8 x 32 x 32", |b| {
        b.iter_custom(|iters| {
            let t = std::time::Instant::now();
            for _ in 0..iters {
                let m = model.take().unwrap();
                let y = m.forward(video.clone());
                let loss = (y.clone() * y).mean();
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                model = Some(opt.step(1e-4, m, grads));
            }
            // A GPU device runs the steps asynchronously: wait for the last one.
            ad.sync().expect("device sync");
            SAMPLES.record("step", iters, t.elapsed())
        })
    });
    g.finish();
    if let Some(step) = SAMPLES.median("step") {
        pw_core::samples::report_figure(
            &pw_nn::on_selected_device("ViViT encoder step b32 8x32x32"),
            32.0 / step,
            "clips/s",
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
