//! Self-augmentation: round r + 1's code is commented by the model trained on round r's
//! commented data. In the miniature that model is the byte-level code model continued-trained
//! on round 1's commented + filtered functions, and it comments under the same line
//! constraint as the round-1 generator: every code line is fed as it is; at each line
//! boundary where a comment may stand, the model's probability of the comment marker `#`
//! after the line's indentation, against that of the line's own next byte (plus `bias`),
//! decides (one forward pass reads every boundary of a window); a comment's text is the
//! model's greedy continuation up to its newline on the KV-cached decoder, cut at the first
//! byte that is not printable ASCII.
//! Every output still goes through [`crate::verify::verify`].

use crate::augment::{Outcome, Unit, insertable_lines};
use crate::density::Analyzer;
use crate::lang::Lang;
use crate::model::{BOS, PAD, encode};
use crate::verify::verify;
use pw_nn::burn::tensor::activation::log_softmax;
use pw_nn::burn::tensor::{Int, Tensor, TensorData};
use pw_nn::decode::{Decoder, SampleOptions};
use pw_nn::transformer::CausalLm;
use serde::{Deserialize, Serialize};

/// The settings of byte-level constrained commenting.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByteOptions {
    /// Added to log P(`#`) at each boundary: > 0 comments more, < 0 less.
    pub bias: f32,
    /// Most bytes of one comment's text (then the line is closed).
    pub max_comment_bytes: usize,
    /// Most comment lines in a row before a code line.
    pub max_consecutive: usize,
    /// Units decoded together (one batched forward per step).
    pub batch: usize,
}

impl Default for ByteOptions {
    fn default() -> Self {
        ByteOptions {
            bias: 0.0,
            max_comment_bytes: 60,
            max_consecutive: 2,
            batch: 16,
        }
    }
}

enum Mode {
    /// Looking for the next boundary, from line `next`, where the model comments: one
    /// forward pass over the text as it stands reads every boundary in its window.
    Scan,
    /// A comment marker was written; its text comes from the KV-cached decoder.
    Comment,
    Done,
}

/// One forward pass a run asks for: the text window and where it starts in the run's text.
struct Window {
    tokens: Vec<u32>,
    /// Text byte `p` is token `p - start + offset` (offset 1 when the window opens with BOS).
    start: usize,
    offset: usize,
}

struct Run<'u> {
    lines: Vec<&'u str>,
    insertable: Vec<bool>,
    /// The text so far: code lines before line `i` and the comments inserted among them.
    out: String,
    /// The first original line not yet in `out`.
    i: usize,
    /// Lines `i..next` are decided as code (no comment before them).
    next: usize,
    /// Comment lines already standing right before line `i`.
    consecutive: usize,
    mode: Mode,
    /// Where the comment being written starts in `out`.
    comment_at: usize,
}

