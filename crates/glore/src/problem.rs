//! Problems and solutions in the GSM8K format, and the exact step-level ground truth of the
//! generated domain.
//!
//! A GSM8K record is `{"question": str, "answer": "step\nstep\n#### 42"}`: one reasoning step per
//! line, then the final answer after `####`. In the generated domain every step is one
//! `a op b = c` line, so a solution's steps can be checked exactly against the problem's own
//! (gold) steps: a prefix is good when every step so far computes the quantity the story defines
//! at that point, with the right arithmetic — the gold answer is then still reachable.

use pw_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// An arithmetic operation of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }
    fn from_symbol(c: char) -> Option<Op> {
        Some(match c {
            '+' => Op::Add,
            '-' => Op::Sub,
            '*' | 'x' | '×' => Op::Mul,
            '/' | '÷' => Op::Div,
            _ => return None,
        })
    }
    /// `a op b`, or `None` when it is not a whole number (division with a remainder, by zero).
    pub fn apply(self, a: i64, b: i64) -> Option<i64> {
        match self {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div => (b != 0 && a % b == 0).then(|| a / b),
        }
    }
    fn commutes(self) -> bool {
        matches!(self, Op::Add | Op::Mul)
    }
}

/// One `a op b = c` line. `c` is what the line claims, right or wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub a: i64,
    pub op: Op,
    pub b: i64,
    pub c: i64,
}

impl Step {
    pub fn is_arithmetically_right(&self) -> bool {
        self.op.apply(self.a, self.b) == Some(self.c)
    }

    /// Parses `12 + 7 = 19` (spaces optional; `x`/`×`/`÷` accepted).
    pub fn parse(line: &str) -> Option<Step> {
        let (lhs, rhs) = line.split_once('=')?;
        let c = rhs.trim().parse().ok()?;
        let lhs = lhs.trim();
        // The operator is the first operator character after the first operand's first char
        // (so a leading minus sign belongs to the operand).
        let (pos, op) = lhs
            .char_indices()
            .skip(1)
            .find_map(|(i, ch)| Op::from_symbol(ch).map(|op| (i, op)))?;
        let a = lhs[..pos].trim().parse().ok()?;
        let b = lhs[pos + op_len(&lhs[pos..])..].trim().parse().ok()?;
        Some(Step { a, op, b, c })
    }
}

fn op_len(s: &str) -> usize {
    s.chars().next().map(char::len_utf8).unwrap_or(1)
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} = {}", self.a, self.op.symbol(), self.b, self.c)
    }
}

/// The marker line of the final answer.
pub const ANSWER_MARK: &str = "####";

/// A problem with its reference solution: reasoning lines and the final answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub id: String,
    pub question: String,
    /// Reasoning lines of the reference solution (without the final answer line).
    pub steps: Vec<String>,
    /// The final answer, normalised by [`normalize_answer`].
    pub answer: String,
}

impl Problem {
    /// The GSM8K `answer` field: the steps, then `#### N`.
    pub fn answer_text(&self) -> String {
        let mut s = String::new();
        for step in &self.steps {
            s.push_str(step);
            s.push('\n');
        }
        s.push_str(ANSWER_MARK);
        s.push(' ');
        s.push_str(&self.answer);
        s
    }

    /// The gold steps, when every reference line is an `a op b = c` step (the generated domain).
    pub fn gold_steps(&self) -> Option<Vec<Step>> {
        self.steps.iter().map(|l| Step::parse(l)).collect()
    }
}

/// Answer strings compare after removing thousands separators, a leading `$`, a trailing
/// full stop and a `.0`/`.00` fraction.
pub fn normalize_answer(s: &str) -> String {
    let mut t: String = s.trim().chars().filter(|c| *c != ',').collect();
    if let Some(rest) = t.strip_prefix('$') {
        t = rest.to_string();
    }
    while t.ends_with('.') {
        t.pop();
    }
    if let Some((int, frac)) = t.split_once('.')
        && !frac.is_empty()
        && frac.chars().all(|c| c == '0')
    {
        t = int.to_string();
    }
    t.trim().to_string()
}

/// A solution text split into reasoning lines and the final answer (`None` when it has no
/// `#### N` line, or the model wrote `The answer is N` instead, which is accepted too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    pub steps: Vec<String>,
    pub answer: Option<String>,
}

