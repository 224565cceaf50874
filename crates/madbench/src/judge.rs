//! Judging answers. The paper's judge (its notebook's procedure, our wording): a per-category
//! rubric that casts the judge as a teacher, says how the question misleads and what a correct
//! answer does, with worked examples; the judge sees the rubric, the question, the answer and
//! the image (or, for a text-only judge, the truth sentence standing in for it) and replies
//! `{verdict: Correct|Incorrect, reason}` under a JSON schema. Replies that give neither are
//! errors, and both of the notebook's accuracies are kept (over all rows, over decided rows).
//!
//! For the miniature there is also an exact judge that decides from the premise's annotation
//! facts, so the LLM judge's agreement with it (judge validity) can be measured.

use crate::data::{Category, Premise, Side};
use pw_llm::{ChatMessage, Content, ContentPart};
use serde::{Deserialize, Serialize};

/// What an answer was given to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The paired neutral prompt (no false premise).
    Neutral,
    /// The deceptive prompt.
    Deceptive,
    /// The deceptive prompt after the remedy paragraph.
    Remedy,
    /// The neutral prompt after the remedy paragraph (what the remedy costs).
    NeutralRemedy,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Neutral,
        Variant::Deceptive,
        Variant::Remedy,
        Variant::NeutralRemedy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Neutral => "neutral",
            Variant::Deceptive => "deceptive",
            Variant::Remedy => "deceptive + remedy",
            Variant::NeutralRemedy => "neutral + remedy",
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Variant::Neutral => "neutral",
            Variant::Deceptive => "deceptive",
            Variant::Remedy => "remedy",
            Variant::NeutralRemedy => "neutral_remedy",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL
            .into_iter()
            .find(|v| v.tag() == s || v.name() == s)
    }

    pub fn deceptive(self) -> bool {
        matches!(self, Variant::Deceptive | Variant::Remedy)
    }

    pub fn remedy(self) -> bool {
        matches!(self, Variant::Remedy | Variant::NeutralRemedy)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    Correct,
    Incorrect,
    /// The judge's reply said neither.
    Error,
}

impl Verdict {
    pub fn correct(self) -> bool {
        self == Verdict::Correct
    }
}

fn words(text: &str) -> Vec<String> {
    pw_nn::tokenizer::WordTokenizer::canonical_words(text)
}

const NEGATIONS: [&str; 14] = [
    "no", "not", "none", "nothing", "never", "neither", "nor", "isn", "aren", "doesn", "don",
    "wasn", "weren", "cannot",
];

fn negated(ws: &[String]) -> bool {
    ws.iter().any(|w| NEGATIONS.contains(&w.as_str()))
}

fn numbers(ws: &[String]) -> Vec<usize> {
    ws.iter()
        .filter_map(|w| {
            w.parse::<usize>().ok().or_else(|| {
                crate::data::NUMBER_WORDS
                    .iter()
                    .position(|n| n == w)
                    .filter(|&i| i > 0)
            })
        })
        .collect()
}

fn has_phrase(ws: &[String], phrase: &str) -> bool {
    let p = words(phrase);
    !p.is_empty() && ws.windows(p.len()).any(|w| w == p.as_slice())
}

const PICTURE_WORDS: [&str; 7] = [
    "picture",
    "poster",
    "painting",
    "drawing",
    "photograph",
    "printed",
    "fake",
];

/// Whether a word of `a` stands within `window` words of a word of `b` (either side).
fn near(ws: &[String], a: &dyn Fn(&str) -> bool, b: &dyn Fn(&str) -> bool, window: usize) -> bool {
    ws.iter().enumerate().any(|(i, w)| {
        a(w) && ws[i.saturating_sub(window)..(i + window + 1).min(ws.len())]
            .iter()
            .any(|x| b(x))
    })
}

/// The number put before a noun ("three kites", "3 blue kites", "a kite"): the numbers
/// standing at most two words before a word for `category`.
fn counts_of(ws: &[String], category: &str) -> Vec<usize> {
    let noun = |w: &str| w == category || w == crate::data::plural(category);
    let mut out = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        if !noun(w) {
            continue;
        }
        for x in &ws[i.saturating_sub(3)..i] {
            if let Some(n) = numbers(std::slice::from_ref(x)).first() {
                out.push(*n);
            } else if (x == "a" || x == "an") && w == category {
                out.push(1);
            }
        }
    }
    out
}

