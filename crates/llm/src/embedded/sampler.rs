//! Token sampling over a logit vector: greedy, temperature and nucleus (top-p), seeded.
//!
//! Written here rather than through llama.cpp's sampler chain because the chain softmaxes
//! and sorts the whole 49k-entry vocabulary for every token of every sequence, which on two
//! cores costs as much as a good part of a batched decode step. This one makes two cheap passes
//! (the maximum, then the tokens within reach of it), works on those candidates only, and finds
//! the top-p nucleus with a 128-bucket histogram instead of a sort.
//! Tokens whose probability is below e^-20 (2e-9) of the most likely one are never drawn; all
//! others are drawn with exactly their softmax(logits / T) probability.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Log-probability gap below the best token beyond which a token is never drawn.
const REACH: f32 = 20.0;
const BUCKETS: usize = 128;

pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: StdRng,
    cand: Vec<(f32, u32)>,
    bucket: Vec<u8>,
}

impl Sampler {
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        Sampler {
            temperature,
            top_p,
            rng: StdRng::seed_from_u64(seed),
            cand: Vec::new(),
            bucket: Vec::new(),
        }
    }

    /// Picks a token id. Entries of `-inf` (masked by a grammar) are never picked unless every
    /// entry is `-inf`, in which case the result is index 0.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let max = max_of(logits);
        if self.temperature <= 0.0 || !max.is_finite() {
            return first_index_of(logits, max);
        }
        let cut = max - REACH * self.temperature;
        self.cand.clear();
        for (i, &l) in logits.iter().enumerate() {
            if l >= cut {
                self.cand.push((l, i as u32));
            }
        }
        let inv_t = 1.0 / self.temperature;
        let per_bucket = (BUCKETS - 1) as f32 / REACH;
        self.bucket.clear();
        let mut sum = 0.0f64;
        for c in self.cand.iter_mut() {
            let d = (max - c.0) * inv_t; // in [0, REACH]
            self.bucket
                .push(((d * per_bucket) as usize).min(BUCKETS - 1) as u8);
            c.0 = (-d).exp();
            sum += c.0 as f64;
        }
        let u: f64 = self.rng.random::<f64>();
        let kept: &[(f32, u32)] = if self.top_p >= 1.0 {
            &self.cand
        } else {
            // nucleus: the most likely tokens until their mass reaches top_p. Candidates go
            // into 128 buckets by log-probability; whole buckets are in until the one where the
            // mass crosses top_p, and only that bucket is sorted.
            let need = self.top_p as f64 * sum;
            let mut mass = [0.0f64; BUCKETS];
            for (c, &b) in self.cand.iter().zip(&self.bucket) {
                mass[b as usize] += c.0 as f64;
            }
            let mut acc = 0.0f64;
            let mut edge = BUCKETS - 1;
            for (b, &m) in mass.iter().enumerate() {
                if acc + m >= need {
                    edge = b;
                    break;
                }
                acc += m;
            }
            let edge = edge as u8;
            // buckets before the edge to the front, then the edge bucket
            let n = self.cand.len();
            let mut front = 0;
            for i in 0..n {
                if self.bucket[i] < edge {
                    self.cand.swap(i, front);
                    self.bucket.swap(i, front);
                    front += 1;
                }
            }
            let mut mid = front;
            for i in front..n {
                if self.bucket[i] == edge {
                    self.cand.swap(i, mid);
                    self.bucket.swap(i, mid);
                    mid += 1;
                }
            }
            self.cand[front..mid].sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut keep = mid;
            for j in front..mid {
                acc += self.cand[j].0 as f64;
                if acc >= need {
                    keep = j + 1;
                    break;
                }
            }
            sum = acc.min(sum);
            &self.cand[..keep]
        };
        let target = u * sum;
        let mut acc = 0.0f64;
        for &(e, i) in kept {
            acc += e as f64;
            if acc > target {
                return i;
            }
        }
        kept.last().map(|c| c.1).unwrap_or(0)
    }
}

/// The largest entry (`-inf` for an empty or all-masked vector); vectorises.
fn max_of(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..16 {
            lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in lanes.iter().chain(rest) {
        if x > m {
            m = x;
        }
    }
    m
}

fn first_index_of(xs: &[f32], v: f32) -> u32 {
    xs.iter().position(|&x| x == v).unwrap_or(0) as u32
}

/// Index and value of the largest entry (first on ties).
pub fn argmax(xs: &[f32]) -> (u32, f32) {
    let m = max_of(xs);
    (first_index_of(xs, m), m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(0.0, 1.0, 1);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9]), 1);
    }

    #[test]
    fn masked_entries_are_never_sampled() {
        let mut s = Sampler::new(1.5, 1.0, 7);
        let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.5];
        for _ in 0..2000 {
            let t = s.sample(&logits);
            assert!(t == 1 || t == 3, "sampled masked token {t}");
        }
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), (5.0f32).ln()]; // probs 1/8, 2/8, 5/8
        let mut s = Sampler::new(1.0, 1.0, 3);
        let mut counts = [0usize; 3];
        let n = 40_000;
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        for (c, p) in counts.iter().zip([0.125, 0.25, 0.625]) {
            let f = *c as f64 / n as f64;
            assert!((f - p).abs() < 0.01, "frequency {f} vs {p}");
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probs 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps the first two
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(1.0, 0.75, 11);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[s.sample(&logits) as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0, "{counts:?}");
        let f0 = counts[0] as f64 / 20_000.0;
        assert!((f0 - 0.625).abs() < 0.02, "renormalised 0.5/0.8, got {f0}");
    }

    #[test]
    fn tokens_far_below_the_best_are_never_drawn() {
        let mut logits = vec![-100.0f32; 1000];
        logits[3] = 0.0;
        logits[7] = -1.0;
        let mut s = Sampler::new(1.0, 1.0, 9);
        for _ in 0..1000 {
            let t = s.sample(&logits);
            assert!(t == 3 || t == 7);
        }
        assert_eq!(argmax(&logits), (3, 0.0));
    }

    #[test]
    fn top_p_on_a_flat_large_vocabulary_keeps_most_of_it() {
        let logits = vec![0.0f32; 50_000];
        let mut s = Sampler::new(1.0, 0.9, 5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            seen.insert(s.sample(&logits));
        }
        assert!(seen.len() > 400, "only {} distinct tokens", seen.len());
    }

    #[test]
    fn same_seed_same_sequence() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 10.0).collect();
        let run = |seed| {
            let mut s = Sampler::new(0.8, 0.95, seed);
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
