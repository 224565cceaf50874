//! The lexical scanner (the density default) against the tree-sitter parse, file by file, on
//! the code on this machine: the Python standard library and the cargo registry sources (the
//! corpora of the density bench). Each file's line counts must be identical for nearly all
//! files, and per language the totals must agree closely; the files that differ are printed
//! with the first line where they do, so a regression names its cause.

use pw_comments::data::{self, check_text, walk};
use pw_comments::{Analyzer, Docstrings, Lang, scan};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn files(root: &Path, max_bytes: u64) -> Vec<(PathBuf, Lang, Vec<u8>)> {
    let Ok((found, _)) = walk(&[root.to_path_buf()]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut total = 0;
    for (p, lang) in found {
        if p.components().any(|c| c.as_os_str() == "site-packages") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        if check_text(&bytes, 10 << 20).is_err() {
            continue;
        }
        total += bytes.len() as u64;
        out.push((p, lang, bytes));
        if total >= max_bytes {
            break;
        }
    }
    out
}

/// The first line whose (code, comment) verdict differs, for the report.
fn first_difference(lang: Lang, src: &[u8]) -> String {
    let parsed_strings = Analyzer::new().multiline_strings(lang, src);
    let parsed = Analyzer::new().parse(lang, src).map(|(_, s)| s);
    let lexed_all = scan::lex(lang, src);
    let lexed = lexed_all.spans;
    let line_of = |b: usize| src[..b].iter().filter(|&&c| c == b'\n').count() + 1;
    let Some(parsed) = parsed else {
        return "tree-sitter gave no tree".into();
    };
    // tree-sitter-rust's doc comments end after their newline, the scanner's before it: the
    // same lines either way.
    let trim = |r: &std::ops::Range<usize>| {
        let mut e = r.end;
        while e > r.start && src[e - 1].is_ascii_whitespace() {
            e -= 1;
        }
        r.start..e
    };
    for (a, b) in lexed.iter().zip(&parsed) {
        if trim(&a.bytes) != trim(&b.bytes) || a.docstring != b.docstring {
            return format!(
                "line {}: scan {:?} {:?} {:?} / parse {:?} {:?} {:?}",
                line_of(a.bytes.start.min(b.bytes.start)),
                a.bytes,
                String::from_utf8_lossy(&src[a.bytes.start..a.bytes.end.min(a.bytes.start + 40)]),
                a.docstring,
                b.bytes,
                String::from_utf8_lossy(&src[b.bytes.start..b.bytes.end.min(b.bytes.start + 40)]),
                b.docstring,
            );
        }
    }
    if lexed.len() != parsed.len() {
        return format!("{} spans scanned, {} parsed", lexed.len(), parsed.len());
    }
    // The same comments: a blank line inside a multi-line string is what differs.
    let a: Vec<_> = lexed_all.strings.iter().map(|m| m.0.clone()).collect();
    let b: Vec<_> = parsed_strings.iter().map(|m| m.0.clone()).collect();
    let first = a.iter().zip(&b).find(|(x, y)| x != y);
    match first {
        Some((x, y)) => format!(
            "line {}: multi-line string scanned {x:?} {:?}, parsed {y:?} {:?}",
            line_of(x.start.min(y.start)),
            String::from_utf8_lossy(&src[x.start..x.end.min(x.start + 30)]),
            String::from_utf8_lossy(&src[y.start..y.end.min(y.start + 30)]),
        ),
        None => format!("{} multi-line strings scanned, {} parsed", a.len(), b.len()),
    }
}

struct Agreement {
    files: usize,
    same: usize,
    /// (language, [code, comment, blank] scanned, parsed)
    per_lang: BTreeMap<&'static str, ([u64; 3], [u64; 3])>,
    differing: Vec<(PathBuf, String)>,
}

fn agreement(files: &[(PathBuf, Lang, Vec<u8>)]) -> Agreement {
    let rows: Vec<_> = files
        .par_iter()
        .map_init(Analyzer::new, |an, (p, lang, src)| {
            let parsed = an.analyze(*lang, src, Docstrings::Comment).unwrap().counts;
            let lexed = scan::analyze(*lang, src, Docstrings::Comment).counts;
            let key = |c: &pw_comments::Counts| [c.code, c.comment, c.blank];
            let same = key(&parsed) == key(&lexed) && parsed.docstring == lexed.docstring;
            let why = (!same).then(|| first_difference(*lang, src));
            (p.clone(), *lang, key(&lexed), key(&parsed), why)
        })
        .collect();
    let mut a = Agreement {
        files: rows.len(),
        same: 0,
        per_lang: BTreeMap::new(),
        differing: Vec::new(),
    };
    for (p, lang, l, t, why) in rows {
        let e = a.per_lang.entry(lang.name()).or_default();
        for k in 0..3 {
            e.0[k] += l[k];
            e.1[k] += t[k];
        }
        match why {
            None => a.same += 1,
            Some(w) => a.differing.push((p, w)),
        }
    }
    a
}

fn check(name: &str, files: &[(PathBuf, Lang, Vec<u8>)], min_same: f64, max_line_diff: f64) {
    if files.is_empty() {
        println!("skipped {name}: no source files found");
        return;
    }
    let a = agreement(files);
    let share = a.same as f64 / a.files as f64;
    println!(
        "{name}: {} of {} files identical ({:.2}%)",
        a.same,
        a.files,
        share * 100.0
    );
    for (p, why) in a.differing.iter().take(15) {
        println!("  differs: {} {why}", p.display());
    }
    for (lang, (l, t)) in &a.per_lang {
        let diff = |k: usize| (l[k] as f64 - t[k] as f64) / t[k].max(1) as f64;
        println!(
            "  {lang}: code {} / {} ({:+.3}%), comment {} / {} ({:+.3}%), blank {} / {} ({:+.3}%)",
            l[0],
            t[0],
            diff(0) * 100.0,
            l[1],
            t[1],
            diff(1) * 100.0,
            l[2],
            t[2],
            diff(2) * 100.0
        );
        for k in 0..3 {
            // A language with a handful of files is reported, not held to the bound.
            let n = files.iter().filter(|f| f.1.name() == *lang).count();
            assert!(
                n < 20 || diff(k).abs() <= max_line_diff,
                "{name} {lang}: line totals differ by {:.3}% (bound {:.3}%)",
                diff(k) * 100.0,
                max_line_diff * 100.0
            );
        }
    }
    assert!(
        share >= min_same,
        "{name}: only {:.2}% of files identical (bound {:.2}%)",
        share * 100.0,
        min_same * 100.0
    );
}

#[test]
fn scanner_agrees_with_the_parse_on_the_python_standard_library() {
    match data::python_stdlib() {
        Some(p) => check("Python standard library", &files(&p, u64::MAX), 0.99, 0.001),
        None => println!("skipped: no Python standard library found"),
    }
}

#[test]
fn scanner_agrees_with_the_parse_on_the_cargo_registry_sources() {
    match data::cargo_registry() {
        Some(reg) => check(
            "cargo registry sources",
            &files(&reg, 30 << 20),
            0.99,
            0.001,
        ),
        None => println!("skipped: no cargo registry sources found"),
    }
}

/// Other trees, e.g. `PW_SCAN_ROOTS=/usr/include:/usr/lib/node_modules` (same bounds).
#[test]
fn scanner_agrees_with_the_parse_on_the_trees_in_pw_scan_roots() {
    let Ok(roots) = std::env::var("PW_SCAN_ROOTS") else {
        println!("skipped: PW_SCAN_ROOTS is not set");
        return;
    };
    for root in std::env::split_paths(&roots) {
        check(
            &root.display().to_string(),
            &files(&root, u64::MAX),
            0.99,
            0.001,
        );
    }
}
