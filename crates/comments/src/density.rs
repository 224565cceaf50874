//! Comment density of one source text, from its tree-sitter parse.
//!
//! Every byte is code, comment or whitespace: comment bytes are those inside the grammar's
//! comment nodes (and, by default, Python docstrings: the string statement that opens a module,
//! class or function body); code is every other non-whitespace byte. A line holding both is
//! counted on both sides (`code` and `comment` lines, and `mixed`); `comment_only` is what tokei
//! calls comments, `code` what tokei calls code. Density is the comment share of non-blank
//! content, by lines (`comment / (lines - blank)`) and by characters
//! (`comment_chars / (code_chars + comment_chars)`, non-whitespace characters). Shebang lines
//! (`#!` on line 1) are interpreter directives, counted as code in every language.

use crate::lang::{Lang, LangSpec, Scanner};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;
use tree_sitter::{Node, Parser};

/// Whether Python docstrings count as comments (the default: they are the documentation a
/// reader sees) or as code (tokei's default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Docstrings {
    #[default]
    Comment,
    Code,
}

impl std::str::FromStr for Docstrings {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "comment" => Ok(Docstrings::Comment),
            "code" => Ok(Docstrings::Code),
            _ => Err(format!("docstrings must be comment or code, not {s:?}")),
        }
    }
}

/// Line and character counts of one text, or summed over many.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub files: u64,
    pub bytes: u64,
    pub lines: u64,
    pub blank: u64,
    /// Lines with code (including those that also hold a comment).
    pub code: u64,
    /// Lines with comment text (including those that also hold code).
    pub comment: u64,
    pub comment_only: u64,
    /// Lines with both code and comment text.
    pub mixed: u64,
    /// Lines of docstrings (a subset of `comment` when docstrings count as comments, of
    /// `code` otherwise).
    pub docstring: u64,
    /// Non-whitespace characters outside / inside comments.
    pub code_chars: u64,
    pub comment_chars: u64,
    /// Words (runs of letters, digits, `_` and non-ASCII characters) inside comments.
    pub comment_words: u64,
    /// Files whose parse held syntax errors (counted all the same, see `max_error_share`).
    pub syntax_error_files: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.lines += o.lines;
        self.blank += o.blank;
        self.code += o.code;
        self.comment += o.comment;
        self.comment_only += o.comment_only;
        self.mixed += o.mixed;
        self.docstring += o.docstring;
        self.code_chars += o.code_chars;
        self.comment_chars += o.comment_chars;
        self.comment_words += o.comment_words;
        self.syntax_error_files += o.syntax_error_files;
    }

    /// Counts one line by what it holds (a line with both is code, comment and mixed).
    fn tally(&mut self, code: bool, comment: bool) {
        self.blank += (!code && !comment) as u64;
        self.code += code as u64;
        self.comment += comment as u64;
        self.comment_only += (comment && !code) as u64;
        self.mixed += (code && comment) as u64;
    }

    /// Comment lines over non-blank lines.
    pub fn density_lines(&self) -> f64 {
        ratio(self.comment, self.lines - self.blank)
    }

    /// Comment characters over non-whitespace characters.
    pub fn density_chars(&self) -> f64 {
        ratio(self.comment_chars, self.code_chars + self.comment_chars)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A comment (or docstring) span of a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub bytes: Range<usize>,
    pub docstring: bool,
}

/// A string literal that spans lines: its blank lines are string content, so code (tokei
/// counts them so too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Multiline(pub Range<usize>);

