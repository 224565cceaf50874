//! The KV-cached decoder computes what burn's forward pass computes: logits (with and without
//! a prefix of continuous embeddings), greedy decoding, seeded sampling independent of the
//! batch, and beam search that finds the exact optimum when the beam covers every path.

use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::decode::{BeamOptions, Decoder, Prompt, SampleOptions};
use pw_nn::transformer::{CausalLm, TransformerConfig};
use pw_nn::{seed_everything, train_device};

const VOCAB: usize = 40;

fn lm(vocab: usize) -> (CausalLm, Device) {
    let dev = train_device(false).unwrap();
    seed_everything(&dev, 3);
    let cfg = TransformerConfig {
        vocab_size: vocab,
        max_len: 48,
        d_model: 32,
        n_heads: 4,
        n_layers: 2,
        mlp_ratio: 4,
        causal: true,
    };
    (CausalLm::new(&cfg, &dev), dev)
}

fn tokens(toks: &[u32], dev: &Device) -> Tensor<2, Int> {
    Tensor::<2, Int>::from_data(
        TensorData::new(
            toks.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            [1, toks.len()],
        ),
        dev,
    )
}

fn last_row(all: Tensor<3>) -> Vec<f32> {
    let [_, t, v] = all.dims();
    let all = all.into_data().try_into_vec_as::<f32>().unwrap();
    all[(t - 1) * v..t * v].to_vec()
}

