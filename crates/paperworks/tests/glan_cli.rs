//! `paperworks glan run` against a fake OpenAI-compatible endpoint: killed with SIGKILL five
//! times at random moments and resumed, it ends with every sampled question answered (or
//! rejected) exactly once, and the response cache keeps it from paying twice.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::assets;

fn h(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| {
        (a ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A value following `schema`, its strings derived from `seed` (so different requests give
/// different texts).
fn instance(schema: &Value, seed: u64, k: &mut u64) -> Value {
    *k += 1;
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return e[e.len() - 1].clone();
    }
    match schema["type"].as_str() {
        Some("object") => {
            let mut o = serde_json::Map::new();
            for (name, s) in schema["properties"].as_object().into_iter().flatten() {
                o.insert(name.clone(), instance(s, seed, k));
            }
            Value::Object(o)
        }
        Some("array") => {
            let n = schema["minItems"].as_u64().unwrap_or(1).max(1);
            Value::Array(
                (0..n)
                    .map(|_| instance(&schema["items"], seed, k))
                    .collect(),
            )
        }
        // the top of the range: the judge's best score
        Some("integer") => json!(
            schema["maximum"]
                .as_i64()
                .or(schema["minimum"].as_i64())
                .unwrap_or(1)
        ),
        Some("number") => json!(0.5),
        Some("boolean") => json!(true),
        _ => {
            let max = schema["maxLength"].as_u64().unwrap_or(200) as usize;
            let t = format!(
                "Explain item {} of part {} with care and examples",
                seed % 1_000_003,
                k
            );
            json!(t.chars().take(max).collect::<String>())
        }
    }
}

#[derive(Default)]
struct Fake {
    bodies: Mutex<HashMap<u64, u32>>,
    /// Answer a third of the judge's requests (by a hash of the body, so a retry with its new
    /// seed is a new draw) with text that is not JSON.
    garble_judge: bool,
}

async fn chat(State(st): State<Arc<Fake>>, body: String) -> axum::Json<Value> {
    let key = h(&body);
    *st.bodies.lock().unwrap().entry(key).or_default() += 1;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let req: Value = serde_json::from_str(&body).unwrap();
    let judge = body.contains("strict grader");
    let text = match req["response_format"]["json_schema"].get("schema") {
        Some(_) if judge && st.garble_judge && key.is_multiple_of(3) => {
            "Scores: ten out of ten for everything.".to_string()
        }
        Some(s) => instance(s, key, &mut 0).to_string(),
        None => format!("An answer with enough words to pass the filters, number {key}."),
    };
    axum::Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10}
    }))
}

/// The fake endpoint on a free loopback port, served by its own runtime.
fn start_fake() -> (tokio::runtime::Runtime, Arc<Fake>, u16) {
    start_fake_with(Fake::default())
}

fn start_fake_with(fake: Fake) -> (tokio::runtime::Runtime, Arc<Fake>, u16) {
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(fake.clone());
    let (rt, port) = common::serve_on_loopback(app);
    (rt, fake, port)
}

fn ids(path: &Path) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn unique(v: &[String], what: &str) -> HashSet<String> {
    let s: HashSet<String> = v.iter().cloned().collect();
    assert_eq!(s.len(), v.len(), "duplicate ids in {what}");
    s
}

/// A two-discipline run against the fake at `port` (2 queries x 2 subjects x 5 questions per
/// discipline, concurrency 2): the taxonomy, the config (`extra` appended to `[glan]`) and the
/// run directory, in `dir`.
struct Setup {
    tax: std::path::PathBuf,
    cfg: std::path::PathBuf,
    rd: std::path::PathBuf,
}

impl Setup {
    fn new(dir: &Path, port: u16, extra: &str) -> Setup {
        let tax = dir.join("tax.toml");
        std::fs::write(
            &tax,
            "[[fields]]\nname = \"Natural Sciences\"\n[[fields.subfields]]\nname = \"Physics\"\ndisciplines = [\"Mechanics\", \"Optics\"]\n",
        )
        .unwrap();
        let cfg = dir.join("glan.toml");
        std::fs::write(
            &cfg,
            format!(
                "[glan]\nmax_disciplines = 2\nretries = 1\n{extra}[glan.taxonomy]\nfile = {tax:?}\n\
                 [glan.subjects]\nqueries = 2\nper_query = 2\n[glan.syllabus]\nmin_sessions = 2\nmax_sessions = 3\n\
                 [glan.homework]\nper_syllabus = 5\n\
                 [glan.model.http]\nendpoints = [\"http://127.0.0.1:{port}/v1\"]\nconcurrency = 2\nmax_retries = 2\nbackoff_base_ms = 10\n"
            ),
        )
        .unwrap();
        Setup {
            tax,
            cfg,
            rd: dir.join("run"),
        }
    }

