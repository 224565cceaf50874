//! The embedded backend on the real SmolLM2-135M-Instruct GGUF that setup fetches.

mod common;

use pw_llm::{
    ChatMessage, Embedded, EmbeddedConfig, GenParams, Generator, LlmError, Request, finish,
    generate_all,
};
use std::sync::OnceLock;

fn engine() -> &'static Embedded {
    static E: OnceLock<Embedded> = OnceLock::new();
    E.get_or_init(|| {
        let mut cfg = EmbeddedConfig::new(common::smollm2());
        cfg.ctx_per_seq = 1024;
        Embedded::load(cfg).expect("SmolLM2 loads")
    })
}

fn sampled(seed: u64, max_tokens: u32) -> GenParams {
    GenParams {
        temperature: 0.9,
        top_p: 0.95,
        max_tokens,
        seed: Some(seed),
        ..Default::default()
    }
}

#[test]
fn answers_a_chat_request_with_usage_and_latency() {
    let c = engine()
        .generate(&Request::new(
            "q",
            vec![
                ChatMessage::system("You answer briefly."),
                ChatMessage::user("What is the capital of France? Answer in one word."),
            ],
            GenParams::greedy(16),
        ))
        .unwrap();
    assert_eq!(c.id, "q");
    assert!(c.text().contains("Paris"), "{:?}", c.text());
    assert!(c.usage.prompt_tokens > 10);
    assert!((1..=16).contains(&c.usage.completion_tokens));
    assert!(c.latency_ms > 0.0);
    assert!(c.model.starts_with("SmolLM2-135M-Instruct"), "{}", c.model);
}

#[test]
fn seeded_sampling_is_reproducible_and_n_gives_independent_samples() {
    let e = engine();
    let req = |seed| {
        Request::user(
            "s",
            "Write one sentence about the sea.",
            GenParams {
                n: 3,
                ..sampled(seed, 24)
            },
        )
    };
    let a = e.generate(&req(11)).unwrap();
    let b = e.generate(&req(11)).unwrap();
    let c = e.generate(&req(12)).unwrap();
    assert_eq!(a.choices.len(), 3);
    assert_eq!(a.choices, b.choices, "same seed, same samples");
    assert_ne!(a.choices, c.choices, "another seed, other samples");
    let distinct: std::collections::HashSet<_> = a.choices.iter().map(|c| &c.text).collect();
    assert!(distinct.len() >= 2, "the n samples are not all the same");
    assert!(
        a.usage.completion_tokens >= 3,
        "usage counts every sample's tokens"
    );
}

#[test]
fn a_batch_answers_every_request_once_tagged_with_its_id() {
    let e = engine();
    let reqs: Vec<Request> = (0..20)
        .map(|i| {
            Request::user(
                format!("r{i}"),
                format!("Count from {i} to {}.", i + 3),
                sampled(i, 8 + (i as u32 % 5) * 6),
            )
        })
        .collect();
    let mut seen = Vec::new();
    e.generate_batch(reqs.clone(), &mut |r| {
        let c = r.result.expect("answered");
        assert_eq!(c.id, r.id);
        assert!(c.usage.completion_tokens >= 1);
        seen.push(r.id);
    });
    seen.sort();
    let mut want: Vec<String> = reqs.iter().map(|r| r.id.clone()).collect();
    want.sort();
    assert_eq!(seen, want, "every id exactly once");
    // the batch gives each request what it would get alone (same seed, same text)
    let alone = e.generate(&reqs[7]).unwrap();
    let in_batch = generate_all(e, vec![reqs[7].clone(), reqs[8].clone(), reqs[9].clone()]);
    assert_eq!(in_batch[0].as_ref().unwrap().choices, alone.choices);
}

#[test]
fn requests_that_outlive_a_finished_neighbour_keep_their_text() {
    // the short one ends after two tokens; the two others then decode with an idle sequence
    // between them, which the engine fills with a throwaway token so that one pass covers both
    let e = engine();
    let req =
        |i: u64, max| Request::user(format!("n{i}"), "Name three rivers.", sampled(40 + i, max));
    let (a, b, c) = (req(0, 24), req(1, 2), req(2, 24));
    let alone_a = e.generate(&a).unwrap();
    let alone_c = e.generate(&c).unwrap();
    let together = generate_all(e, vec![a, b, c]);
    assert_eq!(together[1].as_ref().unwrap().usage.completion_tokens, 2);
    assert_eq!(together[0].as_ref().unwrap().choices, alone_a.choices);
    assert_eq!(together[2].as_ref().unwrap().choices, alone_c.choices);
}

