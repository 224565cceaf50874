//! A generator of GSM8K-style multi-step arithmetic word problems with exact reference steps.
//!
//! A story starts with a quantity and applies events to it, one sentence each: more arrive,
//! some leave, the amount grows a few times, it is split into equal groups, whole containers
//! of a given size come or go (two steps: the container total, then the change). Every event
//! is one or two `a op b = c` lines of the reference solution, so the step-level truth of any
//! solution is exact (see [`crate::problem::prefix_truth`]). Themes and sentences are data
//! tables; the difficulty knobs are in [`GenConfig`]. [`Splits`] are the miniature's SFT,
//! training, validation and test sets.

use crate::problem::{Op, Problem, Step};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Difficulty knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenConfig {
    /// Reasoning steps per problem (the final answer line comes on top), 2-6 as in the issue.
    pub min_steps: usize,
    pub max_steps: usize,
    /// Starting quantity drawn from 2..=max_start.
    pub max_start: i64,
    /// Amounts added or removed drawn from 2..=max_amount.
    pub max_amount: i64,
    /// Growth and split factors drawn from 2..=max_factor.
    pub max_factor: i64,
    /// No quantity (intermediate or final) exceeds this.
    pub max_value: i64,
    /// Relative weights of the event kinds: add, remove, grow, split, containers in,
    /// containers out.
    pub event_weights: [u32; 6],
}

impl GenConfig {
    /// The ranges the generator relies on; `Err` names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_steps < 1 || self.max_steps < self.min_steps {
            return Err(format!(
                "min_steps {} / max_steps {}: need 1 <= min <= max",
                self.min_steps, self.max_steps
            ));
        }
        if self.max_value < 20 {
            return Err(format!(
                "max_value {} is too small (at least 20)",
                self.max_value
            ));
        }
        for (name, v) in [
            ("max_start", self.max_start),
            ("max_amount", self.max_amount),
            ("max_factor", self.max_factor),
        ] {
            if v < 2 {
                return Err(format!("{name} {v} must be at least 2"));
            }
        }
        if self.event_weights.iter().all(|&w| w == 0) {
            return Err("event_weights are all 0".into());
        }
        Ok(())
    }
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            min_steps: 2,
            max_steps: 6,
            max_start: 40,
            max_amount: 30,
            max_factor: 5,
            max_value: 999,
            event_weights: [4, 4, 2, 2, 2, 1],
        }
    }
}

struct Theme {
    item: &'static str,
    container: &'static str,
    gain: &'static [&'static str],
    lose: &'static [&'static str],
}

/// Stories: what is counted, what it comes in, and verbs for gaining and losing it.
const THEMES: &[Theme] = &[
    Theme {
        item: "apples",
        container: "bags",
        gain: &["picks", "buys"],
        lose: &["eats", "sells"],
    },
    Theme {
        item: "cookies",
        container: "boxes",
        gain: &["bakes", "buys"],
        lose: &["eats", "sells"],
    },
    Theme {
        item: "books",
        container: "crates",
        gain: &["buys", "finds"],
        lose: &["sells", "donates"],
    },
    Theme {
        item: "marbles",
        container: "jars",
        gain: &["wins", "finds"],
        lose: &["loses", "trades"],
    },
    Theme {
        item: "stickers",
        container: "packs",
        gain: &["buys", "wins"],
        lose: &["uses", "trades"],
    },
    Theme {
        item: "eggs",
        container: "cartons",
        gain: &["collects", "buys"],
        lose: &["cracks", "sells"],
    },
    Theme {
        item: "pencils",
        container: "boxes",
        gain: &["buys", "finds"],
        lose: &["loses", "breaks"],
    },
    Theme {
        item: "coins",
        container: "purses",
        gain: &["earns", "finds"],
        lose: &["spends", "loses"],
    },
];

const NAMES: &[&str] = &[
    "Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hal", "Ivy", "Jon", "Kim", "Leo", "Mia",
    "Ned", "Olga", "Pam",
];

/// Every word the stories use (for a tokenizer's vocabulary).
pub fn vocabulary() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = NAMES.to_vec();
    for t in THEMES {
        v.push(t.item);
        v.push(t.container);
        v.extend(t.gain);
        v.extend(t.lose);
    }
    v.extend(FIXED_WORDS);
    v.sort_unstable();
    v.dedup();
    v
}