/// What one parse found.
pub struct Analysis {
    pub counts: Counts,
    /// Comment spans in text order, never overlapping (docstrings included whatever the
    /// docstring setting).
    pub spans: Vec<Span>,
    /// Bytes inside ERROR nodes (syntax the grammar could not place).
    pub error_bytes: usize,
    pub has_error: bool,
    /// The scanner's first lexical error (where, what); the parse names none.
    pub first_error: Option<(usize, &'static str)>,
}

/// Node-kind ids of one grammar, looked up once so the tree walk compares integers.
struct Kinds {
    comment: Vec<u16>,
    module: Option<u16>,
    block: Option<u16>,
    definitions: Vec<u16>,
    expression_statement: Option<u16>,
    strings: Vec<u16>,
    /// Every string kind of the language (for multi-line string spans).
    literals: Vec<u16>,
    /// C's `preproc_arg`: a directive's argument is one token to the grammar, but a comment
    /// in it is a comment (the preprocessor removes comments first), so it is scanned.
    preproc_arg: Option<u16>,
    scanner: Scanner,
}

impl Kinds {
    fn of(spec: &LangSpec, lang: &tree_sitter::Language) -> Kinds {
        let id = |k: &str| match lang.id_for_node_kind(k, true) {
            0 => None,
            i => Some(i),
        };
        let ids = |ks: &[&str]| ks.iter().filter_map(|k| id(k)).collect::<Vec<_>>();
        let (module, block, definitions, expression_statement, strings) = if spec.docstrings {
            (
                id("module"),
                id("block"),
                ids(&["function_definition", "class_definition"]),
                id("expression_statement"),
                ids(&["string", "concatenated_string"]),
            )
        } else {
            (None, None, vec![], None, vec![])
        };
        Kinds {
            comment: ids(spec.comment_kinds),
            module,
            block,
            definitions,
            expression_statement,
            strings,
            literals: ids(spec.string_kinds),
            preproc_arg: matches!(spec.scanner, Scanner::C | Scanner::Cpp)
                .then(|| id("preproc_arg"))
                .flatten(),
            scanner: spec.scanner,
        }
    }
}

/// One parser per language, reused across texts (create one per thread).
#[derive(Default)]
pub struct Analyzer {
    parsers: HashMap<Lang, (Parser, Kinds)>,
}

impl Analyzer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `src` and returns its comment spans; `None` only if tree-sitter gave no tree.
    pub fn parse(&mut self, lang: Lang, src: &[u8]) -> Option<(tree_sitter::Tree, Vec<Span>)> {
        self.parse_full(lang, src).map(|(t, s, _)| (t, s))
    }

    /// The multi-line string literals of the parse (whose blank lines are code).
    pub fn multiline_strings(&mut self, lang: Lang, src: &[u8]) -> Vec<Multiline> {
        self.parse_full(lang, src)
            .map(|(_, _, m)| m)
            .unwrap_or_default()
    }

    fn parse_full(
        &mut self,
        lang: Lang,
        src: &[u8],
    ) -> Option<(tree_sitter::Tree, Vec<Span>, Vec<Multiline>)> {
        let (parser, kinds) = self.parsers.entry(lang).or_insert_with(|| {
            let spec = lang.spec();
            let l = (spec.grammar)();
            let mut p = Parser::new();
            // The grammars are compiled against the pinned tree-sitter (a test checks each).
            p.set_language(&l).expect("grammar ABI matches tree-sitter");
            let k = Kinds::of(spec, &l);
            (p, k)
        });
        let tree = parser.parse(src, None)?;
        let mut spans = Vec::new();
        let mut strings = Vec::new();
        collect(tree.root_node(), kinds, src, &mut spans, &mut strings);
        Some((tree, spans, strings))
    }

    /// Counts of one text. The caller has checked that `src` is text (see `data::classify`).
    pub fn analyze(&mut self, lang: Lang, src: &[u8], docstrings: Docstrings) -> Option<Analysis> {
        let (tree, spans, strings) = self.parse_full(lang, src)?;
        let root = tree.root_node();
        let has_error = root.has_error();
        let error_bytes = if has_error { error_bytes(root) } else { 0 };
        let mut counts = count_lines(src, &spans, &strings, docstrings);
        counts.files = 1;
        counts.syntax_error_files = has_error as u64;
        Some(Analysis {
            counts,
            spans,
            error_bytes,
            has_error,
            first_error: None,
        })
    }
}

