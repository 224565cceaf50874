//! A KV-cached CPU sampler for the small causal transformers trained here.
//!
//! GLoRe samples a lot: Expert Iteration, K = 8 verifying rollouts from every step prefix,
//! best-of-3, refinements. Re-running burn's full forward pass for every new token costs a
//! whole sequence per token, so sampling runs here instead: the weights are copied out of the
//! burn [`CausalLm`] once, every sequence keeps its own key/value cache, the sequences of a
//! chunk advance in lockstep (their linear layers are one matrix product per step), chunks run
//! on all cores, and the `n` samples of one prompt share one prefill. The math is the model's
//! own (pre-norm blocks, exact-erf GELU, layer norm eps 1e-5); a test checks the logits
//! against burn's forward pass.

use pw_core::{Error, Result};
use pw_nn::checkpoint::{NamedTensors, module_tensors};
use pw_nn::transformer::CausalLm;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

const LN_EPS: f32 = 1e-5;

struct BlockW {
    ln1_g: Vec<f32>,
    ln1_b: Vec<f32>,
    q_w: Vec<f32>,
    q_b: Vec<f32>,
    k_w: Vec<f32>,
    k_b: Vec<f32>,
    v_w: Vec<f32>,
    v_b: Vec<f32>,
    p_w: Vec<f32>,
    p_b: Vec<f32>,
    ln2_g: Vec<f32>,
    ln2_b: Vec<f32>,
    fc_w: Vec<f32>,
    fc_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
}

/// The weights of a [`CausalLm`], laid out for row-major matrix products.
pub struct Engine {
    d: usize,
    heads: usize,
    hidden: usize,
    vocab: usize,
    max_len: usize,
    tok: Vec<f32>,
    pos: Vec<f32>,
    blocks: Vec<BlockW>,
    lnf_g: Vec<f32>,
    lnf_b: Vec<f32>,
    head: Vec<f32>,
}

/// How to sample.
#[derive(Debug, Clone, Copy)]
pub struct SampleOptions {
    /// 0 = greedy.
    pub temperature: f32,
    /// New tokens at most (the stop token not counted).
    pub max_new: usize,
    /// Generation ends at this token (not included in the output).
    pub stop: u32,
}

fn get<'a>(t: &'a NamedTensors, name: &str, shape: &[usize]) -> Result<&'a [f32]> {
    let (s, v) = t
        .get(name)
        .ok_or_else(|| Error::Other(format!("model weights: no tensor {name}")))?;
    if s != shape {
        return Err(Error::Other(format!(
            "model weights: {name} has shape {s:?}, expected {shape:?}"
        )));
    }
    Ok(v)
}

impl Engine {
    pub fn from_lm(lm: &CausalLm, heads: usize) -> Result<Engine> {
        Engine::from_tensors(&module_tensors(lm), heads)
    }

