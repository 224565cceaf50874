//! Comment augmentation: a generator may only *insert* comments; no code byte changes.
//!
//! Two ways, one guarantee (every output passes [`crate::verify::verify`] or is rejected with
//! the reason):
//! - **Line-constrained** ([`constrained`], the embedded llama.cpp backend): the original
//!   lines are fed as forced tokens. At each line boundary where a comment may stand, the
//!   model's own next-token distribution decides between the next code line and a comment
//!   line (the probability of the comment marker against that of the line's next token);
//!   a comment's text is generated up to its newline, then the code resumes. Several functions
//!   run in lockstep in one llama.cpp batch.
//! - **Generate and verify** ([`generate_verify`], any [`Generator`]: OpenAI-compatible
//!   endpoints or the embedded engine): the model rewrites the function with comments; the
//!   output is checked, retried with a new seed when it changed code, then rejected.

use crate::density::{Analyzer, Docstrings};
use crate::lang::Lang;
use crate::verify::{Accepted, verify};
use pw_llm::embedded::forced::Lm;
use pw_llm::stage::{StageItem, StageOptions, StageStats, run_stage};
use pw_llm::{ChatMessage, GenParams, Generator, LlmError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// One unit of code to comment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unit {
    pub id: String,
    pub lang: Lang,
    /// Where it came from (file path or corpus record), and its first line there.
    pub path: String,
    pub line: usize,
    pub code: String,
}

/// The instruction both ways share.
pub fn messages(unit: &Unit) -> Vec<ChatMessage> {
    let spec = unit.lang.spec();
    let tag = spec.aliases[0];
    vec![
        ChatMessage::system(
            "You are an expert programmer who writes clear, concise code comments.",
        ),
        ChatMessage::user(format!(
            "Add comments to this {} code that explain what each step does and why. Write \
             only `{}` line comments (no docstrings) and do not change, add or remove any \
             code. Reply with the commented code in one code block.\n\n```{tag}\n{}```",
            spec.name, spec.line_comment, unit.code
        )),
    ]
}

/// The settings of line-constrained generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConstrainedOptions {
    /// Added to log P(comment) at each boundary: > 0 comments more, < 0 less.
    pub bias: f32,
    /// Most tokens of one comment line (then the line is closed).
    pub max_comment_tokens: usize,
    /// Most comment lines in a row before a code line.
    pub max_consecutive: usize,
    /// Functions decoded together.
    pub parallel: usize,
}

impl Default for ConstrainedOptions {
    fn default() -> Self {
        ConstrainedOptions {
            bias: 0.0,
            max_comment_tokens: 32,
            max_consecutive: 2,
            parallel: 4,
        }
    }
}

/// The outcome for one unit.
#[derive(Clone, Debug)]
pub enum Outcome {
    Accepted(Accepted),
    Rejected {
        reason: String,
        text: Option<String>,
    },
}

/// Where a comment may be inserted: before a non-blank line other than the first that does
/// not start inside a multi-line string or comment, and not after a line continuation.
pub fn insertable_lines(an: &mut Analyzer, lang: Lang, code: &str) -> Vec<bool> {
    let Some((tree, spans)) = an.parse(lang, code.as_bytes()) else {
        return vec![false; code.lines().count()];
    };
    let spec = lang.spec();
    let g = (spec.grammar)();
    let strings: Vec<u16> = spec
        .string_kinds
        .iter()
        .map(|k| g.id_for_node_kind(k, true))
        .filter(|&i| i != 0)
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_continues = false;
    for line in code.split_inclusive('\n') {
        let blank = line.trim().is_empty();
        let inside_comment = spans
            .iter()
            .any(|s| s.bytes.start < start && s.bytes.end > start);
        let inside_string = {
            let mut n = tree.root_node().descendant_for_byte_range(start, start);
            let mut inside = false;
            while let Some(node) = n {
                if strings.contains(&node.kind_id()) && node.start_byte() < start {
                    inside = true;
                    break;
                }
                n = node.parent();
            }
            inside
        };
        // Not above the unit's first line: a comment there restates the signature (and, in
        // Python, the docstring); the comments that align code with language go inside.
        let first = out.is_empty();
        out.push(!first && !blank && !inside_comment && !inside_string && !prev_continues);
        prev_continues = line.trim_end().ends_with('\\');
        start += line.len();
    }
    out
}