/// Walks the tree in order; a comment node is taken whole (its children are not visited).
fn collect(
    root: Node,
    kinds: &Kinds,
    src: &[u8],
    out: &mut Vec<Span>,
    strings: &mut Vec<Multiline>,
) {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let kind = node.kind_id();
        let mut descend = true;
        if kinds.comment.contains(&kind) {
            let r = node.byte_range();
            // A shebang is an interpreter directive, not documentation.
            if !(r.start == 0 && src.starts_with(b"#!")) {
                out.push(Span {
                    bytes: r,
                    docstring: false,
                });
            }
            descend = false;
        } else if Some(kind) == kinds.expression_statement && is_docstring(node, kinds) {
            out.push(Span {
                bytes: node.byte_range(),
                docstring: true,
            });
            descend = false;
        } else if Some(kind) == kinds.preproc_arg {
            let at = node.start_byte();
            let l = crate::scan::lex_as(kinds.scanner, &src[node.byte_range()]);
            let shift = |r: Range<usize>| r.start + at..r.end + at;
            out.extend(l.spans.into_iter().map(|s| Span {
                bytes: shift(s.bytes),
                docstring: false,
            }));
            strings.extend(l.strings.into_iter().map(|m| Multiline(shift(m.0))));
        } else if kinds.literals.contains(&kind)
            && node.start_position().row != node.end_position().row
        {
            strings.push(Multiline(node.byte_range()));
        }
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// Whether an expression statement is the docstring of the body it sits in.
fn is_docstring(stmt: Node, kinds: &Kinds) -> bool {
    let Some(body) = stmt.parent() else {
        return false;
    };
    let documents = Some(body.kind_id()) == kinds.module
        || (Some(body.kind_id()) == kinds.block
            && body
                .parent()
                .is_some_and(|d| kinds.definitions.contains(&d.kind_id())));
    documents && docstring(body, kinds).is_some_and(|d| d.id() == stmt.id())
}

/// The docstring statement of a module or definition body: its first statement, when that
/// is a lone string expression.
fn docstring<'t>(body: Node<'t>, kinds: &Kinds) -> Option<Node<'t>> {
    let mut c = body.walk();
    let first = body
        .named_children(&mut c)
        .find(|n| !kinds.comment.contains(&n.kind_id()))?;
    if Some(first.kind_id()) != kinds.expression_statement || first.named_child_count() != 1 {
        return None;
    }
    let s = first.named_child(0)?;
    kinds.strings.contains(&s.kind_id()).then_some(first)
}

fn error_bytes(root: Node) -> usize {
    let mut total = 0;
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        if node.is_error() {
            total += node.byte_range().len();
        } else if node.has_error() && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return total;
            }
        }
    }
}

/// Whitespace in the sense of `u8::is_ascii_whitespace`, written without short-circuits so
/// the loops below compile to vector code.
#[inline(always)]
fn is_space(b: u8) -> bool {
    (b == b' ') | (b == b'\t') | (b == b'\n') | (b == 0x0c) | (b == b'\r')
}

/// A non-whitespace byte that starts a character (not a UTF-8 continuation byte).
#[inline(always)]
fn is_visible_start(b: u8) -> bool {
    !is_space(b) & ((b & 0xC0) != 0x80)
}

/// A word byte (a letter, digit, `_` or non-ASCII byte), branch-free.
#[inline(always)]
fn is_word(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10) | (b == b'_') | (b >= 0x80)
}

/// Non-whitespace characters of `s`, counted in blocks of 255 into a byte counter.
fn visible_chars(s: &[u8]) -> u64 {
    s.chunks(255)
        .map(|c| c.iter().fold(0u8, |n, &b| n + is_visible_start(b) as u8) as u64)
        .sum()
}

/// Words (maximal runs of word bytes) of `s`.
fn words(s: &[u8]) -> u64 {
    let Some(&first) = s.first() else {
        return 0;
    };
    let starts: u64 = s[1..]
        .chunks(255)
        .zip(s.chunks(255))
        .map(|(next, prev)| {
            next.iter()
                .zip(prev)
                .fold(0u8, |n, (&b, &p)| n + (is_word(b) & !is_word(p)) as u8) as u64
        })
        .sum();
    starts + is_word(first) as u64
}

fn has_visible(s: &[u8]) -> bool {
    s.iter().any(|&b| !is_space(b))
}

