//! Choosing the next token: greedy, a temperature, or nucleus (top-p) sampling, each sample
//! with its own seeded generator.

use rand::Rng;
use rand::rngs::StdRng;

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleOptions {
    /// 0 = greedy.
    pub temperature: f32,
    /// Nucleus sampling: draw from the smallest set of tokens whose probability reaches
    /// `top_p` (Holtzman et al. 2020); 1 = the whole vocabulary.
    pub top_p: f32,
    /// New tokens at most (the stop token not counted).
    pub max_new: usize,
    /// Generation ends at this token (not included in the output).
    pub stop: u32,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            temperature: 1.0,
            top_p: 1.0,
            max_new: 64,
            stop: u32::MAX,
        }
    }
}

/// The seed of sample `j` of a prompt seeded with `seed`.
pub fn seed_of(seed: u64, j: usize) -> u64 {
    (seed ^ 0x51_7CC1_B727_220A)
        .wrapping_add((j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0x0100_0000_01B3)
}

/// Reused buffers of top-p sampling (one per chunk, so the hot loop does not allocate).
#[derive(Default)]
pub(super) struct Work {
    order: Vec<u32>,
    weights: Vec<f32>,
}

/// Greedy (argmax) at temperature 0, else a draw from softmax(logits / temperature),
/// restricted to the top-p nucleus when `top_p < 1`.
pub(super) fn pick(logits: &[f32], o: &SampleOptions, rng: &mut StdRng, work: &mut Work) -> u32 {
    if o.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let inv = 1.0 / o.temperature;
    if o.top_p >= 1.0 {
        let total: f32 = logits.iter().map(|&v| ((v - max) * inv).exp()).sum();
        let mut u = rng.random::<f32>() * total;
        for (i, &v) in logits.iter().enumerate() {
            u -= ((v - max) * inv).exp();
            if u <= 0.0 {
                return i as u32;
            }
        }
        return (logits.len() - 1) as u32;
    }
    work.weights.clear();
    work.weights
        .extend(logits.iter().map(|&v| ((v - max) * inv).exp()));
    let total: f32 = work.weights.iter().sum();
    work.order.clear();
    work.order.extend(0..logits.len() as u32);
    let w = &work.weights;
    work.order
        .sort_unstable_by(|&a, &b| w[b as usize].total_cmp(&w[a as usize]).then(a.cmp(&b)));
    let target = o.top_p.max(0.0) * total;
    let mut kept = 0;
    let mut mass = 0.0;
    for &i in &work.order {
        mass += w[i as usize];
        kept += 1;
        if mass >= target {
            break;
        }
    }
    let mut u = rng.random::<f32>() * mass;
    for &i in &work.order[..kept] {
        u -= w[i as usize];
        if u <= 0.0 {
            return i;
        }
    }
    work.order[kept - 1]
}

pub(super) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn top_p_draws_only_from_the_nucleus() {
        // Probabilities about 0.6, 0.3, 0.07, 0.03: top-p 0.85 keeps the first two.
        let logits = [0.6f32.ln(), 0.3f32.ln(), 0.07f32.ln(), 0.03f32.ln()];
        let o = SampleOptions {
            temperature: 1.0,
            top_p: 0.85,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(5);
        let mut work = Work::default();
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[pick(&logits, &o, &mut rng, &mut work) as usize] += 1;
        }
        assert_eq!(seen[2] + seen[3], 0, "{seen:?}");
        // Within the nucleus the odds stay 2:1.
        let share = seen[0] as f64 / 2000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.04, "{seen:?}");
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let o = SampleOptions {
            temperature: 0.0,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(0);
        let mut work = Work::default();
        assert_eq!(pick(&[0.1, 2.0, 2.0, -1.0], &o, &mut rng, &mut work), 1);
    }
}