/// Vocabulary facts for constrained decoding, computed once per model.
struct Vocab {
    /// Tokens allowed inside a comment's text (no newline, not special).
    text_ok: Vec<bool>,
    /// Tokens that end a comment line (their only newline is their last byte).
    ends_line: Vec<u32>,
    /// Tokens whose text starts with a given string (comment starts), cached per string.
    starting: HashMap<Vec<u8>, Vec<u32>>,
}

impl Vocab {
    fn new(lm: &Lm) -> Vocab {
        let n = lm.n_vocab();
        let mut text_ok = vec![false; n];
        let mut ends_line = Vec::new();
        for t in 0..n as u32 {
            let p = lm.piece(t);
            if p.is_empty() || lm.is_eog(t) {
                continue;
            }
            let newlines = p.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
            if newlines == 0 {
                text_ok[t as usize] = !p.windows(3).any(|w| w == b"```");
            } else if newlines == 1 && p.last() == Some(&b'\n') {
                ends_line.push(t);
            }
        }
        Vocab {
            text_ok,
            ends_line,
            starting: HashMap::new(),
        }
    }

    fn starting_with(&mut self, lm: &Lm, prefix: &[u8]) -> &[u32] {
        self.starting.entry(prefix.to_vec()).or_insert_with(|| {
            (0..lm.n_vocab() as u32)
                .filter(|&t| {
                    let p = lm.piece(t);
                    p.starts_with(prefix) && !p.contains(&b'\n') && !lm.is_eog(t)
                })
                .collect()
        })
    }
}

fn log_softmax_at(logits: &[f32], toks: &[u32]) -> f32 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let s: f32 = toks.iter().map(|&t| (logits[t as usize] - max).exp()).sum();
    (s / z).ln()
}

fn argmax_of(logits: &[f32], toks: impl Iterator<Item = u32>) -> Option<u32> {
    toks.max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
}

enum Mode {
    /// Tokens of line `i` up to the decision are fed; decide next.
    Boundary,
    /// Inside a comment line (tokens generated so far).
    Comment(usize),
    Done,
}

/// A line's tokens and, when a comment may come before it, how many of them a comment line
/// shares and the comment marker's text after those.
type Split = (Vec<u32>, Option<(usize, Vec<u8>)>);

/// The state of one unit under constrained decoding.
struct Run<'u> {
    unit: &'u Unit,
    lines: Vec<&'u str>,
    insertable: Vec<bool>,
    splits: Vec<Option<Split>>,
    i: usize,
    consecutive: usize,
    mode: Mode,
    out: String,
    marker: String,
}