/// The line pass. Characters and words are counted per span (the code's characters are the
/// rest); each line is classified from the spans that overlap it, and a line no span touches
/// is blank or code by one look at its bytes.
///
/// A whitespace-only line inside a multi-line comment or docstring is a line of it, inside a
/// multi-line string a code line (the line belongs to the token that holds it).
pub fn count_lines(
    src: &[u8],
    spans: &[Span],
    strings: &[Multiline],
    docstrings: Docstrings,
) -> Counts {
    let counts_as_comment = |s: &Span| docstrings == Docstrings::Comment || !s.docstring;
    let mut c = Counts {
        bytes: src.len() as u64,
        ..Counts::default()
    };
    let mut visible_in_comments = 0;
    for s in spans {
        if counts_as_comment(s) {
            let t = &src[s.bytes.clone()];
            visible_in_comments += visible_chars(t);
            c.comment_words += words(t);
        }
    }
    c.comment_chars = visible_in_comments;
    c.code_chars = visible_chars(src) - visible_in_comments;

    let mut si = 0;
    let mut mi = 0;
    let mut pos = 0;
    while pos < src.len() {
        let end = memchr::memchr(b'\n', &src[pos..]).map_or(src.len(), |p| pos + p);
        while si < spans.len() && spans[si].bytes.end <= pos {
            si += 1;
        }
        c.lines += 1;
        let (mut code, mut comment, mut doc) = (false, false, false);
        if si == spans.len() || spans[si].bytes.start >= end {
            // No comment on this line.
            code = has_visible(&src[pos..end]);
        } else {
            let mut i = pos;
            let mut k = si;
            while i < end {
                if k < spans.len() && spans[k].bytes.start <= i {
                    let sp = &spans[k];
                    let e = sp.bytes.end.min(end);
                    if has_visible(&src[i..e]) {
                        doc |= sp.docstring;
                        if counts_as_comment(sp) {
                            comment = true;
                        } else {
                            code = true;
                        }
                    }
                    i = e;
                    k += 1;
                } else {
                    let e = spans.get(k).map_or(end, |s| s.bytes.start.min(end));
                    code = code || has_visible(&src[i..e]);
                    i = e;
                }
            }
        }
        if !code && !comment {
            // A whitespace-only line: it belongs to the span or string it lies inside.
            if si < spans.len() && spans[si].bytes.start < pos {
                let sp = &spans[si];
                doc |= sp.docstring;
                if counts_as_comment(sp) {
                    comment = true;
                } else {
                    code = true;
                }
            } else {
                while mi < strings.len() && strings[mi].0.end <= pos {
                    mi += 1;
                }
                // Nested ranges (a template inside a template's substitution) come sorted by
                // start; any that holds the line makes it code.
                code = strings[mi..]
                    .iter()
                    .take_while(|m| m.0.start < pos)
                    .any(|m| m.0.end > pos);
            }
        }
        c.tally(code, comment);
        c.docstring += doc as u64;
        pos = end + 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_word_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
    }

    fn memchr_newline(src: &[u8], from: usize) -> usize {
        src[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(src.len(), |p| from + p)
    }

    /// The byte-by-byte line pass `count_lines` replaced, kept to check it against.
    ///
    /// A whitespace-only line inside a multi-line comment or docstring is a line of it, inside a
    /// multi-line string a code line (the line belongs to the token that holds it).
    pub(super) fn count_lines_reference(
        src: &[u8],
        spans: &[Span],
        strings: &[Multiline],
        docstrings: Docstrings,
    ) -> Counts {
        let mut c = Counts {
            bytes: src.len() as u64,
            ..Counts::default()
        };
        let mut si = 0;
        let mut mi = 0;
        let mut pos = 0;
        while pos < src.len() {
            let end = memchr_newline(src, pos);
            while si < spans.len() && spans[si].bytes.end <= pos {
                si += 1;
            }
            while mi < strings.len() && strings[mi].0.end <= pos {
                mi += 1;
            }
            // The span (or string) this line starts inside, when it began on an earlier line.
            let inside_span = si < spans.len() && spans[si].bytes.start < pos;
            let inside_string = mi < strings.len() && strings[mi].0.start < pos;
            let (mut code, mut comment, mut doc) = (false, false, false);
            let mut i = pos;
            while i < end {
                while si < spans.len() && spans[si].bytes.end <= i {
                    si += 1;
                }
                let in_span = si < spans.len() && spans[si].bytes.start <= i;
                let b = src[i];
                if !b.is_ascii_whitespace() {
                    let char_start = (b & 0xC0) != 0x80;
                    let span_counts =
                        in_span && (docstrings == Docstrings::Comment || !spans[si].docstring);
                    if in_span && spans[si].docstring {
                        doc = true;
                    }
                    if span_counts {
                        comment = true;
                        c.comment_chars += char_start as u64;
                        if is_word_byte(b)
                            && (i == 0 || !is_word_byte(src[i - 1]) || i == spans[si].bytes.start)
                        {
                            c.comment_words += 1;
                        }
                    } else {
                        code = true;
                        c.code_chars += char_start as u64;
                    }
                }
                i += 1;
            }
            c.lines += 1;
            if !code && !comment {
                if inside_span {
                    let sp = &spans[si];
                    if sp.docstring {
                        doc = true;
                    }
                    if docstrings == Docstrings::Comment || !sp.docstring {
                        comment = true;
                    } else {
                        code = true;
                    }
                } else if inside_string {
                    code = true;
                }
            }
            c.tally(code, comment);
            c.docstring += doc as u64;
            pos = end + 1;
        }
        c
    }

    fn counts(lang: Lang, src: &str) -> Counts {
        Analyzer::new()
            .analyze(lang, src.as_bytes(), Docstrings::Comment)
            .unwrap()
            .counts
    }

    /// The span-wise line pass gives the byte-wise pass's counts, on this crate's sources
    /// and small samples, from both the parse's spans and the scanner's.
    #[test]
    fn line_pass_matches_the_byte_by_byte_reference() {
        let mut texts: Vec<(Lang, Vec<u8>)> = vec![
            (
                Lang::Python,
                b"'''a\n\n'''\n# c\nx = '''\n\n'''  # t\n\ndef f():\n  '''d\n\n  '''\n".to_vec(),
            ),
            (
                Lang::Rust,
                b"/* a\n\n */ fn f() {} // x\n let s = \"\n\n\";\n".to_vec(),
            ),
            (Lang::JavaScript, b"x = `a${`b\n\n`}\n\nc`; // d\n".to_vec()),
        ];
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for e in std::fs::read_dir(src).unwrap() {
            texts.push((Lang::Rust, std::fs::read(e.unwrap().path()).unwrap()));
        }
        let mut an = Analyzer::new();
        for (lang, text) in &texts {
            let (_, spans, strings) = an.parse_full(*lang, text).unwrap();
            let lexed = crate::scan::lex(*lang, text);
            for d in [Docstrings::Comment, Docstrings::Code] {
                assert_eq!(
                    count_lines(text, &spans, &strings, d),
                    count_lines_reference(text, &spans, &strings, d)
                );
                assert_eq!(
                    count_lines(text, &lexed.spans, &lexed.strings, d),
                    count_lines_reference(text, &lexed.spans, &lexed.strings, d)
                );
            }
        }
    }

    #[test]
    fn python_docstrings_strings_that_look_like_comments_and_shebang() {
        let src = "#!/usr/bin/env python\n\"\"\"Module doc.\"\"\"\n\nx = \"# not a comment\"  # a real one\n\ndef f():\n    \"\"\"Doc of f.\n\n    more\n    \"\"\"\n    return '''# no'''\n";
        let c = counts(Lang::Python, src);
        assert_eq!(c.lines, 11);
        assert_eq!(c.blank, 2, "{c:?}"); // lines 3 and 5 (the blank line in f's docstring is of it)
        assert_eq!(c.mixed, 1);
        assert_eq!(c.docstring, 5); // "Module doc." and the four lines of f's docstring, its blank line included
        assert_eq!(c.comment_only, 5);
        assert_eq!(c.code, 4); // shebang, x = ..., def f, return
        assert_eq!(c.comment, 6);
        let code = Analyzer::new()
            .analyze(Lang::Python, src.as_bytes(), Docstrings::Code)
            .unwrap()
            .counts;
        assert_eq!(code.comment_only, 0);
        assert_eq!(code.code, 9);
        assert_eq!(code.comment, 1);
    }

    #[test]
    fn rust_nested_block_comments_and_raw_strings() {
        let src = "/* outer /* nested */ still comment */\nfn main() {\n    let s = r#\"// not /* a comment\"#;\n    // yes\n    let c = '/'; /* trailing */\n}\n";
        let c = counts(Lang::Rust, src);
        assert_eq!(
            (c.lines, c.blank, c.code, c.comment_only, c.mixed),
            (6, 0, 4, 2, 1)
        );
        // "outer nested still comment", "yes", "trailing"
        assert_eq!(c.comment_words, 6);
    }
}
