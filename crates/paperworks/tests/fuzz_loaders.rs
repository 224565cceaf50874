//! Every loader of a file a user hands us, on 500 mutated copies of a valid file each (bytes
//! flipped, truncated, spliced, numbers changed): no panic, no hang, and every refusal is one
//! line. The mutations are seeded, so a failure names a case that can be replayed.

use std::path::Path;
use std::time::{Duration, Instant};

const CASES: usize = 500;

/// xorshift64*: seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `valid`: the kinds a damaged or hand-edited file shows.
fn mutate(valid: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = valid.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = b.len().max(1);
        match rng.below(7) {
            0 => {
                // flip a few bytes
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(len);
                    if i < b.len() {
                        b[i] ^= 1 << rng.below(8);
                    }
                }
            }
            1 => b.truncate(rng.below(len)),
            2 => {
                // random bytes spliced in
                let at = rng.below(len);
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                let at = at.min(b.len());
                b.splice(at..at, junk);
            }
            3 => {
                // a chunk deleted
                let at = rng.below(len).min(b.len());
                let n = rng.below(32).min(b.len() - at);
                b.drain(at..at + n);
            }
            4 => {
                // a digit changed into a large number, or a number negated
                if let Some(i) = (0..b.len())
                    .map(|k| (k + rng.below(len)) % b.len())
                    .find(|&k| b[k].is_ascii_digit())
                {
                    let with: &[u8] = match rng.below(4) {
                        0 => b"99999999999",
                        1 => b"-1",
                        2 => b"0",
                        _ => b"1e308",
                    };
                    b.splice(i..i + 1, with.iter().copied());
                }
            }
            5 => {
                // a chunk duplicated
                let at = rng.below(len).min(b.len());
                let n = rng.below(64).min(b.len() - at);
                let chunk = b[at..at + n].to_vec();
                b.splice(at..at, chunk);
            }
            _ => {
                // a byte set to a boundary value
                let i = rng.below(len);
                if i < b.len() {
                    b[i] = [0x00, 0xff, 0x7f, 0x80, b'"', b'\n'][rng.below(6)];
                }
            }
        }
    }
    b
}

/// Runs `load` on `CASES` mutated copies of `valid` written to `path`. Fails on a panic, a case
/// slower than `slow`, or an error message of more than one line.
fn fuzz(
    name: &str,
    valid: &[u8],
    path: &Path,
    slow: Duration,
    load: impl Fn(&Path) -> Result<(), String> + std::panic::RefUnwindSafe,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let (mut ok, mut refused) = (0, 0);
    let t0 = Instant::now();
    for case in 0..CASES {
        let bytes = mutate(valid, &mut rng);
        std::fs::write(path, &bytes).unwrap();
        let t = Instant::now();
        IN_CASE.with(|c| c.set(true));
        let r = std::panic::catch_unwind(|| load(path));
        IN_CASE.with(|c| c.set(false));
        let took = t.elapsed();
        match r {
            Err(_) => panic!("{name}: case {case} panicked ({} bytes)", bytes.len()),
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                assert!(
                    !e.contains('\n') && !e.trim().is_empty(),
                    "{name}: case {case}: not one line: {e:?}"
                );
                refused += 1;
            }
        }
        assert!(took < slow, "{name}: case {case} took {took:?}");
    }
    eprintln!(
        "{name}: {CASES} mutated inputs in {:.2} s: {ok} loaded, {refused} refused in one line, 0 panics",
        t0.elapsed().as_secs_f64()
    );
}

thread_local!(static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });

/// A loader's panic is reported by `fuzz` with its case; the default hook would print one for
/// each before that. Panics outside a case (a failed assertion) print as usual.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) {
                default(info)
            }
        }));
    });
}

