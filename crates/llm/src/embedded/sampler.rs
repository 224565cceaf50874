//! Token sampling over a logit vector: greedy, temperature and nucleus (top-p), seeded.
//!
//! Written here rather than through llama.cpp's sampler chain because the chain softmaxes
//! and sorts the whole 49k-entry vocabulary for every token of every sequence, which on two
//! cores costs as much as a good part of a batched decode step. This one makes two cheap passes
//! (the maximum of each block of 64, then the tokens within reach of it, in the blocks that have
//! any, gathered without a branch per entry), works on those candidates only with an exp that
//! vectorises, and finds the top-p nucleus with a 128-bucket histogram instead of a sort. While it
//! runs on the engine thread, llama.cpp's other OpenMP threads spin, so every microsecond here
//! costs all the cores. The passes over the vocabulary run 8 lanes wide where the CPU has AVX2
//! (detected at run time; the workspace builds for baseline x86-64), with the same results.
//! Tokens whose probability is below e^-20 (2e-9) of the most likely one are never drawn; all
//! others are drawn with exactly their softmax(logits / T) probability.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Log-probability gap below the best token beyond which a token is never drawn.
const REACH: f32 = 20.0;
const BUCKETS: usize = 128;
/// Logits per block of the maximum pass; the filter skips blocks with nothing within reach.
const BLOCK: usize = 64;

pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: StdRng,
    // The candidates as parallel arrays (value, token id, log-probability bucket), each as long
    // as the vocabulary so that the filter writes every entry and keeps the ones within reach
    // without a branch; only the first `n` of a call are meaningful.
    val: Vec<f32>,
    id: Vec<u32>,
    bucket: Vec<u8>,
    edge: Vec<(f32, u32)>,
    /// The largest logit of each [`BLOCK`] of the vocabulary.
    block_max: Vec<f32>,
    /// Whether the AVX2 passes run (detected once; they give the same results as the portable
    /// ones, which tests check).
    avx2: bool,
}

impl Sampler {
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        Sampler {
            temperature,
            top_p,
            rng: StdRng::seed_from_u64(seed),
            val: Vec::new(),
            id: Vec::new(),
            bucket: Vec::new(),
            edge: Vec::new(),
            block_max: Vec::new(),
            avx2: simd::available(),
        }
    }

    /// The same sampler on the portable passes only (what a CPU without AVX2 runs).
    #[cfg(test)]
    fn portable(temperature: f32, top_p: f32, seed: u64) -> Self {
        Sampler {
            avx2: false,
            ..Sampler::new(temperature, top_p, seed)
        }
    }

    /// Picks a token id. Entries of `-inf` (masked by a grammar) are never picked unless every
    /// entry is `-inf`, in which case the result is index 0.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let max = if self.avx2 {
            simd::block_maxima(logits, &mut self.block_max)
        } else {
            block_maxima(logits, &mut self.block_max)
        };
        if self.temperature <= 0.0 || !max.is_finite() {
            // the first block that holds the maximum holds its first index
            let b = self.block_max.iter().position(|&m| m == max).unwrap_or(0);
            let at = logits[b * BLOCK..].iter().position(|&x| x == max);
            return at.map_or(0, |k| (b * BLOCK + k) as u32);
        }
        let cut = max - REACH * self.temperature;
        if self.val.len() < logits.len() {
            self.val.resize(logits.len(), 0.0);
            self.id.resize(logits.len(), 0);
            self.bucket.resize(logits.len(), 0);
        }
        let (val, id) = (&mut self.val[..logits.len()], &mut self.id[..logits.len()]);
        let n = if self.avx2 {
            simd::gather(logits, &self.block_max, cut, val, id)
        } else {
            gather(logits, &self.block_max, cut, val, id)
        };
        let val = &mut self.val[..n];
        let id = &mut self.id[..n];
        let bucket = &mut self.bucket[..n];
        let inv_t = 1.0 / self.temperature;
        if self.avx2 {
            simd::weigh(val, bucket, max, inv_t);
        } else {
            weigh(val, bucket, max, inv_t);
        }
        let mut sum = sum_f64(val);
        let u: f64 = self.rng.random::<f64>();
        let keep = if self.top_p >= 1.0 {
            n
        } else {
            // nucleus: the most likely tokens until their mass reaches top_p. Candidates go
            // into 128 buckets by log-probability; whole buckets are in until the one where the
            // mass crosses top_p, and only that bucket is sorted.
            let need = self.top_p as f64 * sum;
            let mut mass = [0.0f64; BUCKETS];
            for (&v, &b) in val.iter().zip(bucket.iter()) {
                mass[b as usize] += v as f64;
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
            let mut front = 0;
            for i in 0..n {
                if bucket[i] < edge {
                    swap3(val, id, bucket, i, front);
                    front += 1;
                }
            }
            let mut mid = front;
            for i in front..n {
                if bucket[i] == edge {
                    swap3(val, id, bucket, i, mid);
                    mid += 1;
                }
            }
            self.edge.clear();
            self.edge.extend(
                val[front..mid]
                    .iter()
                    .copied()
                    .zip(id[front..mid].iter().copied()),
            );
            self.edge
                .sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (j, &(v, t)) in self.edge.iter().enumerate() {
                val[front + j] = v;
                id[front + j] = t;
            }
            let mut keep = mid;
            for (j, &(v, _)) in self.edge.iter().enumerate() {
                acc += v as f64;
                if acc >= need {
                    keep = front + j + 1;
                    break;
                }
            }
            sum = acc.min(sum);
            keep
        };
        let target = u * sum;
        let mut acc = 0.0f64;
        for (&e, &i) in val[..keep].iter().zip(&id[..keep]) {
            acc += e as f64;
            if acc > target {
                return i;
            }
        }
        id[..keep].last().copied().unwrap_or(0)
    }
}

