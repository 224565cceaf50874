//! The KV-cached sampler computes what burn's forward pass computes.

use pw_glore::engine::{Engine, SampleOptions};
use pw_nn::burn::tensor::{Int, Tensor, TensorData};
use pw_nn::transformer::{CausalLm, TransformerConfig};
use pw_nn::{DeviceKind, device, seed_everything};

fn lm() -> (CausalLm, pw_nn::burn::tensor::Device) {
    let dev = device(DeviceKind::Cpu, false).unwrap();
    seed_everything(&dev, 3);
    let cfg = TransformerConfig {
        vocab_size: 40,
        max_len: 48,
        d_model: 32,
        n_heads: 4,
        n_layers: 2,
        mlp_ratio: 4,
        causal: true,
    };
    (CausalLm::new(&cfg, &dev), dev)
}

fn burn_logits(m: &CausalLm, dev: &pw_nn::burn::tensor::Device, toks: &[u32]) -> Vec<f32> {
    let t = toks.len();
    let x = Tensor::<2, Int>::from_data(
        TensorData::new(toks.iter().map(|&v| v as i64).collect::<Vec<_>>(), [1, t]),
        dev,
    );
    let all = m.forward(x).into_data().try_into_vec_as::<f32>().unwrap();
    all[(t - 1) * 40..t * 40].to_vec()
}

#[test]
fn engine_logits_match_burns_forward_pass() {
    let (m, dev) = lm();
    let e = Engine::from_lm(&m, 4).unwrap();
    let toks: Vec<u32> = (0..23).map(|i| (i * 7 % 40) as u32).collect();
    for len in [1, 5, 23] {
        let a = burn_logits(&m, &dev, &toks[..len]);
        let b = e.last_logits(&toks[..len]);
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "len {len}: max |diff| {diff}");
    }
}

#[test]
fn greedy_decoding_matches_a_full_forward_loop_and_sampling_is_seeded() {
    let (m, dev) = lm();
    let e = Engine::from_lm(&m, 4).unwrap();
    let prompts: Vec<Vec<u32>> = vec![vec![1, 5, 9], vec![1, 2], vec![1, 30, 31, 32, 33]];
    let opts = SampleOptions {
        temperature: 0.0,
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
    let hot = SampleOptions {
        temperature: 1.0,
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
