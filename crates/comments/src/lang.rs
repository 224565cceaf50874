//! The one table of everything language-specific (tokei's habit): file extensions, the
//! tree-sitter grammar, which syntax nodes are comments, which nodes span lines that a comment
//! must never be inserted into, the line-comment marker the augmenter writes, and the names
//! other tools (tokei, The Stack's `lang` field) use.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Python,
    Rust,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    Java,
    C,
    Cpp,
}

pub struct LangSpec {
    pub lang: Lang,
    /// Display name (also the key of per-language tables).
    pub name: &'static str,
    /// Lower-case names this language goes by in corpora (`lang` fields, code-fence tags).
    pub aliases: &'static [&'static str],
    pub extensions: &'static [&'static str],
    pub grammar: fn() -> tree_sitter::Language,
    /// Node kinds that are comments (the outermost one is taken: Rust's doc_comment sits
    /// inside line_comment).
    pub comment_kinds: &'static [&'static str],
    /// Node kinds whose text may span lines (string literals): a line boundary inside one is
    /// no place for an inserted comment.
    pub string_kinds: &'static [&'static str],
    /// Definitions that make a unit for augmentation (functions and methods).
    pub function_kinds: &'static [&'static str],
    /// What an inserted comment line starts with.
    pub line_comment: &'static str,
    /// Whether the language has docstrings (string statements that document a definition).
    pub docstrings: bool,
    /// tokei's name of the language (`LanguageType::from_name`).
    pub tokei: &'static str,
    /// The lexical rules the fast density scanner (`scan.rs`) applies.
    pub scanner: Scanner,
}

/// Lexical families of the density scanner: which comments nest or continue, which quotes
/// open strings, character literals or templates, and which prefixes make raw strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scanner {
    /// `#` comments, prefixed and triple-quoted strings, docstrings.
    Python,
    /// Nested block comments, lifetimes, `r#"..."#` raw strings, multi-line strings.
    Rust,
    /// `'` and `"` strings, templates with `${...}`, regular-expression literals.
    JavaScript,
    /// Backtick raw strings, runes.
    Go,
    /// Text blocks `"""..."""`, character literals.
    Java,
    /// `//` comments continued by a backslash, character literals, digit separators.
    C,
    /// C's rules and raw strings `R"d(...)d"`.
    Cpp,
}

fn python() -> tree_sitter::Language {
    tree_sitter_python::LANGUAGE.into()
}
fn rust() -> tree_sitter::Language {
    tree_sitter_rust::LANGUAGE.into()
}
fn javascript() -> tree_sitter::Language {
    tree_sitter_javascript::LANGUAGE.into()
}
fn typescript() -> tree_sitter::Language {
    tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into()
}
fn tsx() -> tree_sitter::Language {
    tree_sitter_typescript::LANGUAGE_TSX.into()
}
fn go() -> tree_sitter::Language {
    tree_sitter_go::LANGUAGE.into()
}
fn java() -> tree_sitter::Language {
    tree_sitter_java::LANGUAGE.into()
}
fn c() -> tree_sitter::Language {
    tree_sitter_c::LANGUAGE.into()
}
fn cpp() -> tree_sitter::Language {
    tree_sitter_cpp::LANGUAGE.into()
}

