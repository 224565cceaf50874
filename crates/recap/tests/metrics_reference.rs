//! Our CIDEr-D, ROUGE-L and BLEU-4 against the reference implementation (PyPI
//! `pycocoevalcap` 1.2, run as `tests/reference/coco_scores.py`) on 500 caption pairs of all
//! three levels: live when Python with pycocoevalcap is on the machine (PW_COCO_PYTHON, or
//! `python3`), and always against the figures that harness printed, stored below.

use pw_recap::data::SynthVideo;
use pw_recap::metrics::{bleu, cider_d, normalise, rouge_l};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// 500 (prediction, reference) pairs: references from one stream of synthetic videos,
/// predictions from another (same grammar, other facts), some with words dropped, some
/// identical to the reference, a few empty.
fn pairs() -> (Vec<String>, Vec<String>) {
    let texts = |seed: u64| -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..40 {
            let v = SynthVideo::generate(seed, i, 3, 4);
            out.extend(v.clips.iter().map(|c| c.caption.clone()));
            out.extend(v.descriptions.iter().cloned());
            out.push(v.summary.clone());
        }
        out
    };
    let (a, b) = (texts(11), texts(12));
    let mut preds = Vec::new();
    let mut refs = Vec::new();
    for k in 0..500 {
        let r = normalise(&a[k]);
        let mut p = normalise(&b[k]);
        if k % 3 == 0 {
            p = p
                .split(' ')
                .enumerate()
                .filter(|(i, _)| i % 3 != 1)
                .map(|(_, w)| w)
                .collect::<Vec<_>>()
                .join(" ");
        }
        if k % 11 == 0 {
            p = r.clone();
        }
        if k % 97 == 5 {
            p = String::new();
        }
        preds.push(p);
        refs.push(r);
    }
    (preds, refs)
}

/// What coco_scores.py printed for `pairs()` (pycocoevalcap 1.2, Python 3.11); the corpus means to 12 decimals.
const STORED_CIDER: f64 = 1.515404956432;
const STORED_ROUGE: f64 = 0.360022554500;
const STORED_BLEU: [f64; 4] = [
    0.3674900884542181,
    0.2650885458851074,
    0.2133648799021962,
    0.18260404143863515,
];
const SAMPLE_ITEMS: [usize; 6] = [1, 2, 5, 250, 301, 499];
/// (index, CIDEr-D, ROUGE-L) of the items above.
const STORED_ITEMS: [(usize, f64, f64); 6] = [
    (1, 0.0, 0.0),
    (2, 0.5421001807533145, 0.26991150442477874),
    (5, 0.0, 0.0),
    (250, 0.3147662324190125, 0.34014869888475835),
    (301, 0.04621311041111103, 0.2932692307692307),
    (499, 0.9535008671590672, 0.4535315985130111),
];

fn python() -> Option<PathBuf> {
    [
        std::env::var_os("PW_COCO_PYTHON").map(PathBuf::from),
        Some(PathBuf::from("python3")),
    ]
    .into_iter()
    .flatten()
    .find(|py| {
        Command::new(py)
            .args(["-c", "import pycocoevalcap"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

#[test]
fn scores_match_pycocoevalcap_on_500_pairs() {
    let (p, r) = pairs();
    let (cider, ci) = cider_d(&p, &r);
    let (rouge, ri) = rouge_l(&p, &r);
    let b = bleu(&p, &r);
    println!("ours: CIDEr-D {cider:.12} ROUGE-L {rouge:.12} BLEU {b:?}");
    match python() {
        Some(py) => live(&py, &p, &r, &ci, &ri, &b, cider, rouge),
        None => println!(
            "skipped the live comparison: no Python with pycocoevalcap (PW_COCO_PYTHON); checking the stored figures"
        ),
    }
    for &(i, c, rl) in &STORED_ITEMS {
        assert!(
            (ci[i] - c).abs() < 1e-9,
            "item {i}: CIDEr-D {} vs stored {c}",
            ci[i]
        );
        assert!(
            (ri[i] - rl).abs() < 1e-9,
            "item {i}: ROUGE-L {} vs stored {rl}",
            ri[i]
        );
    }
    assert!(
        (cider - STORED_CIDER).abs() < 1e-9,
        "CIDEr-D {cider} vs stored {STORED_CIDER}"
    );
    assert!(
        (rouge - STORED_ROUGE).abs() < 1e-9,
        "ROUGE-L {rouge} vs stored {STORED_ROUGE}"
    );
    for k in 0..4 {
        assert!(
            (b[k] - STORED_BLEU[k]).abs() < 1e-9,
            "BLEU-{} {} vs stored {}",
            k + 1,
            b[k],
            STORED_BLEU[k]
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn live(
    py: &PathBuf,
    p: &[String],
    r: &[String],
    ci: &[f64],
    ri: &[f64],
    b: &[f64; 4],
    cider: f64,
    rouge: f64,
) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/coco_scores.py");
    let mut child = Command::new(py)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(
        child.stdin.take().unwrap(),
        &serde_json::json!({"preds": p, "refs": r}),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "coco_scores.py failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |k: &str| v[k].as_f64().unwrap();
    let items = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let max_diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let (dc, dr) = (
        max_diff(ci, &items("cider_items")),
        max_diff(ri, &items("rouge_items")),
    );
    let pb: Vec<f64> = v["bleu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let db = max_diff(b, &pb);
    println!(
        "pycocoevalcap: CIDEr-D {:.12} ROUGE-L {:.12} BLEU {pb:?}; max |diff| per item CIDEr-D {dc:.3e}, ROUGE-L {dr:.3e}, BLEU {db:.3e}",
        f("cider"),
        f("rouge")
    );
    let (pc, pr) = (items("cider_items"), items("rouge_items"));
    for i in SAMPLE_ITEMS {
        println!(
            "pycocoevalcap item {i}: CIDEr-D {:?} ROUGE-L {:?}",
            pc[i], pr[i]
        );
    }
    assert!(dc < 1e-6 && dr < 1e-6 && db < 1e-6);
    assert!((cider - f("cider")).abs() < 1e-6 && (rouge - f("rouge")).abs() < 1e-6);
}
