//! Comment density against tokei, the anchor: line counts per language and MB/s of both on
//! the Python standard library and the cargo registry sources on this machine.
//!
//! `cargo bench -p pw-comments --bench density` (part of `make bench`). Every counter sees the
//! same bytes in memory (reading files is not timed), on one thread and on all of rayon's:
//! our scanner (the default engine), our tree-sitter parse, and tokei.
//! Conventions are aligned where they can be: our docstrings count as code here (tokei's
//! default), a line with code and a comment is code in both, tokei's "comments" are our
//! comment-only lines. `PW_BENCH_MAX_MB` caps the registry sample (default: all of it).

use pw_comments::{Analyzer, Docstrings, Lang, scan};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

struct File {
    lang: Lang,
    bytes: Vec<u8>,
}

fn gather(root: &Path, max_bytes: u64, out: &mut Vec<File>) {
    let mut total = 0u64;
    let Ok((files, _)) = pw_comments::data::walk(&[root.to_path_buf()]) else {
        eprintln!("skipped {}: cannot be walked", root.display());
        return;
    };
    for (p, lang) in files {
        // The standard library only, not what pip installed beside it.
        if p.components().any(|c| c.as_os_str() == "site-packages") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        if pw_comments::data::check_text(&bytes, 10 << 20).is_err() {
            continue;
        }
        total += bytes.len() as u64;
        out.push(File { lang, bytes });
        if total >= max_bytes {
            break;
        }
    }
}

fn tokei_lang(l: Lang) -> tokei::LanguageType {
    tokei::LanguageType::from_name(l.spec().tokei).expect("tokei knows every language we count")
}

#[derive(Default, Clone, Copy)]
struct Lines {
    files: u64,
    code: u64,
    comments: u64,
    blanks: u64,
    same_files: u64,
}

/// The scanner, the density default.
fn ours(f: &File) -> (u64, u64, u64) {
    let c = scan::analyze(f.lang, &f.bytes, Docstrings::Code).counts;
    (c.code, c.comment_only, c.blank)
}

/// The tree-sitter parse (`--engine tree-sitter`).
fn parsed(an: &mut Analyzer, f: &File) -> (u64, u64, u64) {
    let c = an
        .analyze(f.lang, &f.bytes, Docstrings::Code)
        .expect("tree-sitter gives a tree")
        .counts;
    (c.code, c.comment_only, c.blank)
}

fn theirs(cfg: &tokei::Config, f: &File) -> (u64, u64, u64) {
    let s = tokei_lang(f.lang)
        .parse_from_slice(&f.bytes, cfg)
        .summarise();
    (s.code as u64, s.comments as u64, s.blanks as u64)
}

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn corpus(name: &str, files: &[File]) {
    let mb = files.iter().map(|f| f.bytes.len()).sum::<usize>() as f64 / 1e6;
    println!("\n## {name}: {} files, {mb:.1} MB\n", files.len());
    let cfg = tokei::Config::default();
    let mut per: BTreeMap<&str, (Lines, Lines)> = BTreeMap::new();
    let pairs: Vec<_> = files
        .par_iter()
        .map(|f| (f.lang, ours(f), theirs(&cfg, f)))
        .collect();
    for (lang, a, b) in pairs {
        let e = per.entry(lang.name()).or_default();
        for (side, (code, com, blank)) in [(&mut e.0, a), (&mut e.1, b)] {
            side.files += 1;
            side.code += code;
            side.comments += com;
            side.blanks += blank;
        }
        e.0.same_files += (a == b) as u64;
    }
    println!(
        "| language | files | code ours / tokei | diff | comments ours / tokei | diff | blank ours / tokei | files identical |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let pct = |a: u64, b: u64| (a as f64 - b as f64) / (b.max(1) as f64) * 100.0;
    for (l, (a, b)) in &per {
        println!(
            "| {l} | {} | {} / {} | {:+.2}% | {} / {} | {:+.2}% | {} / {} | {:.1}% |",
            a.files,
            a.code,
            b.code,
            pct(a.code, b.code),
            a.comments,
            b.comments,
            pct(a.comments, b.comments),
            a.blanks,
            b.blanks,
            a.same_files as f64 / a.files.max(1) as f64 * 100.0
        );
    }
    let threads = rayon::current_num_threads();
    let ours_1 = best_of(3, || files.iter().map(|f| ours(f).0).sum::<u64>());
    let ours_n = best_of(3, || files.par_iter().map(|f| ours(f).0).sum::<u64>());
    let parsed_1 = best_of(1, || {
        let mut an = Analyzer::new();
        files.iter().map(|f| parsed(&mut an, f).0).sum::<u64>()
    });
    let parsed_n = best_of(1, || {
        files
            .par_iter()
            .map_init(Analyzer::new, |an, f| parsed(an, f).0)
            .sum::<u64>()
    });
    let tokei_1 = best_of(3, || files.iter().map(|f| theirs(&cfg, f).0).sum::<u64>());
    let tokei_n = best_of(3, || {
        files.par_iter().map(|f| theirs(&cfg, f).0).sum::<u64>()
    });
    println!("\n| counter | 1 thread MB/s | {threads} threads MB/s |\n|---|---|---|");
    println!(
        "| paperworks (scan, the default) | {:.1} | {:.1} |",
        mb / ours_1,
        mb / ours_n
    );
    println!(
        "| paperworks (--engine tree-sitter) | {:.1} | {:.1} |",
        mb / parsed_1,
        mb / parsed_n
    );
    println!("| tokei 15 | {:.1} | {:.1} |", mb / tokei_1, mb / tokei_n);
    println!(
        "| ratio scan / tokei | {:.2}x | {:.2}x |",
        tokei_1 / ours_1,
        tokei_n / ours_n
    );
}

fn main() {
    let max_mb: u64 = std::env::var("PW_BENCH_MAX_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX / (1 << 20));
    match pw_comments::data::python_stdlib() {
        Some(p) => {
            let mut files = Vec::new();
            gather(&p, u64::MAX, &mut files);
            corpus(
                &format!("Python standard library ({})", p.display()),
                &files,
            );
        }
        None => println!("skipped the Python standard library: none found"),
    }
    match pw_comments::data::cargo_registry() {
        Some(reg) => {
            let mut files = Vec::new();
            gather(&reg, max_mb << 20, &mut files);
            corpus(
                &format!("cargo registry sources ({})", reg.display()),
                &files,
            );
        }
        None => println!("skipped the cargo registry: no registry/src under CARGO_HOME"),
    }
}
