//! The guarantee of comment augmentation: no code byte changes.
//!
//! A generator's output is aligned line by line with the original: every original line must
//! come back exactly (or followed by a trailing comment), in order, and every other line must
//! be a comment line in the output's own parse. Inserted blank lines are dropped. The kept
//! text is rebuilt from the original lines plus the accepted comments and parsed again, and
//! each original line's code (its bytes outside comments) must be what it was: a `/*` left
//! open, or a `#` inside a string, fails here and the output is rejected with the reason.

use crate::density::{Analyzer, Span};
use crate::lang::Lang;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// An accepted augmentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The original with the accepted comments in it.
    pub text: String,
    pub inserted_lines: usize,
    pub trailing_comments: usize,
    /// Blank lines the generator added that were dropped.
    pub dropped_blank_lines: usize,
}

/// Line byte ranges (without the newline).
fn lines(s: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b'\n' {
            out.push(start..i);
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push(start..s.len());
    }
    out
}

/// Per line: its non-whitespace bytes outside comments (the code it holds), and whether it
/// holds comment text.
fn code_of_lines(src: &str, spans: &[Span]) -> Vec<(String, bool)> {
    let b = src.as_bytes();
    let mut si = 0;
    lines(src)
        .into_iter()
        .map(|r| {
            let mut code = String::new();
            let mut comment = false;
            for i in r {
                while si < spans.len() && spans[si].bytes.end <= i {
                    si += 1;
                }
                let in_c = si < spans.len() && spans[si].bytes.start <= i;
                if b[i].is_ascii_whitespace() {
                    continue;
                }
                if in_c {
                    comment = true;
                } else {
                    code.push(b[i] as char);
                }
            }
            (code, comment)
        })
        .collect()
}

/// Comment spans only (docstrings are code here: inserting one changes the program).
fn comment_spans(an: &mut Analyzer, lang: Lang, src: &str) -> Result<Vec<Span>, String> {
    let (_, spans) = an
        .parse(lang, src.as_bytes())
        .ok_or("tree-sitter returned no tree")?;
    Ok(spans.into_iter().filter(|s| !s.docstring).collect())
}

fn show(s: &str) -> String {
    let t = s.trim();
    if t.chars().count() > 60 {
        format!("{:?}…", t.chars().take(60).collect::<String>())
    } else {
        format!("{t:?}")
    }
}

