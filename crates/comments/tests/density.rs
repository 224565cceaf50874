//! Comment density on hand-made files with known counts (one per language: strings that
//! look like comments, nested block comments, docstrings, shebangs, trailing comments) from
//! both engines, the agreement with tokei where the conventions coincide, and bad inputs as
//! skip lines.

use pw_comments::data::{self, ReadOptions};
use pw_comments::run::{Input, density};
use pw_comments::{Analyzer, Docstrings, Engine, Lang, scan};

/// (language, text, lines, blank, code, comment_only, mixed)
fn cases() -> Vec<(Lang, &'static str, [u64; 5])> {
    vec![
        (
            Lang::Python,
            "#!/usr/bin/env python3\n# a comment\nx = '# not a comment'  # trailing\n\n\
             def f():\n    \"\"\"Docstring.\n\n    Second paragraph.\n    \"\"\"\n    s = \"\"\"# inside\n\n    a string\"\"\"\n    return s\n",
            [13, 1, 7, 5, 1],
        ),
        (
            Lang::Rust,
            "//! Crate docs.\n/* outer /* nested */\n   still outer */\nfn main() {\n    let s = \"// no\";\n    let r = r#\"/* no */\"#; // yes\n    let c = '\\'';\n\n    /// doc on a local\n    let _x = 1;\n}\n",
            [11, 1, 6, 4, 1],
        ),
        (
            Lang::JavaScript,
            "// header\nconst url = \"http://example.com\"; // trailing\nconst t = `line one\n// inside a template\nline three`;\n/*\n * block\n */\nfunction f() { return 1; }\n",
            [9, 0, 5, 4, 1],
        ),
        (
            Lang::TypeScript,
            "/** Docs. */\ninterface A { x: number } // trailing\n\nconst s: string = '/* not */';\n",
            [4, 1, 2, 1, 1],
        ),
        (
            Lang::Go,
            "package main\n\n// Comment.\nvar s = `raw // not a comment\n/* nor this */`\n\nfunc main() {} /* trailing */\n",
            [7, 2, 4, 1, 1],
        ),
        (
            Lang::Java,
            "/**\n * Javadoc.\n */\nclass A {\n    String s = \"// no\"; // yes\n    char c = '/';\n}\n",
            [7, 0, 4, 3, 1],
        ),
        (
            Lang::C,
            "#include <stdio.h>\n/* a\n   b */\nint main(void) {\n    printf(\"/* %d */\\n\", 1); // x\n    return 0;\n}\n",
            [7, 0, 5, 2, 1],
        ),
        (
            Lang::Cpp,
            "// c++\nauto s = R\"(// not\n/* a comment */)\";\nint f() { return 0; } // yes\n",
            [4, 0, 3, 1, 1],
        ),
    ]
}

#[test]
fn hand_made_files_have_their_known_counts() {
    let mut an = Analyzer::new();
    for (lang, text, [lines, blank, code, only, mixed]) in cases() {
        let parsed = an
            .analyze(lang, text.as_bytes(), Docstrings::Comment)
            .unwrap();
        let scanned = scan::analyze(lang, text.as_bytes(), Docstrings::Comment);
        for (engine, a) in [("tree-sitter", &parsed), ("scan", &scanned)] {
            let c = &a.counts;
            assert!(!a.has_error, "{lang:?} {engine}: the sample must parse");
            assert_eq!(
                [c.lines, c.blank, c.code, c.comment_only, c.mixed],
                [lines, blank, code, only, mixed],
                "{lang:?} {engine}: [lines, blank, code, comment-only, mixed] of\n{text}"
            );
            assert_eq!(c.comment, only + mixed, "{lang:?} {engine}");
            assert!(c.density_lines() > 0.0 && c.density_chars() > 0.0);
        }
        assert_eq!(parsed.counts, scanned.counts, "{lang:?}");
    }
}

#[test]
fn python_docstrings_count_as_code_when_asked() {
    let text = cases()[0].1;
    let c = Analyzer::new()
        .analyze(Lang::Python, text.as_bytes(), Docstrings::Code)
        .unwrap()
        .counts;
    // The four docstring lines move from comment to code.
    assert_eq!((c.code, c.comment_only, c.docstring), (11, 1, 4));
}