#[test]
fn ignore_eos_generates_all_max_tokens() {
    let e = engine();
    let ask = |ignore_eos| {
        let params = GenParams {
            ignore_eos,
            ..GenParams::greedy(48)
        };
        e.generate(&Request::user(
            "eos",
            "Reply with the single word: yes.",
            params,
        ))
        .unwrap()
    };
    let stops = ask(false);
    assert!(
        stops.usage.completion_tokens < 48,
        "the model ends early on its own: {:?}",
        stops.text()
    );
    let runs_on = ask(true);
    assert_eq!(runs_on.usage.completion_tokens, 48);
    assert_eq!(runs_on.choices[0].finish_reason, finish::LENGTH);
}

/// A long system prompt shared by the requests of the prefix tests.
fn syllabus() -> String {
    let sessions: Vec<String> = (1..=12)
        .map(|i| {
            format!("Session {i}: forces, energy and momentum, part {i}, with worked examples")
        })
        .collect();
    format!(
        "You are a physics teacher. The syllabus:\n{}",
        sessions.join("\n")
    )
}

#[test]
fn a_shared_prefix_is_evaluated_once_and_changes_no_answer() {
    let load = |reuse| {
        let mut cfg = EmbeddedConfig::new(common::smollm2());
        cfg.ctx_per_seq = 512;
        cfg.parallel = 4;
        cfg.reuse_prefix = reuse;
        Embedded::load(cfg).expect("SmolLM2 loads")
    };
    let req = |id: &str, user: &str, n| {
        Request::new(
            id,
            vec![ChatMessage::system(syllabus()), ChatMessage::user(user)],
            GenParams {
                n,
                ..GenParams::greedy(12)
            },
        )
    };
    let reqs = [
        req("a", "Write one homework question on session 2.", 4),
        req("b", "Write one homework question on session 7.", 1),
        req("c", "Name the topic of session 3.", 2),
    ];
    let (on, off) = (load(true), load(false));
    let answers = |e: &Embedded| -> Vec<pw_llm::Completion> {
        reqs.iter().map(|r| e.generate(r).unwrap()).collect()
    };
    let (with, without) = (answers(&on), answers(&off));
    for (w, wo) in with.iter().zip(&without) {
        assert_eq!(w.choices, wo.choices, "{}: reuse changed the answer", w.id);
        assert_eq!(w.usage.prompt_tokens, wo.usage.prompt_tokens);
        let n = w.choices.len() as u64;
        // without reuse every choice evaluates the whole prompt
        assert_eq!(wo.usage.prompt_evaluated, Some(n * wo.usage.prompt_tokens));
    }
    let p = with[0].usage.prompt_tokens;
    assert!(p > 150, "the syllabus is a long prefix: {p} tokens");
    // the other three choices of "a" waited for the first and copied all but its last token
    assert_eq!(
        with[0].usage.prompt_evaluated,
        Some(p + 3),
        "{:?}",
        with[0].usage
    );
    // "b" and "c" differ from "a" only after the syllabus and the start of the user turn
    for c in &with[1..] {
        let evaluated = c.usage.prompt_evaluated.unwrap();
        assert!(
            evaluated < 30 + c.choices.len() as u64,
            "{}: evaluated {evaluated} of {} prompt tokens",
            c.id,
            c.usage.prompt_tokens
        );
    }
    assert_eq!(
        with[0].usage.cached_tokens(4),
        Some(p - (p + 3).div_ceil(4))
    );
}

#[test]
fn stop_strings_and_max_tokens_end_generation() {
    let e = engine();
    let c = e
        .generate(&Request::user(
            "stop",
            "List the numbers from 1 to 20, separated by commas.",
            GenParams {
                stop: vec!["5".into()],
                ..GenParams::greedy(80)
            },
        ))
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, finish::STOP);
    assert!(!c.text().contains('5'), "{:?}", c.text());
    assert!(c.text().contains('4'), "{:?}", c.text());
    let c = e
        .generate(&Request::user(
            "len",
            "Write a long story about a dragon.",
            GenParams::greedy(5),
        ))
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, finish::LENGTH);
    assert_eq!(c.usage.completion_tokens, 5);
}

