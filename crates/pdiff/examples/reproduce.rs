//! The p-diff reproduction with only pw-pdiff linked: no FFmpeg, no llama.cpp. It is what
//! `paperworks reproduce --only pdiff` runs, for a machine that has libtorch and a GPU but not
//! the video stack the `paperworks` binary links (how the quick reproduction ran on an H200).
//! It prints each claim, the stage times and the metrics; the run directory keeps the stage
//! outputs, so a second run with the same directory resumes.
//!
//! ```text
//! PW_DEVICE=cuda cargo run --release -p pw-pdiff --features pw-nn/torch --example reproduce -- \
//!     [quick|full] [RUN_DIR] [ASSETS]
//! ```

use pw_core::{ReproContext, Reproduction, Size};
use pw_pdiff::reproduce::PdiffReproduction;
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = match args.first().map(String::as_str).unwrap_or("quick") {
        "quick" => Size::Quick,
        "full" => Size::Full,
        other => {
            eprintln!("error: size {other:?}: expected quick or full");
            std::process::exit(2);
        }
    };
    let dir = PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("runs/pdiff-example"),
    );
    let assets = PathBuf::from(args.get(2).map(String::as_str).unwrap_or("assets"));
    // PW_DEVICE chooses the device; checking it here turns a bad name into one line, not a panic.
    if let Err(e) = pw_nn::selected_device().and_then(pw_nn::select_device) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let ctx = ReproContext {
        name: "pdiff".into(),
        dir,
        assets,
        size,
        seed: 0,
        overrides: None,
    };
    let t = std::time::Instant::now();
    match (PdiffReproduction { config: None }).run(&ctx) {
        Ok(out) => {
            println!(
                "p-diff {size} on {}: {:.1} s",
                pw_nn::selected_device()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                t.elapsed().as_secs_f64()
            );
            for c in &out.claims {
                println!("claim {}: held {:?}: {}", c.id, c.held, c.measured);
            }
            println!("{}", serde_json::to_string_pretty(&out.metrics.0).unwrap());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