#[test]
fn safetensors_loader() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let mut t = pw_nn::checkpoint::NamedTensors::new();
    t.insert(
        "a.weight".into(),
        (vec![3, 4], (0..12).map(|i| i as f32).collect()),
    );
    t.insert("a.bias".into(), (vec![3], vec![0.5, -1.0, 2.0]));
    t.insert("b".into(), (vec![2, 1, 2], vec![1.0; 4]));
    let valid = dir.path().join("valid.safetensors");
    pw_nn::checkpoint::save_tensors(&valid, &t, None).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    fuzz(
        "safetensors",
        &bytes,
        &dir.path().join("m.safetensors"),
        Duration::from_secs(2),
        |p| {
            pw_nn::checkpoint::load_tensors(p)
                .map(|_| ())
                .map_err(|e| pw_core::one_line(&e))
        },
    );
}

#[test]
fn gsm8k_jsonl_loader() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..6 {
        text.push_str(&format!(
            "{{\"id\": \"q{i}\", \"question\": \"Ann has {i} apples and buys 3. How many?\", \"answer\": \"{i} + 3 = {}\\n#### {}\"}}\n",
            i + 3,
            i + 3
        ));
    }
    fuzz(
        "GSM8K JSONL",
        text.as_bytes(),
        &dir.path().join("p.jsonl"),
        Duration::from_secs(2),
        |p| {
            pw_glore::problem::read_gsm8k(p)
                .map(|_| ())
                .map_err(|e| pw_core::one_line(&e))
        },
    );
}

#[test]
fn taxonomy_and_config_toml_loaders() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    fuzz(
        "taxonomy TOML",
        pw_glan::reproduce::REVIEWED_TAXONOMY.as_bytes(),
        &dir.path().join("t.toml"),
        Duration::from_secs(2),
        |p| {
            pw_glan::taxonomy::Taxonomy::load(p)
                .map(|_| ())
                .map_err(|e| pw_core::one_line(&e))
        },
    );
    let config = toml::to_string(&pw_glan::GlanConfig::default()).unwrap();
    fuzz(
        "GLAN config TOML",
        config.as_bytes(),
        &dir.path().join("c.toml"),
        Duration::from_secs(2),
        |p| {
            let c: pw_glan::GlanConfig =
                pw_core::read_toml(p).map_err(|e| pw_core::one_line(&e))?;
            c.check()
        },
    );
}

#[test]
fn idx_loader_plain_and_gzipped() {
    use std::io::Write;
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let mut idx = vec![0u8, 0, 0x08, 3];
    for d in [5u32, 4, 4] {
        idx.extend_from_slice(&d.to_be_bytes());
    }
    idx.extend((0..80).map(|i| i as u8));
    fuzz(
        "IDX",
        &idx,
        &dir.path().join("x-idx3-ubyte"),
        Duration::from_secs(2),
        |p| {
            pw_data::idx::read_idx(p)
                .map(|_| ())
                .map_err(|e| pw_core::one_line(&e))
        },
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&idx).unwrap();
    fuzz(
        "IDX (gzip)",
        &gz.finish().unwrap(),
        &dir.path().join("x-idx3-ubyte.gz"),
        Duration::from_secs(2),
        |p| {
            pw_data::idx::read_idx(p)
                .map(|_| ())
                .map_err(|e| pw_core::one_line(&e))
        },
    );
}

#[test]
fn pdiff_generator_json_loader() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir_all(&ckpts).unwrap();
    for i in 0..4 {
        let mut t = pw_nn::checkpoint::NamedTensors::new();
        t.insert(
            "w".into(),
            (
                vec![4, 6],
                (0..24).map(|j| (j as f32 * 0.3 + i as f32).sin()).collect(),
            ),
        );
        pw_nn::checkpoint::save_tensors(&ckpts.join(format!("c{i}.safetensors")), &t, None)
            .unwrap();
    }
    let fitted = dir.path().join("gen");
    let opts = pw_pdiff::run::FitOptions {
        ae_steps: 2,
        ddpm_steps: 2,
        ae_channels: vec![4, 4],
        denoiser_hidden: 8,
        ..Default::default()
    };
    pw_pdiff::run::fit_checkpoints(&ckpts, &fitted, &opts).unwrap();
    let valid = std::fs::read(fitted.join("generator.json")).unwrap();
    let device = pw_nn::train_device(false).unwrap();
    fuzz(
        "p-diff generator.json",
        &valid,
        &fitted.join("generator.json"),
        Duration::from_secs(5),
        |_| {
            pw_pdiff::diffusion::ParamGenerator::load(&fitted, &device)
                .map(|_| ())
                .map_err(|e| pw_core::one_line(&e))
        },
    );
}

