//! VideoPrism's hot loops on the quick reproduction's shapes:
//! - `video/decode`: decoding 8 uniformly sampled frames at 32x32 from the shipped bikes.mp4
//!   (640x272, 250 frames: every frame up to the last sampled one goes through the decoder);
//! - `video/decode+encode`: the same plus the frozen encoder's forward (what `embed` does);
//!
//! The encoder's training step is `benches/encoder_step.rs`, apart so that it links no FFmpeg and
//! runs on a GPU machine that has none.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pw_core::ReproConfig;
use pw_data::video::{FrameSpec, decode};
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