    /// `paperworks glan run` on this setup, quiet, stderr piped.
    fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paperworks"));
        c.env("PAPERWORKS_ASSETS", assets())
            .args([
                "--quiet",
                "--config",
                self.cfg.to_str().unwrap(),
                "--run-dir",
                self.rd.to_str().unwrap(),
                "glan",
                "run",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }
}

#[test]
fn glan_run_killed_five_times_resumes_without_loss_duplicates_or_paying_twice() {
    let (rt, fake, port) = start_fake();
    let dir = tempfile::tempdir().unwrap();
    // the fake judge scores at random, so its calibration fails: judge the pairs anyway
    let setup = Setup::new(
        dir.path(),
        port,
        "[glan.judge]\nskip_uninformative = false\n",
    );
    let (tax, cfg, rd) = (setup.tax.clone(), setup.cfg.clone(), setup.rd.clone());
    let cmd = || setup.cmd(&[]);
    let mut lcg: u64 = 0x2545_f491_4f6c_dd1d;
    let mut mid_run = 0;
    for _ in 0..5 {
        lcg = lcg
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = 100 + (lcg >> 33) % 400;
        let mut child = cmd().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(wait));
        if child.try_wait().unwrap().is_none() {
            mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(
        mid_run >= 4,
        "only {mid_run} of 5 kills landed while the run was going"
    );
    let out = cmd().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paid: u32 = fake.bodies.lock().unwrap().values().sum();
    let twice: u32 = fake.bodies.lock().unwrap().values().map(|&n| n - 1).sum();

    // every sampled question is answered or rejected, once; every answer is kept or filtered
    let g = |n: &str| rd.join(n);
    let homework = unique(&ids(&g("homework.jsonl")), "homework");
    let answers = unique(&ids(&g("answers.jsonl")), "answers");
    let answer_rejects = unique(&ids(&g("answers.rejects.jsonl")), "answer rejects");
    assert_eq!(
        homework.len(),
        2 * 2 * 2 * 5,
        "2 disciplines x 2 queries x 2 subjects x 5 questions"
    );
    for q in &homework {
        assert!(
            answers.contains(q) ^ answer_rejects.contains(q),
            "question {q} lost or doubled"
        );
    }
    let kept = unique(&ids(&g("glan.jsonl")), "glan.jsonl");
    let filtered = unique(&ids(&g("filtered.jsonl")), "filtered.jsonl");
    let judged = unique(&ids(&g("judge.jsonl")), "judge");
    for a in &answers {
        assert!(
            kept.contains(a) ^ filtered.contains(a),
            "pair {a} lost or doubled"
        );
        assert!(judged.contains(a), "pair {a} was not judged");
    }
    // requests in flight at a kill may be paid again; finished ones never (they are cached)
    assert!(
        twice <= mid_run * 2,
        "{twice} requests paid twice over {mid_run} kills"
    );

    // the answers ledger lost entirely: the cache answers everything, the endpoint sees nothing
    std::fs::remove_file(g("answers.jsonl")).unwrap();
    let out = cmd().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: u32 = fake.bodies.lock().unwrap().values().sum();
    assert_eq!(after, paid, "a finished request was paid again");
    assert_eq!(
        unique(&ids(&g("answers.jsonl")), "answers").len(),
        answers.len()
    );
    // other inputs are refused, naming what changed, and nothing is asked or rewritten
    let dataset = std::fs::read(g("glan.jsonl")).unwrap();
    let settings = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        settings.replace("per_syllabus = 5", "per_syllabus = 6"),
    )
    .unwrap();
    let out = cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("homework.per_syllabus: 5 -> 6") && err.contains("--fresh"),
        "{err}"
    );
    std::fs::write(&cfg, settings).unwrap();
    let mut edited = std::fs::read_to_string(&tax).unwrap();
    edited = edited.replace("\"Optics\"", "\"Optics\", \"Acoustics\"");
    std::fs::write(&tax, edited).unwrap();
    let out = cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("tax.toml changed"), "{err}");
    eprintln!("refused: {}", err.trim());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(g("glan.jsonl")).unwrap(), dataset);
    let asked: u32 = fake.bodies.lock().unwrap().values().sum();
    assert_eq!(asked, paid, "a refused run asked the endpoint");

    eprintln!(
        "glan crash test: {mid_run}/5 kills mid-run; {} questions, {} answers, {} kept; {paid} requests paid, {twice} of them twice",
        homework.len(),
        answers.len(),
        kept.len()
    );
    rt.shutdown_background();
}

