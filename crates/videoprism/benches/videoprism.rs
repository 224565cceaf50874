//! VideoPrism's hot loops on the quick reproduction's shapes:
//! - `video/decode`: decoding 8 uniformly sampled frames at 32x32 from the shipped bikes.mp4
//!   (640x272, 250 frames: every frame up to the last sampled one goes through the decoder);
//! - `video/decode+encode`: the same plus the frozen encoder's forward (what `embed` does);
//! - `train/encoder step`: one AdamW step of the factorized encoder (patch 8, width 64, 2 + 2
//!   layers, 4 heads, logit cap 50) on a batch of 32 clips of 8 x 32 x 32, loss = mean square
//!   of the tokens. `benches/videoprism_peer.py` is the PyTorch peer of this step (same
//!   shapes and ops), run beside it by `make bench`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pw_core::ReproConfig;
use pw_data::video::{FrameSpec, decode};
use pw_nn::burn::optim::GradientsParams;
use pw_nn::burn::tensor::{Distribution, Tensor};
use pw_nn::schedule::OptimConfig;
use pw_nn::vivit::VivitEncoder;
use pw_nn::{seed_everything, train_device};
use pw_videoprism::config::VideoPrismConfig;
use pw_videoprism::data::video_tensor;
use std::path::PathBuf;

// The allocator the `paperworks` binary runs with, so the step is timed as users run it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    // And its allocator settings (freed memory stays mapped), as `main` applies them.
    pw_nn::alloc::tune_mimalloc_for_tensors();
    let cfg = VideoPrismConfig::for_size(pw_core::Size::Quick);
    let plain = train_device(false).unwrap();
    seed_everything(&plain, 1);
    let enc = VivitEncoder::new(&cfg.model.encoder, &plain);
    let bikes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/video/bikes.mp4");
    let spec = FrameSpec::uniform(8, 32, 32);
    if bikes.exists() {
        let mut g = c.benchmark_group("video");
        g.sample_size(20);
        g.throughput(Throughput::Elements(8));
        g.bench_function("decode 8 frames of bikes.mp4 at 32x32", |b| {
            b.iter(|| decode(&bikes, &spec).unwrap())
        });
        g.bench_function("decode+encode 8 frames of bikes.mp4", |b| {
            b.iter(|| {
                let f = decode(&bikes, &spec).unwrap();
                enc.forward(video_tensor(&[&f.data], 8, 32, 32, &plain))
                    .into_data()
            })
        });
        g.finish();
    } else {
        eprintln!(
            "skipped the decode benches: {} is missing (scripts/setup.sh)",
            bikes.display()
        );
    }

    let ad = train_device(true).unwrap();
    seed_everything(&ad, 1);
    let video = Tensor::<5>::random([32, 8, 32, 32, 3], Distribution::Uniform(0.0, 1.0), &ad);
    let optim = OptimConfig::default();
    let mut opt = optim.adamw();
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

static SAMPLES: pw_core::samples::Samples = pw_core::samples::Samples::new();

criterion_group!(benches, bench);
criterion_main!(benches);
