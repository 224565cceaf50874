//! Data quality beyond length and duplicates: cheap detectors (question form, repetition, echo
//! of the question in the answer, share of dictionary words) and the judge stage's verdict
//! (a model scores each pair 1-10 on four criteria), with their agreement with each other and
//! with a hand-labelled sample.
//!
//! Every threshold is a `[glan.filters]` / `[glan.judge]` setting whose default was fixed
//! before any run was looked at; the report measures how the detectors and the judge agree.

use pw_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// First words of a sentence that make it a homework task: question words and the imperative
/// verbs of exercises ("Calculate ...", "Explain ...").
const TASK_WORDS: &[&str] = &[
    "what",
    "why",
    "how",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "is",
    "are",
    "does",
    "do",
    "did",
    "can",
    "could",
    "would",
    "should",
    "will",
    "explain",
    "describe",
    "calculate",
    "compute",
    "find",
    "determine",
    "compare",
    "contrast",
    "prove",
    "show",
    "derive",
    "list",
    "name",
    "discuss",
    "evaluate",
    "solve",
    "write",
    "identify",
    "define",
    "give",
    "state",
    "predict",
    "analyze",
    "analyse",
    "estimate",
    "design",
    "outline",
    "summarize",
    "summarise",
    "justify",
    "classify",
    "draw",
    "sketch",
    "construct",
    "illustrate",
    "demonstrate",
    "verify",
    "use",
    "apply",
    "propose",
    "suggest",
    "assess",
    "interpret",
    "express",
    "simplify",
    "convert",
    "graph",
    "plot",
    "rank",
    "match",
    "choose",
    "select",
    "complete",
    "suppose",
    "consider",
    "imagine",
    "investigate",
    "examine",
    "argue",
    "critique",
    "formulate",
    "create",
    "develop",
    "provide",
    "check",
    "implement",
    "integrate",
    "differentiate",
    "factor",
    "translate",
    "rewrite",
    "trace",
    "measure",
    "count",
    "sort",
];

/// Lower-cased words of letters only (digits, punctuation and apostrophes split words); a word
/// right after a backslash is a LaTeX command (`\frac`), not prose, and is left out.
pub fn letter_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut command = false;
    let mut prev = ' ';
    for c in text.chars() {
        if c.is_alphabetic() {
            if cur.is_empty() {
                command = prev == '\\';
            }
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            if !command {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        }
        prev = c;
    }
    if !cur.is_empty() && !command {
        out.push(cur);
    }
    out
}

/// Does the text read as a homework task: a question mark, or a sentence that starts with a
/// question word or an exercise verb (after a label such as "Question:" or a list number)?
pub fn is_question_form(question: &str) -> bool {
    if question.contains('?') {
        return true;
    }
    question
        .split(['.', '!', '\n', ':', ';'])
        .filter_map(|s| letter_words(s).into_iter().next())
        .any(|w| TASK_WORDS.contains(&w.as_str()))
}

/// Phrases by which a question points at options, a figure or a text outside itself.
const POINTERS: [&str; 22] = [
    "which of the following",
    "which one of the following",
    "the following options",
    "the following choices",
    "the following statements",
    "the options below",
    "the choices below",
    "the options above",
    "the choices above",
    "the figure",
    "the diagram",
    "the graph above",
    "the graph below",
    "the table above",
    "the table below",
    "the passage",
    "the text above",
    "the text below",
    "shown above",
    "shown below",
    "given above",
    "given below",
];

