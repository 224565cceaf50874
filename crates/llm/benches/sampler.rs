//! `make bench` for the embedded backend's token sampler: ours against llama.cpp's sampler chain
//! (top-p, temperature, seeded draw) on a 49,152-entry logit vector (SmolLM2's vocabulary).
//! Every generated token of every sequence pays this once.

use criterion::Criterion;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use pw_llm::embedded::sampler::Sampler;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

/// `spread`: width of the bulk of the logits; `peak`: how far a few tokens stand above it. A
/// confident language model puts its top tokens 15-25 logits above the bulk; no peak and a
/// narrow bulk is the worst case, where every token is within reach of the best.
fn logits(spread: f32, peak: f32) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    (0..49_152)
        .map(|i| {
            let base: f32 = rng.random_range(-spread..spread) - spread;
            if i % 997 == 0 { base + peak } else { base }
        })
        .collect()
}

/// A bell-shaped bulk (standard deviation 3) with one token in 997 standing 11 above its
/// middle: like SmolLM2's logits while it writes a story, thousands of tokens within reach of
/// the best at T 0.8 (the median over such a story's tokens was 5,946 of 49,152).
fn bell(seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..49_152)
        .map(|i| {
            let base: f32 = (0..4).map(|_| rng.random_range(-2.6f32..2.6)).sum();
            if i % 997 == 0 { base + 11.0 } else { base }
        })
        .collect()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let l = logits(8.0, 20.0);
    let flat = logits(4.0, 0.0);
    let lm = bell(2);
    let mut ours = Sampler::new(0.8, 0.95, 7);
    c.bench_function("sampler/ours (T 0.8, top-p 0.95)", |b| {
        b.iter(|| black_box(ours.sample(black_box(&l))))
    });
    let max = lm.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let within = lm.iter().filter(|&&x| x >= max - 16.0).count();
    c.bench_function(
        &format!("sampler/ours, bell-shaped logits ({within} within reach)"),
        |b| b.iter(|| black_box(ours.sample(black_box(&lm)))),
    );
    c.bench_function("sampler/ours, flat logits (worst case)", |b| {
        b.iter(|| black_box(ours.sample(black_box(&flat))))
    });
    let mut greedy = Sampler::new(0.0, 1.0, 7);
    c.bench_function("sampler/ours greedy", |b| {
        b.iter(|| black_box(greedy.sample(black_box(&l))))
    });
    let mut chain = LlamaSampler::chain_simple([
        LlamaSampler::top_p(0.95, 1),
        LlamaSampler::temp(0.8),
        LlamaSampler::dist(7),
    ]);
    c.bench_function("sampler/llama.cpp chain (top-p, temp, dist)", |b| {
        b.iter(|| {
            // what llama_sampler_sample does with a context's logits: build the candidate
            // array, apply the chain
            let mut arr = LlamaTokenDataArray::from_iter(
                l.iter()
                    .enumerate()
                    .map(|(i, &x)| LlamaTokenData::new(LlamaToken(i as i32), x, 0.0)),
                false,
            );
            arr.apply_sampler(&mut chain);
            black_box(arr.selected_token())
        })
    });
    c.final_summary();
}