#[test]
fn response_cache_loader() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.redb");
    {
        let cache = pw_llm::Cache::open(&valid).unwrap();
        for i in 0..40 {
            let req = pw_llm::Request::user(
                format!("r{i}"),
                format!("question {i}"),
                pw_llm::GenParams::greedy(8),
            );
            let c = pw_llm::Completion {
                id: req.id.clone(),
                model: "m".into(),
                choices: vec![pw_llm::Choice {
                    text: format!("answer {i} ").repeat(20),
                    finish_reason: "stop".into(),
                }],
                usage: Default::default(),
                latency_ms: 1.0,
                cached: false,
            };
            cache.put(&pw_llm::Cache::key("m", &req), &c).unwrap();
        }
    }
    let bytes = std::fs::read(&valid).unwrap();
    let path = dir.path().join("cache.redb");
    let probe = pw_llm::Request::user("x", "question 3", pw_llm::GenParams::greedy(8));
    fuzz(
        "redb response cache",
        &bytes,
        &path,
        Duration::from_secs(5),
        |p| {
            let r = pw_llm::Cache::open(p)
                .and_then(|c| c.get(&pw_llm::Cache::key("m", &probe)).map(|_| ()))
                .map_err(|e| e.to_string());
            // a damaged cache is moved aside: keep the folder small between cases
            for f in std::fs::read_dir(p.parent().unwrap()).unwrap().flatten() {
                if f.file_name().to_string_lossy().contains(".damaged-") {
                    let _ = std::fs::remove_file(f.path());
                }
            }
            r
        },
    );
}

/// The GGUF loader runs llama.cpp's parser, which could abort the process on a bad file: each
/// case runs `paperworks llm complete` in a subprocess, which must exit 1 with one line (not
/// 101 for a panic, not a signal).
#[test]
fn gguf_loader_in_a_subprocess() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let src = std::env::var_os("PAPERWORKS_ASSETS")
        .map(|a| std::path::PathBuf::from(a).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .unwrap_or(src);
    // the header, the metadata (vocabulary included) and the tensor infos: 4 MiB covers them
    let mut valid = vec![0u8; 4 << 20];
    std::fs::File::open(&src)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", src.display()))
        .read_exact(&mut valid)
        .unwrap();
    let path = dir.path().join("m.gguf");
    let cases: usize = std::env::var("PW_FUZZ_GGUF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let mut rng = Rng(0x5EED_6600F);
    let t0 = Instant::now();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for case in 0..cases {
        // mutations near the header and metadata, where the parser reads lengths and counts
        let mut bytes = valid.clone();
        let head = mutate(&valid[..64 << 10], &mut rng);
        bytes.splice(..64 << 10, head);
        std::fs::write(&path, &bytes).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paperworks"))
            .args(["--quiet", "--threads", "1", "--run-dir"])
            .arg(dir.path().join("run"))
            .args(["llm", "complete", "--weights", "keep", "--model"])
            .arg(&path)
            .arg("hi")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("GGUF case {case}: hung");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(
            status.code(),
            Some(1),
            "GGUF case {case}: {status} (a signal or a panic): {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "GGUF case {case}: {err}");
        let why = err.split(": ").last().unwrap_or("").trim();
        let why: String = why.chars().take(40).collect();
        *kinds.entry(why).or_default() += 1;
    }
    eprintln!(
        "GGUF: {cases} mutated headers in {:.1} s, each refused in one line (exit 1), 0 crashes; {} kinds of refusal",
        t0.elapsed().as_secs_f64(),
        kinds.len()
    );
}