/// The phrase by which `question` points at options, a figure or a text that it does not hold
/// (the homework prompt asks for questions that refer to none), or `None`. Options count as
/// held when at least two are marked (`A)`, `(b)`, `c.`, `1:` ...) or listed after a colon; a
/// figure or a passage cannot be held in a question's text.
pub fn dangling_reference(question: &str) -> Option<&'static str> {
    let lower = question.to_lowercase();
    let p = POINTERS.iter().find(|p| lower.contains(*p))?;
    let marked = lower
        .split_whitespace()
        .filter(|t| {
            let t = t.trim_start_matches('(');
            let mut c = t.chars();
            matches!(
                (c.next(), c.next(), c.next()),
                (Some('a'..='e' | '1'..='5'), Some(')' | '.' | ':'), None)
            )
        })
        .count();
    let listed = lower.split_once(':').is_some_and(|(_, after)| {
        after
            .split([',', ';', '\n'])
            .filter(|i| !i.trim().is_empty())
            .count()
            >= 2
    });
    let options = p.contains("following") || p.contains("options") || p.contains("choices");
    if options && (marked >= 2 || listed) {
        None
    } else {
        Some(p)
    }
}

fn trigrams(text: &str) -> Vec<String> {
    let w = pw_data::dedup::words(text);
    w.windows(3).map(|g| g.join(" ")).collect()
}

/// Share of the text's word 3-grams that repeat an earlier one (0 for fresh text; a model that
/// loops on a phrase approaches 1). `None` below 10 3-grams, too few to tell.
pub fn repetition(text: &str) -> Option<f64> {
    let g = trigrams(text);
    if g.len() < 10 {
        return None;
    }
    let distinct: HashSet<&String> = g.iter().collect();
    Some(1.0 - distinct.len() as f64 / g.len() as f64)
}

/// Share of the answer's word 3-grams that occur in the question: near 1 when the answer only
/// copies the question back. `None` when the answer has no 3-gram.
pub fn echo(question: &str, answer: &str) -> Option<f64> {
    let a = trigrams(answer);
    if a.is_empty() {
        return None;
    }
    let q: HashSet<String> = trigrams(question).into_iter().collect();
    Some(a.iter().filter(|g| q.contains(*g)).count() as f64 / a.len() as f64)
}

/// A word list (one word per line, as Debian's `wamerican` installs at /usr/share/dict/words).
pub struct Dictionary {
    words: HashSet<String>,
}

impl Dictionary {
    pub fn load(path: &Path) -> Result<Dictionary> {
        let raw = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingAsset {
                path: path.to_path_buf(),
                hint: "the word list of the dictionary detector: install Debian's wamerican \
                       (scripts/setup.sh does), or set [glan.filters] dictionary = \"FILE\" or \
                       min_dictionary_share = 0"
                    .into(),
            },
            _ => Error::io(path, e),
        })?;
        let d = Dictionary::from_words(String::from_utf8_lossy(&raw).lines());
        if d.words.len() < 100 {
            return Err(Error::invalid(
                path,
                format!(
                    "{} words: not a word list (one word per line expected)",
                    d.words.len()
                ),
            ));
        }
        Ok(d)
    }

    pub fn from_words<'a>(words: impl IntoIterator<Item = &'a str>) -> Dictionary {
        Dictionary {
            words: words
                .into_iter()
                .flat_map(letter_words)
                .filter(|w| !w.is_empty())
                .collect(),
        }
    }

    /// The word or a regular inflection of it is listed.
    pub fn knows(&self, w: &str) -> bool {
        if self.words.contains(w) {
            return true;
        }
        let stem = |suffix: &str| w.strip_suffix(suffix).filter(|s| s.len() >= 2);
        for suffix in ["s", "es", "ed", "d", "ing", "ly", "er", "est"] {
            if let Some(s) = stem(suffix)
                && (self.words.contains(s) || self.words.contains(&format!("{s}e")))
            {
                return true;
            }
        }
        false
    }

    /// Share of the text's words of three letters or more that are in the list; `None` below
    /// three such words.
    pub fn share(&self, text: &str) -> Option<f64> {
        let w: Vec<String> = letter_words(text)
            .into_iter()
            .filter(|w| w.chars().count() >= 3)
            .collect();
        if w.len() < 3 {
            return None;
        }
        Some(w.iter().filter(|w| self.knows(w)).count() as f64 / w.len() as f64)
    }
}