#[test]
fn fifty_json_schema_requests_all_parse() {
    let e = engine();
    let cases = common::schema_cases();
    assert_eq!(cases.len(), 50);
    let reqs: Vec<Request> = cases
        .iter()
        .enumerate()
        .map(|(i, (prompt, schema))| {
            Request::user(
                format!("j{i}"),
                prompt.clone(),
                GenParams {
                    json_schema: Some(schema.clone()),
                    ..sampled(i as u64, 200)
                },
            )
        })
        .collect();
    let results = generate_all(e, reqs);
    let mut parsed = 0;
    let mut valid = 0;
    for (i, r) in results.iter().enumerate() {
        let c = r.as_ref().expect("answered");
        assert_eq!(
            c.choices[0].finish_reason,
            finish::STOP,
            "j{i} ran out of tokens: {}",
            c.text()
        );
        let v: serde_json::Value = serde_json::from_str(c.text())
            .unwrap_or_else(|err| panic!("j{i} does not parse ({err}): {}", c.text()));
        parsed += 1;
        match common::check_schema(&v, &cases[i].1) {
            Ok(()) => valid += 1,
            Err(why) => eprintln!("j{i} parses but breaks its schema: {why}: {v}"),
        }
    }
    eprintln!("structured output: {parsed}/50 parse, {valid}/50 validate");
    assert_eq!(parsed, 50);
    assert_eq!(valid, 50);
}

#[test]
fn bad_requests_get_clear_errors() {
    let e = engine();
    let long = "word ".repeat(3000);
    let err = e
        .generate(&Request::user("long", long, GenParams::greedy(4)))
        .unwrap_err();
    assert!(matches!(err, LlmError::Request { .. }), "{err}");
    assert!(
        err.to_string().contains("does not fit the context"),
        "{err}"
    );
    let err = e
        .generate(&Request::user(
            "t",
            "hi",
            GenParams {
                top_p: 0.0,
                ..Default::default()
            },
        ))
        .unwrap_err();
    assert!(err.to_string().contains("request t: top_p"), "{err}");
    let err = e
        .generate(&Request::new("empty", vec![], GenParams::greedy(4)))
        .unwrap_err();
    assert!(err.to_string().contains("messages is empty"), "{err}");
}

