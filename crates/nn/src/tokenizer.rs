//! A character-level tokenizer with special tokens, serialisable as JSON. Small models in this
//! project read short synthetic text (arithmetic, symbols), where characters are the right unit.

use pw_core::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const PAD: &str = "<pad>";
pub const BOS: &str = "<bos>";
pub const EOS: &str = "<eos>";
pub const UNK: &str = "<unk>";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CharTokenizer {
    /// Special tokens first (`<pad>` = 0, `<bos>`, `<eos>`, `<unk>`, then any extra such as
    /// `[BAD]`), then one id per character.
    pub specials: Vec<String>,
    pub chars: Vec<char>,
    #[serde(skip)]
    char_ids: HashMap<char, u32>,
}

impl CharTokenizer {
    /// Builds a vocabulary from every character of `corpus` (sorted, so the ids do not depend
    /// on the order of the corpus) plus the standard and `extra_specials` tokens.
    pub fn from_corpus<'a>(
        corpus: impl IntoIterator<Item = &'a str>,
        extra_specials: &[&str],
    ) -> Self {
        let mut chars: Vec<char> = corpus.into_iter().flat_map(|s| s.chars()).collect();
        chars.sort_unstable();
        chars.dedup();
        let mut specials: Vec<String> =
            [PAD, BOS, EOS, UNK].iter().map(|s| s.to_string()).collect();
        specials.extend(extra_specials.iter().map(|s| s.to_string()));
        let mut t = CharTokenizer {
            specials,
            chars,
            char_ids: HashMap::new(),
        };
        t.index();
        t
    }

    fn index(&mut self) {
        let base = self.specials.len() as u32;
        self.char_ids = self
            .chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, base + i as u32))
            .collect();
    }

    pub fn vocab_size(&self) -> usize {
        self.specials.len() + self.chars.len()
    }

    pub fn special_id(&self, name: &str) -> Option<u32> {
        self.specials
            .iter()
            .position(|s| s == name)
            .map(|i| i as u32)
    }
    pub fn pad_id(&self) -> u32 {
        0
    }
    pub fn bos_id(&self) -> u32 {
        1
    }
    pub fn eos_id(&self) -> u32 {
        2
    }
    pub fn unk_id(&self) -> u32 {
        3
    }

    /// Encodes text; special tokens written literally in the text (e.g. `[BAD]`) become their id.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        'outer: while let Some(c) = rest.chars().next() {
            for (i, s) in self.specials.iter().enumerate() {
                if rest.starts_with(s.as_str()) {
                    out.push(i as u32);
                    rest = &rest[s.len()..];
                    continue 'outer;
                }
            }
            out.push(*self.char_ids.get(&c).unwrap_or(&self.unk_id()));
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    /// Decodes ids; `<pad>`, `<bos>` and `<eos>` are dropped, other specials are written out.
    pub fn decode(&self, ids: &[u32]) -> String {
        let n = self.specials.len() as u32;
        let mut s = String::with_capacity(ids.len());
        for &id in ids {
            if id < n {
                if id > 2 {
                    s.push_str(&self.specials[id as usize]);
                }
            } else if let Some(&c) = self.chars.get((id - n) as usize) {
                s.push(c);
            }
        }
        s
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        pw_core::write_json_atomic(path, self)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        let mut t: CharTokenizer = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(path, format!("not a tokenizer file: {e}")))?;
        if t.specials.len() < 4 || t.specials[..4] != [PAD, BOS, EOS, UNK] {
            return Err(Error::invalid(
                path,
                "tokenizer must start with <pad>, <bos>, <eos>, <unk>",
            ));
        }
        t.index();
        Ok(t)
    }
}

