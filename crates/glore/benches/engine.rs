//! The KV-cached sampler on the student's shape (d 128, 4 layers, 4 heads): 48 prompts of 50
//! tokens, 8 samples of 32 new tokens each (the SORM labelling pattern).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pw_glore::engine::{Engine, SampleOptions};
use pw_glore::model::ModelConfig;
use pw_nn::transformer::CausalLm;
use pw_nn::{DeviceKind, device, seed_everything};

fn bench(c: &mut Criterion) {
    let dev = device(DeviceKind::Cpu, false).unwrap();
    seed_everything(&dev, 1);
    let lm = CausalLm::new(&ModelConfig::default().transformer(128), &dev);
    let e = Engine::from_lm(&lm, 4).unwrap();
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
        max_new: 32,
        stop: u32::MAX,
    };
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(48 * 8 * 32));
    g.bench_function("sample 48 prompts x 8 x 32 tokens", |b| {
        b.iter(|| e.sample(&prompts, &seeds, 8, &opts))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