fn load_err(cfg: EmbeddedConfig) -> String {
    match Embedded::load(cfg) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_truncated_and_corrupt_ggufs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let e = load_err(EmbeddedConfig::new(&missing));
    assert!(e.contains("nope.gguf") && e.contains("No such file"), "{e}");

    let bytes = std::fs::read(common::smollm2()).unwrap();
    let trunc = dir.path().join("trunc.gguf");
    std::fs::write(&trunc, &bytes[..bytes.len() / 3]).unwrap();
    let e = load_err(EmbeddedConfig::new(&trunc));
    assert!(
        e.contains("trunc.gguf") && e.contains("not within the file bounds"),
        "{e}"
    );

    let mut bad = bytes[..4096].to_vec();
    bad[0] = b'X';
    let notgguf = dir.path().join("bad.gguf");
    std::fs::write(&notgguf, &bad).unwrap();
    let e = load_err(EmbeddedConfig::new(&notgguf));
    assert!(
        e.contains("bad.gguf") && e.contains("not a GGUF file"),
        "{e}"
    );

    let mut garbled = bytes[..200_000].to_vec();
    for b in &mut garbled[100..400] {
        *b = 0xff;
    }
    let g = dir.path().join("garbled.gguf");
    std::fs::write(&g, &garbled).unwrap();
    let e = load_err(EmbeddedConfig::new(&g));
    assert!(
        e.contains("garbled.gguf") && e.contains("llama.cpp could not load it"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn gpu_layers_without_a_gpu_is_an_error_not_a_silent_cpu_run() {
    let mut cfg = EmbeddedConfig::new(common::smollm2());
    cfg.gpu_layers = 99;
    if cfg!(feature = "cuda") {
        // The CUDA build offloads where a GPU is present, and says it found none elsewhere.
        if let Err(e) = Embedded::load(cfg) {
            let e = e.to_string();
            assert!(
                e.contains("--gpu-layers 99") && e.contains("found no GPU"),
                "{e}"
            );
        }
        return;
    }
    let e = load_err(cfg);
    assert!(
        e.contains("--gpu-layers 99") && e.contains("no GPU backend") && e.contains("SmolLM2"),
        "{e}"
    );
}

#[test]
fn a_gguf_without_chat_template_needs_one_given() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("no-template.gguf");
    common::copy_without_chat_template(&common::smollm2(), &plain);
    let mut cfg = EmbeddedConfig::new(&plain);
    cfg.weights = pw_llm::embedded::requant::WeightFormat::Keep;
    cfg.parallel = 1;
    cfg.ctx_per_seq = 256;
    let e = load_err(cfg.clone());
    assert!(
        e.contains("no-template.gguf")
            && e.contains("no chat template")
            && e.contains("--chat-template"),
        "{e}"
    );
    cfg.chat_template = Some("chatml".into());
    let g = Embedded::load(cfg).expect("loads with a named template");
    let c = g
        .generate(&Request::user("x", "Say hello.", GenParams::greedy(8)))
        .unwrap();
    assert!(!c.text().is_empty());
}

#[test]
fn a_truncated_converted_copy_is_converted_again_and_dead_conversions_are_removed() {
    use pw_llm::embedded::requant::{Requant, cached_path, ensure};
    let dir = tempfile::tempdir().unwrap();
    let src = common::smollm2();
    let dst = cached_path(&src, Requant::Q8_0, dir.path()).unwrap();
    // a conversion of a killed process (no such PID) left behind
    let dead = dst.with_extension("tmp99999999-1");
    std::fs::write(&dead, vec![0u8; 4096]).unwrap();
    let first = ensure(&src, Requant::Q8_0, dir.path(), 2).unwrap();
    assert_eq!(first, dst);
    assert!(!dead.exists(), "the dead conversion is removed");
    let size = std::fs::metadata(&dst).unwrap().len();
    // cut short after the fact: converted again, not reused
    let f = std::fs::OpenOptions::new().write(true).open(&dst).unwrap();
    f.set_len(size / 3).unwrap();
    drop(f);
    ensure(&src, Requant::Q8_0, dir.path(), 2).unwrap();
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), size);
    // and the repaired copy loads
    let mut cfg = EmbeddedConfig::new(&dst);
    cfg.ctx_per_seq = 256;
    cfg.parallel = 1;
    cfg.weights = pw_llm::embedded::requant::WeightFormat::Keep;
    Embedded::load(cfg).expect("the reconverted copy loads");
}

#[test]
fn a_shared_prefix_gives_the_logits_of_evaluating_the_whole_text() {
    use pw_llm::embedded::forced::with_lm;
    let mut cfg = EmbeddedConfig::new(common::smollm2());
    cfg.ctx_per_seq = 256;
    cfg.parallel = 3;
    with_lm(&cfg, |lm| {
        let a = lm.tokenize(
            "You are a careful assistant. Explain the first program:",
            false,
        );
        let b = lm.tokenize(
            "You are a careful assistant. Explain the second program:",
            false,
        );
        let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        assert!(common >= 4 && common < b.len(), "{a:?} {b:?}");
        // b whole in sequence 2; a in sequence 0, and b in sequence 1 from a's prefix
        let whole = lm.step(&[(2, &b)]).unwrap().remove(0);
        lm.step(&[(0, &a)]).unwrap();
        assert_eq!(lm.share_prefix(1, 0, common), common);
        assert_eq!(lm.len(1), common);
        let shared = lm.step(&[(1, &b[common..])]).unwrap().remove(0);
        let argmax = |l: &[f32]| (0..l.len()).max_by(|&i, &j| l[i].total_cmp(&l[j])).unwrap();
        let diff = whole
            .iter()
            .zip(&shared)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert_eq!(argmax(&whole), argmax(&shared));
        assert!(diff < 0.05, "largest logit difference {diff}");
        // a sequence's own prefix: the tail goes, the prefix stays
        assert_eq!(lm.share_prefix(0, 0, common), common);
        let again = lm.step(&[(0, &b[common..])]).unwrap().remove(0);
        assert_eq!(argmax(&again), argmax(&whole));
        // sharing more than the source holds keeps what it holds
        lm.reset(2);
        assert_eq!(lm.share_prefix(2, 1, 10_000), b.len());
    })
    .unwrap();
}