/// Checks a generator's output against the original; see the module docs.
pub fn verify(
    an: &mut Analyzer,
    lang: Lang,
    original: &str,
    output: &str,
) -> Result<Accepted, String> {
    let out_spans = comment_spans(an, lang, output)?;
    let out_code = code_of_lines(output, &out_spans);
    let out_lines = lines(output);
    let orig_lines = lines(original);
    let ob = original.as_bytes();
    let mut rebuilt = String::with_capacity(output.len());
    let (mut j, mut inserted, mut trailing, mut dropped) = (0, 0, 0, 0);
    // Original lines each kept output line stands for, to check the rebuilt parse.
    let mut kinds: Vec<Option<usize>> = Vec::new();
    for (k, r) in out_lines.iter().enumerate() {
        let line = &output[r.clone()];
        let (code, has_comment) = &out_code[k];
        if j < orig_lines.len() && line.as_bytes() == &ob[orig_lines[j].clone()] {
            rebuilt.push_str(line);
            kinds.push(Some(j));
            j += 1;
        } else if j < orig_lines.len()
            && line.as_bytes().starts_with(&ob[orig_lines[j].clone()])
            && !original[orig_lines[j].clone()].trim().is_empty()
            && is_trailing_comment(output, r.start + orig_lines[j].len(), r.end, &out_spans)
            && out_lines
                .get(k + 1)
                .is_none_or(|n| output.as_bytes()[n.clone()] != ob[orig_lines[j].clone()])
        {
            // Before the inserted-line case: an original comment line with more comment
            // after it is that line, not a new one.
            rebuilt.push_str(line);
            kinds.push(Some(j));
            trailing += 1;
            j += 1;
        } else if code.is_empty() && *has_comment {
            rebuilt.push_str(line);
            kinds.push(None);
            inserted += 1;
        } else if line.trim().is_empty() {
            dropped += 1;
            continue;
        } else if j < orig_lines.len() {
            return Err(format!(
                "output line {} changes the code: original line {} is {}, the output has {}",
                k + 1,
                j + 1,
                show(&original[orig_lines[j].clone()]),
                show(line)
            ));
        } else {
            return Err(format!(
                "output line {} adds code after the end of the original: {}",
                k + 1,
                show(line)
            ));
        }
        rebuilt.push('\n');
    }
    if j < orig_lines.len() {
        return Err(format!(
            "the output stops at original line {} of {}: {} is missing",
            j + 1,
            orig_lines.len(),
            show(&original[orig_lines[j].clone()])
        ));
    }
    if !original.ends_with('\n') && rebuilt.ends_with('\n') {
        rebuilt.pop();
    }
    // The rebuilt text, parsed on its own, must hold the original's code on every line.
    let orig_code = code_of_lines(original, &comment_spans(an, lang, original)?);
    let new_code = code_of_lines(&rebuilt, &comment_spans(an, lang, &rebuilt)?);
    for (k, kind) in kinds.iter().enumerate() {
        let Some((code, _)) = new_code.get(k) else {
            break;
        };
        match kind {
            Some(j) if *code != orig_code[*j].0 => {
                return Err(format!(
                    "with the comments in place, original line {} no longer parses as the same code ({} became {})",
                    j + 1,
                    show(&orig_code[*j].0),
                    show(code)
                ));
            }
            None if !code.is_empty() => {
                return Err(format!(
                    "inserted line {} is not a comment where it stands: {}",
                    k + 1,
                    show(&rebuilt[lines(&rebuilt)[k].clone()])
                ));
            }
            _ => {}
        }
    }
    if strip_comments(an, lang, &rebuilt)? != strip_comments(an, lang, original)? {
        return Err("removing the comments does not give back the original code".into());
    }
    Ok(Accepted {
        text: rebuilt,
        inserted_lines: inserted,
        trailing_comments: trailing,
        dropped_blank_lines: dropped,
    })
}

/// Whether `text[from..to]` is whitespace followed by comment bytes only (and some comment).
fn is_trailing_comment(text: &str, from: usize, to: usize, spans: &[Span]) -> bool {
    let b = text.as_bytes();
    let mut any = false;
    for (i, &byte) in b.iter().enumerate().take(to).skip(from) {
        if byte.is_ascii_whitespace() {
            continue;
        }
        if !spans.iter().any(|s| s.bytes.contains(&i)) {
            return false;
        }
        any = true;
    }
    any
}

