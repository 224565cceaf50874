//! `make bench`: f32 matmul throughput, training throughput of a small causal transformer
//! (d_model 256, 4 layers, sequence 128, batch 32) and that step's model FLOP utilisation
//! (achieved FLOP/s over the measured matmul peak). Criterion does the timing; the summary
//! table at the end is computed from the same samples.

use criterion::Criterion;
use pw_nn::burn::module::Module;
use pw_nn::burn::nn::loss::CrossEntropyLossConfig;
use pw_nn::burn::optim::GradientsParams;
use pw_nn::burn::tensor::{Device, Distribution, Int, Tensor};
use pw_nn::schedule::OptimConfig;
use pw_nn::train_device;
use pw_nn::transformer::{CausalLm, TransformerConfig};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seconds per iteration of each benchmark, from criterion's own samples.
static SAMPLES: pw_core::samples::Samples = pw_core::samples::Samples::new();

fn sync(d: &Device) {
    d.sync().expect("device sync");
}

fn bench_matmul(c: &mut Criterion, dev: &Device, n: usize) {
    let a = Tensor::<2>::random([n, n], Distribution::Default, dev);
    let b = Tensor::<2>::random([n, n], Distribution::Default, dev);
    let name = format!("matmul_f32_{n}");
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10);
    g.bench_function(&name, |bencher| {
        bencher.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let y = a.clone().matmul(b.clone());
                sync(dev);
                std::hint::black_box(y);
            }
            SAMPLES.record(&name, iters, t.elapsed())
        })
    });
    g.finish();
}

/// The benchmark model is `TransformerConfig::default()`: d_model 256, 4 layers, 4 heads,
/// sequence 128, vocabulary 128.
fn bench_model() -> TransformerConfig {
    TransformerConfig::default()
}
pub const BATCH: usize = 32;
pub const SEQ: usize = 128;

fn bench_train_step(c: &mut Criterion) {
    let dev = train_device(true).unwrap();
    dev.seed(0);
    let mut model = Some(CausalLm::new(&bench_model(), &dev));
    let mut opt = OptimConfig::default().adamw();
    let ce = CrossEntropyLossConfig::new().init(&dev);
    let tokens =
        Tensor::<2, Int>::random([BATCH, SEQ + 1], Distribution::Uniform(0.0, 127.0), &dev);
    let x = tokens.clone().narrow(1, 0, SEQ);
    let y = tokens.narrow(1, 1, SEQ).reshape([BATCH * SEQ]);
    let mut g = c.benchmark_group("transformer");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("train_step_d256_l4_s128_b32", |bencher| {
        bencher.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let m = model.take().unwrap();
                let logits = m
                    .forward(x.clone())
                    .reshape([BATCH * SEQ, bench_model().vocab_size]);
                let loss = ce.forward(logits, y.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                let m = opt.step(1e-4, m, grads);
                sync(&dev);
                model = Some(m);
            }
            SAMPLES.record("train_step", iters, t.elapsed())
        })
    });
    g.finish();
    let _ = model.map(|m| m.num_params());
}

fn main() {
    pw_nn::alloc::tune_mimalloc_for_tensors();
    let mut c = Criterion::default().configure_from_args();
    let dev = train_device(false).unwrap();
    bench_matmul(&mut c, &dev, 1024);
    bench_matmul(&mut c, &dev, 2048);
    bench_train_step(&mut c);
    c.final_summary();

    let gflops = |n: usize| {
        SAMPLES
            .median(&format!("matmul_f32_{n}"))
            .map(|s| 2.0 * (n as f64).powi(3) / s / 1e9)
    };
    let (Some(g1), Some(g2), Some(step)) =
        (gflops(1024), gflops(2048), SAMPLES.median("train_step"))
    else {
        println!("(summary table needs all three benchmarks; run `make bench` without a filter)");
        return;
    };
    let peak = g1.max(g2);
    let step_flops = bench_model().train_step_flops(BATCH, SEQ);
    let achieved = step_flops / step / 1e9;
    println!();
    println!("| benchmark                                   | result                |");
    println!("|---------------------------------------------|-----------------------|");
    println!("| f32 matmul 1024x1024x1024                   | {g1:>10.1} GFLOP/s     |");
    println!("| f32 matmul 2048x2048x2048                   | {g2:>10.1} GFLOP/s     |");
    println!("| transformer train step (d256 L4 s128 b32)   | {step:>10.3} s/step      |");
    println!(
        "| transformer training throughput             | {:>10.0} tokens/s    |",
        (BATCH * SEQ) as f64 / step
    );
    println!(
        "| transformer step model FLOPs                | {:>10.1} GFLOP       |",
        step_flops / 1e9
    );
    println!("| transformer achieved                        | {achieved:>10.1} GFLOP/s     |");
    println!(
        "| model FLOP utilisation (achieved / peak)    | {:>10.1} %           |",
        100.0 * achieved / peak
    );
    println!("threads: {} (rayon)", rayon::current_num_threads());
    println!("device: {}", pw_nn::selected_device().unwrap());
    use pw_core::samples::report_figure;
    use pw_nn::on_selected_device as on;
    report_figure(&on("f32 matmul 1024^3"), g1, "GFLOP/s");
    report_figure(&on("f32 matmul 2048^3"), g2, "GFLOP/s");
    report_figure(
        &on("transformer train step d256 L4 s128 b32"),
        (BATCH * SEQ) as f64 / step,
        "tokens/s",
    );
}