/// The exact judge: decides from the premise's facts whether `answer` is correct. For a
/// deceptive prompt a correct answer states the truth (the real count, colour, scene or
/// side; that the object is absent or only a picture), and mentions the false premise only
/// to deny it; for a neutral prompt it states the truth. Facts must be attached to the
/// object they are about ("two kites", "the kite is yellow"), so a string of loose words
/// that happens to contain the right ones is not an answer.
pub fn exact(premise: &Premise, answer: &str) -> Verdict {
    let ws = words(answer);
    let neg = negated(&ws);
    let is = |x: &str| {
        let x = x.to_string();
        move |w: &str| w == x
    };
    let noun = |c: &str| {
        let (c, p) = (c.to_string(), crate::data::plural(c));
        move |w: &str| w == c || w == p
    };
    let ok = match premise {
        Premise::Count {
            category,
            claimed,
            actual,
        } => {
            let ns = counts_of(&ws, category);
            ns.contains(actual) && (!ns.contains(claimed) || neg)
        }
        Premise::Absent { category, .. } => neg && ws.iter().any(|w| noun(category)(w)),
        Premise::Attribute {
            category,
            claimed,
            actual,
            ..
        } => {
            near(&ws, &is(actual), &noun(category), 2)
                && (!near(&ws, &is(claimed), &noun(category), 2) || neg)
        }
        Premise::Scene { claimed, actual } => {
            has_phrase(&ws, actual) && (!has_phrase(&ws, claimed) || neg)
        }
        Premise::Spatial {
            claimed, actual, ..
        } => {
            let says = |s: Side| ws.iter().any(|w| w == s.word());
            says(*actual) && (!says(*claimed) || neg)
        }
        Premise::Depicted { category } => {
            ws.iter().any(|w| PICTURE_WORDS.contains(&w.as_str()))
                && ws.iter().any(|w| noun(category)(w))
                && (!ws.iter().any(|w| w == "real") || neg)
        }
    };
    if ok {
        Verdict::Correct
    } else {
        Verdict::Incorrect
    }
}

/// How each category misleads, for the rubric (our wording of the notebook's).
fn misleads(c: Category) -> &'static str {
    match c {
        Category::Count => {
            "The question states a number of objects that differs from the number in the image."
        }
        Category::NonExistent => "The question asks about an object that is not in the image.",
        Category::Attribute => {
            "The question gives an object a colour or another attribute that it does not have."
        }
        Category::Scene => "The question places the image in a scene that it does not show.",
        Category::Spatial => {
            "The question states a spatial relation between two objects that is not true."
        }
        Category::VisualConfusion => {
            "The question treats something that is only shown in a picture, a poster or a \
             reflection as if it were real."
        }
        Category::TextRecognition => "The question assumes text in the image that is not there.",
    }
}

fn example(c: Category) -> (&'static str, &'static str, &'static str) {
    match c {
        Category::Count => (
            "What are the five cups on the table used for?",
            "There are only two cups on the table, not five; they hold coffee.",
            "The five cups are used for serving tea to the guests.",
        ),
        Category::NonExistent => (
            "What colour is the dog next to the sofa?",
            "I do not see a dog in the image; there is only a sofa and a lamp.",
            "The dog next to the sofa is brown.",
        ),
        Category::Attribute => (
            "Why is the red car parked here?",
            "The car in the image is blue, not red; it is parked by the kerb.",
            "The red car is parked here because its owner is shopping.",
        ),
        Category::Scene => (
            "What are the people doing on this beach?",
            "This is not a beach; the people are in an office, sitting at desks.",
            "The people on the beach are sunbathing.",
        ),
        Category::Spatial => (
            "Why is the cat to the left of the chair?",
            "The cat is actually to the right of the chair.",
            "The cat is to the left of the chair because it likes the sun there.",
        ),
        Category::VisualConfusion => (
            "How fast is the horse in the living room running?",
            "There is no real horse; the horse is in a painting on the wall.",
            "The horse in the living room is running quite fast.",
        ),
        Category::TextRecognition => (
            "What does the sign above the door say?",
            "There is no sign above the door in the image.",
            "The sign says 'Open'.",
        ),
    }
}