impl Run<'_> {
    /// The tokens of line i (with its newline) and how many of them a comment line with
    /// the same indentation shares; `None` when no decision is taken before line i.
    /// Memoised: a line is looked at several times (when reached, at its decision, after each
    /// comment before it) and tokenizing it is the costly part.
    fn split(&mut self, lm: &Lm, i: usize) -> Split {
        if let Some(s) = &self.splits[i] {
            return s.clone();
        }
        let s = self.split_uncached(lm, i);
        self.splits[i] = Some(s.clone());
        s
    }

    fn split_uncached(&self, lm: &Lm, i: usize) -> Split {
        let line = self.lines[i];
        let toks = lm.tokenize(line, false);
        if !self.insertable[i] {
            return (toks, None);
        }
        let indent_len = line.len() - line.trim_start().len();
        let comment_start = format!("{}{}", &line[..indent_len], self.marker);
        if line.trim_start().starts_with(self.marker.as_str()) {
            return (toks, None);
        }
        let ctoks = lm.tokenize(&comment_start, false);
        let c = toks
            .iter()
            .zip(&ctoks)
            .take_while(|(a, b)| a == b)
            .count()
            .min(toks.len().saturating_sub(1));
        let shared: usize = toks[..c].iter().map(|&t| lm.piece(t).len()).sum();
        if shared > comment_start.len() {
            return (toks, None);
        }
        let rest = comment_start.as_bytes()[shared..].to_vec();
        if rest.is_empty() || lm.piece(toks[c]).starts_with(&rest) {
            return (toks, None);
        }
        (toks, Some((c, rest)))
    }

    /// The feed that takes the run from after line `self.i - 1` to its next decision (or to
    /// the end): whole lines without a decision, then the shared prefix of the next line.
    fn feed_to_next_boundary(&mut self, lm: &Lm, mut feed: Vec<u32>) -> Vec<u32> {
        while self.i < self.lines.len() {
            let (toks, decision) = self.split(lm, self.i);
            match decision {
                Some((c, _)) => {
                    feed.extend_from_slice(&toks[..c]);
                    self.mode = Mode::Boundary;
                    return feed;
                }
                None => {
                    feed.extend_from_slice(&toks);
                    self.out.push_str(self.lines[self.i]);
                    self.i += 1;
                    self.consecutive = 0;
                }
            }
        }
        self.mode = Mode::Done;
        feed
    }

    /// Takes the logits after the last feed and returns the next feed (empty: finished).
    fn advance(
        &mut self,
        lm: &Lm,
        vocab: &mut Vocab,
        logits: &[f32],
        opts: &ConstrainedOptions,
    ) -> Vec<u32> {
        {
            match self.mode {
                Mode::Done => Vec::new(),
                Mode::Boundary => {
                    let (toks, decision) = self.split(lm, self.i);
                    let (c, rest) = decision.expect("a boundary has a decision");
                    let code_tok = toks[c];
                    let comment = vocab.starting_with(lm, &rest).to_vec();
                    let take_comment = self.consecutive < opts.max_consecutive
                        && !comment.is_empty()
                        && log_softmax_at(logits, &comment) + opts.bias
                            > log_softmax_at(logits, &[code_tok]);
                    let prefix: Vec<u8> = toks[..c]
                        .iter()
                        .flat_map(|&t| lm.piece(t).to_vec())
                        .collect();
                    if take_comment {
                        let t = argmax_of(logits, comment.iter().copied()).expect("non-empty");
                        self.out.push_str(&String::from_utf8_lossy(&prefix));
                        self.out.push_str(&String::from_utf8_lossy(lm.piece(t)));
                        self.mode = Mode::Comment(1);
                        return vec![t];
                    }
                    // The code line: the rest of its tokens, then on to the next decision.
                    self.out.push_str(self.lines[self.i]);
                    self.i += 1;
                    self.consecutive = 0;
                    let feed = self.feed_to_next_boundary(lm, toks[c..].to_vec());
                    // At the end nothing more needs decoding: the text is complete.
                    if matches!(self.mode, Mode::Done) {
                        Vec::new()
                    } else {
                        feed
                    }
                }
                Mode::Comment(n) => {
                    let end = argmax_of(logits, vocab.ends_line.iter().copied());
                    let next = if n >= opts.max_comment_tokens {
                        end
                    } else if n < 2 {
                        // Not an empty comment: at least one token of text after the marker.
                        argmax_of(
                            logits,
                            (0..logits.len() as u32).filter(|&t| vocab.text_ok[t as usize]),
                        )
                    } else {
                        argmax_of(
                            logits,
                            (0..logits.len() as u32)
                                .filter(|&t| vocab.text_ok[t as usize])
                                .chain(vocab.ends_line.iter().copied()),
                        )
                    };
                    let Some(t) = next else {
                        return Vec::new();
                    };
                    let piece = lm.piece(t).to_vec();
                    if piece.last() == Some(&b'\n') {
                        // The comment line ends; the same code line is next.
                        self.out
                            .push_str(&String::from_utf8_lossy(&piece[..piece.len() - 1]));
                        self.out.push('\n');
                        self.consecutive += 1;
                        let mut feed = vec![t];
                        let (toks, decision) = self.split(lm, self.i);
                        if let Some((c, _)) = decision {
                            feed.extend_from_slice(&toks[..c]);
                        }
                        self.mode = Mode::Boundary;
                        return feed;
                    }
                    self.out.push_str(&String::from_utf8_lossy(&piece));
                    self.mode = Mode::Comment(n + 1);
                    vec![t]
                }
            }
        }
    }
}