/// Copies the logits within reach of the best (`>= cut`) and their token ids to the front of
/// `val` and `id`, in vocabulary order, visiting only the blocks whose maximum is within reach;
/// returns how many. Without a branch per entry: a language model's logits put from a few
/// hundred to thousands of scattered tokens within reach, and such a branch mispredicts on them.
#[inline(always)]
fn gather(logits: &[f32], block_max: &[f32], cut: f32, val: &mut [f32], id: &mut [u32]) -> usize {
    let mut n = 0;
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        if block_max[b] < cut {
            continue;
        }
        for (k, &l) in block.iter().enumerate() {
            val[n] = l;
            id[n] = (b * BLOCK + k) as u32;
            n += (l >= cut) as usize;
        }
    }
    n
}

/// Turns each candidate logit into its unnormalised probability e^-((max - l) / T) and its
/// log-probability bucket for the nucleus.
#[inline(always)]
fn weigh(val: &mut [f32], bucket: &mut [u8], max: f32, inv_t: f32) {
    let per_bucket = (BUCKETS - 1) as f32 / REACH;
    for (v, b) in val.iter_mut().zip(bucket.iter_mut()) {
        let d = (max - *v) * inv_t; // in [0, REACH]
        *b = ((d * per_bucket) as i32).min(BUCKETS as i32 - 1) as u8;
        *v = exp_neg(d);
    }
}

/// The sampler's passes over the vocabulary compiled for AVX2, chosen at run time: the
/// workspace builds for baseline x86-64 (SSE2), where the maximum and the weighing use 4 lanes
/// instead of 8 and the gather has no vector form. Same arithmetic in the same order as the
/// portable passes, so the results are the same bit for bit. The maximum and the weighing are
/// the portable bodies inlined into `#[target_feature]` functions: that is why those bodies
/// (and `max_of`, `exp_neg`) are `#[inline(always)]`; called instead of inlined they would run
/// as SSE2 code.
mod simd {
    #[cfg(target_arch = "x86_64")]
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    pub fn available() -> bool {
        false
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) use super::{block_maxima, gather, weigh};
    #[cfg(target_arch = "x86_64")]
    pub(super) use x86::{block_maxima, gather, weigh};

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use super::super::BLOCK;
        use std::arch::x86_64::*;

        // Callers check `available()` first (`Sampler::avx2`); the asserts keep a wrong call
        // from running AVX2 instructions (one cached load per call).
        pub fn block_maxima(xs: &[f32], out: &mut Vec<f32>) -> f32 {
            assert!(super::available(), "AVX2 sampler pass without AVX2");
            // SAFETY: AVX2 is present (asserted above).
            unsafe { block_maxima_avx2(xs, out) }
        }
        #[target_feature(enable = "avx2")]
        fn block_maxima_avx2(xs: &[f32], out: &mut Vec<f32>) -> f32 {
            super::super::block_maxima(xs, out)
        }