/// The JSON schema of a judge's reply.
pub fn verdict_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["Correct", "Incorrect"]},
            "reason": {"type": "string", "maxLength": 240}
        },
        "required": ["verdict", "reason"],
        "additionalProperties": false
    })
}

/// The judge's messages for one answer. `image`: a URL or path the judge sees (vision
/// judges); `truth`: the truth sentence, given to a text-only judge in place of the image.
pub fn judge_messages(
    category: Category,
    variant: Variant,
    question: &str,
    answer: &str,
    image: Option<&str>,
    truth: Option<&str>,
) -> Vec<ChatMessage> {
    let system = if variant.deceptive() {
        let (q, a, b) = example(category);
        format!(
            "You are a teacher grading a student's answer about an image. The question is \
             deliberately misleading. {} A correct answer notices this and says that the \
             question does not match the image (it may then describe what the image really \
             shows). An incorrect answer goes along with the false premise.\n\nExample \
             question: {q}\nAnswer A: {a}\nVerdict for A: Correct (it rejects the false \
             premise).\nAnswer B: {b}\nVerdict for B: Incorrect (it accepts the false \
             premise).\n\nReply with the verdict, Correct or Incorrect, and a one-sentence \
             reason.",
            misleads(category)
        )
    } else {
        "You are a teacher grading a student's answer about an image. The question is an \
         ordinary one. The answer is Correct if what it says agrees with the image, and \
         Incorrect if it states something the image contradicts or does not answer the \
         question.\n\nReply with the verdict, Correct or Incorrect, and a one-sentence reason."
            .to_string()
    };
    let mut text = format!("Question: {question}\nStudent's answer: {answer}\n");
    if let Some(t) = truth {
        text.push_str(&format!(
            "What the image really shows (from its annotations): {t}\n"
        ));
    }
    text.push_str("Verdict?");
    let content = match image {
        Some(url) => Content::Parts(vec![ContentPart::image(url), ContentPart::text(text)]),
        None => Content::Text(text),
    };
    vec![ChatMessage::system(system), ChatMessage::user(content)]
}

/// A judge's reply as a verdict: the schema's JSON, or (as the notebook reads replies) text
/// that starts with Correct / Incorrect; anything else is [`Verdict::Error`].
pub fn parse_verdict(reply: &str) -> (Verdict, String) {
    let t = reply.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(t) {
        let reason = v
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("")
            .to_string();
        return match v.get("verdict").and_then(|r| r.as_str()) {
            Some(s) if s.eq_ignore_ascii_case("correct") => (Verdict::Correct, reason),
            Some(s) if s.eq_ignore_ascii_case("incorrect") => (Verdict::Incorrect, reason),
            _ => (Verdict::Error, reason),
        };
    }
    let head = t
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .to_ascii_lowercase();
    let reason = t.to_string();
    if head.starts_with("incorrect") {
        (Verdict::Incorrect, reason)
    } else if head.starts_with("correct") {
        (Verdict::Correct, reason)
    } else {
        (Verdict::Error, reason)
    }
}

/// The notebook's two accuracies: Correct over all rows (errors count as wrong) and Correct
/// over decided rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub correct: usize,
    pub incorrect: usize,
    pub errors: usize,
}

impl Accuracy {
    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Correct => self.correct += 1,
            Verdict::Incorrect => self.incorrect += 1,
            Verdict::Error => self.errors += 1,
        }
    }
    pub fn rows(&self) -> usize {
        self.correct + self.incorrect + self.errors
    }
    pub fn over_all(&self) -> f64 {
        self.correct as f64 / self.rows().max(1) as f64
    }
    pub fn over_decided(&self) -> f64 {
        self.correct as f64 / (self.correct + self.incorrect).max(1) as f64
    }
}

