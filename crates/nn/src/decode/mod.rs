//! The KV-cached CPU decoder for the causal transformers trained with burn ([`CausalLm`]).
//!
//! Decoding token by token with burn's full forward pass costs a whole sequence per token. A
//! [`Decoder`] copies the weights out of the module once, keeps a key/value cache per
//! sequence, and advances the sequences of a chunk in lockstep, so every linear layer is one
//! matrix product per step; chunks run on all cores. One forward path serves the prefill and
//! the step: each sequence appends any number of rows (a prefix of continuous embeddings, then
//! tokens) and gets its next-token logits.
//!
//! - [`Decoder::sample`] / [`Decoder::sample_prompts`]: `n` continuations per prompt, greedy,
//!   with a temperature, or nucleus (top-p); the `n` samples of a prompt share one prefill, and
//!   each is drawn from a generator seeded by (prompt seed, sample index), so results do not
//!   depend on batching or thread count ([`sample`]).
//! - [`Decoder::beam_search`]: the best `width` hypotheses by length-normalised log
//!   probability ([`beam`]).
//! - [`Prompt::prefix`]: rows of `d_model` floats placed before the tokens, e.g. video features
//!   projected to `d_model`; [`CausalLm::forward_with_prefix`] is the burn side of the same
//!   model, used to train it.
//!
//! The math is the module's own (pre-norm blocks, the fused kernels' erf GELU, the layer norm
//! epsilon of [`crate::transformer::LAYER_NORM_EPS`], heads from the attention module); a test
//! checks the logits against burn's forward pass.

mod beam;
mod kernels;
pub mod sample;

pub use beam::{BeamOptions, Hypothesis};
pub use sample::SampleOptions;

use crate::transformer::{CausalLm, LAYER_NORM_EPS};
use burn::module::Param;
use burn::nn::LayerNorm;
use burn::nn::Linear;
use burn::tensor::Tensor;
use kernels::{attend, gelu_in_place, layer_norm_rows, linear, matmul};
use pw_core::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;

struct BlockWeights {
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
pub struct Decoder {
    d: usize,
    heads: usize,
    hidden: usize,
    vocab: usize,
    max_len: usize,
    eps: f32,
    tok: Vec<f32>,
    pos: Vec<f32>,
    blocks: Vec<BlockWeights>,
    lnf_g: Vec<f32>,
    lnf_b: Vec<f32>,
    head: Vec<f32>,
}

/// What a sequence starts from: optional continuous embeddings (`prefix`, rows of `d_model`
/// floats, row-major), then tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prompt<'a> {
    pub prefix: &'a [f32],
    pub tokens: &'a [u32],
}

impl<'a> Prompt<'a> {
    pub fn tokens(tokens: &'a [u32]) -> Prompt<'a> {
        Prompt {
            prefix: &[],
            tokens,
        }
    }
}

fn values<const D: usize>(p: &Param<Tensor<D>>, what: &str) -> Result<Vec<f32>> {
    p.val()
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Other(format!("decoder: {what}: {e:?}")))
}

fn linear_weights(l: &Linear, what: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    let w = values(&l.weight, what)?;
    let out = l.weight.val().dims()[1];
    let b = match &l.bias {
        Some(b) => values(b, what)?,
        None => vec![0.0; out],
    };
    Ok((w, b))
}

fn norm_weights(ln: &LayerNorm, what: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    let g = values(&ln.gamma, what)?;
    let b = match &ln.beta {
        Some(b) => values(b, what)?,
        None => vec![0.0; g.len()],
    };
    Ok((g, b))
}

