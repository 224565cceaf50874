//! Comment density at tokei's speed: a lexical scanner that finds the same comment spans,
//! docstrings and multi-line strings as the tree-sitter parse (`density.rs`), in one pass over
//! the bytes without building a tree.
//!
//! The scanner knows each language's tokens that can hide a comment marker or hold one:
//! comments (Rust's nest, a C `//` comment continues past a backslash-newline), strings with
//! their escapes and prefixes (Python's triple quotes and `rb"..."`, Rust's `r#"..."#` and
//! lifetimes, C++ raw strings, C++14 digit separators, Java text blocks, Go raw strings,
//! JavaScript templates with `${...}` and regular-expression literals). Python docstrings are
//! recognised from the statement structure the parse would give: the first statement of the
//! module or of a `def` / `class` body, when it is a lone string (or implicit concatenation).
//! What it cannot know without a grammar (a syntax error, JSX text holding a quote) is where
//! it may differ from the parse; `tests/scan.rs` and the density bench measure how often, file
//! by file, on the Python standard library and the cargo registry sources.
//!
//! An unterminated comment or string is a lexical error: its bytes count as error bytes, the
//! way ERROR nodes do in the parse, so `--max-error-share` treats both engines alike.

use crate::density::{Analysis, Docstrings, Multiline, Span, count_lines};
use crate::lang::{Lang, Scanner};
use memchr::{memchr, memchr2, memchr3};

/// Comment spans, multi-line strings and lexical errors of one text.
pub struct Lexed {
    pub spans: Vec<Span>,
    pub strings: Vec<Multiline>,
    pub error_bytes: usize,
    /// Where the first lexical error starts, and what it is.
    pub first_error: Option<(usize, &'static str)>,
}

/// Counts of one text from the scanner (the caller has checked that `src` is text).
pub fn analyze(lang: Lang, src: &[u8], docstrings: Docstrings) -> Analysis {
    let l = lex(lang, src);
    let mut counts = count_lines(src, &l.spans, &l.strings, docstrings);
    counts.files = 1;
    counts.syntax_error_files = (l.error_bytes > 0) as u64;
    Analysis {
        counts,
        spans: l.spans,
        error_bytes: l.error_bytes,
        has_error: l.error_bytes > 0,
        first_error: l.first_error,
    }
}

/// The comment spans (docstrings included) and multi-line strings of `src`, in text order.
pub fn lex(lang: Lang, src: &[u8]) -> Lexed {
    lex_as(lang.spec().scanner, src)
}

/// `lex` by a language's lexical family (the parse uses it on C preprocessor arguments).
pub fn lex_as(scanner: Scanner, src: &[u8]) -> Lexed {
    let mut s = State {
        src,
        out: Lexed {
            spans: Vec::new(),
            strings: Vec::new(),
            error_bytes: 0,
            first_error: None,
        },
    };
    match scanner {
        Scanner::Python => s.python(),
        f => s.c_like(f),
    }
    // A template literal is recorded when it closes, after the ones nested in it.
    if !s.out.strings.is_sorted_by_key(|m| m.0.start) {
        s.out.strings.sort_by_key(|m| m.0.start);
    }
    s.out
}

struct State<'a> {
    src: &'a [u8],
    out: Lexed,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// What came before a `/` in JavaScript: after a value it divides, elsewhere it opens a
/// regular expression.
#[derive(Clone, Copy, PartialEq)]
enum Prev {
    Operator,
    Value,
}

/// JavaScript keywords after which an expression (so a regular expression) starts.
const JS_EXPR_KEYWORDS: &[&[u8]] = &[
    b"return",
    b"typeof",
    b"instanceof",
    b"in",
    b"of",
    b"new",
    b"delete",
    b"void",
    b"throw",
    b"case",
    b"do",
    b"else",
    b"yield",
    b"await",
];

impl State<'_> {
    fn error(&mut self, start: usize, end: usize, what: &'static str) {
        self.out.error_bytes += end - start;
        if self.out.first_error.is_none() {
            self.out.first_error = Some((start, what));
        }
    }