        pub fn weigh(val: &mut [f32], bucket: &mut [u8], max: f32, inv_t: f32) {
            assert!(super::available(), "AVX2 sampler pass without AVX2");
            // SAFETY: as above.
            unsafe { weigh_avx2(val, bucket, max, inv_t) }
        }
        #[target_feature(enable = "avx2")]
        fn weigh_avx2(val: &mut [f32], bucket: &mut [u8], max: f32, inv_t: f32) {
            super::super::weigh(val, bucket, max, inv_t)
        }

        /// For each 8-bit mask of kept lanes, the lanes' indices packed to the front (the
        /// rest point at lane 0; what they write is overwritten or past the count).
        static PACK: [[u32; 8]; 256] = {
            let mut t = [[0u32; 8]; 256];
            let mut m = 0;
            while m < 256 {
                let (mut k, mut lane) = (0, 0);
                while lane < 8 {
                    if m & (1 << lane) != 0 {
                        t[m][k] = lane as u32;
                        k += 1;
                    }
                    lane += 1;
                }
                m += 1;
            }
            t
        };

        /// [`super::super::gather`] with 8 lanes at a time: the kept lanes are packed to the
        /// front by a permutation looked up from their mask and stored unaligned at the
        /// count, which then grows by the mask's population count.
        pub fn gather(
            logits: &[f32],
            block_max: &[f32],
            cut: f32,
            val: &mut [f32],
            id: &mut [u32],
        ) -> usize {
            assert!(super::available(), "AVX2 sampler pass without AVX2");
            assert!(val.len() >= logits.len() && id.len() >= logits.len());
            assert!(block_max.len() >= logits.len().div_ceil(BLOCK));
            // SAFETY: AVX2 is present (asserted above); the bounds are argued inside.
            unsafe { gather_avx2(logits, block_max, cut, val, id) }
        }

        #[target_feature(enable = "avx2")]
        unsafe fn gather_avx2(
            logits: &[f32],
            block_max: &[f32],
            cut: f32,
            val: &mut [f32],
            id: &mut [u32],
        ) -> usize {
            let len = logits.len();
            let whole = len - len % 8;
            let cutv = _mm256_set1_ps(cut);
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mut n = 0usize;
            for (b, &m) in block_max.iter().enumerate().take(len.div_ceil(BLOCK)) {
                if m < cut {
                    continue;
                }
                let start = b * BLOCK;
                let end = (start + BLOCK).min(whole);
                let mut i = start;
                while i < end {
                    // SAFETY: i + 8 <= whole <= len = logits.len(). The stores write
                    // [n, n + 8): n counts kept entries among the i visited, so n <= i and
                    // n + 8 <= i + 8 <= len <= val.len(), id.len() (asserted by the caller).
                    unsafe {
                        let v = _mm256_loadu_ps(logits.as_ptr().add(i));
                        let keep =
                            _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(v, cutv)) as usize;
                        let perm = _mm256_loadu_si256(PACK[keep].as_ptr() as *const __m256i);
                        let ids = _mm256_add_epi32(_mm256_set1_epi32(i as i32), lanes);
                        _mm256_storeu_ps(
                            val.as_mut_ptr().add(n),
                            _mm256_permutevar8x32_ps(v, perm),
                        );
                        _mm256_storeu_si256(
                            id.as_mut_ptr().add(n) as *mut __m256i,
                            _mm256_permutevar8x32_epi32(ids, perm),
                        );
                        n += keep.count_ones() as usize;
                    }
                    i += 8;
                }
                // the last block's entries past the last whole 8
                while i < (start + BLOCK).min(len) {
                    val[n] = logits[i];
                    id[n] = i as u32;
                    n += (logits[i] >= cut) as usize;
                    i += 1;
                }
            }
            n
        }
    }
}

fn swap3(val: &mut [f32], id: &mut [u32], bucket: &mut [u8], i: usize, j: usize) {
    val.swap(i, j);
    id.swap(i, j);
    bucket.swap(i, j);
}

/// The sum in f64, over four interleaved partial sums so that the additions pipeline.
fn sum_f64(xs: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = xs.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..4 {
            lanes[k] += c[k] as f64;
        }
    }
    let mut s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for &x in rest {
        s += x as f64;
    }
    s
}