/// The cheap detectors' thresholds (from `[glan.filters]`).
#[derive(Clone, Copy, Debug)]
pub struct DetectorLimits {
    pub question_form: bool,
    pub max_repetition: f64,
    pub max_echo: f64,
    pub min_dictionary_share: f64,
}

impl From<&crate::config::FilterConfig> for DetectorLimits {
    fn from(f: &crate::config::FilterConfig) -> Self {
        DetectorLimits {
            question_form: f.question_form,
            max_repetition: f.max_repetition,
            max_echo: f.max_echo,
            min_dictionary_share: f.min_dictionary_share,
        }
    }
}

/// The first cheap detector that fails the pair, as (filter name, reason); `None` when all
/// pass. `dict` is `None` when the dictionary detector is off.
pub fn detect(
    limits: &DetectorLimits,
    dict: Option<&Dictionary>,
    question: &str,
    answer: &str,
) -> Option<(&'static str, String)> {
    if limits.question_form && !is_question_form(question) {
        return Some((
            "question_form",
            "no question mark and no sentence opens with a question word or exercise verb".into(),
        ));
    }
    if limits.question_form
        && let Some(p) = dangling_reference(question)
    {
        return Some((
            "question_form",
            format!("the question says \"{p}\" but holds no options, figure or text"),
        ));
    }
    for (what, text) in [("question", question), ("answer", answer)] {
        if let Some(r) = repetition(text)
            && r > limits.max_repetition
        {
            return Some((
                "repetition",
                format!(
                    "{:.0}% of the {what}'s word 3-grams repeat (limit {:.0}%)",
                    100.0 * r,
                    100.0 * limits.max_repetition
                ),
            ));
        }
    }
    if let Some(e) = echo(question, answer)
        && e > limits.max_echo
    {
        return Some((
            "echo",
            format!(
                "{:.0}% of the answer's word 3-grams copy the question (limit {:.0}%)",
                100.0 * e,
                100.0 * limits.max_echo
            ),
        ));
    }
    if let Some(d) = dict {
        for (what, text) in [("question", question), ("answer", answer)] {
            if let Some(s) = d.share(text)
                && s < limits.min_dictionary_share
            {
                return Some((
                    "dictionary",
                    format!(
                        "{:.0}% of the {what}'s words are dictionary words (minimum {:.0}%)",
                        100.0 * s,
                        100.0 * limits.min_dictionary_share
                    ),
                ));
            }
        }
    }
    None
}

/// The judge's reply: a reason, then a 1-10 score per criterion. The reason comes first in the
/// reply (JSON keys are written in sorted order, and "reason" < "scores"), so the scores
/// follow from what the judge wrote rather than the other way round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub reason: String,
    pub scores: Scores,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Is it a clear, well-formed homework question?
    pub is_question: u32,
    /// Can it be answered from what it states?
    pub answerable: u32,
    /// Does it test the key concepts it was written for?
    pub uses_key_concepts: u32,
    /// Is the answer correct and complete?
    pub answer_correct: u32,
}

/// The judge's criteria, in the order the prompt explains them.
pub const CRITERIA: [(&str, &str); 4] = [
    (
        "is_question",
        "is the question a clear, well-formed homework question in English?",
    ),
    (
        "answerable",
        "can the question be answered from what it states?",
    ),
    (
        "uses_key_concepts",
        "does the question test the listed key concepts?",
    ),
    ("answer_correct", "is the answer correct and complete?"),
];

/// Longest reason the judge may write (characters): one sentence, and a bound on its cost.
pub const REASON_CHARS: u32 = 200;