/// Comments `units` with line-constrained decoding on an open model; calls `done` with each
/// unit's outcome as it finishes (in no fixed order).
pub fn constrained(
    lm: &mut Lm,
    units: &[Unit],
    opts: &ConstrainedOptions,
    done: &mut dyn FnMut(&Unit, Outcome),
) -> Result<(), LlmError> {
    let mut vocab = Vocab::new(lm);
    let mut an = Analyzer::new();
    let seqs = lm.sequences().min(opts.parallel.max(1));
    let mut queue = units.iter();
    let mut slots: Vec<Option<(Run, Vec<u32>)>> = (0..seqs).map(|_| None).collect();
    // The head (prompt + fence) each sequence started with: every unit's head repeats the
    // same instructions, so a new unit takes the longest head prefix another sequence (or its
    // own sequence's last unit) already evaluated instead of evaluating it again.
    let mut heads: Vec<Vec<u32>> = vec![Vec::new(); seqs];
    loop {
        // Fill free sequences with new units: prompt + code fence + the first lines.
        for (s, slot) in slots.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let Some(unit) = queue.next() else { break };
            let prompt = match lm.chat_prompt(&messages(unit)) {
                Ok(p) => p,
                Err(e) => {
                    done(
                        unit,
                        Outcome::Rejected {
                            reason: e.to_string(),
                            text: None,
                        },
                    );
                    continue;
                }
            };
            let spec = unit.lang.spec();
            let head = format!("{prompt}```{}\n", spec.aliases[0]);
            let lines: Vec<&str> = unit.code.split_inclusive('\n').collect();
            let mut run = Run {
                unit,
                splits: vec![None; lines.len()],
                lines,
                insertable: insertable_lines(&mut an, unit.lang, &unit.code),
                i: 0,
                consecutive: 0,
                mode: Mode::Boundary,
                out: String::with_capacity(unit.code.len() * 2),
                marker: spec.line_comment.to_string(),
            };
            let head = lm.tokenize(&head, true);
            let need = head.len() + lm.tokenize(&unit.code, false).len() * 2;
            if need + 64 > lm.ctx_per_seq() {
                done(
                    unit,
                    Outcome::Rejected {
                        reason: format!(
                            "too long: about {need} tokens with the prompt, over the context of {}",
                            lm.ctx_per_seq()
                        ),
                        text: None,
                    },
                );
                continue;
            }
            // at least the head's last token is fed, for the logits after it
            let (src, common) = (0..seqs)
                .map(|t| {
                    let held = &heads[t][..heads[t].len().min(lm.len(t))];
                    let c = held.iter().zip(&head).take_while(|(a, b)| a == b).count();
                    (t, c.min(head.len().saturating_sub(1)))
                })
                .max_by_key(|&(t, c)| (c, t == s))
                .unwrap_or((s, 0));
            let kept = lm.share_prefix(s, src, common);
            let feed = run.feed_to_next_boundary(lm, head[kept..].to_vec());
            heads[s] = head;
            *slot = Some((run, feed));
        }
        if slots.iter().all(|s| s.is_none()) {
            return Ok(());
        }
        let feeds: Vec<(usize, Vec<u32>)> = slots
            .iter()
            .enumerate()
            .filter_map(|(s, x)| x.as_ref().map(|(_, f)| (s, f.clone())))
            .collect();
        let refs: Vec<(usize, &[u32])> = feeds.iter().map(|(s, f)| (*s, f.as_slice())).collect();
        let logits = lm.step(&refs)?;
        for ((s, _), l) in feeds.iter().zip(logits) {
            let (run, feed) = slots[*s].as_mut().expect("fed slots are active");
            let next = if lm.len(*s) + 1 >= lm.ctx_per_seq() {
                Vec::new()
            } else {
                run.advance(lm, &mut vocab, &l, opts)
            };
            if next.is_empty() {
                let (run, _) = slots[*s].take().expect("active");
                let outcome = match (
                    &run.mode,
                    verify(&mut an, run.unit.lang, &run.unit.code, &run.out),
                ) {
                    (Mode::Done, Ok(a)) => Outcome::Accepted(a),
                    (Mode::Done, Err(reason)) => Outcome::Rejected {
                        reason,
                        text: Some(run.out),
                    },
                    _ => Outcome::Rejected {
                        reason: "ran out of context before the end of the code".into(),
                        text: Some(run.out),
                    },
                };
                done(run.unit, outcome);
            } else {
                *feed = next;
            }
        }
    }
}