#[test]
fn a_judge_that_fails_its_calibration_does_not_judge_the_pairs() {
    let (rt, _fake, port) = start_fake();
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path(), port, "");
    let out = setup.cmd(&[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = |n: &str| setup.rd.join(n);
    let hand = ids(&g("judge.hand.jsonl"));
    assert_eq!(hand.len(), 37, "the hand-labelled sample was not judged");
    assert!(
        !g("judge.jsonl").exists(),
        "an uninformative judge judged the pairs"
    );
    let answers = unique(&ids(&g("answers.jsonl")), "answers");
    let kept = unique(&ids(&g("glan.jsonl")), "glan.jsonl");
    let filtered: Vec<Value> = std::fs::read_to_string(g("filtered.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len() + filtered.len(), answers.len());
    assert!(filtered.iter().all(|f| f["filter"] != "judge"));
    rt.shutdown_background();
}

#[test]
fn shards_run_apart_and_merge_into_one_dataset() {
    let (rt, _fake, port) = start_fake();
    let dir = tempfile::tempdir().unwrap();
    let tax = dir.path().join("tax.toml");
    std::fs::write(
        &tax,
        "[[fields]]\nname = \"Sciences\"\n[[fields.subfields]]\nname = \"Physics\"\n\
         disciplines = [\"Mechanics\", \"Optics\", \"Acoustics\", \"Electricity\"]\n",
    )
    .unwrap();
    let cfg = dir.path().join("glan.toml");
    std::fs::write(
        &cfg,
        format!(
            "[glan]\nretries = 1\n[glan.taxonomy]\nfile = {tax:?}\n[glan.subjects]\nqueries = 1\nper_query = 1\n\
             [glan.syllabus]\nmin_sessions = 2\nmax_sessions = 2\n[glan.homework]\nper_syllabus = 3\n\
             [glan.model.http]\nendpoints = [\"http://127.0.0.1:{port}/v1\"]\nconcurrency = 8\n"
        ),
    )
    .unwrap();
    let rd = dir.path().join("run");
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_paperworks"))
            .env("PAPERWORKS_ASSETS", assets())
            .args([
                "--quiet",
                "--config",
                cfg.to_str().unwrap(),
                "--run-dir",
                rd.to_str().unwrap(),
                "glan",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // merging before every shard ran is refused
    run(&["run", "--shard", "0/2"]);
    let early = Command::new(env!("CARGO_BIN_EXE_paperworks"))
        .env("PAPERWORKS_ASSETS", assets())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            rd.to_str().unwrap(),
            "glan",
            "merge",
            "--shards",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("shard 1/2 has not written"));
    // --until stops after a stage; a later run goes on
    assert!(
        run(&["run", "--shard", "1/2", "--until", "syllabus"]).contains("stopped after syllabus")
    );
    // ... and sends nothing for the stages after it.
    assert!(rd.join("syllabus.shard-1-of-2.jsonl").exists());
    assert!(
        !rd.join("homework.shard-1-of-2.jsonl").exists(),
        "--until syllabus must not start the homework stage"
    );
    run(&["run", "--shard", "1/2"]);
    let s0 = ids(&rd.join("answers.shard-0-of-2.jsonl"));
    let s1 = ids(&rd.join("answers.shard-1-of-2.jsonl"));
    assert!(!s0.is_empty() && !s1.is_empty(), "both shards did work");
    assert!(run(&["merge", "--shards", "2"]).contains("glan.parquet"));
    let merged = unique(&ids(&rd.join("answers.jsonl")), "merged answers");
    assert_eq!(
        merged.len(),
        4 * 3,
        "4 disciplines x 1 subject x 3 questions"
    );
    let all: HashSet<String> = s0.into_iter().chain(s1).collect();
    assert_eq!(merged, all);
    let kept = unique(&ids(&rd.join("glan.jsonl")), "glan.jsonl");
    let filtered = unique(&ids(&rd.join("filtered.jsonl")), "filtered.jsonl");
    assert_eq!(kept.len() + filtered.len(), 12);
    rt.shutdown_background();
}

#[test]
fn taxonomy_is_generated_level_by_level_for_review() {
    let (rt, fake, port) = start_fake();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("glan.toml");
    std::fs::write(
        &cfg,
        format!(
            "[glan.taxonomy]\nfields = 2\nsubfields = 2\ndisciplines = 3\n\
             [glan.model.http]\nendpoints = [\"http://127.0.0.1:{port}/v1\"]\n"
        ),
    )
    .unwrap();
    let rd = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_paperworks"))
        .env("PAPERWORKS_ASSETS", assets())
        .args([
            "--quiet",
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            rd.to_str().unwrap(),
            "glan",
            "taxonomy",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the fake answers every list with minItems (1) entries: 1 field, 1 sub-field, 1 discipline
    let text = std::fs::read_to_string(rd.join("taxonomy.toml")).unwrap();
    assert!(text.starts_with("# GLAN taxonomy"), "{text}");
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(
        v["fields"][0]["subfields"][0]["disciplines"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // 1 request for the fields, 1 per field, 1 per sub-field
    assert_eq!(fake.bodies.lock().unwrap().values().sum::<u32>(), 3);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 disciplines"));
    rt.shutdown_background();
}

/// The judge stage killed three times mid-stage resumes without losing, doubling or paying
/// twice for a verdict; a reply that does not parse is retried with a new seed, then rejected
/// with its reason, and the pair is filtered naming it.
#[test]
fn judge_stage_resumes_after_kills_and_rejects_replies_that_do_not_parse() {
    let (rt, fake, port) = start_fake_with(Fake {
        garble_judge: true,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path(), port, "[glan.judge]\ncalibrate = false\n");
    let rd = &setup.rd;
    let cmd = |extra: &[&str]| setup.cmd(extra);
    let out = cmd(&["--until", "answers"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = |n: &str| rd.join(n);
    assert!(!g("judge.jsonl").exists(), "--until answers ran the judge");
    let before: u32 = fake.bodies.lock().unwrap().values().sum();
    let twice_before: u32 = fake.bodies.lock().unwrap().values().map(|&n| n - 1).sum();
    let mut mid_run = 0;
    for wait in [350, 500, 650] {
        let mut child = cmd(&[]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(wait));
        if child.try_wait().unwrap().is_none() {
            mid_run += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(mid_run >= 2, "only {mid_run} of 3 kills landed mid-stage");
    // judge requests paid while the runs were being killed (verdicts reach the ledger a chunk
    // at a time, the cache one by one)
    let during: u32 = fake.bodies.lock().unwrap().values().sum::<u32>() - before;
    let out = cmd(&[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = unique(&ids(&g("answers.jsonl")), "answers");
    let judged = unique(&ids(&g("judge.jsonl")), "judge");
    let rejected = unique(&ids(&g("judge.rejects.jsonl")), "judge rejects");
    assert!(
        during > 0 && (during as usize) < answers.len(),
        "the kills landed in the judge stage: {during} judge requests paid"
    );
    for a in &answers {
        assert!(
            judged.contains(a) ^ rejected.contains(a),
            "verdict of {a} lost or doubled"
        );
    }
    let paid: u32 = fake.bodies.lock().unwrap().values().sum();
    let twice: u32 = fake
        .bodies
        .lock()
        .unwrap()
        .values()
        .map(|&n| n - 1)
        .sum::<u32>()
        - twice_before;
    assert!(
        twice <= mid_run * 2,
        "{twice} judge requests paid twice over {mid_run} kills"
    );
    // garbled replies: some retried into a verdict, the rest rejected with the reason
    let rejects: Vec<Value> = std::fs::read_to_string(g("judge.rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rejects.is_empty(), "no judge reply was rejected");
    for r in &rejects {
        assert_eq!(r["attempts"], 2, "{r}");
        assert!(r["reason"].as_str().unwrap().contains("not JSON"), "{r}");
    }
    let retried = std::fs::read_to_string(g("judge.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["attempts"] == 2)
        .count();
    assert!(retried > 0, "no garbled reply was retried into a verdict");
    let filtered: Vec<Value> = std::fs::read_to_string(g("filtered.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in &rejected {
        let f = filtered.iter().find(|f| f["id"] == id.as_str()).unwrap();
        assert_eq!(f["filter"], "judge");
        assert!(f["reason"].as_str().unwrap().contains("not JSON"), "{f}");
    }
    let kept = ids(&g("glan.jsonl")).len();
    assert_eq!(kept + filtered.len(), answers.len());
    // the SFT export holds the kept pairs, `messages` only, and loads in HF datasets
    let train = ids_free_rows(&g("sft/train.jsonl"));
    let test = ids_free_rows(&g("sft/test.jsonl"));
    assert_eq!(train + test, kept);
    assert!(test >= 1, "kept {kept}: train {train}, test {test}");
    check_with_datasets(&g("sft"), train, test);
    check_seeds_with_datasets(&g("glan.jsonl"), &g("glan.parquet"));
    eprintln!(
        "judge crash test: {mid_run}/3 kills mid-stage; {} answers, {} verdicts ({retried} after a retry), {} rejected; {} judge requests paid, {twice} twice; {kept} kept",
        answers.len(),
        judged.len(),
        rejected.len(),
        paid - before
    );
    rt.shutdown_background();
}

/// Rows of an SFT export file, each checked to hold `messages` (user, assistant) and nothing else.
fn ids_free_rows(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.keys().collect::<Vec<_>>(), ["messages"], "{l}");
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["messages"][1]["role"], "assistant");
    }
    text.lines().count()
}

/// Loads the export with HF `datasets` the way the README shows, when a Python with it is
/// there (`PW_PYTHON`, else python3); otherwise says so and checks nothing more.
fn check_with_datasets(dir: &Path, train: usize, test: usize) {
    let py = common::python_with("datasets", "PW_PYTHON");
    let Some(py) = py else {
        println!("skipped the HF datasets check: no Python with `datasets` (set PW_PYTHON)");
        return;
    };
    let script = format!(
        "from datasets import load_dataset\n\
         ds = load_dataset('json', data_files={{'train': {t:?}, 'test': {e:?}}})\n\
         assert ds['train'].column_names == ['messages'], ds\n\
         m = ds['test'][0]['messages']\n\
         assert [x['role'] for x in m] == ['user', 'assistant'], m\n\
         print(ds['train'].num_rows, ds['test'].num_rows)\n",
        t = dir.join("train.jsonl").to_str().unwrap(),
        e = dir.join("test.jsonl").to_str().unwrap()
    );
    let out = Command::new(&py)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", dir.join("hf"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{train} {test}")
    );
}

/// HF `datasets` reads glan.jsonl and glan.parquet with every question and answer seed exactly
/// as written (its JSON reader turns integers past 2^53 into other numbers), when a Python
/// with it is there.
fn check_seeds_with_datasets(jsonl: &Path, parquet: &Path) {
    let mut want = Vec::new();
    for l in std::fs::read_to_string(jsonl).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        for k in ["question_seed", "answer_seed"] {
            want.push(match v[k].as_u64() {
                Some(n) => n.to_string(),
                None => "none".to_string(),
            });
        }
    }
    let Some(out) = common::python_check(
        "datasets_glan.py",
        "datasets",
        &[jsonl.as_os_str(), parquet.as_os_str()],
        "GLAN's files in HF datasets",
    ) else {
        return;
    };
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, fmt) in lines.iter().zip(["json", "parquet"]) {
        let mut it = line.split_whitespace();
        assert_eq!(it.next(), Some(fmt), "{line}");
        assert_eq!(it.next().unwrap(), (want.len() / 2).to_string(), "{line}");
        assert_eq!(it.collect::<Vec<_>>(), want, "{fmt}: seeds as read");
    }
}