/// The JSON schema of the judge's reply.
pub fn verdict_schema() -> serde_json::Value {
    let score = serde_json::json!({"type": "integer", "minimum": 1, "maximum": 10});
    let mut props = serde_json::Map::new();
    for (name, _) in CRITERIA {
        props.insert(name.into(), score.clone());
    }
    let names: Vec<&str> = CRITERIA.iter().map(|(n, _)| *n).collect();
    serde_json::json!({
        "type": "object",
        "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": REASON_CHARS},
            "scores": {"type": "object", "properties": props, "required": names,
                       "additionalProperties": false}
        },
        "required": ["reason", "scores"],
        "additionalProperties": false
    })
}

impl Verdict {
    fn named(&self) -> [(&'static str, u32); 4] {
        let s = &self.scores;
        [
            ("is_question", s.is_question),
            ("answerable", s.answerable),
            ("uses_key_concepts", s.uses_key_concepts),
            ("answer_correct", s.answer_correct),
        ]
    }

    pub fn lowest(&self) -> u32 {
        self.named().iter().map(|(_, s)| *s).min().unwrap_or(0)
    }

    /// Passes when every criterion scores at least `min_score`.
    pub fn passes(&self, min_score: u32) -> bool {
        self.lowest() >= min_score
    }

    /// The criteria under `min_score`, named with their scores.
    pub fn failing(&self, min_score: u32) -> String {
        self.named()
            .iter()
            .filter(|(_, s)| *s < min_score)
            .map(|(n, s)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Agreement of two pass/fail raters over the same pairs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub both_pass: usize,
    pub both_fail: usize,
    /// The first rater passes, the second fails.
    pub first_only: usize,
    /// The second rater passes, the first fails.
    pub second_only: usize,
}

impl Agreement {
    pub fn add(&mut self, first: bool, second: bool) {
        match (first, second) {
            (true, true) => self.both_pass += 1,
            (false, false) => self.both_fail += 1,
            (true, false) => self.first_only += 1,
            (false, true) => self.second_only += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.both_pass + self.both_fail + self.first_only + self.second_only
    }

    /// Share of pairs on which the two agree.
    pub fn rate(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| (self.both_pass + self.both_fail) as f64 / n as f64)
    }

    /// Cohen's kappa: agreement beyond what the two pass rates give by chance (`None` when
    /// chance agreement is total, e.g. both pass everything).
    pub fn kappa(&self) -> Option<f64> {
        let n = self.total() as f64;
        if n == 0.0 {
            return None;
        }
        let p1 = (self.both_pass + self.first_only) as f64 / n;
        let p2 = (self.both_pass + self.second_only) as f64 / n;
        let pe = p1 * p2 + (1.0 - p1) * (1.0 - p2);
        let po = (self.both_pass + self.both_fail) as f64 / n;
        (pe < 1.0 - 1e-12).then(|| (po - pe) / (1.0 - pe))
    }

    pub fn describe(&self) -> String {
        match self.rate() {
            None => "no pairs".into(),
            Some(r) => format!(
                "{} of {} agree ({:.0}%), kappa {}",
                self.both_pass + self.both_fail,
                self.total(),
                100.0 * r,
                self.kappa()
                    .map_or("undefined".into(), |k| format!("{k:.2}"))
            ),
        }
    }
}

/// One pair of the hand-labelled sample (`data/hand_labelled.jsonl`): real outputs of the
/// pipeline's models and a few typical failures, each labelled good (a pair one would train
/// on) or not by a person, with the reason.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Labelled {
    pub id: String,
    pub discipline: String,
    pub key_concepts: Vec<String>,
    pub question: String,
    pub answer: String,
    pub good: bool,
    pub note: String,
}

pub const HAND_LABELLED: &str = include_str!("../data/hand_labelled.jsonl");

pub fn hand_labelled() -> Vec<Labelled> {
    HAND_LABELLED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("data/hand_labelled.jsonl line {}: {e}", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Dictionary {
        Dictionary::from_words(
            "the a of to in and is what force mass acceleration object net newton second law \
             calculate explain how why car travels hours speed at distance answer question \
             energy kinetic moving velocity equals half times squared given kilogram meters \
             per this that it an with for by on be are from heat engine work done"
                .split_whitespace(),
        )
    }

    #[test]
    fn questions_that_point_at_options_or_figures_they_lack_are_caught() {
        for q in [
            "Which of the following is not a geometric concept?",
            "Which of the following statements is true about the geometry of plane mechanics?",
            "Using the figure, find the net force on the block.",
            "Read the passage and explain its main claim.",
            "Which one of the following laws applies here? Explain.",
        ] {
            assert!(dangling_reference(q).is_some(), "{q}");
        }
        for q in [
            "Which of the following is a vector? A) mass B) velocity C) time D) energy",
            "Which of the following is a vector?\n(a) mass\n(b) velocity",
            "Which of the following are state functions: entropy, work, enthalpy?",
            "What is the periodic table used for?",
            "A block slides down a 30 degree incline. What is its acceleration?",
        ] {
            assert_eq!(dangling_reference(q), None, "{q}");
        }
        let limits = DetectorLimits {
            question_form: true,
            max_repetition: 1.0,
            max_echo: 1.0,
            min_dictionary_share: 0.0,
        };
        let (f, why) = detect(
            &limits,
            None,
            "Which of the following is not a geometric concept?",
            "A line.",
        )
        .unwrap();
        assert_eq!(f, "question_form");
        assert!(why.contains("which of the following"), "{why}");
    }

    #[test]
    fn question_form_sees_questions_and_exercises_not_fragments() {
        for q in [
            "What is Newton's second law",
            "Calculate the kinetic energy of a 2 kg ball moving at 3 m/s.",
            "A car travels 120 km in 2 hours. Find its average speed.",
            "Question: Explain why a heat engine cannot be 100% efficient.",
            "Is energy conserved in an elastic collision?",
        ] {
            assert!(is_question_form(q), "{q}");
        }
        for q in [
            "10, Device: Precious Heart: electronic device|Solar Power",
            "javascript: Background Text",
            "The first law of thermodynamics.",
            "2",
        ] {
            assert!(!is_question_form(q), "{q}");
        }
    }

    #[test]
    fn repetition_and_echo_see_loops_and_copies() {
        let looped = "The question is: The answer is: The question is: the answer is: the \
                      question is: the answer is: the question is: the answer is: the end";
        assert!(repetition(looped).unwrap() > 0.5);
        let fresh = "Kinetic energy is half the mass times the velocity squared, so a ball \
                     of two kilograms at three metres per second carries nine joules.";
        assert!(repetition(fresh).unwrap() < 0.05);
        assert_eq!(repetition("too short to tell"), None);
        let q = "Calculate the kinetic energy of a 2 kg ball moving at 3 m/s.";
        assert!(echo(q, q).unwrap() > 0.99);
        assert!(echo(q, fresh).unwrap() < 0.1);
    }

    #[test]
    fn dictionary_share_tells_prose_from_gibberish_and_skips_latex() {
        let d = dict();
        assert!(d.knows("forces") && d.knows("calculated") && d.knows("travels"));
        assert!(!d.knows("hoor"));
        let prose = "Calculate the kinetic energy of the moving object.";
        assert_eq!(d.share(prose), Some(1.0));
        let latex = r"The kinetic energy equals \frac{1}{2} m v^2 \cdot the mass";
        assert_eq!(d.share(latex), Some(1.0));
        let junk = "eS-S hoor akh Precious zvozdos lenkkNyadeMBKArchimago";
        assert!(d.share(junk).unwrap() < 0.2);
        assert_eq!(d.share("ok no"), None);
    }

    #[test]
    fn detect_names_the_first_failing_detector() {
        let d = dict();
        let limits = DetectorLimits {
            question_form: true,
            max_repetition: 0.3,
            max_echo: 0.5,
            min_dictionary_share: 0.8,
        };
        let q = "Calculate the kinetic energy of a 2 kg ball moving at 3 m/s.";
        let good = "Kinetic energy equals half the mass times the velocity squared: it is 9 J.";
        assert_eq!(detect(&limits, Some(&d), q, good), None);
        assert_eq!(
            detect(&limits, Some(&d), "javascript: Background Text", good).map(|x| x.0),
            Some("question_form")
        );
        assert_eq!(detect(&limits, Some(&d), q, q).map(|x| x.0), Some("echo"));
        let gib = "Kinetic hoor akh zvozdos blarg mumble energy qqq zzz";
        let (f, reason) = detect(&limits, Some(&d), q, gib).unwrap();
        assert_eq!(f, "dictionary");
        assert!(reason.contains("answer's words"), "{reason}");
        assert_eq!(detect(&limits, None, q, gib), None);
    }

    #[test]
    fn agreement_and_kappa() {
        let mut a = Agreement::default();
        for (x, y) in [(true, true), (true, true), (false, false), (true, false)] {
            a.add(x, y);
        }
        assert_eq!(a.rate(), Some(0.75));
        // p1 = 0.75, p2 = 0.5: chance 0.5, kappa (0.75 - 0.5) / 0.5
        assert!((a.kappa().unwrap() - 0.5).abs() < 1e-12);
        let mut all = Agreement::default();
        all.add(true, true);
        assert_eq!(all.kappa(), None);
    }

    #[test]
    fn verdict_schema_matches_the_verdict_and_scores_pass_by_the_lowest() {
        let v = Verdict {
            reason: "clear".into(),
            scores: Scores {
                is_question: 9,
                answerable: 8,
                uses_key_concepts: 5,
                answer_correct: 7,
            },
        };
        let j = serde_json::to_value(&v).unwrap();
        pw_llm::schema::validate(&j, &verdict_schema()).unwrap();
        pw_llm::schema::check(&verdict_schema()).unwrap();
        assert!(!v.passes(6) && v.passes(5));
        assert_eq!(v.failing(6), "uses_key_concepts 5");
        // the reason is written first
        let text = serde_json::to_string(&j).unwrap();
        assert!(text.find("reason") < text.find("scores"), "{text}");
        let bad = serde_json::json!({"reason": "x", "scores": {"is_question": 11, "answerable": 1,
                                     "uses_key_concepts": 1, "answer_correct": 1}});
        assert!(pw_llm::schema::validate(&bad, &verdict_schema()).is_err());
    }
}

#[cfg(test)]
mod hand_labelled_tests {
    use super::*;

    /// The detectors on the hand-labelled sample. They were written before the sample was
    /// labelled; the bounds hold what they measured then (every good pair passes; 13 of the 27
    /// bad ones are caught, with or without Debian's word list; the rest are fluent but wrong,
    /// which only a judge can see), so a change that makes them worse fails here.
    #[test]
    fn detectors_pass_the_good_pairs_and_catch_the_malformed_ones() {
        let sample = hand_labelled();
        assert!(sample.len() >= 30 && sample.iter().filter(|l| l.good).count() >= 10);
        let limits = DetectorLimits {
            question_form: true,
            max_repetition: 0.3,
            max_echo: 0.5,
            min_dictionary_share: 0.8,
        };
        let words = Path::new("/usr/share/dict/words");
        let dict = if words.exists() {
            Some(Dictionary::load(words).unwrap())
        } else {
            eprintln!(
                "skipping the dictionary detector: {} is missing",
                words.display()
            );
            None
        };
        let mut a = Agreement::default();
        for l in &sample {
            let d = detect(&limits, dict.as_ref(), &l.question, &l.answer);
            eprintln!("{:>5} {:<14} {:?}", l.good, l.id, d);
            a.add(l.good, d.is_none());
        }
        eprintln!("{}", a.describe());
        assert_eq!(a.first_only, 0, "a good pair was removed: {a:?}");
        assert!(a.both_fail >= 13, "{a:?}");
    }
}