    /// From a [`CausalLm`]'s named tensors (`trunk.tok.weight`, ..., `head.weight`).
    pub fn from_tensors(t: &NamedTensors, heads: usize) -> Result<Engine> {
        let (tok_shape, _) = t
            .get("trunk.tok.weight")
            .ok_or_else(|| Error::Other("model weights: no trunk.tok.weight".into()))?;
        let (vocab, d) = (tok_shape[0], tok_shape[1]);
        let max_len = t
            .get("trunk.pos.weight")
            .map(|(s, _)| s[0])
            .ok_or_else(|| Error::Other("model weights: no trunk.pos.weight".into()))?;
        let hidden = t
            .get("trunk.blocks.0.mlp.fc.weight")
            .map(|(s, _)| s[1])
            .ok_or_else(|| Error::Other("model weights: no blocks".into()))?;
        let mut blocks = Vec::new();
        for i in 0.. {
            let p = format!("trunk.blocks.{i}");
            if !t.contains_key(&format!("{p}.ln1.gamma")) {
                break;
            }
            let g = |n: &str, s: &[usize]| get(t, &format!("{p}.{n}"), s).map(<[f32]>::to_vec);
            blocks.push(BlockW {
                ln1_g: g("ln1.gamma", &[d])?,
                ln1_b: g("ln1.beta", &[d])?,
                q_w: g("attn.q.weight", &[d, d])?,
                q_b: g("attn.q.bias", &[d])?,
                k_w: g("attn.k.weight", &[d, d])?,
                k_b: g("attn.k.bias", &[d])?,
                v_w: g("attn.v.weight", &[d, d])?,
                v_b: g("attn.v.bias", &[d])?,
                p_w: g("attn.proj.weight", &[d, d])?,
                p_b: g("attn.proj.bias", &[d])?,
                ln2_g: g("ln2.gamma", &[d])?,
                ln2_b: g("ln2.beta", &[d])?,
                fc_w: g("mlp.fc.weight", &[d, hidden])?,
                fc_b: g("mlp.fc.bias", &[hidden])?,
                out_w: g("mlp.out.weight", &[hidden, d])?,
                out_b: g("mlp.out.bias", &[d])?,
            });
        }
        if d % heads != 0 {
            return Err(Error::Other(format!(
                "d_model {d} is not divisible by {heads} heads"
            )));
        }
        Ok(Engine {
            d,
            heads,
            hidden,
            vocab,
            max_len,
            tok: get(t, "trunk.tok.weight", &[vocab, d])?.to_vec(),
            pos: get(t, "trunk.pos.weight", &[max_len, d])?.to_vec(),
            blocks,
            lnf_g: get(t, "trunk.ln_f.gamma", &[d])?.to_vec(),
            lnf_b: get(t, "trunk.ln_f.beta", &[d])?.to_vec(),
            head: get(t, "head.weight", &[d, vocab])?.to_vec(),
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Next-token logits after `tokens` (for tests and scoring).
    pub fn last_logits(&self, tokens: &[u32]) -> Vec<f32> {
        let mut seq = Seq::new(self, tokens.len() + 1, 0);
        let mut s = Scratch::new(self, tokens.len());
        self.prefill(&mut seq, tokens, &mut s);
        s.logits[..self.vocab].to_vec()
    }

    /// `n` sampled continuations of each prompt: `out[i][j]` is sample `j` of prompt `i`,
    /// drawn with a generator seeded from (`seeds[i]`, `j`), so results do not depend on
    /// batching or thread count. A prompt as long as the model's context gets empty
    /// continuations.
    pub fn sample(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        n: usize,
        opts: &SampleOptions,
    ) -> Vec<Vec<Vec<u32>>> {
        assert_eq!(prompts.len(), seeds.len(), "one seed per prompt");
        // Chunks of about 48 sequences: large enough for the matrix products to pay, small
        // enough that every core gets several.
        let per_chunk = (48 / n.max(1)).max(1);
        let indexed: Vec<(u64, &Vec<u32>)> = seeds.iter().copied().zip(prompts).collect();
        indexed
            .par_chunks(per_chunk)
            .flat_map_iter(|chunk| self.sample_chunk(chunk, n, opts))
            .collect()
    }

    fn sample_chunk(
        &self,
        chunk: &[(u64, &Vec<u32>)],
        n: usize,
        o: &SampleOptions,
    ) -> Vec<Vec<Vec<u32>>> {
        let longest = chunk.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
        let mut s = Scratch::new(self, longest.max(chunk.len() * n));
        let mut seqs: Vec<Seq> = Vec::with_capacity(chunk.len() * n);
        let mut first_logits: Vec<f32> = Vec::with_capacity(chunk.len() * n * self.vocab);
        for &(seed, prompt) in chunk {
            let cap = (prompt.len() + o.max_new).min(self.max_len);
            if prompt.is_empty() || prompt.len() >= self.max_len {
                for j in 0..n {
                    let mut q = Seq::new(self, 1, seed_of(seed, j));
                    q.done = true;
                    seqs.push(q);
                    first_logits.extend(std::iter::repeat_n(0.0, self.vocab));
                }
                continue;
            }
            let mut base = Seq::new(self, cap, 0);
            self.prefill(&mut base, prompt, &mut s);
            for j in 0..n {
                let mut q = base.clone();
                q.rng = StdRng::seed_from_u64(seed_of(seed, j));
                seqs.push(q);
                first_logits.extend_from_slice(&s.logits[..self.vocab]);
            }
        }
        // The first token from the prefill logits, then lockstep decoding.
        for (q, logits) in seqs.iter_mut().zip(first_logits.chunks(self.vocab)) {
            if !q.done {
                let t = pick(logits, o.temperature, &mut q.rng);
                q.accept(t, o);
            }
        }
        loop {
            let active: Vec<usize> = (0..seqs.len()).filter(|&k| !seqs[k].done).collect();
            if active.is_empty() {
                break;
            }
            self.decode_step(&mut seqs, &active, &mut s);
            for (row, &k) in active.iter().enumerate() {
                let q = &mut seqs[k];
                let logits = &s.logits[row * self.vocab..(row + 1) * self.vocab];
                let t = pick(logits, o.temperature, &mut q.rng);
                q.accept(t, o);
            }
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut it = seqs.into_iter();
        for _ in chunk {
            out.push(
                (0..n)
                    .map(|_| it.next().expect("n per prompt").out)
                    .collect(),
            );
        }
        out
    }

    /// Runs `prompt` through the model into `seq`'s cache; `s.logits[..vocab]` holds the
    /// next-token logits afterwards.
    fn prefill(&self, seq: &mut Seq, prompt: &[u32], s: &mut Scratch) {
        let (d, t) = (self.d, prompt.len());
        s.ensure(self, t);
        for (r, &tok) in prompt.iter().enumerate() {
            let x = &mut s.x[r * d..(r + 1) * d];
            let e = &self.tok[tok as usize * d..(tok as usize + 1) * d];
            let p = &self.pos[r * d..(r + 1) * d];
            for c in 0..d {
                x[c] = e[c] + p[c];
            }
        }
        for (l, b) in self.blocks.iter().enumerate() {
            layer_norm_rows(&s.x[..t * d], &mut s.h[..t * d], &b.ln1_g, &b.ln1_b, d);
            linear(
                &s.h[..t * d],
                t,
                d,
                &b.q_w,
                &b.q_b,
                d,
                &mut s.q[..t * d],
                false,
            );
            linear(
                &s.h[..t * d],
                t,
                d,
                &b.k_w,
                &b.k_b,
                d,
                &mut seq.k[l][..t * d],
                false,
            );
            linear(
                &s.h[..t * d],
                t,
                d,
                &b.v_w,
                &b.v_b,
                d,
                &mut seq.v[l][..t * d],
                false,
            );
            for r in 0..t {
                attend(
                    &s.q[r * d..(r + 1) * d],
                    &seq.k[l][..(r + 1) * d],
                    &seq.v[l][..(r + 1) * d],
                    self.heads,
                    &mut s.scores,
                    &mut s.att[r * d..(r + 1) * d],
                );
            }
            self.block_tail(b, t, s);
        }
        seq.len = t;
        let last = (t - 1) * d;
        layer_norm_rows(
            &s.x[last..last + d],
            &mut s.h[..d],
            &self.lnf_g,
            &self.lnf_b,
            d,
        );
        matmul(
            &s.h[..d],
            1,
            d,
            &self.head,
            self.vocab,
            &mut s.logits[..self.vocab],
            0.0,
        );
    }

    /// One token for each sequence in `active` (their last accepted token at their length).
    fn decode_step(&self, seqs: &mut [Seq], active: &[usize], s: &mut Scratch) {
        let (d, b) = (self.d, active.len());
        s.ensure(self, b);
        for (r, &k) in active.iter().enumerate() {
            let q = &seqs[k];
            let tok = q.last as usize;
            let x = &mut s.x[r * d..(r + 1) * d];
            let e = &self.tok[tok * d..(tok + 1) * d];
            let p = &self.pos[q.len * d..(q.len + 1) * d];
            for c in 0..d {
                x[c] = e[c] + p[c];
            }
        }
        for (l, w) in self.blocks.iter().enumerate() {
            layer_norm_rows(&s.x[..b * d], &mut s.h[..b * d], &w.ln1_g, &w.ln1_b, d);
            linear(
                &s.h[..b * d],
                b,
                d,
                &w.q_w,
                &w.q_b,
                d,
                &mut s.q[..b * d],
                false,
            );
            linear(
                &s.h[..b * d],
                b,
                d,
                &w.k_w,
                &w.k_b,
                d,
                &mut s.kn[..b * d],
                false,
            );
            linear(
                &s.h[..b * d],
                b,
                d,
                &w.v_w,
                &w.v_b,
                d,
                &mut s.vn[..b * d],
                false,
            );
            for (r, &k) in active.iter().enumerate() {
                let q = &mut seqs[k];
                let at = q.len * d;
                q.k[l][at..at + d].copy_from_slice(&s.kn[r * d..(r + 1) * d]);
                q.v[l][at..at + d].copy_from_slice(&s.vn[r * d..(r + 1) * d]);
                attend(
                    &s.q[r * d..(r + 1) * d],
                    &q.k[l][..at + d],
                    &q.v[l][..at + d],
                    self.heads,
                    &mut s.scores,
                    &mut s.att[r * d..(r + 1) * d],
                );
            }
            self.block_tail(w, b, s);
        }
        for &k in active {
            seqs[k].len += 1;
        }
        layer_norm_rows(
            &s.x[..b * d],
            &mut s.h[..b * d],
            &self.lnf_g,
            &self.lnf_b,
            d,
        );
        matmul(
            &s.h[..b * d],
            b,
            d,
            &self.head,
            self.vocab,
            &mut s.logits[..b * self.vocab],
            0.0,
        );
    }

    /// The block after attention: projection + residual, then the MLP + residual, over `rows`.
    fn block_tail(&self, w: &BlockW, rows: usize, s: &mut Scratch) {
        let (d, hd) = (self.d, self.hidden);
        linear(
            &s.att[..rows * d],
            rows,
            d,
            &w.p_w,
            &w.p_b,
            d,
            &mut s.x[..rows * d],
            true,
        );
        layer_norm_rows(
            &s.x[..rows * d],
            &mut s.h[..rows * d],
            &w.ln2_g,
            &w.ln2_b,
            d,
        );
        linear(
            &s.h[..rows * d],
            rows,
            d,
            &w.fc_w,
            &w.fc_b,
            hd,
            &mut s.f[..rows * hd],
            false,
        );
        s.f[..rows * hd].iter_mut().for_each(|v| *v = gelu(*v));
        linear(
            &s.f[..rows * hd],
            rows,
            hd,
            &w.out_w,
            &w.out_b,
            d,
            &mut s.x[..rows * d],
            true,
        );
    }
}

fn seed_of(seed: u64, j: usize) -> u64 {
    (seed ^ 0x51_7CC1_B727_220A)
        .wrapping_add((j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0x0100_0000_01B3)
}

#[derive(Clone)]
struct Seq {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    /// Positions the cache holds.
    cap: usize,
    last: u32,
    out: Vec<u32>,
    done: bool,
    rng: StdRng,
}

impl Seq {
    fn new(e: &Engine, cap: usize, seed: u64) -> Seq {
        let layers = e.blocks.len();
        Seq {
            k: vec![vec![0.0; cap * e.d]; layers],
            v: vec![vec![0.0; cap * e.d]; layers],
            len: 0,
            cap,
            last: 0,
            out: Vec::new(),
            done: false,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn accept(&mut self, t: u32, o: &SampleOptions) {
        if t == o.stop {
            self.done = true;
            return;
        }
        self.out.push(t);
        self.last = t;
        // The next step feeds `t` at position `len`: the cache must have room for it.
        if self.out.len() >= o.max_new || self.len >= self.cap {
            self.done = true;
        }
    }
}

struct Scratch {
    rows: usize,
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    kn: Vec<f32>,
    vn: Vec<f32>,
    att: Vec<f32>,
    f: Vec<f32>,
    logits: Vec<f32>,
    scores: Vec<f32>,
}

impl Scratch {
    fn new(e: &Engine, rows: usize) -> Scratch {
        let mut s = Scratch {
            rows: 0,
            x: Vec::new(),
            h: Vec::new(),
            q: Vec::new(),
            kn: Vec::new(),
            vn: Vec::new(),
            att: Vec::new(),
            f: Vec::new(),
            logits: Vec::new(),
            scores: vec![0.0; e.max_len],
        };
        s.ensure(e, rows.max(1));
        s
    }
    fn ensure(&mut self, e: &Engine, rows: usize) {
        if rows <= self.rows {
            return;
        }
        self.rows = rows;
        for b in [
            &mut self.x,
            &mut self.h,
            &mut self.q,
            &mut self.kn,
            &mut self.vn,
            &mut self.att,
        ] {
            b.resize(rows * e.d, 0.0);
        }
        self.f.resize(rows * e.hidden, 0.0);
        self.logits.resize(rows * e.vocab, 0.0);
    }
}

/// `out = x · w` (+ `out` when `beta` is 1): `x` is [m, k], `w` is [k, n], row-major.
fn matmul(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, out: &mut [f32], beta: f32) {
    // SAFETY: the slices hold m*k, k*n and m*n floats with the strides given (checked by the
    // debug asserts), and `out` does not alias the inputs (distinct borrows).
    debug_assert!(x.len() >= m * k && w.len() >= k * n && out.len() >= m * n);
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            n as isize,
            1,
            beta,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `out = x · w + bias`, or `out += x · w + bias` when `accumulate` (the residual stream).
#[allow(clippy::too_many_arguments)] // a matrix product's shapes and buffers
fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    bias: &[f32],
    n: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    for row in out[..m * n].chunks_mut(n) {
        if accumulate {
            row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        } else {
            row.copy_from_slice(bias);
        }
    }
    matmul(x, m, k, w, n, out, 1.0);
}

fn layer_norm_rows(x: &[f32], out: &mut [f32], g: &[f32], b: &[f32], d: usize) {
    for (xr, orow) in x.chunks(d).zip(out.chunks_mut(d)) {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + LN_EPS).sqrt();
        for c in 0..d {
            orow[c] = (xr[c] - mean) * inv * g[c] + b[c];
        }
    }
}

/// Causal attention of one query row over `keys`/`values` ([len, d]) for every head.
fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    heads: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = q.len();
    let hd = d / heads;
    let len = keys.len() / d;
    let scale = 1.0 / (hd as f32).sqrt();
    for h in 0..heads {
        let qh = &q[h * hd..(h + 1) * hd];
        let mut max = f32::NEG_INFINITY;
        for (j, sc) in scores[..len].iter_mut().enumerate() {
            let kh = &keys[j * d + h * hd..j * d + (h + 1) * hd];
            let dot: f32 = qh.iter().zip(kh).map(|(a, b)| a * b).sum();
            *sc = dot * scale;
            max = max.max(*sc);
        }
        let mut sum = 0.0;
        for sc in scores[..len].iter_mut() {
            *sc = (*sc - max).exp();
            sum += *sc;
        }
        let oh = &mut out[h * hd..(h + 1) * hd];
        oh.iter_mut().for_each(|o| *o = 0.0);
        for (j, sc) in scores[..len].iter().enumerate() {
            let p = sc / sum;
            let vh = &values[j * d + h * hd..j * d + (h + 1) * hd];
            oh.iter_mut().zip(vh).for_each(|(o, v)| *o += p * v);
        }
    }
}

/// GELU with erf (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7), as the model.
fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf = (1.0 - poly * (-z * z).exp()).copysign(z);
    0.5 * x * (1.0 + erf)
}

/// Greedy (argmax) at temperature 0, else a draw from softmax(logits / temperature).
fn pick(logits: &[f32], temperature: f32, rng: &mut StdRng) -> u32 {
    if temperature <= 0.0 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let inv = 1.0 / temperature;
    let total: f32 = logits.iter().map(|&v| ((v - max) * inv).exp()).sum();
    let mut u = rng.random::<f32>() * total;
    for (i, &v) in logits.iter().enumerate() {
        u -= ((v - max) * inv).exp();
        if u <= 0.0 {
            return i as u32;
        }
    }
    (logits.len() - 1) as u32
}