/// e^-d for d in [0, 87], within 2 ulp of `f32::exp` (Cephes' expf: d = n ln 2 + r, a degree-7
/// polynomial for e^r, 2^n from the exponent bits). Plain arithmetic, so the loop over the
/// candidates vectorises where a call to libm's expf per candidate would not.
#[inline(always)]
fn exp_neg(d: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4; // 355/512: n * LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = -d;
    // round(x / ln 2) for x <= 0: truncation of a negative number rounds up
    let n = (x * std::f32::consts::LOG2_E - 0.5) as i32;
    let nf = n as f32;
    let r = x - nf * LN2_HI - nf * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n + 127) as u32) << 23)
}

/// The largest entry of `xs` (`-inf` for an empty or all-masked vector); `out` gets the largest of
/// each [`BLOCK`]. Sixteen lanes, so that it vectorises.
#[inline(always)]
fn block_maxima(xs: &[f32], out: &mut Vec<f32>) -> f32 {
    out.clear();
    let mut m = f32::NEG_INFINITY;
    for block in xs.chunks(BLOCK) {
        let b = max_of(block);
        out.push(b);
        m = if b > m { b } else { m };
    }
    m
}

/// The largest entry (`-inf` for an empty or all-masked vector); vectorises.
#[inline(always)]
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
    fn exp_neg_is_within_two_ulp_of_libm() {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = (0, 0.0f32);
        for k in 0..=870_000 {
            let d = k as f32 * 1e-4;
            let u = ulps(exp_neg(d), (-d).exp());
            if u > worst.0 {
                worst = (u, d);
            }
        }
        assert!(worst.0 <= 2, "{} ulp at d = {}", worst.0, worst.1);
    }

    /// The AVX2 passes must draw what the portable ones draw, token for token, on vocabularies
    /// of any length (not a multiple of 8 or of a block), with masked entries, at several
    /// temperatures and nucleus sizes.
    #[test]
    fn avx2_passes_draw_the_same_tokens_as_the_portable_ones() {
        if !simd::available() {
            eprintln!("skipped: this CPU has no AVX2, so only the portable passes run");
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        for (case, len) in [1usize, 7, 8, 63, 64, 65, 1000, 4099, 49_152, 49_157]
            .into_iter()
            .enumerate()
        {
            let logits: Vec<f32> = (0..len)
                .map(|i| {
                    let x: f32 = (0..4).map(|_| rng.random_range(-2.6f32..2.6)).sum();
                    match i % 53 {
                        0 => f32::NEG_INFINITY,
                        1 => x + 12.0,
                        _ => x,
                    }
                })
                .collect();
            for (t, p) in [(0.0, 1.0), (0.8, 0.95), (1.0, 1.0), (0.3, 0.5), (2.0, 0.99)] {
                let seed = 100 + case as u64;
                let (mut a, mut b) = (Sampler::new(t, p, seed), Sampler::portable(t, p, seed));
                assert!(a.avx2 && !b.avx2);
                for k in 0..40 {
                    assert_eq!(
                        a.sample(&logits),
                        b.sample(&logits),
                        "length {len}, T {t}, top-p {p}, draw {k}"
                    );
                }
            }
            // the passes themselves, not only the draws
            let (mut ma, mut mb) = (Vec::new(), Vec::new());
            let max = simd::block_maxima(&logits, &mut ma);
            assert_eq!(max.to_bits(), block_maxima(&logits, &mut mb).to_bits());
            assert_eq!(ma, mb);
            if !max.is_finite() {
                continue; // all masked: the sampler returns before the other passes
            }
            let cut = max - REACH * 0.8;
            let (mut va, mut ia) = (vec![0.0; len], vec![0; len]);
            let (mut vb, mut ib) = (vec![0.0; len], vec![0; len]);
            let na = simd::gather(&logits, &ma, cut, &mut va, &mut ia);
            let nb = gather(&logits, &mb, cut, &mut vb, &mut ib);
            assert_eq!((na, &va[..na], &ia[..na]), (nb, &vb[..nb], &ib[..nb]));
            let (mut ba, mut bb) = (vec![0u8; na], vec![0u8; nb]);
            simd::weigh(&mut va[..na], &mut ba, max, 1.25);
            weigh(&mut vb[..nb], &mut bb, max, 1.25);
            assert_eq!((&va[..na], ba), (&vb[..nb], bb));
        }
    }

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