#[test]
fn line_counts_agree_with_tokei_where_the_conventions_coincide() {
    // tokei counts a shebang as a comment and Rust doc comments as Markdown; the other
    // samples follow the same conventions as ours (docstrings as code, mixed lines as code).
    let cfg = tokei::Config::default();
    let mut an = Analyzer::new();
    for (lang, text, _) in cases() {
        if matches!(lang, Lang::Python | Lang::Rust) {
            continue;
        }
        let ours = an
            .analyze(lang, text.as_bytes(), Docstrings::Code)
            .unwrap()
            .counts;
        let t = tokei::LanguageType::from_name(lang.spec().tokei)
            .unwrap()
            .parse_from_str(text, &cfg)
            .summarise();
        assert_eq!(
            (ours.code, ours.comment_only, ours.blank),
            (t.code as u64, t.comments as u64, t.blanks as u64),
            "{lang:?}: (code, comments, blanks) ours vs tokei on\n{text}"
        );
    }
}

#[test]
fn bad_inputs_are_skip_lines_with_reasons_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ok.py"), "x = 1  # one\n").unwrap();
    std::fs::write(p("binary.c"), b"\x7fELF\0\0\0\x01garbage").unwrap();
    std::fs::write(p("latin1.py"), b"s = 'caf\xe9'\n").unwrap();
    std::fs::write(
        p("broken.rs"),
        "fn ( { ] ) = = = ;;; }}} fn fn fn < > >>\n".repeat(20),
    )
    .unwrap();
    std::fs::write(
        p("unclosed.c"),
        format!("int x;\n/* never closed\n{}", "int y = 1;\n".repeat(20)),
    )
    .unwrap();
    let big = "x = 1\n".repeat(50 * 1024 * 1024 / 6 + 1);
    std::fs::write(p("big.py"), big).unwrap();
    std::fs::write(p("notes.txt"), "not code").unwrap();
    let all = Input::Paths(vec![dir.path().to_path_buf()]);
    let parse = ReadOptions {
        engine: Engine::TreeSitter,
        ..ReadOptions::default()
    };
    for opts in [ReadOptions::default(), parse] {
        let d = density(&all, &opts).unwrap();
        let reason = |name: &str| {
            d.skipped
                .iter()
                .find(|s| s.path.ends_with(name))
                .map(|s| s.reason.clone())
                .unwrap_or_else(|| panic!("{name} not skipped: {:?}", d.skipped))
        };
        assert!(reason("binary.c").contains("binary"));
        assert!(reason("latin1.py").contains("invalid UTF-8 at byte 8"));
        assert!(reason("big.py").contains("over the limit"));
        if opts.engine == Engine::Scan {
            // Lexically fine, syntactically not: the scanner counts it (tokei does too).
            assert_eq!(d.total.files, 2, "ok.py and broken.rs: {:?}", d.skipped);
            assert_eq!(
                reason("unclosed.c"),
                "skipped: cannot be read as C: an unterminated block comment opens at line 2 (97% of the bytes in errors, over --max-error-share 25%)"
            );
        } else {
            // tree-sitter-c recovers from the open comment with a small ERROR node and
            // counts the rest as code.
            assert_eq!(d.total.files, 2, "ok.py and unclosed.c: {:?}", d.skipped);
            assert!(
                reason("broken.rs").contains("tree-sitter cannot parse it as Rust"),
                "{}",
                reason("broken.rs")
            );
        }
        assert_eq!(
            d.skipped.len(),
            4,
            "notes.txt is not source code: {:?}",
            d.skipped
        );
    }
    // A missing path is an error naming it.
    let e = density(&Input::Paths(vec![p("nope")]), &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn jsonl_corpora_in_the_stack_format_are_counted_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("stack.jsonl");
    std::fs::write(
        &f,
        "{\"content\": \"# hi\\nx = 1\\n\", \"lang\": \"Python\", \"id\": \"a\"}\n\
         {\"content\": \"int x; // c\\n\", \"lang\": \"C\"}\n\
         {\"content\": \"x\", \"lang\": \"COBOL\"}\n\
         not json\n",
    )
    .unwrap();
    let d =
        data::density_of_jsonl(&f, &data::JsonlFields::default(), &ReadOptions::default()).unwrap();
    assert_eq!(d.total.files, 2);
    assert_eq!(d.items[0].path, "a");
    assert!(d.items[1].path.ends_with("stack.jsonl:2"));
    assert_eq!(d.skipped.len(), 2);
    assert_eq!(d.per_lang["Python"].comment_only, 1);
    assert_eq!(d.per_lang["C"].mixed, 1);
}