pub static LANGS: [LangSpec; 9] = [
    LangSpec {
        lang: Lang::Python,
        name: "Python",
        aliases: &["python", "py", "python3"],
        extensions: &["py", "pyi", "pyw"],
        grammar: python,
        comment_kinds: &["comment"],
        string_kinds: &["string", "concatenated_string"],
        function_kinds: &["function_definition"],
        line_comment: "#",
        docstrings: true,
        tokei: "Python",
        scanner: Scanner::Python,
    },
    LangSpec {
        lang: Lang::Rust,
        name: "Rust",
        aliases: &["rust", "rs"],
        extensions: &["rs"],
        grammar: rust,
        comment_kinds: &["line_comment", "block_comment"],
        string_kinds: &["string_literal", "raw_string_literal", "char_literal"],
        function_kinds: &["function_item"],
        line_comment: "//",
        docstrings: false,
        tokei: "Rust",
        scanner: Scanner::Rust,
    },
    LangSpec {
        lang: Lang::JavaScript,
        name: "JavaScript",
        aliases: &["javascript", "js", "node", "jsx"],
        extensions: &["js", "mjs", "cjs", "jsx"],
        grammar: javascript,
        comment_kinds: &["comment", "html_comment"],
        string_kinds: &["string", "template_string", "regex"],
        function_kinds: &[
            "function_declaration",
            "method_definition",
            "generator_function_declaration",
        ],
        line_comment: "//",
        docstrings: false,
        tokei: "JavaScript",
        scanner: Scanner::JavaScript,
    },
    LangSpec {
        lang: Lang::TypeScript,
        name: "TypeScript",
        aliases: &["typescript", "ts"],
        extensions: &["ts", "mts", "cts"],
        grammar: typescript,
        comment_kinds: &["comment", "html_comment"],
        string_kinds: &["string", "template_string", "regex"],
        function_kinds: &["function_declaration", "method_definition"],
        line_comment: "//",
        docstrings: false,
        tokei: "TypeScript",
        scanner: Scanner::JavaScript,
    },
    LangSpec {
        lang: Lang::Tsx,
        name: "TSX",
        aliases: &["tsx"],
        extensions: &["tsx"],
        grammar: tsx,
        comment_kinds: &["comment", "html_comment"],
        string_kinds: &["string", "template_string", "regex", "jsx_text"],
        function_kinds: &["function_declaration", "method_definition"],
        line_comment: "//",
        docstrings: false,
        tokei: "TSX",
        scanner: Scanner::JavaScript,
    },
    LangSpec {
        lang: Lang::Go,
        name: "Go",
        aliases: &["go", "golang"],
        extensions: &["go"],
        grammar: go,
        comment_kinds: &["comment"],
        string_kinds: &["interpreted_string_literal", "raw_string_literal"],
        function_kinds: &["function_declaration", "method_declaration"],
        line_comment: "//",
        docstrings: false,
        tokei: "Go",
        scanner: Scanner::Go,
    },
    LangSpec {
        lang: Lang::Java,
        name: "Java",
        aliases: &["java"],
        extensions: &["java"],
        grammar: java,
        comment_kinds: &["line_comment", "block_comment"],
        string_kinds: &["string_literal", "character_literal", "text_block"],
        function_kinds: &["method_declaration", "constructor_declaration"],
        line_comment: "//",
        docstrings: false,
        tokei: "Java",
        scanner: Scanner::Java,
    },
    LangSpec {
        lang: Lang::C,
        name: "C",
        aliases: &["c"],
        extensions: &["c", "h"],
        grammar: c,
        comment_kinds: &["comment"],
        string_kinds: &["string_literal", "concatenated_string", "char_literal"],
        function_kinds: &["function_definition"],
        line_comment: "//",
        docstrings: false,
        tokei: "C",
        scanner: Scanner::C,
    },
    LangSpec {
        lang: Lang::Cpp,
        name: "C++",
        aliases: &["c++", "cpp", "cxx", "cc"],
        extensions: &["cpp", "cc", "cxx", "c++", "hpp", "hh", "hxx", "h++", "ipp"],
        grammar: cpp,
        comment_kinds: &["comment"],
        string_kinds: &[
            "string_literal",
            "concatenated_string",
            "raw_string_literal",
            "char_literal",
        ],
        function_kinds: &["function_definition"],
        line_comment: "//",
        docstrings: false,
        tokei: "C++",
        scanner: Scanner::Cpp,
    },
];

impl Lang {
    pub fn spec(self) -> &'static LangSpec {
        LANGS
            .iter()
            .find(|s| s.lang == self)
            .expect("every Lang has a row in LANGS")
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The language of a file by its extension (case-insensitive).
    pub fn from_path(path: &Path) -> Option<Lang> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        LANGS
            .iter()
            .find(|s| s.extensions.contains(&ext.as_str()))
            .map(|s| s.lang)
    }

    /// The language of a corpus `lang` field or a name on the command line ("Python",
    /// "c++", "TypeScript", ...).
    pub fn from_name(name: &str) -> Option<Lang> {
        let n = name.trim().to_ascii_lowercase();
        LANGS
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&n) || s.aliases.contains(&n.as_str()))
            .map(|s| s.lang)
    }

    /// Every name `from_name` accepts, for error messages.
    pub fn known_names() -> String {
        LANGS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grammar_loads_into_the_pinned_tree_sitter() {
        for s in &LANGS {
            let mut p = tree_sitter::Parser::new();
            p.set_language(&(s.grammar)())
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            for k in s.comment_kinds {
                assert!(
                    (s.grammar)().id_for_node_kind(k, true) != 0,
                    "{}: no node kind {k}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn names_and_extensions_map_to_languages() {
        assert_eq!(Lang::from_path(Path::new("a/b.PY")), Some(Lang::Python));
        assert_eq!(Lang::from_path(Path::new("x.hpp")), Some(Lang::Cpp));
        assert_eq!(Lang::from_path(Path::new("x.h")), Some(Lang::C));
        assert_eq!(Lang::from_path(Path::new("Makefile")), None);
        assert_eq!(Lang::from_name("C++"), Some(Lang::Cpp));
        assert_eq!(Lang::from_name(" typescript "), Some(Lang::TypeScript));
        assert_eq!(Lang::from_name("cobol"), None);
    }
}