fn burn_logits(m: &CausalLm, dev: &Device, toks: &[u32]) -> Vec<f32> {
    last_row(m.forward(tokens(toks, dev)))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn decoder_logits_match_burns_forward_pass() {
    let (m, dev) = lm(VOCAB);
    let e = Decoder::new(&m).unwrap();
    let toks: Vec<u32> = (0..23).map(|i| (i * 7 % 40) as u32).collect();
    for len in [1, 5, 23] {
        let diff = max_diff(
            &burn_logits(&m, &dev, &toks[..len]),
            &e.last_logits(&toks[..len]),
        );
        assert!(diff < 1e-3, "len {len}: max |diff| {diff}");
    }
}

#[test]
fn a_prefix_of_embeddings_decodes_as_burns_forward_with_prefix() {
    let (m, dev) = lm(VOCAB);
    let e = Decoder::new(&m).unwrap();
    let d = e.d_model();
    let prefix: Vec<f32> = (0..3 * d)
        .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
        .collect();
    let pre = Tensor::<3>::from_data(TensorData::new(prefix.clone(), [1, 3, d]), &dev);
    let toks = [4u32, 9, 17, 2];
    let want = last_row(m.forward_with_prefix(pre, tokens(&toks, &dev)));
    let got = e
        .prompt_logits(&Prompt {
            prefix: &prefix,
            tokens: &toks,
        })
        .unwrap();
    let diff = max_diff(&want, &got);
    assert!(diff < 1e-3, "max |diff| {diff}");
    // A prefix alone (no tokens yet) is a valid prompt too: the captioner's first step.
    let only = e
        .prompt_logits(&Prompt {
            prefix: &prefix,
            tokens: &[],
        })
        .unwrap();
    assert_eq!(only.len(), VOCAB);
    // A prefix that is not whole rows is refused, not misread.
    let err = e
        .prompt_logits(&Prompt {
            prefix: &prefix[..d + 1],
            tokens: &toks,
        })
        .unwrap_err();
    assert!(err.to_string().contains("rows"), "{err}");
}

#[test]
fn greedy_decoding_matches_a_full_forward_loop_and_sampling_is_seeded() {
    let (m, dev) = lm(VOCAB);
    let e = Decoder::new(&m).unwrap();
    let prompts: Vec<Vec<u32>> = vec![vec![1, 5, 9], vec![1, 2], vec![1, 30, 31, 32, 33]];
    let opts = SampleOptions {
        temperature: 0.0,
        top_p: 1.0,
        max_new: 12,
        stop: 2,
    };
    let out = e.sample(&prompts, &[1, 2, 3], 2, &opts);
    for (p, samples) in prompts.iter().zip(&out) {
        // The reference: argmax of burn's forward pass, one token at a time.
        let mut seq = p.clone();
        let mut want = Vec::new();
        while want.len() < 12 {
            let l = burn_logits(&m, &dev, &seq);
            let t = (0..40).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap() as u32;
            if t == 2 {
                break;
            }
            want.push(t);
            seq.push(t);
        }
        assert_eq!(samples[0], want);
        assert_eq!(samples[1], want);
    }
    for top_p in [1.0, 0.9] {
        let hot = SampleOptions {
            temperature: 1.0,
            top_p,
            ..opts
        };
        let a = e.sample(&prompts, &[1, 2, 3], 3, &hot);
        let b = e.sample(&prompts[1..2], &[2], 3, &hot);
        assert_eq!(
            a[1], b[0],
            "a prompt's samples do not depend on the batch around it"
        );
        assert_ne!(a[1][0], a[1][1], "different samples of one prompt differ");
    }
}

/// Log probability of `cont` (then `stop`, when given) after `prompt`, from burn's forward.
fn log_prob(m: &CausalLm, dev: &Device, prompt: &[u32], cont: &[u32], stop: Option<u32>) -> f32 {
    let mut seq = prompt.to_vec();
    let mut total = 0.0;
    for &t in cont.iter().chain(stop.iter()) {
        let l = burn_logits(m, dev, &seq);
        let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + l.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
        total += l[t as usize] - lse;
        seq.push(t);
    }
    total
}

#[test]
fn beam_search_finds_the_most_probable_continuation_when_it_covers_every_path() {
    // Vocabulary of 6, stop token 0, at most 2 new tokens: 1 + 5 + 25 paths, so a beam of 36
    // is exhaustive and must return the exact optimum.
    let (m, dev) = lm(6);
    let e = Decoder::new(&m).unwrap();
    let prompt = [3u32, 1, 4];
    let mut paths: Vec<(Vec<u32>, bool)> = vec![(vec![], true)];
    for a in 1..6u32 {
        paths.push((vec![a], true));
        for b in 1..6u32 {
            paths.push((vec![a, b], false));
        }
    }
    let scored: Vec<(f32, Vec<u32>)> = paths
        .iter()
        .map(|(c, stopped)| {
            (
                log_prob(&m, &dev, &prompt, c, stopped.then_some(0)),
                c.clone(),
            )
        })
        .collect();
    let best = scored
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap()
        .clone();
    let opts = BeamOptions {
        width: 36,
        max_new: 2,
        stop: 0,
        length_penalty: 0.0,
    };
    let hyps = e.beam_search(&[Prompt::tokens(&prompt)], &opts).unwrap();
    let top = &hyps[0][0];
    assert_eq!(top.tokens, best.1, "beam {top:?} vs exhaustive {best:?}");
    assert!(
        (top.log_prob - best.0).abs() < 1e-3,
        "{} vs {}",
        top.log_prob,
        best.0
    );
    // Every returned hypothesis carries its true log probability, best first.
    for h in &hyps[0] {
        let want = log_prob(&m, &dev, &prompt, &h.tokens, h.finished.then_some(0));
        assert!((h.log_prob - want).abs() < 1e-3, "{h:?}: {want}");
    }
    assert!(hyps[0].windows(2).all(|w| w[0].score >= w[1].score));
    // Width 1 is greedy decoding.
    let greedy = e.sample(
        &[prompt.to_vec()],
        &[0],
        1,
        &SampleOptions {
            temperature: 0.0,
            top_p: 1.0,
            max_new: 2,
            stop: 0,
        },
    );
    let one = e
        .beam_search(
            &[Prompt::tokens(&prompt)],
            &BeamOptions { width: 1, ..opts },
        )
        .unwrap();
    assert_eq!(one[0][0].tokens, greedy[0][0]);
}