    fn comment(&mut self, start: usize, end: usize) {
        self.out.spans.push(Span {
            bytes: start..end,
            docstring: false,
        });
    }

    fn string(&mut self, start: usize, end: usize) {
        if memchr(b'\n', &self.src[start..end]).is_some() {
            self.out.strings.push(Multiline(start..end));
        }
    }

    /// The end of the line holding `i` (the index of its `\n`, or the text's length).
    fn eol(&self, i: usize) -> usize {
        memchr(b'\n', &self.src[i..]).map_or(self.src.len(), |p| i + p)
    }

    /// A `//` comment from `i`; with `continues` (C, C++) a backslash before the newline
    /// carries it onto the next line.
    fn line_comment(&mut self, i: usize, continues: bool) -> usize {
        let mut end = self.eol(i);
        while continues && end < self.src.len() {
            let mut k = end;
            if k > i && self.src[k - 1] == b'\r' {
                k -= 1;
            }
            if k > i && self.src[k - 1] == b'\\' {
                end = self.eol(end + 1);
            } else {
                break;
            }
        }
        self.comment(i, end);
        end
    }

    /// A `/* ... */` comment from `i` (nesting, as Rust's do, when `nested`).
    fn block_comment(&mut self, i: usize, nested: bool) -> usize {
        let src = self.src;
        let mut j = i + 2;
        let mut depth = 1usize;
        loop {
            let next = if nested {
                memchr2(b'*', b'/', &src[j..])
            } else {
                memchr(b'*', &src[j..])
            };
            let Some(p) = next else {
                self.error(i, src.len(), "an unterminated block comment");
                self.comment(i, src.len());
                return src.len();
            };
            let k = j + p;
            if src[k] == b'*' && src.get(k + 1) == Some(&b'/') {
                depth -= 1;
                j = k + 2;
                if depth == 0 {
                    self.comment(i, j);
                    return j;
                }
            } else if src[k] == b'/' && src.get(k + 1) == Some(&b'*') {
                depth += 1;
                j = k + 2;
            } else {
                j = k + 1;
            }
        }
    }

    /// A quoted string whose body starts at `j` and ends at `quote`, backslash escapes, from
    /// `start` (its prefix or opening quote). A newline ends it as an error unless `multiline`.
    fn quoted(&mut self, start: usize, mut j: usize, quote: u8, multiline: bool) -> usize {
        let src = self.src;
        loop {
            let next = if multiline {
                memchr2(quote, b'\\', &src[j..])
            } else {
                memchr3(quote, b'\\', b'\n', &src[j..])
            };
            let Some(p) = next else {
                self.error(start, src.len(), "an unterminated string");
                self.string(start, src.len());
                return src.len();
            };
            let k = j + p;
            match src[k] {
                b'\\' => j = k + 2,
                b'\n' => {
                    self.error(start, k, "an unterminated string");
                    return k;
                }
                _ => {
                    self.string(start, k + 1);
                    return k + 1;
                }
            }
            if j >= src.len() {
                self.error(start, src.len(), "an unterminated string");
                return src.len();
            }
        }
    }

    /// A string closed by `close` (a triple quote, a raw string's terminator), with backslash
    /// escapes when `escapes`.
    fn delimited(&mut self, start: usize, j: usize, close: &[u8], escapes: bool) -> usize {
        let src = self.src;
        let mut j = j;
        loop {
            let next = if escapes {
                memchr2(close[0], b'\\', &src[j.min(src.len())..])
            } else {
                memchr(close[0], &src[j.min(src.len())..])
            };
            let Some(p) = next else {
                self.error(start, src.len(), "an unterminated string");
                self.string(start, src.len());
                return src.len();
            };
            let k = j + p;
            if src[k] == b'\\' && escapes {
                j = k + 2;
            } else if src[k..].starts_with(close) {
                let end = k + close.len();
                self.string(start, end);
                return end;
            } else {
                j = k + 1;
            }
        }
    }