const FIXED_WORDS: &[&str] = &[
    "has", "more", "gives", "to", "Then", "the", "number", "of", "grows", "times", "splits",
    "into", "equal", "groups", "and", "keeps", "one", "group", "with", "each", "away", "How",
    "many", "does", "have", "now", "gets",
];

/// Generates `n` problems; problem `i` depends only on (`seed`, `i`), so a larger set extends
/// a smaller one.
pub fn generate_problems(cfg: &GenConfig, n: usize, seed: u64, id_prefix: &str) -> Vec<Problem> {
    (0..n)
        .map(|i| {
            let mut rng =
                StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            one_problem(cfg, &mut rng, format!("{id_prefix}{i}"))
        })
        .collect()
}

fn one_problem(cfg: &GenConfig, rng: &mut StdRng, id: String) -> Problem {
    let theme = THEMES.choose(rng).expect("themes");
    let mut names = NAMES.to_vec();
    let who = pick_remove(&mut names, rng);
    let other = pick_remove(&mut names, rng);
    let target = rng.random_range(cfg.min_steps..=cfg.max_steps.max(cfg.min_steps));
    loop {
        let start = rng.random_range(2..=cfg.max_start.max(2));
        let mut cur = start;
        let mut sentences = vec![format!("{who} has {start} {}.", theme.item)];
        let mut steps: Vec<Step> = Vec::new();
        let mut tries = 0;
        while steps.len() < target && tries < 50 {
            tries += 1;
            let room = target - steps.len();
            let kind = weighted(rng, &cfg.event_weights);
            let Some((sentence, new_steps)) = event(cfg, rng, theme, who, other, cur, kind, room)
            else {
                continue;
            };
            cur = new_steps.last().expect("an event has a step").c;
            sentences.push(sentence);
            steps.extend(new_steps);
        }
        if steps.len() != target {
            continue; // a dead end (e.g. a prime quantity with only splits left): draw again
        }
        sentences.push(format!("How many {} does {who} have now?", theme.item));
        return Problem {
            id,
            question: sentences.join(" "),
            steps: steps.iter().map(Step::to_string).collect(),
            answer: cur.to_string(),
        };
    }
}

