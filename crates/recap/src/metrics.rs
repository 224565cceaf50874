//! Caption metrics with the official Video ReCap evaluation's conventions: captions lower-cased,
//! whitespace tokens (no PTB tokenizer), one reference per prediction, scores over a whole
//! level's set. Each follows PyPI `pycocoevalcap` 1.2 to the operation, so the figures agree
//! with it (a test checks 500 pairs against it when Python is there, stored figures otherwise):
//!
//! - [`cider_d`]: CIDEr-D (the scorer `pycocoevalcap.cider` ships): tf-idf n-gram vectors for
//!   n = 1..4 with document frequencies over the evaluated set's references, clipped
//!   (`min(hyp, ref) * ref`) cosine per n, a Gaussian length penalty (sigma 6) whose length is
//!   the bigram count (as the reference code counts it), mean over n, times 10.
//! - [`rouge_l`]: ROUGE-L with beta 1.2 (`pycocoevalcap.rouge`), tokens split on single spaces.
//! - [`bleu`]: corpus BLEU-1..4 with the closest reference length (`pycocoevalcap.bleu`).
//!
//! METEOR is left out: its reference is a Java program with WordNet synonyms and paraphrase
//! tables that a Rust port would only approximate; BLEU-4 is given beside CIDEr-D and ROUGE-L.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The evaluation's text normalisation: lower case, runs of whitespace to one space, trimmed.
pub fn normalise(s: &str) -> String {
    s.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

type Ngram<'a> = &'a [&'a str];

fn ngram_counts<'a>(words: &'a [&'a str], n: usize) -> HashMap<Ngram<'a>, f64> {
    let mut c: HashMap<Ngram<'a>, f64> = HashMap::new();
    for k in 1..=n {
        if words.len() < k {
            break;
        }
        for w in words.windows(k) {
            *c.entry(w).or_insert(0.0) += 1.0;
        }
    }
    c
}

const CIDER_N: usize = 4;

struct TfIdf<'a> {
    // Ordered, so sums run in one order and a score is the same in every process; keys borrow
    // the caption's words.
    vec: [std::collections::BTreeMap<Ngram<'a>, f64>; CIDER_N],
    norm: [f64; CIDER_N],
    /// The reference code's "length": the number of bigrams.
    length: f64,
}

fn tfidf<'a>(c: &HashMap<Ngram<'a>, f64>, df: &HashMap<Ngram<'_>, f64>, ref_len: f64) -> TfIdf<'a> {
    let mut v = TfIdf {
        vec: Default::default(),
        norm: [0.0; CIDER_N],
        length: 0.0,
    };
    for (&g, &tf) in c {
        let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
        let n = g.len() - 1;
        let w = tf * (ref_len - d);
        v.vec[n].insert(g, w);
        if n == 1 {
            v.length += tf;
        }
    }
    // Squares summed in the map's order (a HashMap's order differs between processes).
    for (n, m) in v.vec.iter().enumerate() {
        v.norm[n] = m.values().map(|w| w * w).sum::<f64>().sqrt();
    }
    v
}

/// CIDEr-D of each prediction against its reference (`preds[i]` vs `refs[i]`), and the mean.
pub fn cider_d(preds: &[String], refs: &[String]) -> (f64, Vec<f64>) {
    const N: usize = 4;
    const SIGMA: f64 = 6.0;
    assert_eq!(preds.len(), refs.len(), "one reference per prediction");
    if preds.is_empty() {
        return (0.0, Vec::new());
    }
    let hyp_words: Vec<Vec<&str>> = preds
        .iter()
        .map(|s| s.split_whitespace().collect())
        .collect();
    let ref_words: Vec<Vec<&str>> = refs
        .iter()
        .map(|s| s.split_whitespace().collect())
        .collect();
    let hyp_counts: Vec<_> = hyp_words.iter().map(|w| ngram_counts(w, N)).collect();
    let ref_counts: Vec<_> = ref_words.iter().map(|w| ngram_counts(w, N)).collect();
    // Document frequency: in how many items' references an n-gram occurs.
    let mut df: HashMap<Ngram, f64> = HashMap::new();
    for c in &ref_counts {
        for g in c.keys() {
            *df.entry(g).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (preds.len() as f64).ln();
    let to_vec = |c| tfidf(c, &df, ref_len);
    let scores: Vec<f64> = hyp_counts
        .iter()
        .zip(&ref_counts)
        .map(|(h, r)| {
            let (vh, vr) = (to_vec(h), to_vec(r));
            let delta = vh.length - vr.length;
            let mut total = 0.0;
            for n in 0..N {
                let mut val = 0.0;
                for (g, &w) in &vh.vec[n] {
                    let rw = vr.vec[n].get(g).copied().unwrap_or(0.0);
                    val += w.min(rw) * rw;
                }
                if vh.norm[n] != 0.0 && vr.norm[n] != 0.0 {
                    val /= vh.norm[n] * vr.norm[n];
                }
                val *= std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
                total += val;
            }
            total / N as f64 * 10.0
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    (mean, scores)
}

fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L (F with beta 1.2) of each prediction, and the mean.
pub fn rouge_l(preds: &[String], refs: &[String]) -> (f64, Vec<f64>) {
    const BETA: f64 = 1.2;
    assert_eq!(preds.len(), refs.len(), "one reference per prediction");
    if preds.is_empty() {
        return (0.0, Vec::new());
    }
    let scores: Vec<f64> = preds
        .iter()
        .zip(refs)
        .map(|(c, r)| {
            // `str.split(" ")`: an empty caption is one empty token, as in the reference.
            let tc: Vec<&str> = c.split(' ').collect();
            let tr: Vec<&str> = r.split(' ').collect();
            let l = lcs(&tr, &tc) as f64;
            let p = l / tc.len() as f64;
            let rec = l / tr.len() as f64;
            if p != 0.0 && rec != 0.0 {
                ((1.0 + BETA * BETA) * p * rec) / (rec + BETA * BETA * p)
            } else {
                0.0
            }
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    (mean, scores)
}

/// Corpus BLEU-1..4 (closest reference length; the reference's tiny / small constants).
pub fn bleu(preds: &[String], refs: &[String]) -> [f64; 4] {
    const TINY: f64 = 1e-15;
    const SMALL: f64 = 1e-9;
    assert_eq!(preds.len(), refs.len(), "one reference per prediction");
    let (mut testlen, mut reflen) = (0f64, 0f64);
    let (mut guess, mut correct) = ([0f64; 4], [0f64; 4]);
    for (p, r) in preds.iter().zip(refs) {
        let pw: Vec<&str> = p.split_whitespace().collect();
        let rw: Vec<&str> = r.split_whitespace().collect();
        testlen += pw.len() as f64;
        reflen += rw.len() as f64;
        let (pc, rc) = (ngram_counts(&pw, 4), ngram_counts(&rw, 4));
        for (k, g) in guess.iter_mut().enumerate() {
            *g += (pw.len() as f64 - k as f64).max(0.0);
        }
        for (g, &c) in &pc {
            correct[g.len() - 1] += c.min(rc.get(g).copied().unwrap_or(0.0));
        }
    }
    let mut out = [0f64; 4];
    let mut prod = 1.0;
    for k in 0..4 {
        prod *= (correct[k] + TINY) / (guess[k] + SMALL);
        out[k] = prod.powf(1.0 / (k as f64 + 1.0));
    }
    let ratio = (testlen + TINY) / (reflen + SMALL);
    if ratio < 1.0 {
        for v in out.iter_mut() {
            *v *= (1.0 - 1.0 / ratio).exp();
        }
    }
    out
}

/// One level's scores (CIDEr-D and BLEU-4 as the papers print them: CIDEr x100, the others
/// as percentages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub n: usize,
    pub cider: f64,
    pub rouge_l: f64,
    pub bleu4: f64,
}

/// Scores of `preds` against `refs` after [`normalise`].
pub fn score(preds: &[String], refs: &[String]) -> Scores {
    let p: Vec<String> = preds.iter().map(|s| normalise(s)).collect();
    let r: Vec<String> = refs.iter().map(|s| normalise(s)).collect();
    Scores {
        n: p.len(),
        cider: 100.0 * cider_d(&p, &r).0,
        rouge_l: 100.0 * rouge_l(&p, &r).0,
        bleu4: 100.0 * bleu(&p, &r)[3],
    }
}

/// Per-item CIDEr-D (x100) after [`normalise`] (document frequencies over the whole set).
pub fn cider_items(preds: &[String], refs: &[String]) -> Vec<f64> {
    let p: Vec<String> = preds.iter().map(|s| normalise(s)).collect();
    let r: Vec<String> = refs.iter().map(|s| normalise(s)).collect();
    cider_d(&p, &r).1.into_iter().map(|x| 100.0 * x).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn identical_captions_score_high_and_unrelated_ones_zero() {
        let refs = s(&[
            "a red circle moves left",
            "the blue square climbs up",
            "a green cross leaves",
        ]);
        let same = score(&refs, &refs);
        assert!((same.rouge_l - 100.0).abs() < 1e-9);
        assert!((same.bleu4 - 100.0).abs() < 1e-6, "{same:?}");
        assert!(same.cider > 100.0, "{same:?}");
        let other = score(&s(&["zz yy", "qq", "ww vv uu"]), &refs);
        assert_eq!(other.cider, 0.0);
        assert_eq!(other.rouge_l, 0.0);
    }

    #[test]
    fn rouge_l_matches_a_hand_computed_case() {
        // LCS("a b c d", "a c d e") = 3: P = R = 3/4, F = 0.75.
        let (m, _) = rouge_l(&s(&["a c d e"]), &s(&["a b c d"]));
        assert!((m - 0.75).abs() < 1e-12);
        // An empty prediction is one empty token in the reference implementation: zero.
        assert_eq!(rouge_l(&s(&[""]), &s(&["a"])).0, 0.0);
    }

    #[test]
    fn cider_of_an_exact_copy_is_ten_when_no_ngram_is_in_every_reference() {
        // Each n-gram's weight is tf * (ln N - ln df); with N = 2 and distinct references the
        // cosine of a copy is 1 at every n, so CIDEr-D is 10 (x10 of the mean over n).
        let refs = s(&["a red circle moves left", "the blue square climbs up"]);
        let (_, per) = cider_d(&refs, &refs);
        assert!(
            (per[0] - 10.0).abs() < 1e-12 && (per[1] - 10.0).abs() < 1e-12,
            "{per:?}"
        );
        // The length penalty reads the bigram count: one word longer costs exp(-1/72).
        let (_, per) = cider_d(&s(&["a red circle moves left", "zz"]), &refs);
        assert!((per[0] - 10.0).abs() < 1e-12);
        let (_, longer) = cider_d(&s(&["a red circle moves left now", "zz"]), &refs);
        assert!(longer[0] < 10.0 && longer[0] > 0.0);
    }

    #[test]
    fn normalise_lowercases_and_collapses_spaces() {
        assert_eq!(
            normalise("  The RED  circle\tmoves "),
            "the red circle moves"
        );
    }
}
