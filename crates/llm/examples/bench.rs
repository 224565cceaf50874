//! What `paperworks llm bench` measures (prompt processing, one stream's and N streams'
//! generation tokens/s), with only pw-llm linked: no FFmpeg, no libtorch. For a machine that
//! has a GPU but not the video stack the `paperworks` binary links, such as the GPU check of the
//! `cuda` feature.
//!
//! ```text
//! cargo run --release -p pw-llm [--features cuda] --example bench -- MODEL.gguf \
//!     [GPU_LAYERS] [STREAMS] [TOKENS]
//! ```
//! Prints the report as JSON on stdout.

use pw_llm::bench::{BenchConfig, run};
use pw_llm::{Embedded, EmbeddedConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: bench MODEL.gguf [GPU_LAYERS] [STREAMS] [TOKENS]");
        std::process::exit(2);
    };
    let num = |i: usize, default: u32, what: &str| -> u32 {
        match args.get(i) {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|_| {
                eprintln!("error: {what} {s:?}: expected a whole number");
                std::process::exit(2);
            }),
        }
    };
    let (gpu_layers, streams, tokens) = (
        num(1, 0, "GPU_LAYERS"),
        num(2, 8, "STREAMS"),
        num(3, 128, "TOKENS"),
    );
    let bench = BenchConfig {
        gen_tokens: tokens,
        parallel: streams as usize,
        ..Default::default()
    };
    let mut cfg = EmbeddedConfig::new(model);
    cfg.gpu_layers = gpu_layers;
    bench.fit(&mut cfg);
    if let Err(e) = bench.check() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let report = Embedded::load(cfg).and_then(|e| run(&e, &bench));
    match report {
        Ok(r) => println!("{}", serde_json::to_string_pretty(&r).unwrap()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