impl Solution {
    pub fn parse(text: &str) -> Solution {
        let mut steps = Vec::new();
        let mut answer = None;
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() {
                continue;
            }
            if let Some(rest) = l.strip_prefix(ANSWER_MARK) {
                answer = Some(normalize_answer(rest));
                break;
            }
            if let Some(rest) = l
                .strip_prefix("The answer is")
                .or_else(|| l.strip_prefix("the answer is"))
            {
                answer = Some(normalize_answer(rest));
                break;
            }
            steps.push(l.to_string());
        }
        Solution { steps, answer }
    }

    pub fn to_text(&self) -> String {
        let mut s = self.steps.join("\n");
        if let Some(a) = &self.answer {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(ANSWER_MARK);
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// The solution's lines as the steps a step-level model scores: the reasoning lines and
    /// then the final answer line (when there is one).
    pub fn lines(&self) -> Vec<String> {
        let mut v = self.steps.clone();
        if let Some(a) = &self.answer {
            v.push(format!("{ANSWER_MARK} {a}"));
        }
        v
    }

    pub fn is_correct(&self, gold: &str) -> bool {
        self.answer.as_deref() == Some(gold)
    }
}

/// Exact step-level ground truth of a solution's lines (reasoning lines, then the final answer
/// line) against the problem's gold steps: entry `i` says whether the prefix of lines `0..=i`
/// is good. A reasoning line is good when it parses as `a op b = c`, is arithmetically right,
/// and computes the gold step at the same position (same operands, either order for + and *,
/// same result); the answer line is good when the answer is the gold one. Once a prefix is bad
/// every longer prefix is bad. `None` when the problem's own steps do not parse (not from the
/// generated domain).
pub fn prefix_truth(problem: &Problem, solution: &Solution) -> Option<Vec<bool>> {
    let gold = problem.gold_steps()?;
    let mut out = Vec::with_capacity(solution.steps.len() + 1);
    let mut good = true;
    for (i, line) in solution.steps.iter().enumerate() {
        good = good
            && match (Step::parse(line), gold.get(i)) {
                (Some(s), Some(g)) => step_matches(&s, g),
                _ => false,
            };
        out.push(good);
    }
    if let Some(a) = &solution.answer {
        // The answer is only good after exactly the gold steps, all good.
        good = good && solution.steps.len() == gold.len() && *a == problem.answer;
        out.push(good);
    }
    Some(out)
}

fn step_matches(s: &Step, g: &Step) -> bool {
    if !s.is_arithmetically_right() || s.c != g.c || s.op != g.op {
        return false;
    }
    (s.a == g.a && s.b == g.b) || (g.op.commutes() && s.a == g.b && s.b == g.a)
}

/// Reads a GSM8K-format JSONL file: `question` and `answer` are required, `id` optional (the
/// line number otherwise). Errors name the file and line.
pub fn read_gsm8k(path: &Path) -> Result<Vec<Problem>> {
    #[derive(Deserialize)]
    struct Row {
        #[serde(default)]
        id: Option<serde_json::Value>,
        question: String,
        answer: String,
    }
    let mut out = Vec::new();
    pw_core::jsonl::for_each_line(path, |line_no, line| {
        let row: Row = serde_json::from_str(line).map_err(|e| {
            Error::corrupt(
                path,
                line_no,
                format!("not a GSM8K record ({e}); expected {{\"question\": ..., \"answer\": \"...\\n#### N\"}}"),
            )
        })?;
        let sol = Solution::parse(&row.answer);
        let Some(answer) = sol.answer else {
            return Err(Error::corrupt(
                path,
                line_no,
                "the answer has no final `#### N` line",
            ));
        };
        let id = match row.id {
            Some(serde_json::Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => format!("{line_no}"),
        };
        out.push(Problem {
            id,
            question: row.question,
            steps: sol.steps,
            answer,
        });
        Ok(())
    })?;
    if out.is_empty() {
        return Err(Error::invalid(path, "no problems in the file"));
    }
    Ok(out)
}

/// Writes problems as GSM8K JSONL (`id`, `question`, `answer`), atomically.
pub fn write_gsm8k(path: &Path, problems: &[Problem]) -> Result<()> {
    pw_core::jsonl::write_jsonl(
        path,
        problems.iter().map(
            |p| serde_json::json!({"id": p.id, "question": p.question, "answer": p.answer_text()}),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Problem {
        Problem {
            id: "t".into(),
            question: "Ann has 12 apples. She buys 3 bags with 4 apples each. She gives 5 apples to Bo. How many apples does Ann have now?".into(),
            steps: vec!["3 * 4 = 12".into(), "12 + 12 = 24".into(), "24 - 5 = 19".into()],
            answer: "19".into(),
        }
    }

    fn truth(text: &str) -> Vec<bool> {
        prefix_truth(&problem(), &Solution::parse(text)).unwrap()
    }

    #[test]
    fn a_correct_solution_is_good_at_every_prefix_and_operands_may_commute() {
        assert_eq!(
            truth("3 * 4 = 12\n12 + 12 = 24\n24 - 5 = 19\n#### 19"),
            vec![true; 4]
        );
        assert_eq!(
            truth("4 * 3 = 12\n12 + 12 = 24\n24 - 5 = 19\n#### 19"),
            vec![true; 4]
        );
    }

    #[test]
    fn an_arithmetic_slip_makes_that_prefix_and_all_later_ones_bad() {
        assert_eq!(
            truth("3 * 4 = 12\n12 + 12 = 25\n25 - 5 = 20\n#### 20"),
            vec![true, false, false, false]
        );
    }

    #[test]
    fn a_right_sum_of_the_wrong_quantities_is_bad() {
        // 12 + 5 = 17 is arithmetic the story does not call for.
        assert_eq!(
            truth("3 * 4 = 12\n12 + 5 = 17\n17 - 5 = 12\n#### 12"),
            vec![true, false, false, false]
        );
        // Subtraction does not commute.
        assert!(
            !truth(
                "3 * 4 = 12
12 + 12 = 24
5 - 24 = -19
#### -19"
            )[2]
        );
    }

    #[test]
    fn a_lucky_final_answer_after_a_bad_step_is_still_bad() {
        assert_eq!(
            truth("3 * 4 = 13\n13 + 12 = 24\n24 - 5 = 19\n#### 19"),
            vec![false, false, false, false]
        );
    }

    #[test]
    fn stopping_early_or_going_on_is_bad_at_the_answer() {
        assert_eq!(
            truth("3 * 4 = 12\n12 + 12 = 24\n#### 24"),
            vec![true, true, false]
        );
        assert_eq!(
            truth("3 * 4 = 12\n12 + 12 = 24\n24 - 5 = 19\n19 + 1 = 20\n#### 20"),
            vec![true, true, true, false, false]
        );
        // A line that is not a step at all.
        assert_eq!(truth("so many apples\n#### 19"), vec![false, false]);
    }

    #[test]
    fn solutions_parse_gsm8k_answers_and_normalise_numbers() {
        let s = Solution::parse("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1,024.00");
        assert_eq!(s.steps.len(), 1);
        assert_eq!(s.answer.as_deref(), Some("1024"));
        assert_eq!(
            Solution::parse("1 + 2 = 3\nThe answer is 3.")
                .answer
                .as_deref(),
            Some("3")
        );
        assert_eq!(Solution::parse("1 + 2 = 3").answer, None);
        assert_eq!(Step::parse("-3 - 4 = -7").unwrap().a, -3);
        assert!(Step::parse("12 apples").is_none());
    }

    #[test]
    fn gsm8k_files_round_trip_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        write_gsm8k(&path, &[problem()]).unwrap();
        let back = read_gsm8k(&path).unwrap();
        assert_eq!(back, vec![problem()]);

        std::fs::write(
            &path,
            "{\"question\": \"q\", \"answer\": \"1 + 1 = 2\\n#### 2\"}\n{oops\n",
        )
        .unwrap();
        let e = read_gsm8k(&path).unwrap_err().to_string();
        assert!(e.contains("p.jsonl: line 2"), "{e}");
        std::fs::write(&path, "{\"question\": \"q\", \"answer\": \"2\"}\n").unwrap();
        let e = read_gsm8k(&path).unwrap_err().to_string();
        assert!(e.contains("no final `#### N`"), "{e}");
    }
}