fn indent_len(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

impl Run<'_> {
    /// The text as it stands: `out` and the original lines from `i` on.
    fn text(&self) -> String {
        let mut t = self.out.clone();
        for l in &self.lines[self.i..] {
            t.push_str(l);
        }
        t
    }

    /// Byte position of line `j` (j >= i) in `text()`.
    fn pos(&self, j: usize) -> usize {
        self.out.len() + self.lines[self.i..j].iter().map(|l| l.len()).sum::<usize>()
    }

    /// The scan's window: half a window of context before the first undecided line.
    fn window(&self, max_len: usize) -> Window {
        let text = self.text();
        let from = self.pos(self.next).saturating_sub(max_len / 2);
        let mut tokens = Vec::with_capacity(max_len);
        let offset = (from == 0) as usize;
        if offset == 1 {
            tokens.push(BOS);
        }
        let end = (from + max_len - offset).min(text.len());
        tokens.extend(encode(&text[from..end]));
        Window {
            tokens,
            start: from,
            offset,
        }
    }

    /// Moves `i` to line `j`, putting the code lines before it into `out`.
    fn take_code_to(&mut self, j: usize) {
        for l in &self.lines[self.i..j] {
            self.out.push_str(l);
        }
        if j > self.i {
            self.consecutive = 0;
        }
        self.i = j;
        self.next = self.next.max(j);
    }

    /// `logp(k)`: the log-probabilities predicting window token `k`.
    fn step<'v>(&mut self, w: &Window, logp: &dyn Fn(usize) -> &'v [f32], opts: &ByteOptions) {
        match self.mode {
            Mode::Done => {}
            Mode::Scan => {
                let end = w.start + w.tokens.len() - w.offset;
                let mut j = self.next;
                while j < self.lines.len() {
                    let at = self.pos(j) + indent_len(self.lines[j]);
                    if at >= end {
                        // Past the window: the next forward pass starts here (a line whose
                        // indentation alone fills half a window is taken as code).
                        self.next = if j == self.next { j + 1 } else { j };
                        return;
                    }
                    let may = self.insertable[j]
                        && (j > self.i || self.consecutive < opts.max_consecutive);
                    // A window that starts after the boundary's context began still holds
                    // at least half a window of it.
                    if may && at > w.start {
                        let lp = logp(at - w.start + w.offset);
                        let next_byte = self.lines[j].as_bytes()[indent_len(self.lines[j])];
                        if lp[b'#' as usize] + opts.bias > lp[next_byte as usize] {
                            self.take_code_to(j);
                            self.comment_at = self.out.len();
                            self.out
                                .push_str(&self.lines[j][..indent_len(self.lines[j])]);
                            self.out.push('#');
                            self.mode = Mode::Comment;
                            return;
                        }
                    }
                    j += 1;
                }
                self.take_code_to(self.lines.len());
                self.mode = Mode::Done;
            }
            Mode::Comment => {}
        }
    }

    /// The decoder's prompt for the comment's text: the end of `out` (BOS when it all fits),
    /// leaving room for the text in the context.
    fn comment_prompt(&self, max_len: usize, room: usize) -> Vec<u32> {
        let keep = max_len.saturating_sub(room + 1);
        let from = self.out.len().saturating_sub(keep);
        let mut p = Vec::with_capacity(keep + 1);
        if from == 0 {
            p.push(BOS);
        }
        p.extend(encode(&self.out[from..]));
        p
    }

    /// The greedy continuation up to the newline, cut at the first byte that is not
    /// printable ASCII (a comment's text is one line of plain text).
    fn write_comment(&mut self, generated: &[u32]) {
        for &t in generated {
            match u8::try_from(t) {
                Ok(b) if (0x20..0x7f).contains(&b) => self.out.push(b as char),
                _ => break,
            }
        }
        self.end_comment();
    }

    fn end_comment(&mut self) {
        let text = self.out[self.comment_at..]
            .trim()
            .trim_start_matches('#')
            .trim();
        if text.is_empty() {
            // Nothing said: no comment line, and line i is code.
            self.out.truncate(self.comment_at);
            self.next = self.i + 1;
        } else {
            let keep = self.out.trim_end().len();
            self.out.truncate(keep);
            self.out.push('\n');
            self.consecutive += 1;
            self.next = self.i;
        }
        self.mode = Mode::Scan;
    }
}

