//! The KV-cached decoder on GLoRe's student shape (d 128, 4 layers, 4 heads, vocabulary 128):
//! 48 prompts of 50 tokens, 8 samples of 32 new tokens each (the SORM labelling pattern), and
//! beam search of width 4 over the same prompts. `benches/decode_peer.py` is the PyTorch peer of
//! the sampling (same shapes, shared prefill, all sequences batched), run beside it by
//! `make bench`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pw_nn::decode::{BeamOptions, Decoder, Prompt, SampleOptions};
use pw_nn::transformer::{CausalLm, TransformerConfig};
use pw_nn::{seed_everything, train_device};

// The allocator and settings the `paperworks` binary runs with, so decoding is timed as users
// run it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

static SAMPLES: pw_core::samples::Samples = pw_core::samples::Samples::new();

fn bench(c: &mut Criterion) {
    pw_nn::alloc::tune_mimalloc_for_tensors();
    let dev = train_device(false).unwrap();
    seed_everything(&dev, 1);
    let cfg = TransformerConfig {
        vocab_size: 128,
        max_len: 256,
        d_model: 128,
        n_heads: 4,
        n_layers: 4,
        mlp_ratio: 4,
        causal: true,
    };
    let lm = CausalLm::new(&cfg, &dev);
    let e = Decoder::new(&lm).unwrap();
    let prompts: Vec<Vec<u32>> = (0..48)
        .map(|i| {
            (0..50)
                .map(|j| ((i * 7 + j * 3) % 120 + 7) as u32)
                .collect()
        })
        .collect();
    let seeds: Vec<u64> = (0..48).collect();
    // stop = a token id outside the vocabulary: every sample runs to max_new
    let opts = SampleOptions {
        temperature: 1.0,
        top_p: 1.0,
        max_new: 32,
        stop: u32::MAX,
    };
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(48 * 8 * 32));
    g.bench_function("sample 48 prompts x 8 x 32 tokens", |b| {
        b.iter_custom(|iters| {
            let t = std::time::Instant::now();
            for _ in 0..iters {
                std::hint::black_box(e.sample(&prompts, &seeds, 8, &opts));
            }
            SAMPLES.record("sample", iters, t.elapsed())
        })
    });
    g.finish();
    if let Some(s) = SAMPLES.median("sample") {
        pw_core::samples::report_figure(
            "KV-cached sampler d128 L4, 48 prompts x 8 x 32 tokens",
            (48 * 8 * 32) as f64 / s,
            "tokens/s",
        );
    }
    let beam = BeamOptions {
        width: 4,
        max_new: 32,
        stop: u32::MAX,
        length_penalty: 1.0,
    };
    let ps: Vec<Prompt> = prompts.iter().map(|p| Prompt::tokens(p)).collect();
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(48 * 4 * 32));
    g.bench_function("beam 48 prompts x width 4 x 32 tokens", |b| {
        b.iter(|| e.beam_search(&ps, &beam).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
