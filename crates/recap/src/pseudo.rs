//! LLM pseudo-labels: any [`Generator`] turns the concatenated clip captions of a segment into
//! a segment description, and a video's (pseudo) segment descriptions into a summary. The
//! prompts show two labelled examples of the same level first (few-shot), so the writer
//! learns the annotation's style. Both stages run through pw-llm's resumable stage runner
//! (ledger + rejects), so a killed run resumes without asking twice.

use pw_core::Result;
use pw_llm::stage::{StageItem, StageOptions, run_stage};
use pw_llm::{ChatMessage, GenParams, Generator};
use std::collections::HashMap;
use std::path::Path;

/// One labelled example shown to the writer: the lower level's captions and the answer.
#[derive(Debug, Clone)]
pub struct Shot {
    pub inputs: Vec<String>,
    pub output: String,
}

fn numbered(xs: &[String]) -> String {
    xs.iter()
        .enumerate()
        .map(|(i, c)| format!("{}. {}", i + 1, c.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The messages asking for one label.
pub fn messages(task: &str, shots: &[Shot], inputs: &[String]) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage::system(format!(
        "You write {task} of videos. Answer with one short sentence in lower case, in the \
         style of the examples, and nothing else."
    ))];
    for s in shots {
        m.push(ChatMessage::user(numbered(&s.inputs)));
        m.push(ChatMessage::assistant(s.output.clone()));
    }
    m.push(ChatMessage::user(numbered(inputs)));
    m
}

/// The check of a writer's reply: its first line, unquoted, at least three words.
pub fn check_sentence(_: &StageItem, text: &str) -> std::result::Result<serde_json::Value, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '*')
        .trim();
    let words = line.split_whitespace().count();
    if words < 3 {
        return Err(format!("not a sentence: {line:?}"));
    }
    let cut: Vec<&str> = line.split_whitespace().take(40).collect();
    Ok(serde_json::Value::String(cut.join(" ").to_lowercase()))
}

/// Labels for `items` (id -> lower-level captions), written to `dir/<name>.jsonl`; returns
/// id -> label for those that passed the check, and the stage's statistics.
#[allow(clippy::too_many_arguments)]
pub fn write_labels(
    g: &dyn Generator,
    name: &str,
    task: &str,
    shots: &[Shot],
    items: &[(String, Vec<String>)],
    dir: &Path,
    max_tokens: u32,
    label: &str,
) -> Result<(HashMap<String, String>, pw_llm::stage::StageStats)> {
    std::fs::create_dir_all(dir).map_err(|e| pw_core::Error::io(dir, e))?;
    let stage_items: Vec<StageItem> = items
        .iter()
        .map(|(id, inputs)| StageItem {
            id: id.clone(),
            messages: messages(task, shots, inputs),
            params: GenParams {
                stop: vec!["\n".into()],
                ..GenParams::greedy(max_tokens)
            },
            meta: serde_json::json!({ "inputs": inputs }),
        })
        .collect();
    run_texts(g, stage_items, &check_sentence, dir, name, label, 16)
}

/// Runs `items` as a resumable stage into `dir/<name>.jsonl` (rejects beside it) and returns
/// id -> checked text of every finished item, with the stage's statistics.
pub fn run_texts(
    g: &dyn Generator,
    items: Vec<StageItem>,
    check: &dyn Fn(&StageItem, &str) -> std::result::Result<serde_json::Value, String>,
    dir: &Path,
    name: &str,
    label: &str,
    chunk: usize,
) -> Result<(HashMap<String, String>, pw_llm::stage::StageStats)> {
    let out = dir.join(format!("{name}.jsonl"));
    let rejects = dir.join(format!("{name}-rejects.jsonl"));
    let stats = run_stage(
        g,
        items,
        check,
        &out,
        &rejects,
        &StageOptions {
            retries: 1,
            chunk,
            label: label.into(),
            ..Default::default()
        },
    )?;
    let recs: Vec<pw_llm::stage::StageRecord> = pw_core::jsonl::read_jsonl(&out, name)?;
    let texts = recs
        .into_iter()
        .filter_map(|r| Some((r.id, r.output.as_str()?.to_string())))
        .collect();
    Ok((texts, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_cut_to_their_first_sentence_line() {
        let it = StageItem {
            id: "a".into(),
            messages: vec![],
            params: GenParams::default(),
            meta: serde_json::Value::Null,
        };
        assert_eq!(
            check_sentence(&it, "\n\"The Red circle climbs up\"\nmore").unwrap(),
            serde_json::json!("the red circle climbs up")
        );
        assert!(check_sentence(&it, "ok").is_err());
        let m = messages(
            "segment descriptions",
            &[Shot {
                inputs: vec!["a b".into()],
                output: "c d e".into(),
            }],
            &["x".into()],
        );
        assert_eq!(m.len(), 4);
        assert!(m[3].text().contains("1. x"));
    }
}