/// Comments Python `units` with the byte-level model; calls `done` with each unit's outcome
/// (accepted after verification, or rejected with the reason).
pub fn comment_with_byte_model(
    model: &CausalLm,
    units: &[Unit],
    opts: &ByteOptions,
    done: &mut dyn FnMut(&Unit, Outcome),
) -> pw_core::Result<()> {
    let device = model.head.weight.val().device();
    let max_len = model.trunk.max_len;
    let decoder = Decoder::new(model)?;
    let greedy = SampleOptions {
        temperature: 0.0,
        top_p: 1.0,
        max_new: opts.max_comment_bytes,
        stop: u32::from(b'\n'),
    };
    let mut an = Analyzer::new();
    for chunk in units.chunks(opts.batch.max(1)) {
        let mut runs: Vec<Option<Run>> = chunk
            .iter()
            .map(|u| {
                if u.lang != Lang::Python {
                    done(
                        u,
                        Outcome::Rejected {
                            reason: "the byte-level model writes Python `#` comments only".into(),
                            text: None,
                        },
                    );
                    return None;
                }
                Some(Run {
                    lines: u.code.split_inclusive('\n').collect(),
                    insertable: insertable_lines(&mut an, u.lang, &u.code),
                    out: String::new(),
                    i: 0,
                    next: 0,
                    consecutive: 0,
                    mode: Mode::Scan,
                    comment_at: 0,
                })
            })
            .collect();
        loop {
            let active: Vec<usize> = (0..runs.len())
                .filter(|&k| {
                    runs[k]
                        .as_ref()
                        .is_some_and(|r| !matches!(r.mode, Mode::Done))
                })
                .collect();
            if active.is_empty() {
                break;
            }
            // Comment texts first, all at once on the KV-cached decoder.
            let writing: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&k| matches!(runs[k].as_ref().expect("active").mode, Mode::Comment))
                .collect();
            if !writing.is_empty() {
                let prompts: Vec<Vec<u32>> = writing
                    .iter()
                    .map(|&k| {
                        runs[k]
                            .as_ref()
                            .expect("active")
                            .comment_prompt(max_len, opts.max_comment_bytes)
                    })
                    .collect();
                let texts = decoder.sample(&prompts, &vec![0; prompts.len()], 1, &greedy);
                for (&k, t) in writing.iter().zip(texts) {
                    runs[k].as_mut().expect("active").write_comment(&t[0]);
                }
                continue;
            }
            let windows: Vec<Window> = active
                .iter()
                .map(|&k| runs[k].as_ref().expect("active").window(max_len))
                .collect();
            let t = windows.iter().map(|w| w.tokens.len()).max().unwrap_or(1);
            let b = windows.len();
            let mut x = vec![PAD as i64; b * t];
            for (r, w) in windows.iter().enumerate() {
                for (p, &tok) in w.tokens.iter().enumerate() {
                    x[r * t + p] = tok as i64;
                }
            }
            let xt = Tensor::<2, Int>::from_data(TensorData::new(x, [b, t]), &device);
            let v: Vec<f32> = log_softmax(model.forward(xt), 2)
                .into_data()
                .try_to_vec()
                .expect("f32 logits");
            let vocab = v.len() / (b * t);
            for (r, &k) in active.iter().enumerate() {
                // Token k of the window is predicted by the output at k - 1.
                let logp = |tok: usize| {
                    let at = (r * t + tok - 1) * vocab;
                    &v[at..at + vocab]
                };
                runs[k]
                    .as_mut()
                    .expect("active")
                    .step(&windows[r], &logp, opts);
            }
        }
        for (u, r) in chunk.iter().zip(runs) {
            let Some(r) = r else { continue };
            let outcome = match verify(&mut an, u.lang, &u.code, &r.out) {
                Ok(a) => Outcome::Accepted(a),
                Err(reason) => Outcome::Rejected {
                    reason,
                    text: Some(r.out),
                },
            };
            done(u, outcome);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LmConfig;
    use crate::model::new_lm;

    #[test]
    fn a_model_that_learned_a_comment_writes_it_without_changing_code() {
        // A tiny model taught one comment line ("# ab cd") on code like the unit's.
        let device = pw_nn::train_device(true).unwrap();
        let cfg = LmConfig {
            d_model: 32,
            n_heads: 2,
            n_layers: 1,
            max_len: 64,
        };
        let mut rng = pw_nn::seed_everything(&device, 7);
        let teach = vec![
            "def g(x):\n    # ab cd\n    y = x + 1\n    # ab cd\n    return y\n"
                .to_string();
            40
        ];
        let train = crate::config::TrainConfig {
            steps: 150,
            batch: 8,
            lr: 1e-2,
            warmup: 10,
        };
        let (model, _) = crate::train::train_windows(
            new_lm(&cfg, &device),
            &crate::train::pack(&teach),
            &train,
            &mut rng,
            "test",
            None,
            &mut |_, _| {},
        );
        let model = pw_nn::burn::module::Module::valid(&model);
        let unit = Unit {
            id: "f".into(),
            lang: Lang::Python,
            path: "a.py".into(),
            line: 1,
            code: "def f(x):\n    s = '''\n# not here\n'''\n    y = x + 1\n    return y\n".into(),
        };
        let mut got = Vec::new();
        for bias in [-100.0, 100.0] {
            let opts = ByteOptions {
                bias,
                max_comment_bytes: 8,
                ..ByteOptions::default()
            };
            comment_with_byte_model(&model, std::slice::from_ref(&unit), &opts, &mut |_, o| {
                got.push(o)
            })
            .unwrap();
        }
        let Outcome::Accepted(none) = &got[0] else {
            panic!("bias -100 must accept the code as it is")
        };
        assert_eq!(
            (none.text.as_str(), none.inserted_lines),
            (unit.code.as_str(), 0)
        );
        let Outcome::Accepted(many) = &got[1] else {
            panic!("bias +100 must comment and keep the code")
        };
        // Comments before the insertable lines (not inside the string), in the taught words.
        assert!(many.inserted_lines >= 2, "{}", many.text);
        assert!(
            many.text
                .lines()
                .any(|l| l.trim_start().starts_with('#') && l.ends_with("cd")),
            "{}",
            many.text
        );
        let code: Vec<&str> = many
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') || *l == "# not here")
            .collect();
        assert_eq!(code.join("\n") + "\n", unit.code);
    }
}
