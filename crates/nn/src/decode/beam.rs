//! Beam search: keep the `width` most probable partial continuations, extend each by its most
//! probable tokens, and rank the finished ones by log probability over `length ^
//! length_penalty` (the normalisation of Wu et al. 2016 in its simple form, as in Hugging Face
//! `generate`). Stops when `width` hypotheses have finished or after `max_new` tokens; the
//! beams still running then are ranked as they stand.

use super::{Decoder, Prompt, Rows, Scratch, Seq};
use pw_core::Result;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamOptions {
    /// Beams kept at every step (1 = greedy).
    pub width: usize,
    /// New tokens at most (the stop token not counted).
    pub max_new: usize,
    /// Generation ends at this token (not included in the output).
    pub stop: u32,
    /// Exponent of the length normalisation: 0 ranks by log probability alone, 1 by the mean
    /// log probability per token.
    pub length_penalty: f32,
}

impl Default for BeamOptions {
    fn default() -> Self {
        BeamOptions {
            width: 4,
            max_new: 64,
            stop: u32::MAX,
            length_penalty: 1.0,
        }
    }
}

/// One continuation with its log probability under the model and its ranking score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<u32>,
    /// Sum of the log probabilities of the tokens (and of the stop token when it ended so).
    pub log_prob: f32,
    /// `log_prob / max(len, 1) ^ length_penalty`, higher is better.
    pub score: f32,
    /// Whether it ended with the stop token (else it ran out of tokens or context).
    pub finished: bool,
}

fn log_softmax(logits: &[f32], out: &mut Vec<f32>) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
    out.clear();
    out.extend(logits.iter().map(|&v| v - lse));
}

impl Decoder {
    /// The best hypotheses (at most `width`, best first) for each prompt. Prompts run in
    /// parallel; the result does not depend on how many there are.
    pub fn beam_search(&self, prompts: &[Prompt], o: &BeamOptions) -> Result<Vec<Vec<Hypothesis>>> {
        for p in prompts {
            self.check(p)?;
        }
        Ok(prompts.par_iter().map(|p| self.beam_one(p, o)).collect())
    }

    fn beam_one(&self, p: &Prompt, o: &BeamOptions) -> Vec<Hypothesis> {
        let width = o.width.max(1);
        let rows = self.rows(p);
        if rows == 0 || rows >= self.max_len {
            return vec![];
        }
        let score = |lp: f32, len: usize| lp / (len.max(1) as f32).powf(o.length_penalty);
        let cap = (rows + o.max_new).min(self.max_len);
        let mut s = Scratch::new(self, rows.max(width));
        let mut seqs = vec![Seq::new(self, cap, 0)];
        let mut log_probs = vec![0.0f32];
        self.forward(&mut seqs, &[Rows::of(0, p)], &mut s);
        let mut finished: Vec<Hypothesis> = Vec::new();
        let mut lp = Vec::with_capacity(self.vocab);
        let mut idx: Vec<u32> = Vec::with_capacity(self.vocab);
        // Candidates: (beam, token, log prob of the extended sequence).
        let mut cands: Vec<(usize, u32, f32)> = Vec::new();
        loop {
            cands.clear();
            for (b, &base) in log_probs.iter().enumerate() {
                log_softmax(&s.logits[b * self.vocab..(b + 1) * self.vocab], &mut lp);
                // The 2 * width best tokens of each beam: enough for `width` survivors even
                // when every beam's best is the stop token.
                let k = (2 * width).min(self.vocab);
                idx.clear();
                idx.extend(0..self.vocab as u32);
                idx.select_nth_unstable_by(k - 1, |&a, &c| {
                    lp[c as usize].total_cmp(&lp[a as usize]).then(a.cmp(&c))
                });
                for &t in &idx[..k] {
                    cands.push((b, t, base + lp[t as usize]));
                }
            }
            cands.sort_by(|a, c| c.2.total_cmp(&a.2).then(a.0.cmp(&c.0)).then(a.1.cmp(&c.1)));
            let mut next: Vec<Seq> = Vec::with_capacity(width);
            let mut next_lp: Vec<f32> = Vec::with_capacity(width);
            for &(b, t, total) in &cands {
                if next.len() == width {
                    break;
                }
                let parent = &seqs[b];
                if t == o.stop {
                    finished.push(Hypothesis {
                        tokens: parent.out.clone(),
                        log_prob: total,
                        score: score(total, parent.out.len()),
                        finished: true,
                    });
                    continue;
                }
                let mut seq = parent.clone();
                seq.out.push(t);
                seq.last = t;
                // Out of new tokens or of context: rank it as it stands.
                if seq.out.len() >= o.max_new || seq.len >= seq.cap {
                    let n = seq.out.len();
                    finished.push(Hypothesis {
                        tokens: seq.out,
                        log_prob: total,
                        score: score(total, n),
                        finished: false,
                    });
                    continue;
                }
                next.push(seq);
                next_lp.push(total);
            }
            if next.is_empty() || finished.iter().filter(|h| h.finished).count() >= width {
                break;
            }
            let last: Vec<[u32; 1]> = next.iter().map(|q| [q.last]).collect();
            let items: Vec<Rows> = last
                .iter()
                .enumerate()
                .map(|(i, t)| Rows {
                    seq: i,
                    prefix: &[],
                    tokens: t,
                })
                .collect();
            self.forward(&mut next, &items, &mut s);
            seqs = next;
            log_probs = next_lp;
        }
        finished.sort_by(|a, b| b.score.total_cmp(&a.score));
        finished.truncate(width);
        finished
    }
}
