//! The no-code-change guarantee as a property over 200 real functions (the Python standard
//! library on this machine and this repository's Rust): every comment insertion at a place
//! the augmenter allows is accepted, and stripping comments from the accepted text gives the
//! input's code back exactly; every output that changes, drops or comments out code is
//! rejected with a reason.

use pw_comments::augment::insertable_lines;
use pw_comments::verify::{functions, strip_comments, verify};
use pw_comments::{Analyzer, Lang};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

fn functions_under(root: &Path, lang: Lang, want: usize, out: &mut Vec<(Lang, String)>) {
    let (files, _) = pw_comments::data::walk(&[root.to_path_buf()]).unwrap();
    let mut an = Analyzer::new();
    for (p, l) in files {
        if l != lang || p.components().any(|c| c.as_os_str() == "site-packages") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        for f in functions(&mut an, lang, &text) {
            let n = f.code.lines().count();
            if (3..=60).contains(&n) {
                out.push((lang, f.code));
                if out.len() >= want {
                    return;
                }
            }
        }
    }
}

fn corpus() -> Vec<(Lang, String)> {
    let mut out = Vec::new();
    match pw_comments::data::python_stdlib() {
        Some(p) => functions_under(&p, Lang::Python, 150, &mut out),
        None => println!("no Python standard library here: the property runs on Rust only"),
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let n = out.len();
    functions_under(&repo, Lang::Rust, n + 200 - n.min(150), &mut out);
    out.truncate(200);
    out
}

/// A generator that only inserts: comment lines where the augmenter allows them, trailing
/// comments on lines that end outside strings, and blank lines (which are dropped).
/// Returns (the output, the output without its blank lines, comment lines, trailing comments).
fn insert(
    an: &mut Analyzer,
    lang: Lang,
    code: &str,
    rng: &mut StdRng,
) -> (String, String, usize, usize) {
    let marker = lang.spec().line_comment;
    let ok = insertable_lines(an, lang, code);
    let lines: Vec<&str> = code.split_inclusive('\n').collect();
    let (mut out, mut kept, mut ins, mut trail) = (String::new(), String::new(), 0, 0);
    for (i, l) in lines.iter().enumerate() {
        if ok[i] && rng.random_bool(0.4) {
            let indent = &l[..l.len() - l.trim_start().len()];
            let c = format!("{indent}{marker} note {i}: what the next line does\n");
            out.push_str(&c);
            kept.push_str(&c);
            ins += 1;
        }
        if ok[i] && rng.random_bool(0.1) {
            out.push('\n');
        }
        let ends_clean = i + 1 < lines.len() && ok[i + 1] && l.ends_with('\n');
        if ends_clean && !l.trim().is_empty() && rng.random_bool(0.2) {
            let t = format!("{}  {marker} trailing {i}\n", &l[..l.len() - 1]);
            out.push_str(&t);
            kept.push_str(&t);
            trail += 1;
        } else {
            out.push_str(l);
            kept.push_str(l);
        }
    }
    (out, kept, ins, trail)
}

#[test]
fn insertions_are_accepted_and_strip_back_to_the_input() {
    let corpus = corpus();
    assert_eq!(corpus.len(), 200, "need 200 real functions");
    let mut an = Analyzer::new();
    let mut rng = StdRng::seed_from_u64(7);
    let (mut total_ins, mut total_trail) = (0, 0);
    for (k, (lang, code)) in corpus.iter().enumerate() {
        let (out, expected, ins, trail) = insert(&mut an, *lang, code, &mut rng);
        let a = verify(&mut an, *lang, code, &out)
            .unwrap_or_else(|e| panic!("function {k} ({lang:?}) rejected: {e}\n{out}"));
        assert_eq!(
            (a.inserted_lines, a.trailing_comments),
            (ins, trail),
            "function {k}"
        );
        assert_eq!(
            strip_comments(&mut an, *lang, &a.text).unwrap(),
            strip_comments(&mut an, *lang, code).unwrap(),
            "function {k}: stripping the accepted text must give the input's code"
        );
        // The kept text is the generator's minus the blank lines it added: the original lines
        // in it are untouched, so dropping the inserted comments gives the input byte for byte.
        assert_eq!(a.text, expected, "function {k}");
        total_ins += ins;
        total_trail += trail;
    }
    assert!(
        total_ins > 200 && total_trail > 50,
        "{total_ins} {total_trail}"
    );
}

#[test]
fn outputs_that_change_drop_or_comment_out_code_are_rejected() {
    let corpus = corpus();
    let mut an = Analyzer::new();
    let mut rng = StdRng::seed_from_u64(11);
    let mut rejected = 0;
    for (k, (lang, code)) in corpus.iter().enumerate() {
        let lines: Vec<&str> = code.split_inclusive('\n').collect();
        // A code line (not blank, not a comment) to damage.
        let stripped = strip_comments(&mut an, *lang, code).unwrap();
        let candidates: Vec<usize> = (1..lines.len())
            .filter(|&i| {
                let t = lines[i].trim();
                !t.is_empty() && stripped.lines().any(|s| s.trim() == t) && t.len() > 3
            })
            .collect();
        let Some(&i) = candidates.get(rng.random_range(0..candidates.len().max(1))) else {
            continue;
        };
        let pos = lines[i].len() - lines[i].trim_start().len();
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let c = changed[i].as_bytes()[pos];
        let replacement = if c == b'x' { "y" } else { "x" };
        changed[i].replace_range(pos..pos + 1, replacement);
        let e = verify(&mut an, *lang, code, &changed.concat()).unwrap_err();
        assert!(!e.is_empty(), "function {k}");
        let mut dropped: Vec<&str> = lines.clone();
        dropped.remove(i);
        assert!(
            verify(&mut an, *lang, code, &dropped.concat()).is_err(),
            "function {k}: a dropped line"
        );
        if *lang == Lang::Rust {
            // A block comment left open before the damaged line comments the rest out.
            let mut open: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            open.insert(i, "/* explain\n".into());
            assert!(
                verify(&mut an, *lang, code, &open.concat()).is_err(),
                "function {k}: /* left open"
            );
        }
        rejected += 1;
    }
    assert!(rejected >= 150, "{rejected}");
}
