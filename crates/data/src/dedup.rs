//! Duplicate and contamination checks for generated text datasets.
//!
//! - [`NearDuplicates`]: exact duplicates (normalised text) and near duplicates (MinHash over word
//!   3-grams with LSH banding, confirmed by the estimated Jaccard similarity), streaming: each
//!   text is checked against everything kept before it.
//! - [`Contamination`]: n-gram overlap with benchmark texts (13-word n-grams by default, the
//!   GPT-3 decontamination rule): a text sharing any n-gram with a benchmark item is
//!   contaminated; a text shorter than n words is compared whole.

use std::collections::{HashMap, HashSet};

/// Lower-cased alphanumeric words (punctuation and spacing do not make a text new).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

use pw_core::seed::fnv1a_seeded as fnv1a;

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hashes of the word n-grams of `w` (the whole text as one gram when shorter than n).
pub fn ngram_hashes(w: &[String], n: usize) -> Vec<u64> {
    if w.is_empty() {
        return Vec::new();
    }
    if w.len() < n {
        return vec![fnv1a(w.join(" ").as_bytes(), n as u64)];
    }
    w.windows(n)
        .map(|g| fnv1a(g.join(" ").as_bytes(), n as u64))
        .collect()
}

/// Why a text was not kept.
#[derive(Clone, Debug, PartialEq)]
pub enum Duplicate {
    /// Same words as an earlier text.
    Exact { of: String },
    /// Estimated Jaccard similarity of word 3-grams at or above the threshold.
    Near { of: String, similarity: f64 },
}

/// Streaming exact + near-duplicate detector.
pub struct NearDuplicates {
    threshold: f64,
    bands: usize,
    rows: usize,
    exact: HashMap<u64, String>,
    buckets: HashMap<(usize, u64), Vec<usize>>,
    kept: Vec<(String, Vec<u64>)>,
}

impl NearDuplicates {
    /// `threshold`: Jaccard similarity from which two texts count as duplicates (0.8 is usual).
    /// 128 permutations in 32 bands of 4 rows: pairs at 0.8 are candidates with probability
    /// above 0.99.
    pub fn new(threshold: f64) -> Self {
        NearDuplicates {
            threshold,
            bands: 32,
            rows: 4,
            exact: HashMap::new(),
            buckets: HashMap::new(),
            kept: Vec::new(),
        }
    }

    fn signature(&self, grams: &[u64]) -> Vec<u64> {
        (0..self.bands * self.rows)
            .map(|p| {
                let salt = mix(p as u64 + 1);
                grams
                    .iter()
                    .map(|&g| mix(g ^ salt))
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    fn jaccard(a: &[u64], b: &[u64]) -> f64 {
        let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
        same as f64 / a.len() as f64
    }

    /// Checks `text` against the texts kept so far; keeps it (under `id`) when it is new.
    pub fn check(&mut self, id: &str, text: &str) -> Result<(), Duplicate> {
        let w = words(text);
        let key = fnv1a(w.join(" ").as_bytes(), 0);
        if let Some(of) = self.exact.get(&key) {
            return Err(Duplicate::Exact { of: of.clone() });
        }
        let sig = self.signature(&ngram_hashes(&w, 3));
        let mut seen = HashSet::new();
        for b in 0..self.bands {
            let band = &sig[b * self.rows..(b + 1) * self.rows];
            let h = band.iter().fold(b as u64, |acc, &x| mix(acc ^ x));
            if let Some(list) = self.buckets.get(&(b, h)) {
                for &k in list {
                    if seen.insert(k) {
                        let s = Self::jaccard(&sig, &self.kept[k].1);
                        if s >= self.threshold {
                            return Err(Duplicate::Near {
                                of: self.kept[k].0.clone(),
                                similarity: s,
                            });
                        }
                    }
                }
            }
        }
        let k = self.kept.len();
        for b in 0..self.bands {
            let band = &sig[b * self.rows..(b + 1) * self.rows];
            let h = band.iter().fold(b as u64, |acc, &x| mix(acc ^ x));
            self.buckets.entry((b, h)).or_default().push(k);
        }
        self.exact.insert(key, id.to_string());
        self.kept.push((id.to_string(), sig));
        Ok(())
    }
}

/// N-gram index of benchmark texts.
pub struct Contamination {
    n: usize,
    grams: HashMap<u64, String>,
}

impl Contamination {
    /// `items`: (benchmark item id, text). `n`: words per n-gram (13 in GPT-3's rule).
    pub fn new<'a>(items: impl IntoIterator<Item = (String, &'a str)>, n: usize) -> Self {
        let mut grams = HashMap::new();
        for (id, text) in items {
            for g in ngram_hashes(&words(text), n) {
                grams.entry(g).or_insert_with(|| id.clone());
            }
        }
        Contamination { n, grams }
    }

    pub fn len(&self) -> usize {
        self.grams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grams.is_empty()
    }

    /// The benchmark item `text` shares an n-gram with, if any.
    pub fn matches(&self, text: &str) -> Option<&str> {
        ngram_hashes(&words(text), self.n)
            .iter()
            .find_map(|g| self.grams.get(g).map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_near_duplicates_are_caught_and_distinct_texts_kept() {
        let mut d = NearDuplicates::new(0.8);
        let base = "Explain how photosynthesis converts light energy into chemical energy \
                    in the chloroplasts of green plants, and name the two main stages.";
        assert_eq!(d.check("a", base), Ok(()));
        assert_eq!(
            d.check("b", &base.to_uppercase().replace(',', " ;")),
            Err(Duplicate::Exact { of: "a".into() })
        );
        let near = format!("{base} Be brief.");
        match d.check("c", &near) {
            Err(Duplicate::Near { of, similarity }) => {
                assert_eq!(of, "a");
                assert!(similarity >= 0.8);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            d.check(
                "d",
                "Compute the derivative of x^3 + 2x and explain each rule used."
            ),
            Ok(())
        );
        assert_eq!(
            d.check(
                "e",
                "Describe the causes of the French Revolution and its effect on European monarchies."
            ),
            Ok(())
        );
    }

    #[test]
    fn a_benchmark_ngram_inside_a_longer_text_is_contamination() {
        let bench = "def has_close_elements(numbers: List[float], threshold: float) -> bool: \
                     Check if in given list of numbers, are any two numbers closer to each other \
                     than given threshold.";
        let c = Contamination::new([("HumanEval/0".to_string(), bench)], 13);
        let planted = format!(
            "Homework: {} Write tests too.",
            "Check if in given list of numbers, are any two numbers closer to each other than given threshold."
        );
        assert_eq!(c.matches(&planted), Some("HumanEval/0"));
        assert_eq!(
            c.matches("Write a function that sorts a list of numbers."),
            None
        );
    }
}