/// The code of a reply: the first fenced block when there is one, else the whole text.
pub fn extract_code(reply: &str) -> String {
    let Some(open) = reply.find("```") else {
        return reply.to_string();
    };
    let after = &reply[open + 3..];
    let body_start = after.find('\n').map_or(after.len(), |p| p + 1);
    let body = &after[body_start..];
    let end = body.find("\n```").map_or(body.len(), |p| p + 1);
    body[..end].to_string()
}

/// Generate-and-verify through any generator, as a resumable stage: accepted records go to
/// `out`, rejects (with the reason and the last output) to `rejects`.
pub fn generate_verify(
    generator: &dyn Generator,
    units: &[Unit],
    params: &GenParams,
    out: &Path,
    rejects: &Path,
    opts: &StageOptions,
) -> pw_core::Result<StageStats> {
    let by_id: HashMap<&str, &Unit> = units.iter().map(|u| (u.id.as_str(), u)).collect();
    let items: Vec<StageItem> = units
        .iter()
        .map(|u| StageItem {
            id: u.id.clone(),
            messages: messages(u),
            params: params.clone(),
            meta: serde_json::json!({"path": u.path, "line": u.line, "lang": u.lang}),
        })
        .collect();
    let check = |item: &StageItem, text: &str| -> Result<serde_json::Value, String> {
        let unit = by_id.get(item.id.as_str()).ok_or("unknown unit")?;
        let code = extract_code(text);
        let mut an = Analyzer::new();
        let a = verify(&mut an, unit.lang, &unit.code, &code)?;
        serde_json::to_value(&a).map_err(|e| e.to_string())
    };
    run_stage(generator, items, &check, out, rejects, opts)
}

/// Comment density (by characters) of a text.
pub fn char_density(an: &mut Analyzer, lang: Lang, code: &str) -> f64 {
    an.analyze(lang, code.as_bytes(), Docstrings::Comment)
        .map_or(0.0, |a| a.counts.density_chars())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_taken_from_the_first_fence() {
        assert_eq!(
            extract_code("Sure:\n```python\nx = 1\n```\nDone."),
            "x = 1\n"
        );
        assert_eq!(extract_code("x = 1\n"), "x = 1\n");
        assert_eq!(extract_code("```\nx\ny\n"), "x\ny\n");
    }

    #[test]
    fn no_comment_goes_inside_a_string_or_after_a_continuation() {
        let code =
            "def f():\n    s = \"\"\"a\n\n    b\"\"\"\n    x = 1 + \\\n        2\n\n    return s\n";
        let ins = insertable_lines(&mut Analyzer::new(), Lang::Python, code);
        assert_eq!(
            ins,
            vec![false, true, false, false, true, false, false, true]
        );
    }
}