/// The text with every comment removed: lines that held only comments disappear, trailing
/// comments go with the whitespace before them. Two texts that differ only in comments strip
/// to the same string.
pub fn strip_comments(an: &mut Analyzer, lang: Lang, src: &str) -> Result<String, String> {
    let spans = comment_spans(an, lang, src)?;
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut si = 0;
    for r in lines(src) {
        let mut line = Vec::with_capacity(r.len());
        let mut had_comment = false;
        for i in r {
            while si < spans.len() && spans[si].bytes.end <= i {
                si += 1;
            }
            if si < spans.len() && spans[si].bytes.start <= i {
                had_comment = true;
            } else {
                line.push(b[i]);
            }
        }
        let mut line = String::from_utf8_lossy(&line).into_owned();
        if had_comment {
            if line.trim().is_empty() {
                continue;
            }
            line.truncate(line.trim_end().len());
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// One function (or method) of a source text, dedented by its first line's indentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// 1-based first line in the source.
    pub line: usize,
    pub code: String,
}

/// The outermost functions of a text whose every line starts with the first line's
/// indentation (so dedenting changes nothing else), in text order.
pub fn functions(an: &mut Analyzer, lang: Lang, src: &str) -> Vec<Function> {
    let spec = lang.spec();
    let Some((tree, _)) = an.parse(lang, src.as_bytes()) else {
        return vec![];
    };
    let kinds: Vec<u16> = spec
        .function_kinds
        .iter()
        .map(|k| (spec.grammar)().id_for_node_kind(k, true))
        .filter(|&i| i != 0)
        .collect();
    let mut out = Vec::new();
    let mut cursor = tree.walk();
    'walk: loop {
        let node = cursor.node();
        let mut descend = true;
        if kinds.contains(&node.kind_id()) && !node.has_error() {
            descend = false;
            let line_start = src[..node.start_byte()].rfind('\n').map_or(0, |p| p + 1);
            let indent = &src[line_start..node.start_byte()];
            let end = src[node.end_byte()..]
                .find('\n')
                .map_or(src.len(), |p| node.end_byte() + p);
            let text = &src[line_start..end];
            if indent.trim().is_empty() {
                let mut code = String::with_capacity(text.len());
                let mut ok = true;
                for l in text.split('\n') {
                    match l.strip_prefix(indent) {
                        Some(rest) => code.push_str(rest),
                        None if l.trim().is_empty() => {}
                        None => {
                            ok = false;
                            break;
                        }
                    }
                    code.push('\n');
                }
                if ok {
                    out.push(Function {
                        line: node.start_position().row + 1,
                        code,
                    });
                }
            }
        }
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                break 'walk;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY: &str = "def area(r):\n    s = \"#\" * 2\n    return 3.14159 * r * r\n";

    #[test]
    fn inserted_and_trailing_comments_are_accepted_and_blank_lines_dropped() {
        let out = "# Area of a circle.\ndef area(r):\n\n    # a marker\n    s = \"#\" * 2  # two hashes\n    return 3.14159 * r * r\n";
        let a = verify(&mut Analyzer::new(), Lang::Python, PY, out).unwrap();
        assert_eq!(
            (a.inserted_lines, a.trailing_comments, a.dropped_blank_lines),
            (2, 1, 1)
        );
        assert!(!a.text.contains("\n\n"));
        let mut an = Analyzer::new();
        assert_eq!(
            strip_comments(&mut an, Lang::Python, &a.text).unwrap(),
            strip_comments(&mut an, Lang::Python, PY).unwrap()
        );
    }

    #[test]
    fn changed_lost_or_smuggled_code_is_rejected_with_the_line() {
        let mut an = Analyzer::new();
        let changed = "def area(r):\n    s = \"#\" * 2\n    return 3.14 * r * r\n";
        let e = verify(&mut an, Lang::Python, PY, changed).unwrap_err();
        assert!(
            e.contains("output line 3") && e.contains("original line 3"),
            "{e}"
        );
        let lost = "def area(r):\n    # x\n    s = \"#\" * 2\n";
        let e = verify(&mut an, Lang::Python, PY, lost).unwrap_err();
        assert!(e.contains("stops at original line 3 of 3"), "{e}");
        let added = format!("{PY}print(area(2))\n");
        let e = verify(&mut an, Lang::Python, PY, &added).unwrap_err();
        assert!(e.contains("adds code"), "{e}");
        // A block comment left open comments out the code after it.
        let c = "int f(int x) {\n  return x + 1;\n}\n";
        let open = "int f(int x) {\n  /* add one\n  return x + 1;\n}\n";
        assert!(verify(&mut an, Lang::C, c, open).is_err());
        // A '#' line inside a multi-line string is not a comment.
        let s = "def f():\n    return \"\"\"a\nb\"\"\"\n";
        let inside = "def f():\n    return \"\"\"a\n# not a comment\nb\"\"\"\n";
        let e = verify(&mut an, Lang::Python, s, inside).unwrap_err();
        assert!(
            e.contains("changes the code") || e.contains("not a comment"),
            "{e}"
        );
    }

    #[test]
    fn functions_are_found_and_dedented() {
        let src = "class A:\n    def m(self):\n        return 1\n\ndef g():\n    pass\n";
        let fs = functions(&mut Analyzer::new(), Lang::Python, src);
        assert_eq!(fs.len(), 2);
        assert_eq!(fs[0].code, "def m(self):\n    return 1\n");
        assert_eq!(fs[0].line, 2);
        assert_eq!(fs[1].code, "def g():\n    pass\n");
    }
}