fn pick_remove(names: &mut Vec<&'static str>, rng: &mut StdRng) -> &'static str {
    let i = rng.random_range(0..names.len());
    names.swap_remove(i)
}

fn weighted(rng: &mut StdRng, w: &[u32; 6]) -> usize {
    let total: u32 = w.iter().sum();
    let mut x = rng.random_range(0..total.max(1));
    for (i, &wi) in w.iter().enumerate() {
        if x < wi {
            return i;
        }
        x -= wi;
    }
    0
}

/// One event on the quantity `cur`: its sentence and its one or two steps, or `None` when the
/// kind does not fit (no room for two steps, a value out of range, nothing divides).
#[allow(clippy::too_many_arguments)] // the story's parts are all needed to phrase it
fn event(
    cfg: &GenConfig,
    rng: &mut StdRng,
    t: &Theme,
    who: &str,
    other: &str,
    cur: i64,
    kind: usize,
    room: usize,
) -> Option<(String, Vec<Step>)> {
    let step = |a: i64, op: Op, b: i64| Step {
        a,
        op,
        b,
        c: op.apply(a, b).expect("valid by construction"),
    };
    let amount = |rng: &mut StdRng| rng.random_range(2..=cfg.max_amount.max(2));
    match kind {
        0 => {
            let n = amount(rng);
            (cur + n <= cfg.max_value).then_some(())?;
            let s = if rng.random_bool(0.5) {
                format!("{who} {} {n} more {}.", t.gain.choose(rng)?, t.item)
            } else {
                format!("{other} gives {who} {n} more {}.", t.item)
            };
            Some((s, vec![step(cur, Op::Add, n)]))
        }
        1 => {
            (cur > 2).then_some(())?;
            let n = rng.random_range(1..cur).max(1);
            let s = if rng.random_bool(0.5) {
                format!("{who} {} {n} {}.", t.lose.choose(rng)?, t.item)
            } else {
                format!("{who} gives {n} {} to {other}.", t.item)
            };
            Some((s, vec![step(cur, Op::Sub, n)]))
        }
        2 => {
            let f = rng.random_range(2..=cfg.max_factor.max(2));
            (cur * f <= cfg.max_value).then_some(())?;
            let s = format!("Then the number of {} {who} has grows {f} times.", t.item);
            Some((s, vec![step(cur, Op::Mul, f)]))
        }
        3 => {
            let divisors: Vec<i64> = (2..=cfg.max_factor.max(2))
                .filter(|d| cur % d == 0 && cur / d >= 1)
                .collect();
            let &d = divisors.choose(rng)?;
            let s = format!(
                "{who} splits the {} into {d} equal groups and keeps one group.",
                t.item
            );
            Some((s, vec![step(cur, Op::Div, d)]))
        }
        4 | 5 => {
            (room >= 2).then_some(())?;
            let a = rng.random_range(2..=6);
            let b = rng.random_range(2..=9);
            let p = a * b;
            if kind == 4 {
                (cur + p <= cfg.max_value).then_some(())?;
                let s = format!("{who} gets {a} {} with {b} {} each.", t.container, t.item);
                Some((s, vec![step(a, Op::Mul, b), step(cur, Op::Add, p)]))
            } else {
                (cur > p).then_some(())?;
                let s = format!(
                    "{who} gives away {a} {} with {b} {} each.",
                    t.container, t.item
                );
                Some((s, vec![step(a, Op::Mul, b), step(cur, Op::Sub, p)]))
            }
        }
        _ => None,
    }
}

/// The miniature's problem sets, from disjoint seeds; no question of the held-out splits
/// (validation, test) is trained on, since short problems can repeat.
pub struct Splits {
    pub sft: Vec<Problem>,
    pub train: Vec<Problem>,
    pub val: Vec<Problem>,
    pub test: Vec<Problem>,
}

/// Sizes of the [`Splits`].
pub struct SplitSizes {
    pub sft: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// The seeds of the splits, as offsets of the run's seed (fixed, so a resumed run regenerates
/// exactly the problems its ledgers hold).
pub const VAL_SEED: u64 = 0x7a2;
pub const TEST_SEED: u64 = 0x7e5;

impl Splits {
    pub fn generate(cfg: &GenConfig, n: &SplitSizes, seed: u64) -> Splits {
        let val = generate_problems(cfg, n.val, seed ^ VAL_SEED, "val-");
        let test = generate_problems(cfg, n.test, seed ^ TEST_SEED, "test-");
        let held_out: HashSet<&str> = val
            .iter()
            .chain(&test)
            .map(|p| p.question.as_str())
            .collect();
        let unseen = |v: Vec<Problem>| -> Vec<Problem> {
            v.into_iter()
                .filter(|p| !held_out.contains(p.question.as_str()))
                .collect()
        };
        let sft = unseen(generate_problems(cfg, n.sft, seed ^ 0x5f7, "sft-"));
        let train = unseen(generate_problems(cfg, n.train, seed ^ 0x7a1, "train-"));
        Splits {
            sft,
            train,
            val,
            test,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Solution, prefix_truth};

    #[test]
    fn generated_problems_are_consistent_and_their_reference_is_good_everywhere() {
        let cfg = GenConfig::default();
        let ps = generate_problems(&cfg, 500, 3, "g");
        for p in &ps {
            let gold = p.gold_steps().expect("reference steps parse");
            assert!(
                (cfg.min_steps..=cfg.max_steps).contains(&gold.len()),
                "{p:?}"
            );
            assert!(
                gold.iter()
                    .all(|s| s.is_arithmetically_right() && s.c >= 0 && s.c <= cfg.max_value)
            );
            assert_eq!(gold.last().unwrap().c.to_string(), p.answer);
            let sol = Solution::parse(&p.answer_text());
            assert_eq!(prefix_truth(p, &sol).unwrap(), vec![true; gold.len() + 1]);
            // Every number a step uses comes from the story or an earlier step.
            let mut known: Vec<i64> = p
                .question
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            for s in &gold {
                assert!(known.contains(&s.a) && known.contains(&s.b), "{s} in {p:?}");
                known.push(s.c);
            }
        }
        // Deterministic and prefix-stable.
        assert_eq!(generate_problems(&cfg, 10, 3, "g")[..], ps[..10]);
        assert_ne!(generate_problems(&cfg, 10, 4, "g"), ps[..10].to_vec());
    }

    #[test]
    fn difficulty_knobs_bound_the_steps() {
        let cfg = GenConfig {
            min_steps: 3,
            max_steps: 3,
            ..Default::default()
        };
        assert!(
            generate_problems(&cfg, 100, 1, "")
                .iter()
                .all(|p| p.steps.len() == 3)
        );
    }
}