/// A word vocabulary with the special tokens a prompted decoder needs (`<pad>`, `<unk>`,
/// `<sep>` between prompt and answer, `<eos>`), words canonicalised as [`WordTokenizer`] does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordVocab {
    pub words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl WordVocab {
    pub const PAD: u32 = 0;
    pub const UNK: u32 = 1;
    pub const SEP: u32 = 2;
    pub const EOS: u32 = 3;

    /// Every word of `texts` (sorted, so the ids do not depend on order).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> WordVocab {
        let mut ws: Vec<String> = texts
            .into_iter()
            .flat_map(WordTokenizer::canonical_words)
            .collect();
        ws.sort();
        ws.dedup();
        let mut words: Vec<String> = ["<pad>", "<unk>", "<sep>", "<eos>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        words.extend(ws);
        WordVocab::from_words(words)
    }

    pub fn from_words(words: Vec<String>) -> WordVocab {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        WordVocab { words, index }
    }

    /// After deserialising: rebuilds the index.
    pub fn reindex(self) -> WordVocab {
        WordVocab::from_words(self.words)
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        WordTokenizer::canonical_words(text)
            .iter()
            .map(|w| self.index.get(w).copied().unwrap_or(WordVocab::UNK))
            .collect()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter(|&&i| i > WordVocab::EOS)
            .map(|&i| self.words.get(i as usize).map_or("<unk>", |s| s.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `question <sep>`: the decoder's prompt. A long text keeps its last words (the
    /// question comes after any paragraph before it), so an answer still fits.
    pub fn prompt(&self, question: &str, max_words: usize) -> Vec<u32> {
        let q = self.encode(question);
        let keep = max_words.saturating_sub(20).max(4);
        let mut q = q[q.len().saturating_sub(keep)..].to_vec();
        q.push(WordVocab::SEP);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_specials() {
        let t = CharTokenizer::from_corpus(["12+3=15", "abc"], &["[BAD]"]);
        let ids = t.encode("3+12=15[BAD]c");
        assert_eq!(t.decode(&ids), "3+12=15[BAD]c");
        assert_eq!(ids[ids.len() - 2], t.special_id("[BAD]").unwrap());
        assert_eq!(t.encode("z"), vec![t.unk_id()]);
    }

    #[test]
    fn vocabulary_does_not_depend_on_corpus_order() {
        let a = CharTokenizer::from_corpus(["ab", "cd"], &[]);
        let b = CharTokenizer::from_corpus(["dc", "ba"], &[]);
        assert_eq!(a, b);
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok.json");
        let t = CharTokenizer::from_corpus(["hello"], &["[BAD]"]);
        t.save(&p).unwrap();
        let u = CharTokenizer::load(&p).unwrap();
        assert_eq!(t.encode("hole[BAD]"), u.encode("hole[BAD]"));
        std::fs::write(&p, "{}").unwrap();
        assert!(
            CharTokenizer::load(&p)
                .unwrap_err()
                .to_string()
                .contains("tok.json")
        );
    }
}

/// A word-level tokenizer for captions: text is canonicalised (lower case, every character
/// that is not a letter or digit becomes a space, as VideoPrism's text preprocessing does),
/// split on spaces, and words seen at least `min_count` times in the corpus get an id; the
/// rest map to `<unk>`. Id 0 is `<pad>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordTokenizer {
    pub words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl WordTokenizer {
    pub const PAD: u32 = 0;
    pub const UNK: u32 = 1;

    /// Lower case, non-alphanumerics to spaces, words split.
    pub fn canonical_words(text: &str) -> Vec<String> {
        text.chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_lowercase().next().unwrap_or(c)
                } else {
                    ' '
                }
            })
            .collect::<String>()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    pub fn from_corpus<'a>(corpus: impl IntoIterator<Item = &'a str>, min_count: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in corpus {
            for w in Self::canonical_words(text) {
                *counts.entry(w).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, c)| *c >= min_count.max(1))
            .collect();
        // Most frequent first, ties by spelling: the same corpus always gives the same ids.
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut words = vec!["<pad>".to_string(), "<unk>".to_string()];
        words.extend(kept.into_iter().map(|(w, _)| w));
        Self::from_words(words)
    }

    fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        WordTokenizer { words, index }
    }

    pub fn vocab_size(&self) -> usize {
        self.words.len()
    }

    /// Ids of `text`, cut to `max_len`.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        Self::canonical_words(text)
            .iter()
            .take(max_len)
            .map(|w| self.index.get(w).copied().unwrap_or(Self::UNK))
            .collect()
    }

    /// `texts` as a padded batch: ids `[n * max_len]` and padding flags, at least one real
    /// token per row (an empty text becomes one `<unk>`).
    pub fn batch(&self, texts: &[&str], max_len: usize) -> (Vec<i64>, Vec<bool>) {
        let mut ids = vec![Self::PAD as i64; texts.len() * max_len];
        let mut pad = vec![true; texts.len() * max_len];
        for (r, t) in texts.iter().enumerate() {
            let mut e = self.encode(t, max_len);
            if e.is_empty() {
                e.push(Self::UNK);
            }
            for (j, id) in e.into_iter().enumerate() {
                ids[r * max_len + j] = id as i64;
                pad[r * max_len + j] = false;
            }
        }
        (ids, pad)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        pw_core::write_json_atomic(path, self)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let raw = std::fs::read(path).at(path)?;
        let t: WordTokenizer = serde_json::from_slice(&raw)
            .map_err(|e| Error::invalid(path, format!("not a word tokenizer: {e}")))?;
        if t.words.len() < 2 || t.words[0] != "<pad>" || t.words[1] != "<unk>" {
            return Err(Error::invalid(
                path,
                "word list must start with <pad>, <unk>",
            ));
        }
        Ok(Self::from_words(t.words))
    }
}

#[cfg(test)]
mod word_tests {
    use super::*;

    #[test]
    fn canonicalises_and_maps_unknown_words() {
        let t = WordTokenizer::from_corpus(["A red square, moving LEFT.", "a blue square"], 1);
        assert_eq!(
            WordTokenizer::canonical_words("A red-square!"),
            vec!["a", "red", "square"]
        );
        let ids = t.encode("a green square", 8);
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[1], WordTokenizer::UNK);
        let (ids, pad) = t.batch(&["red", ""], 3);
        assert_eq!(pad, vec![false, true, true, false, true, true]);
        assert_eq!(ids[3], WordTokenizer::UNK as i64);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        t.save(&p).unwrap();
        assert_eq!(
            WordTokenizer::load(&p).unwrap().encode("square left", 4),
            t.encode("square left", 4)
        );
    }
}
