//! The student's tokenizer: whole words, single digits (so the model does arithmetic digit by
//! digit, as GSM8K models do with most tokenizers), punctuation, operators, newlines, `####`,
//! and special tokens. Spaces are not tokens: decoding puts them back by a fixed rule, and
//! every generated text round-trips exactly (tested).

use pw_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The special tokens every tokenizer of the project shares (pw-nn's), first in the vocabulary.
pub use pw_nn::tokenizer::{BOS, EOS, PAD, UNK};
/// Between the question and the solution.
pub const SEP: &str = "<sep>";
/// Between a draft and its refinement (refiner inputs).
pub const REF: &str = "<ref>";
/// The local refiner's marker before the first bad step.
pub const BAD: &str = "[BAD]";
pub const ANSWER: &str = "####";
const SPECIALS: [&str; 7] = [PAD, BOS, EOS, UNK, SEP, REF, BAD];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vocab {
    pub tokens: Vec<String>,
    #[serde(skip)]
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// Specials, then `words`, digits, punctuation and operators.
    pub fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> Vocab {
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        tokens.push(ANSWER.into());
        tokens.push("\n".into());
        tokens.extend((0..10).map(|d| d.to_string()));
        tokens.extend([".", ",", "?", "!", "+", "-", "*", "/", "=", "$", ":"].map(String::from));
        let mut words: Vec<&str> = words.into_iter().collect();
        words.sort_unstable();
        words.dedup();
        tokens.extend(words.into_iter().map(String::from));
        Vocab::from_tokens(tokens)
    }

    /// The vocabulary of the generated domain.
    pub fn domain() -> Vocab {
        Vocab::new(crate::data::vocabulary())
    }

    pub fn from_tokens(tokens: Vec<String>) -> Vocab {
        let mut v = Vocab {
            tokens,
            ids: HashMap::new(),
        };
        v.index();
        v
    }

    fn index(&mut self) {
        self.ids = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
    }

    pub fn from_json(s: &str) -> Result<Vocab> {
        let mut v: Vocab =
            serde_json::from_str(s).map_err(|e| Error::Other(format!("vocabulary: {e}")))?;
        v.index();
        Ok(v)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    pub fn id(&self, token: &str) -> u32 {
        self.ids.get(token).copied().unwrap_or(3)
    }
    pub fn pad(&self) -> u32 {
        0
    }
    pub fn bos(&self) -> u32 {
        1
    }
    pub fn eos(&self) -> u32 {
        2
    }
    pub fn unk(&self) -> u32 {
        3
    }
    pub fn sep(&self) -> u32 {
        4
    }
    pub fn refine(&self) -> u32 {
        5
    }
    pub fn bad(&self) -> u32 {
        6
    }
    pub fn newline(&self) -> u32 {
        self.id("\n")
    }

    /// Token ids of `text`; unknown words become `<unk>`, `[BAD]` and `####` their own ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 2);
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let rest = &text[i..];
            if rest.starts_with(ANSWER) {
                out.push(self.id(ANSWER));
                i += ANSWER.len();
            } else if rest.starts_with(BAD) {
                out.push(self.bad());
                i += BAD.len();
            } else {
                let c = rest.chars().next().expect("non-empty");
                let n = c.len_utf8();
                if c == '\n' {
                    out.push(self.newline());
                    i += 1;
                } else if c.is_whitespace() {
                    i += n;
                } else if c.is_alphabetic() {
                    let end = rest
                        .find(|ch: char| !ch.is_alphabetic())
                        .unwrap_or(rest.len());
                    out.push(self.id(&rest[..end]));
                    i += end;
                } else {
                    out.push(self.id(&rest[..n]));
                    i += n;
                }
            }
        }
        out
    }

    /// Text of token ids (specials other than `[BAD]` are left out).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut s = String::new();
        let mut prev: Option<&str> = None;
        for &id in ids {
            let Some(t) = self.tokens.get(id as usize) else {
                continue;
            };
            if (id as usize) < SPECIALS.len() && t != BAD {
                continue;
            }
            let glue = match prev {
                None => true,
                Some(p) => {
                    p == "\n"
                        || t == "\n"
                        || matches!(t.as_str(), "." | "," | "?" | "!" | ":")
                        || (is_digit(t) && is_digit(p))
                        || p == "$"
                }
            };
            if !glue {
                s.push(' ');
            }
            s.push_str(t);
            prev = Some(t);
        }
        s
    }
}

fn is_digit(t: &str) -> bool {
    t.len() == 1 && t.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{GenConfig, generate_problems};

    #[test]
    fn generated_questions_and_solutions_round_trip_without_unknown_tokens() {
        let v = Vocab::domain();
        for p in generate_problems(&GenConfig::default(), 300, 9, "") {
            for text in [p.question.clone(), p.answer_text()] {
                let ids = v.encode(&text);
                assert!(!ids.contains(&v.unk()), "unknown token in {text:?}");
                assert_eq!(v.decode(&ids), text);
            }
        }
    }

    #[test]
    fn markers_are_single_tokens_and_the_vocabulary_serialises() {
        let v = Vocab::domain();
        let ids = v.encode("[BAD] 12 + 7 = 19\n#### 19");
        assert_eq!(ids[0], v.bad());
        assert!(ids.contains(&v.id(ANSWER)));
        assert_eq!(v.decode(&ids), "[BAD] 12 + 7 = 19\n#### 19");
        let back = Vocab::from_json(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(
            back.encode("Ann has 3 apples."),
            v.encode("Ann has 3 apples.")
        );
        assert_eq!(v.encode("zebra")[0], v.unk());
    }
}
