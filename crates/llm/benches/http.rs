//! The OpenAI-compatible HTTP client (`--endpoint`): 5,000 chat requests at concurrency 64
//! against a server that answers every request at once with one fixed completion, so the client
//! is what is timed (request building, connection reuse, response parsing, the retry layer).
//! `scripts/http-bench.sh` starts that server (nginx), runs this bench with `PW_NULL_SERVER` set
//! and then `benches/http_peer.py`, the `openai` package's AsyncOpenAI on the same requests.
//! Prints requests/s and the process's CPU seconds; without `PW_NULL_SERVER` it says so and exits.

use pw_llm::{GenParams, Generator, Http, HttpConfig, Request};
use std::time::Instant;

const REQUESTS: usize = 5_000;
const CONCURRENCY: usize = 64;
const REPS: usize = 3;

/// User + system CPU seconds of this process so far (0 where /proc is missing).
fn cpu_seconds() -> f64 {
    pw_llm::embedded::budget::own_cpu_seconds().unwrap_or(0.0)
}

fn main() {
    let Ok(url) = std::env::var("PW_NULL_SERVER") else {
        println!(
            "http bench: skipped (PW_NULL_SERVER is unset; scripts/http-bench.sh starts the null \
             server and sets it)"
        );
        return;
    };
    let http = Http::new(HttpConfig {
        endpoints: vec![url.clone()],
        model: "null".into(),
        concurrency: CONCURRENCY,
        max_retries: 0,
        ..Default::default()
    })
    .expect("an HTTP backend for PW_NULL_SERVER");
    let batch = |n: usize, tag: &str| -> Vec<Request> {
        (0..n)
            .map(|i| Request::user(format!("{tag}-{i}"), "Say hi.", GenParams::greedy(8)))
            .collect()
    };
    let run = |reqs: Vec<Request>| {
        let n = reqs.len();
        let mut ok = 0usize;
        http.generate_batch(reqs, &mut |r| match r.result {
            Ok(_) => ok += 1,
            Err(e) => panic!("request {} failed against {url}: {e}", r.id),
        });
        assert_eq!(ok, n, "answers lost");
    };
    run(batch(500, "warmup"));
    let mut rates = Vec::new();
    for rep in 0..REPS {
        let reqs = batch(REQUESTS, &format!("rep{rep}"));
        let (t, cpu) = (Instant::now(), cpu_seconds());
        run(reqs);
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        println!(
            "http client: {REQUESTS} requests at concurrency {CONCURRENCY}: {:.3} s, {:.0} requests/s, {:.2} CPU s",
            wall,
            REQUESTS as f64 / wall,
            cpu
        );
        rates.push(REQUESTS as f64 / wall);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!("http client: median {median:.0} requests/s over {REPS} runs");
    pw_core::samples::report_figure(
        "HTTP client, 5,000 chat requests at concurrency 64",
        median,
        "requests/s",
    );
}