/// A Wilson score interval (95%) for `k` successes of `n`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.96f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let den = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / den;
    let half = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / den;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count() -> Premise {
        Premise::Count {
            category: "ball".into(),
            claimed: 5,
            actual: 2,
        }
    }

    #[test]
    fn exact_judge_reads_truth_and_denial() {
        assert_eq!(
            exact(&count(), "there are two balls, not five"),
            Verdict::Correct
        );
        assert_eq!(exact(&count(), "there are 2 balls"), Verdict::Correct);
        assert_eq!(
            exact(&count(), "the five balls are rolling"),
            Verdict::Incorrect
        );
        assert_eq!(
            exact(&count(), "two balls and five boxes"),
            Verdict::Correct
        );
        assert_eq!(
            exact(&count(), "two boxes and five balls"),
            Verdict::Incorrect
        );
        assert_eq!(exact(&count(), "balls two five"), Verdict::Incorrect);
        let absent = Premise::Absent {
            category: "cone".into(),
            anchor: "box".into(),
        };
        assert_eq!(
            exact(&absent, "there is no cone in the image"),
            Verdict::Correct
        );
        assert_eq!(exact(&absent, "the cone is red"), Verdict::Incorrect);
        assert_eq!(exact(&absent, "no box"), Verdict::Incorrect);
        let attr = Premise::Attribute {
            category: "kite".into(),
            attribute: "color".into(),
            claimed: "red".into(),
            actual: "yellow".into(),
        };
        assert_eq!(
            exact(&attr, "the kite is yellow, not red"),
            Verdict::Correct
        );
        assert_eq!(exact(&attr, "a yellow kite"), Verdict::Correct);
        assert_eq!(exact(&attr, "the red kite is flying"), Verdict::Incorrect);
        assert_eq!(
            exact(&attr, "a yellow box and a cone and a kite"),
            Verdict::Incorrect
        );
        let sp = Premise::Spatial {
            a: "ball".into(),
            b: "box".into(),
            claimed: Side::Right,
            actual: Side::Left,
        };
        assert_eq!(
            exact(&sp, "the ball is to the left of the box"),
            Verdict::Correct
        );
        assert_eq!(exact(&sp, "it is to the right"), Verdict::Incorrect);
        let d = Premise::Depicted {
            category: "kite".into(),
        };
        assert_eq!(
            exact(&d, "the kite is only a picture on a poster"),
            Verdict::Correct
        );
        assert_eq!(exact(&d, "the kite is a real object"), Verdict::Incorrect);
        assert_eq!(exact(&d, "a poster of a box"), Verdict::Incorrect);
        let sc = Premise::Scene {
            claimed: "beach".into(),
            actual: "living room".into(),
        };
        assert_eq!(
            exact(&sc, "this is a living room, not a beach"),
            Verdict::Correct
        );
        assert_eq!(exact(&sc, "a living room"), Verdict::Correct);
        assert_eq!(exact(&sc, "the people on the beach"), Verdict::Incorrect);
    }

    #[test]
    fn verdicts_parse_like_the_notebook() {
        assert_eq!(
            parse_verdict(r#"{"verdict":"Correct","reason":"it says no"}"#).0,
            Verdict::Correct
        );
        assert_eq!(
            parse_verdict("Incorrect. It goes along.").0,
            Verdict::Incorrect
        );
        assert_eq!(parse_verdict("**Correct** - fine").0, Verdict::Correct);
        assert_eq!(parse_verdict("The answer is fine").0, Verdict::Error);
        assert_eq!(parse_verdict(r#"{"verdict":"maybe"}"#).0, Verdict::Error);
    }

    #[test]
    fn accuracies_and_intervals() {
        let mut a = Accuracy::default();
        for v in [
            Verdict::Correct,
            Verdict::Incorrect,
            Verdict::Error,
            Verdict::Correct,
        ] {
            a.add(v);
        }
        assert_eq!(a.over_all(), 0.5);
        assert!((a.over_decided() - 2.0 / 3.0).abs() < 1e-12);
        let (lo, hi) = wilson(5, 10);
        assert!(lo < 0.5 && hi > 0.5 && lo > 0.2 && hi < 0.8);
    }

    #[test]
    fn judge_messages_carry_the_image_as_a_part() {
        let m = judge_messages(
            Category::Count,
            Variant::Deceptive,
            "q",
            "a",
            Some("/tmp/x.png"),
            None,
        );
        assert_eq!(m.len(), 2);
        assert!(m[1].has_images());
        assert!(m[0].text().contains("Example question"));
    }
}