    /// A character literal from `i` (`'a'`, `'\n'`, `'\u{1F600}'`), or `None` when no closing
    /// quote follows on the line (a Rust lifetime, an apostrophe in a C preprocessor line).
    fn char_literal(&self, i: usize) -> Option<usize> {
        let src = self.src;
        let mut j = i + 1;
        while j < src.len() {
            match src[j] {
                b'\\' => j += 2,
                b'\'' => return Some(j + 1),
                b'\n' => return None,
                _ => j += 1,
            }
        }
        None
    }

    fn c_like(&mut self, f: Scanner) {
        let src = self.src;
        let n = src.len();
        let js = f == Scanner::JavaScript;
        let rust = f == Scanner::Rust;
        let c_family = matches!(f, Scanner::C | Scanner::Cpp);
        let mut i = 0;
        // A hashbang line is an interpreter directive (JavaScript's grammar has a node for it).
        if js && src.starts_with(b"#!") {
            i = self.eol(0);
        }
        let mut prev = Prev::Operator;
        // Open braces, and for each `${` of a template literal the brace depth it returns at.
        let mut braces = 0usize;
        let mut templates: Vec<(usize, usize)> = Vec::new();
        // C and C++ concatenate adjacent string literals (comments, blank lines and macro
        // names may stand between them); the parse's concatenated_string spans them all.
        let mut group: Option<(usize, usize)> = None;
        let (mut line_start, mut directive) = (true, false);
        while i < n {
            let b = src[i];
            if line_start && !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'#') {
                line_start = false;
            }
            if let Some((s, e)) = group
                && !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'"')
                && !(b.is_ascii_alphabetic() || b == b'_')
                && !(b == b'/' && matches!(src.get(i + 1), Some(b'/' | b'*')))
            {
                self.string(s, e);
                group = None;
            }
            match b {
                b'\n' if c_family => {
                    // A preprocessor directive ends at a newline no backslash continues, and a
                    // string in it (`#include "a.h"`) joins nothing after it.
                    if directive && !src[..i].ends_with(b"\\") && !src[..i].ends_with(b"\\\r") {
                        directive = false;
                        if let Some((s, e)) = group.take() {
                            self.string(s, e);
                        }
                    }
                    line_start = true;
                    i += 1;
                }
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
                b'#' if c_family && line_start => {
                    directive = true;
                    line_start = false;
                    i += 1;
                }
                b'/' if src.get(i + 1) == Some(&b'/') => i = self.line_comment(i, c_family),
                b'/' if src.get(i + 1) == Some(&b'*') => i = self.block_comment(i, rust),
                b'/' if js && prev == Prev::Operator => {
                    i = self.regex(i);
                    prev = Prev::Value;
                }
                b'"' => {
                    i = if f == Scanner::Java && src[i..].starts_with(b"\"\"\"") {
                        self.delimited(i, i + 3, b"\"\"\"", true)
                    } else if c_family {
                        let before = self.out.strings.len();
                        let end = self.quoted(i, i + 1, b'"', false);
                        self.out.strings.truncate(before);
                        group = Some((group.map_or(i, |g| g.0), end));
                        end
                    } else {
                        // Rust strings may span lines; a C string continues only after a
                        // backslash (an escape), others end at the newline as an error.
                        self.quoted(i, i + 1, b'"', rust)
                    };
                    prev = Prev::Value;
                }
                b'\'' => {
                    if js {
                        i = self.quoted(i, i + 1, b'\'', false);
                    } else if rust {
                        i = self.rust_quote(i);
                    } else {
                        i = self.char_literal(i).unwrap_or(i + 1);
                    }
                    prev = Prev::Value;
                }
                b'`' if js => {
                    i = self.template(i, i + 1, &mut templates, &mut braces);
                    prev = Prev::Value;
                }
                b'`' if f == Scanner::Go => {
                    i = self.delimited(i, i + 1, b"`", false);
                    prev = Prev::Value;
                }
                b'{' => {
                    braces += 1;
                    i += 1;
                    prev = Prev::Operator;
                }
                b'}' => {
                    braces = braces.saturating_sub(1);
                    i += 1;
                    prev = Prev::Operator;
                    if let Some(&(start, depth)) = templates.last()
                        && depth == braces
                    {
                        templates.pop();
                        i = self.template(start, i, &mut templates, &mut braces);
                        prev = Prev::Value;
                    }
                }
                b')' | b']' => {
                    i += 1;
                    prev = Prev::Value;
                }
                b'0'..=b'9' => {
                    i = self.number(i, c_family);
                    prev = Prev::Value;
                }
                _ if is_ident(b) => {
                    let start = i;
                    while i < n && is_ident(src[i]) {
                        i += 1;
                    }
                    let word = &src[start..i];
                    prev = if js && JS_EXPR_KEYWORDS.contains(&word) {
                        Prev::Operator
                    } else {
                        Prev::Value
                    };
                    if i < n {
                        i = self.prefixed(f, start, i);
                    }
                }
                _ => {
                    i += 1;
                    prev = Prev::Operator;
                }
            }
        }
        if let Some((s, e)) = group {
            self.string(s, e);
        }
        if let Some(&(start, _)) = templates.first() {
            self.error(start, n, "an unterminated template literal");
        }
    }

    /// After an identifier ending at `i`: a raw string whose prefix it is (Rust `r#"..."#`,
    /// `br"..."`, C++ `R"d(...)d"`, `u8R"(...)"`), else `i`.
    fn prefixed(&mut self, f: Scanner, start: usize, i: usize) -> usize {
        let src = self.src;
        let word = &src[start..i];
        match f {
            Scanner::Rust if matches!(word, b"r" | b"br" | b"cr") => {
                let hashes = src[i..].iter().take_while(|&&c| c == b'#').count();
                if src.get(i + hashes) != Some(&b'"') {
                    return i; // a raw identifier (r#type) or a plain name
                }
                let mut close = vec![b'"'];
                close.extend(std::iter::repeat_n(b'#', hashes));
                self.delimited(start, i + hashes + 1, &close, false)
            }
            Scanner::Rust if word == b"b" && src[i] == b'\'' => {
                self.char_literal(i).unwrap_or(i + 1)
            }
            Scanner::Cpp
                if matches!(word, b"R" | b"LR" | b"uR" | b"UR" | b"u8R") && src[i] == b'"' =>
            {
                let Some(open) = memchr(b'(', &src[i + 1..(i + 18).min(src.len())]) else {
                    return i;
                };
                let delim = &src[i + 1..i + 1 + open];
                let mut close = vec![b')'];
                close.extend_from_slice(delim);
                close.push(b'"');
                self.delimited(start, i + 2 + open, &close, false)
            }
            _ => i,
        }
    }

    /// A number from `i`: digits, letters, `.`, and in C / C++ the digit separator `'`.
    fn number(&self, mut i: usize, separators: bool) -> usize {
        let src = self.src;
        while i < src.len() {
            let b = src[i];
            if is_ident(b) || b == b'.' {
                i += 1;
            } else if separators && b == b'\'' && src.get(i + 1).is_some_and(|&c| is_ident(c)) {
                i += 2;
            } else {
                break;
            }
        }
        i
    }

    /// Rust's `'`: a character literal (`'a'`, `'\''`, `'é'`), else a lifetime or label.
    fn rust_quote(&mut self, i: usize) -> usize {
        let src = self.src;
        match src.get(i + 1) {
            Some(b'\\') => self.char_literal(i).unwrap_or(i + 1),
            Some(&c) => {
                let len = match c {
                    0x00..=0x7f => 1,
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                if src.get(i + 1 + len) == Some(&b'\'') {
                    i + 2 + len
                } else {
                    i + 1
                }
            }
            None => i + 1,
        }
    }

    /// A JavaScript regular expression literal from `i` to its closing `/` (a `/` inside a
    /// class `[...]` or escaped does not close it) and its flags.
    fn regex(&mut self, i: usize) -> usize {
        let src = self.src;
        let mut j = i + 1;
        let mut class = false;
        while j < src.len() {
            match src[j] {
                b'\\' => j += 2,
                b'[' => {
                    class = true;
                    j += 1
                }
                b']' => {
                    class = false;
                    j += 1
                }
                b'/' if !class => {
                    j += 1;
                    while j < src.len() && is_ident(src[j]) {
                        j += 1;
                    }
                    return j;
                }
                // Not a regular expression after all (a division the heuristic misread):
                // the `/` is an operator.
                b'\n' => return i + 1,
                _ => j += 1,
            }
        }
        i + 1
    }

    /// The body of a template literal opened at `start`, from `j`: to its closing backtick,
    /// or to a `${` (the substitution is scanned as code; its closing `}` comes back here).
    fn template(
        &mut self,
        start: usize,
        mut j: usize,
        templates: &mut Vec<(usize, usize)>,
        braces: &mut usize,
    ) -> usize {
        let src = self.src;
        loop {
            let Some(p) = memchr3(b'`', b'\\', b'$', &src[j.min(src.len())..]) else {
                self.string(start, src.len());
                // Reported once at the end, with any template still open.
                if templates.is_empty() {
                    self.error(start, src.len(), "an unterminated template literal");
                }
                return src.len();
            };
            let k = j + p;
            match src[k] {
                b'\\' => j = k + 2,
                b'$' if src.get(k + 1) == Some(&b'{') => {
                    templates.push((start, *braces));
                    *braces += 1;
                    return k + 2;
                }
                b'`' => {
                    self.string(start, k + 1);
                    return k + 1;
                }
                _ => j = k + 1,
            }
        }
    }

    fn python(&mut self) {
        let src = self.src;
        let n = src.len();
        let mut i = 0;
        if src.starts_with(b"#!") {
            i = self.eol(0); // a shebang is an interpreter directive
        }
        let mut py = Py {
            depth: 0,
            stmt_start: true,
            line_first: true,
            doc_expected: true,
            header: Header::None,
            doc: None,
            group: None,
        };
        while i < n {
            let b = src[i];
            match b {
                b' ' | b'\t' | b'\r' | 0x0c => i += 1,
                b'\\' if src.get(i + 1) == Some(&b'\n') => i += 2,
                b'\\' if src[i..].starts_with(b"\\\r\n") => i += 3,
                b'\n' => {
                    if py.depth == 0 {
                        self.end_statement(&mut py);
                        py.line_first = true;
                        py.header = Header::None;
                    }
                    i += 1;
                }
                b'#' => {
                    let end = self.eol(i);
                    self.comment(i, end);
                    i = end;
                }
                b'\'' | b'"' => i = self.py_string(&mut py, i, i),
                b'0'..=b'9' => {
                    while i < n && (is_ident(src[i]) || src[i] == b'.') {
                        i += 1;
                    }
                    self.py_token(&mut py, Tok::Other);
                }
                _ if is_ident(b) => {
                    let start = i;
                    while i < n && is_ident(src[i]) {
                        i += 1;
                    }
                    let word = &src[start..i];
                    if i < n && matches!(src[i], b'\'' | b'"') && is_string_prefix(word) {
                        i = self.py_string(&mut py, start, i);
                    } else {
                        self.py_token(&mut py, Tok::Name(word));
                    }
                }
                b'(' | b'[' | b'{' => {
                    py.depth += 1;
                    i += 1;
                    self.py_token(&mut py, Tok::Other);
                }
                b')' | b']' | b'}' => {
                    py.depth = py.depth.saturating_sub(1);
                    i += 1;
                    self.py_token(&mut py, Tok::Other);
                }
                b':' if py.depth == 0 && py.header != Header::None => {
                    // The colon that ends a compound statement's header: its body follows.
                    i += 1;
                    self.py_token(&mut py, Tok::Other);
                    py.doc_expected = py.header == Header::Definition;
                    py.header = Header::None;
                    py.stmt_start = true;
                }
                b';' if py.depth == 0 => {
                    i += 1;
                    self.end_statement(&mut py);
                }
                _ => {
                    i += 1;
                    self.py_token(&mut py, Tok::Other);
                }
            }
        }
        self.end_statement(&mut py);
    }

    /// A Python string from `start` (its prefix), quote at `q`.
    fn py_string(&mut self, py: &mut Py, start: usize, q: usize) -> usize {
        let src = self.src;
        let quote = src[q];
        let triple = src[q..].starts_with(&[quote; 3]);
        // A raw string still cannot end at an escaped quote, so one body rule serves both.
        let before = self.out.strings.len();
        let end = if triple {
            self.delimited(start, q + 3, &[quote; 3], true)
        } else {
            self.quoted(start, q + 1, quote, false)
        };
        // Strings are recorded per concatenation below, not one by one.
        self.out.strings.truncate(before);
        self.py_token(py, Tok::String(start, end));
        end
    }

    fn py_token(&mut self, py: &mut Py, tok: Tok) {
        // A docstring statement is strings only.
        if !py.stmt_start && !matches!(tok, Tok::String(..)) {
            py.doc = None;
        }
        if let Tok::String(s, e) = tok {
            match &mut py.group {
                Some(g) => g.1 = e,
                None => py.group = Some((s, e)),
            }
        } else {
            self.flush_group(py);
        }
        if py.stmt_start {
            py.stmt_start = false;
            if let Tok::String(s, e) = tok
                && py.doc_expected
            {
                py.doc = Some(Doc {
                    start: s,
                    end: e,
                    at: self.out.spans.len(),
                });
            }
            py.doc_expected = false;
            if py.line_first {
                py.header = match tok {
                    Tok::Name(b"def" | b"class") => Header::Definition,
                    Tok::Name(b"async") => Header::Async,
                    Tok::Name(
                        b"if" | b"elif" | b"else" | b"for" | b"while" | b"try" | b"except"
                        | b"finally" | b"with" | b"match" | b"case",
                    ) => Header::Other,
                    _ => Header::None,
                };
            }
            py.line_first = false;
            return;
        }
        if py.header == Header::Async {
            py.header = match tok {
                Tok::Name(b"def") => Header::Definition,
                _ => Header::Other,
            };
        }
        if let (Some(d), Tok::String(_, e)) = (&mut py.doc, tok) {
            d.end = e;
        }
    }

    fn flush_group(&mut self, py: &mut Py) {
        if let Some((s, e)) = py.group.take() {
            let is_doc = py.doc.as_ref().is_some_and(|d| d.start == s);
            if !is_doc {
                self.string(s, e);
            }
        }
    }

    /// A NEWLINE at depth 0, a `;` or the end: a lone-string first statement is a docstring.
    fn end_statement(&mut self, py: &mut Py) {
        if let Some(d) = py.doc.take() {
            py.group = None;
            self.out.spans.insert(
                d.at,
                Span {
                    bytes: d.start..d.end,
                    docstring: true,
                },
            );
        }
        self.flush_group(py);
        py.stmt_start = true;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Header {
    None,
    /// `def` or `class`: the body's first statement may be a docstring.
    Definition,
    /// `async`, before `def`, `for` or `with`.
    Async,
    Other,
}

enum Tok<'a> {
    String(usize, usize),
    Name(&'a [u8]),
    Other,
}

/// A docstring candidate: the lone string(s) that opened a body, and where its span goes in
/// the sorted span list (comments after it on its line are pushed before it is confirmed).
struct Doc {
    start: usize,
    end: usize,
    at: usize,
}

struct Py {
    depth: usize,
    /// The next token opens a statement.
    stmt_start: bool,
    /// ... and a logical line.
    line_first: bool,
    /// The next statement is the first of the module or of a def / class body.
    doc_expected: bool,
    header: Header,
    doc: Option<Doc>,
    /// The current run of adjacent string literals (an implicit concatenation).
    group: Option<(usize, usize)>,
}

fn is_string_prefix(w: &[u8]) -> bool {
    w.len() <= 2
        && w.iter()
            .all(|c| matches!(c.to_ascii_lowercase(), b'r' | b'b' | b'u' | b'f'))
        && !(w.len() == 2 && w[0].eq_ignore_ascii_case(&w[1]))
        && !(w.len() == 2 && w.iter().any(|c| c.eq_ignore_ascii_case(&b'u')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::density::Analyzer;

    fn same(lang: Lang, src: &str) {
        let ours = lex(lang, src.as_bytes());
        let (_, parsed) = Analyzer::new().parse(lang, src.as_bytes()).unwrap();
        let a: Vec<_> = ours
            .spans
            .iter()
            .map(|s| (s.bytes.clone(), s.docstring))
            .collect();
        let b: Vec<_> = parsed
            .iter()
            .map(|s| (s.bytes.clone(), s.docstring))
            .collect();
        assert_eq!(a, b, "{lang:?} spans of\n{src}");
        assert_eq!(ours.error_bytes, 0, "{lang:?}\n{src}");
    }

    #[test]
    fn python_docstrings_strings_and_comments_match_the_parse() {
        same(
            Lang::Python,
            "#!/usr/bin/env python\n# c\n\"\"\"Module.\"\"\"  # after\nx = '#no'  # yes\n\
             def f(a: int = 1) -> 'T':\n    # lead\n    r'''doc \\''' more'''\n    return '''\n# not\n'''\n\
             class A(B): \"one-liner doc\"\nasync def g():\n    f\"doc {x}\"\n    \"not a doc\"\n\
             if x:\n    \"not a doc\"\ns = ('a'\n     'b')\n\"x\".join(y)\n",
        );
        same(
            Lang::Python,
            "import os\n\"\"\"not the module's doc\"\"\"\n",
        );
        same(
            Lang::Python,
            "def f():\n    \"\"\"a\"\"\" + b\n\ndef g(): pass; \"x\"\n",
        );
    }

    #[test]
    fn c_like_tokens_that_hide_comment_markers() {
        same(
            Lang::Rust,
            "/* a /* nested */ b */ fn f<'a>(x: &'a str) -> char { let s = r##\"// \"# no\"##; let b = b'/'; 'l: loop {} '\\'' } // c\n",
        );
        same(
            Lang::Cpp,
            "auto s = R\"x(// )\" no)x\"; int n = 1'000'000; // c\nchar c = '\"'; /* d */\n",
        );
        same(
            Lang::C,
            "// continued \\\n still comment\nint x = 0; // c\n",
        );
        same(
            Lang::JavaScript,
            "const r = /\\/\\/[/*]/g; // c\nconst t = `a ${ b /* in */ + `n ${c}` } // no`;\nx = a / b / c; // d\n",
        );
        same(Lang::Go, "var s = `raw // no\n` // c\nr := '/'\n");
        same(
            Lang::Java,
            "String s = \"// no\"; // c\nchar q = '\\''; /** d */\n",
        );
        // tree-sitter-java 0.23 lets comments in between a text block's fragments (extras are
        // allowed there), so it calls `// no` a comment; it is string content.
        let block = "String s = \"\"\"\n  // no \\\"\"\"\n  \"\"\"; // c\n";
        let l = lex(Lang::Java, block.as_bytes());
        let spans: Vec<_> = l.spans.iter().map(|s| &block[s.bytes.clone()]).collect();
        assert_eq!(spans, ["// c"]);
        assert_eq!(l.strings.len(), 1);
    }

    #[test]
    fn unterminated_tokens_are_error_bytes() {
        let l = lex(Lang::C, b"int x; /* open\nstill");
        assert_eq!(l.error_bytes, 13);
        assert_eq!(l.first_error, Some((7, "an unterminated block comment")));
        let l = lex(Lang::Python, b"s = '''open\n\nx = 1\n");
        assert_eq!(l.first_error, Some((4, "an unterminated string")));
        assert_eq!(lex(Lang::Python, b"x = 1\n").error_bytes, 0);
    }
}