impl Decoder {
    /// Copies `lm`'s weights; the number of heads comes from its attention modules.
    pub fn new(lm: &CausalLm) -> Result<Decoder> {
        let trunk = &lm.trunk;
        let [vocab, d] = trunk.tok.weight.val().dims();
        let max_len = trunk.pos.weight.val().dims()[0];
        let first = trunk
            .blocks
            .first()
            .ok_or_else(|| Error::Other("decoder: the model has no blocks".into()))?;
        let heads = first.attn.n_heads;
        let hidden = first.mlp.fc.weight.val().dims()[1];
        if heads == 0 || d % heads != 0 {
            return Err(Error::Other(format!(
                "decoder: d_model {d} is not divisible by {heads} heads"
            )));
        }
        let mut blocks = Vec::with_capacity(trunk.blocks.len());
        for (i, b) in trunk.blocks.iter().enumerate() {
            let w = |what: &str| format!("block {i} {what}");
            let (ln1_g, ln1_b) = norm_weights(&b.ln1, &w("ln1"))?;
            let (q_w, q_b) = linear_weights(&b.attn.q, &w("q"))?;
            let (k_w, k_b) = linear_weights(&b.attn.k, &w("k"))?;
            let (v_w, v_b) = linear_weights(&b.attn.v, &w("v"))?;
            let (p_w, p_b) = linear_weights(&b.attn.proj, &w("proj"))?;
            let (ln2_g, ln2_b) = norm_weights(&b.ln2, &w("ln2"))?;
            let (fc_w, fc_b) = linear_weights(&b.mlp.fc, &w("mlp.fc"))?;
            let (out_w, out_b) = linear_weights(&b.mlp.out, &w("mlp.out"))?;
            blocks.push(BlockWeights {
                ln1_g,
                ln1_b,
                q_w,
                q_b,
                k_w,
                k_b,
                v_w,
                v_b,
                p_w,
                p_b,
                ln2_g,
                ln2_b,
                fc_w,
                fc_b,
                out_w,
                out_b,
            });
        }
        let (lnf_g, lnf_b) = norm_weights(&trunk.ln_f, "ln_f")?;
        Ok(Decoder {
            d,
            heads,
            hidden,
            vocab,
            max_len,
            eps: LAYER_NORM_EPS as f32,
            tok: values(&trunk.tok.weight, "tok")?,
            pos: values(&trunk.pos.weight, "pos")?,
            blocks,
            lnf_g,
            lnf_b,
            head: linear_weights(&lm.head, "head")?.0,
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn d_model(&self) -> usize {
        self.d
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn check(&self, p: &Prompt) -> Result<()> {
        if !p.prefix.len().is_multiple_of(self.d) {
            return Err(Error::Other(format!(
                "decoder: a prefix of {} floats is not a whole number of {}-wide rows",
                p.prefix.len(),
                self.d
            )));
        }
        if let Some(&t) = p.tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::Other(format!(
                "decoder: token {t} is outside the vocabulary of {}",
                self.vocab
            )));
        }
        Ok(())
    }

    fn rows(&self, p: &Prompt) -> usize {
        p.prefix.len() / self.d + p.tokens.len()
    }

    /// Next-token logits after `tokens` (for tests and scoring).
    pub fn last_logits(&self, tokens: &[u32]) -> Vec<f32> {
        self.prompt_logits(&Prompt::tokens(tokens))
            .expect("token ids come from the model's own vocabulary")
    }

    /// Next-token logits after a prompt (prefix rows, then tokens).
    pub fn prompt_logits(&self, p: &Prompt) -> Result<Vec<f32>> {
        self.check(p)?;
        let rows = self.rows(p);
        if rows == 0 || rows > self.max_len {
            return Err(Error::Other(format!(
                "decoder: a prompt of {rows} rows does not fit a context of {}",
                self.max_len
            )));
        }
        let mut seqs = vec![Seq::new(self, rows, 0)];
        let mut s = Scratch::new(self, rows);
        self.forward(&mut seqs, &[Rows::of(0, p)], &mut s);
        Ok(s.logits[..self.vocab].to_vec())
    }

    /// `n` sampled continuations of each token prompt: `out[i][j]` is sample `j` of prompt
    /// `i`, drawn with a generator seeded from (`seeds[i]`, `j`). A prompt that is empty or as
    /// long as the model's context gets empty continuations.
    pub fn sample(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        n: usize,
        opts: &SampleOptions,
    ) -> Vec<Vec<Vec<u32>>> {
        let ps: Vec<Prompt> = prompts.iter().map(|p| Prompt::tokens(p)).collect();
        self.sample_prompts(&ps, seeds, n, opts)
            .expect("token ids come from the model's own vocabulary")
    }

    /// [`Decoder::sample`] for prompts that may start with continuous embeddings.
    pub fn sample_prompts(
        &self,
        prompts: &[Prompt],
        seeds: &[u64],
        n: usize,
        opts: &SampleOptions,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        if prompts.len() != seeds.len() {
            return Err(Error::Other(format!(
                "decoder: {} prompts but {} seeds",
                prompts.len(),
                seeds.len()
            )));
        }
        for p in prompts {
            self.check(p)?;
        }
        // Chunks of about 48 sequences: large enough for the matrix products to pay, small
        // enough that every core gets several.
        let per_chunk = (48 / n.max(1)).max(1);
        let indexed: Vec<(u64, &Prompt)> = seeds.iter().copied().zip(prompts).collect();
        Ok(indexed
            .par_chunks(per_chunk)
            .flat_map_iter(|chunk| self.sample_chunk(chunk, n, opts))
            .collect())
    }

    fn sample_chunk(
        &self,
        chunk: &[(u64, &Prompt)],
        n: usize,
        o: &SampleOptions,
    ) -> Vec<Vec<Vec<u32>>> {
        let longest = chunk.iter().map(|(_, p)| self.rows(p)).max().unwrap_or(0);
        let mut s = Scratch::new(self, longest.max(chunk.len() * n));
        let mut seqs: Vec<Seq> = Vec::with_capacity(chunk.len() * n);
        let mut first_logits: Vec<f32> = Vec::with_capacity(chunk.len() * n * self.vocab);
        for &(seed, prompt) in chunk {
            let rows = self.rows(prompt);
            if rows == 0 || rows >= self.max_len {
                for j in 0..n {
                    let mut q = Seq::new(self, 1, sample::seed_of(seed, j));
                    q.done = true;
                    seqs.push(q);
                    first_logits.extend(std::iter::repeat_n(0.0, self.vocab));
                }
                continue;
            }
            let cap = (rows + o.max_new).min(self.max_len);
            let mut base = vec![Seq::new(self, cap, 0)];
            self.forward(&mut base, &[Rows::of(0, prompt)], &mut s);
            let base = base.pop().expect("one sequence");
            for j in 0..n {
                let mut q = base.clone();
                q.rng = StdRng::seed_from_u64(sample::seed_of(seed, j));
                seqs.push(q);
                first_logits.extend_from_slice(&s.logits[..self.vocab]);
            }
        }
        let mut work = sample::Work::default();
        // The first token from the prefill logits, then lockstep decoding.
        for (q, logits) in seqs.iter_mut().zip(first_logits.chunks(self.vocab)) {
            if !q.done {
                let t = sample::pick(logits, o, &mut q.rng, &mut work);
                q.accept(t, o.stop, o.max_new);
            }
        }
        loop {
            let active: Vec<usize> = (0..seqs.len()).filter(|&k| !seqs[k].done).collect();
            if active.is_empty() {
                break;
            }
            let last: Vec<[u32; 1]> = active.iter().map(|&k| [seqs[k].last]).collect();
            let items: Vec<Rows> = active
                .iter()
                .zip(&last)
                .map(|(&k, t)| Rows {
                    seq: k,
                    prefix: &[],
                    tokens: t,
                })
                .collect();
            self.forward(&mut seqs, &items, &mut s);
            for (row, &k) in active.iter().enumerate() {
                let q = &mut seqs[k];
                let logits = &s.logits[row * self.vocab..(row + 1) * self.vocab];
                let t = sample::pick(logits, o, &mut q.rng, &mut work);
                q.accept(t, o.stop, o.max_new);
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

    /// Appends each item's rows to its sequence's cache (items name distinct sequences) and
    /// leaves each item's next-token logits in `s.logits[i * vocab..]`. The prefill of a
    /// prompt and one decoding step of many sequences are the same call.
    fn forward(&self, seqs: &mut [Seq], items: &[Rows], s: &mut Scratch) {
        let d = self.d;
        let rows: usize = items.iter().map(|it| it.count(d)).sum();
        s.ensure(self, rows.max(items.len()));
        let mut r = 0;
        for it in items {
            let start = seqs[it.seq].len;
            let embedded = it
                .prefix
                .chunks(d)
                .map(Some)
                .chain(it.tokens.iter().map(|_| None));
            for (j, pre) in embedded.enumerate() {
                let x = &mut s.x[r * d..(r + 1) * d];
                let p = &self.pos[(start + j) * d..(start + j + 1) * d];
                match pre {
                    Some(e) => x
                        .iter_mut()
                        .zip(e)
                        .zip(p)
                        .for_each(|((x, e), p)| *x = e + p),
                    None => {
                        let tok = it.tokens[j - it.prefix.len() / d] as usize;
                        let e = &self.tok[tok * d..(tok + 1) * d];
                        x.iter_mut()
                            .zip(e)
                            .zip(p)
                            .for_each(|((x, e), p)| *x = e + p);
                    }
                }
                r += 1;
            }
        }
        for (l, w) in self.blocks.iter().enumerate() {
            let all = rows * d;
            layer_norm_rows(
                &s.x[..all],
                &mut s.h[..all],
                &w.ln1_g,
                &w.ln1_b,
                d,
                self.eps,
            );
            linear(
                &s.h[..all],
                rows,
                d,
                &w.q_w,
                &w.q_b,
                d,
                &mut s.q[..all],
                false,
            );
            linear(
                &s.h[..all],
                rows,
                d,
                &w.k_w,
                &w.k_b,
                d,
                &mut s.kn[..all],
                false,
            );
            linear(
                &s.h[..all],
                rows,
                d,
                &w.v_w,
                &w.v_b,
                d,
                &mut s.vn[..all],
                false,
            );
            let mut r = 0;
            for it in items {
                let q = &mut seqs[it.seq];
                let (n, at) = (it.count(d), q.len * d);
                q.k[l][at..at + n * d].copy_from_slice(&s.kn[r * d..(r + n) * d]);
                q.v[l][at..at + n * d].copy_from_slice(&s.vn[r * d..(r + n) * d]);
                for j in 0..n {
                    let upto = at + (j + 1) * d;
                    attend(
                        &s.q[(r + j) * d..(r + j + 1) * d],
                        &q.k[l][..upto],
                        &q.v[l][..upto],
                        self.heads,
                        &mut s.scores,
                        &mut s.att[(r + j) * d..(r + j + 1) * d],
                    );
                }
                r += n;
            }
            self.block_tail(w, rows, s);
        }
        // The final norm and the head only for each item's last row.
        let mut r = 0;
        for (i, it) in items.iter().enumerate() {
            let n = it.count(d);
            r += n;
            seqs[it.seq].len += n;
            s.q[i * d..(i + 1) * d].copy_from_slice(&s.x[(r - 1) * d..r * d]);
        }
        let m = items.len();
        layer_norm_rows(
            &s.q[..m * d],
            &mut s.h[..m * d],
            &self.lnf_g,
            &self.lnf_b,
            d,
            self.eps,
        );
        matmul(
            &s.h[..m * d],
            m,
            d,
            &self.head,
            self.vocab,
            &mut s.logits[..m * self.vocab],
            0.0,
        );
    }

    /// The block after attention: projection + residual, then the MLP + residual, over `rows`.
    fn block_tail(&self, w: &BlockWeights, rows: usize, s: &mut Scratch) {
        let (d, hd) = (self.d, self.hidden);
        let all = rows * d;
        linear(
            &s.att[..all],
            rows,
            d,
            &w.p_w,
            &w.p_b,
            d,
            &mut s.x[..all],
            true,
        );
        layer_norm_rows(
            &s.x[..all],
            &mut s.h[..all],
            &w.ln2_g,
            &w.ln2_b,
            d,
            self.eps,
        );
        linear(
            &s.h[..all],
            rows,
            d,
            &w.fc_w,
            &w.fc_b,
            hd,
            &mut s.f[..rows * hd],
            false,
        );
        gelu_in_place(&mut s.f[..rows * hd]);
        linear(
            &s.f[..rows * hd],
            rows,
            hd,
            &w.out_w,
            &w.out_b,
            d,
            &mut s.x[..all],
            true,
        );
    }
}

/// Rows to append to sequence `seq`: prefix embeddings first, then tokens.
struct Rows<'a> {
    seq: usize,
    prefix: &'a [f32],
    tokens: &'a [u32],
}

impl<'a> Rows<'a> {
    fn of(seq: usize, p: &Prompt<'a>) -> Rows<'a> {
        Rows {
            seq,
            prefix: p.prefix,
            tokens: p.tokens,
        }
    }
    fn count(&self, d: usize) -> usize {
        self.prefix.len() / d + self.tokens.len()
    }
}

/// One sequence: its key/value cache per layer and what it has produced.
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
    fn new(e: &Decoder, cap: usize, seed: u64) -> Seq {
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

    fn accept(&mut self, t: u32, stop: u32, max_new: usize) {
        if t == stop {
            self.done = true;
            return;
        }
        self.out.push(t);
        self.last = t;
        // The next step feeds `t` at position `len`: the cache must have room for it.
        if self.out.len() >= max_new || self.len >= self.cap {
            self.done = true;
        }
    }
}

/// Buffers of one chunk, grown to the most rows a forward call needs.
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
    fn new(e: &Decoder, rows: usize) -> Scratch {
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
    fn ensure(&mut self, e: &Decoder, rows: usize) {
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
