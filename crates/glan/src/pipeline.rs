//! Steps 2-5: subjects, syllabus, homework questions, answers. Each step is a resumable
//! pw-llm stage (`<name>.jsonl` + `<name>.rejects.jsonl`) built from the previous step's
//! records; ids are paths (`discipline#q3/s1/h4`), so every record names where it came from.

use crate::config::GlanConfig;
use crate::taxonomy::Discipline;
use pw_core::Result;
use pw_llm::stage::{StageItem, StageRecord};
use pw_llm::{ChatMessage, GenParams};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const LEVELS: [&str; 6] = [
    "elementary school",
    "middle school",
    "high school",
    "undergraduate",
    "graduate",
    "professional",
];

pub(crate) fn params(s: &crate::config::Sampling, seed: u64, schema: Option<Value>) -> GenParams {
    GenParams {
        temperature: s.temperature,
        top_p: s.top_p,
        max_tokens: s.max_tokens,
        seed: Some(seed),
        json_schema: schema,
        ..Default::default()
    }
}

use pw_core::seed::derive as seed_for;

// The stages' answer schemas. Every length and count bound stays within what llama.cpp-based
// servers compile (`pw_llm::schema::portable`): llama-cpp-python 0.3.36 dies on a string of
// more than 1,000 characters at most.

/// Step 2's answer: `per_query` subjects with their level and subtopics.
pub fn subjects_schema(c: &crate::config::SubjectsConfig) -> Value {
    json!({
        "type": "object",
        "properties": {"subjects": {"type": "array", "minItems": c.per_query, "maxItems": c.per_query,
            "items": {"type": "object", "properties": {
                "subject_name": {"type": "string", "maxLength": 80},
                "level": {"type": "string", "enum": LEVELS},
                "subtopics": {"type": "array", "items": {"type": "string", "maxLength": 80},
                              "minItems": 1, "maxItems": 6}},
              "required": ["subject_name", "level", "subtopics"], "additionalProperties": false}}},
        "required": ["subjects"], "additionalProperties": false
    })
}

/// Step 3's answer: the sessions of a syllabus with their key concepts.
pub fn syllabus_schema(c: &crate::config::SyllabusConfig) -> Value {
    json!({
        "type": "object",
        "properties": {"sessions": {"type": "array", "minItems": c.min_sessions, "maxItems": c.max_sessions,
            "items": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 80},
                "description": {"type": "string", "maxLength": 300},
                "key_concepts": {"type": "array", "items": {"type": "string", "maxLength": 60},
                                 "minItems": 1, "maxItems": c.key_concepts}},
              "required": ["name", "description", "key_concepts"], "additionalProperties": false}}},
        "required": ["sessions"], "additionalProperties": false
    })
}

/// Step 4's answer: one homework question.
pub fn homework_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"question": {"type": "string", "maxLength": 1000}},
        "required": ["question"], "additionalProperties": false
    })
}

/// Step 2 (Sec. 2.2): `queries` subject lists per discipline.
pub fn subject_items(ds: &[Discipline], cfg: &GlanConfig, seed: u64) -> Vec<StageItem> {
    let c = &cfg.subjects;
    let schema = subjects_schema(c);
    let mut out = Vec::new();
    for d in ds {
        for q in 0..c.queries {
            let id = format!("{}#q{q}", d.id);
            out.push(StageItem {
                messages: vec![
                    ChatMessage::system("You are an education expert."),
                    ChatMessage::user(format!(
                        "List {} subjects that a student of the discipline \"{}\" ({} > {}) \
                         should learn. For each subject give subject_name, level (one of: {}) \
                         and its subtopics. Answer in JSON.",
                        c.per_query,
                        d.name,
                        d.field,
                        d.subfield,
                        LEVELS.join(", ")
                    )),
                ],
                params: params(&c.sampling, seed_for(seed, &id), Some(schema.clone())),
                meta: json!({"discipline": d}),
                id,
            });
        }
    }
    out
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subject {
    pub id: String,
    pub discipline: Discipline,
    pub name: String,
    pub level: String,
    pub subtopics: Vec<String>,
}

/// Subjects from the step-2 records (several per record; not deduplicated, as in the paper).
pub fn subjects(recs: &[StageRecord]) -> Result<Vec<Subject>> {
    let mut out = Vec::new();
    for r in recs {
        let d: Discipline = serde_json::from_value(r.meta["discipline"].clone())
            .map_err(|e| pw_core::Error::Other(format!("record {}: meta: {e}", r.id)))?;
        for (k, s) in r.output["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            out.push(Subject {
                id: format!("{}/s{k}", r.id),
                discipline: d.clone(),
                name: s["subject_name"].as_str().unwrap_or_default().to_string(),
                level: s["level"].as_str().unwrap_or_default().to_string(),
                subtopics: s["subtopics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Step 3 (Sec. 2.3): one syllabus per subject.
pub fn syllabus_items(subjects: &[Subject], cfg: &GlanConfig, seed: u64) -> Vec<StageItem> {
    let c = &cfg.syllabus;
    let schema = syllabus_schema(c);
    subjects
        .iter()
        .map(|s| StageItem {
            id: s.id.clone(),
            messages: vec![
                ChatMessage::system(format!("You are a {} teacher.", s.level)),
                ChatMessage::user(format!(
                    "Design a syllabus for the {} subject \"{}\" (discipline: {}), covering \
                     these subtopics: {}. Split it into {}-{} class sessions in teaching order; \
                     for each give its name, a short description and about {} key concepts. \
                     Answer in JSON.",
                    s.level,
                    s.name,
                    s.discipline.name,
                    s.subtopics.join("; "),
                    c.min_sessions,
                    c.max_sessions,
                    c.key_concepts
                )),
            ],
            params: params(&c.sampling, seed_for(seed, &s.id), Some(schema.clone())),
            meta: json!({"subject": s}),
        })
        .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub name: String,
    pub description: String,
    pub key_concepts: Vec<String>,
}

/// Step 4 (Sec. 2.4): for each syllabus, `per_syllabus` questions. Each samples one session
/// (basic) or two (harder, the second later in the course), then 1..=max_concepts key concepts
/// from them; the prompt holds the whole syllabus, the sessions, the concepts, and says the
/// students have learned up to the last selected session.
pub fn homework_items(recs: &[StageRecord], cfg: &GlanConfig, seed: u64) -> Result<Vec<StageItem>> {
    let c = &cfg.homework;
    let schema = homework_schema();
    let mut out = Vec::new();
    for r in recs {
        let subject: Subject = serde_json::from_value(r.meta["subject"].clone())
            .map_err(|e| pw_core::Error::Other(format!("record {}: meta: {e}", r.id)))?;
        let sessions: Vec<Session> = serde_json::from_value(r.output["sessions"].clone())
            .map_err(|e| pw_core::Error::Other(format!("record {}: sessions: {e}", r.id)))?;
        if sessions.is_empty() {
            continue;
        }
        let syllabus: String = sessions
            .iter()
            .enumerate()
            .map(|(i, s)| format!("Session {}: {} - {}", i + 1, s.name, s.description))
            .collect::<Vec<_>>()
            .join("\n");
        for q in 0..c.per_syllabus {
            let id = format!("{}/h{q}", r.id);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed_for(seed, &id));
            let hard = sessions.len() >= 2 && rng.random_bool(c.hard_fraction.clamp(0.0, 1.0));
            let mut picked: Vec<usize> = if hard {
                rand::seq::index::sample(&mut rng, sessions.len(), 2).into_vec()
            } else {
                vec![rng.random_range(0..sessions.len())]
            };
            picked.sort();
            let pool: Vec<&String> = picked
                .iter()
                .flat_map(|&i| sessions[i].key_concepts.iter())
                .collect();
            let k = rng
                .random_range(1..=c.max_concepts.max(1))
                .min(pool.len().max(1));
            let concepts: Vec<String> = pool
                .choose_multiple(&mut rng, k)
                .map(|s| s.to_string())
                .collect();
            let upto = picked.last().copied().unwrap_or(0) + 1;
            let sel: Vec<String> = picked
                .iter()
                .map(|&i| format!("Session {}: {}", i + 1, sessions[i].name))
                .collect();
            out.push(StageItem {
                messages: vec![
                    ChatMessage::system(format!("You are a {} teacher.", subject.level)),
                    ChatMessage::user(format!(
                        "The syllabus of the course \"{}\":\n{syllabus}\n\nThe students have \
                         learned sessions 1 to {upto}. Write one {} homework question that \
                         tests {} using these key concepts: {}. The question must stand on its \
                         own: state every quantity it needs and refer to no options, figures \
                         or texts that it does not hold. Answer in JSON.",
                        subject.name,
                        if hard { "challenging" } else { "basic" },
                        sel.join(" and "),
                        concepts.join(", ")
                    )),
                ],
                params: params(&c.sampling, seed_for(seed, &id), Some(schema.clone())),
                meta: json!({
                    "subject": subject,
                    "difficulty": if hard { "hard" } else { "basic" },
                    "sessions": picked.iter().map(|&i| sessions[i].name.clone()).collect::<Vec<_>>(),
                    "key_concepts": concepts,
                }),
                id,
            });
        }
    }
    Ok(out)
}

/// The answer length the answer prompts ask for: half a word a token of `answers.max_tokens`.
pub fn answer_words(cfg: &GlanConfig) -> u32 {
    (cfg.answers.max_tokens as f64 * 0.5).round().max(20.0) as u32
}

/// Step 5 (Sec. 2.4): an answer per question, by the answer model. The system message asks for
/// an answer that fits `answers.max_tokens` (half a word a token, leaving room for formulas and
/// markup), so fewer answers are
/// cut off and removed as truncated.
pub fn answer_items(recs: &[StageRecord], cfg: &GlanConfig, seed: u64) -> Vec<StageItem> {
    let words = answer_words(cfg);
    recs.iter()
        .filter_map(|r| {
            let q = r.output["question"].as_str()?.trim().to_string();
            Some(StageItem {
                id: r.id.clone(),
                messages: vec![
                    ChatMessage::system(format!(
                        "You are a knowledgeable tutor. Answer the homework question \
                         correctly and completely, in at most {words} words.",
                    )),
                    ChatMessage::user(q.clone()),
                ],
                params: params(&cfg.answers, seed_for(seed, &format!("{}/a", r.id)), None),
                meta: json!({"question": q, "question_model": r.model,
                             "question_seed": r.seed, "homework": r.meta}),
            })
        })
        .collect()
}

/// The judge's request for one pair: the discipline, the key concepts, the question and the
/// answer, and the four criteria to score 1-10 (see [`crate::quality::Verdict`]).
pub fn judge_item(
    id: &str,
    discipline: &str,
    key_concepts: &[String],
    question: &str,
    answer: &str,
    cfg: &GlanConfig,
    seed: u64,
) -> StageItem {
    let criteria: String = crate::quality::CRITERIA
        .iter()
        .map(|(name, what)| format!("- {name}: {what}\n"))
        .collect();
    StageItem {
        id: id.to_string(),
        messages: vec![
            ChatMessage::system(
                "You are a strict grader of homework datasets. Bad questions and wrong \
                 answers must get low scores.",
            ),
            ChatMessage::user(format!(
                "Discipline: {discipline}\nKey concepts: {}\n\nQuestion:\n{question}\n\n\
                 Answer:\n{answer}\n\nScore each criterion from 1 (not at all) to 10 \
                 (fully):\n{criteria}First give a one-sentence reason, then the scores. \
                 Answer in JSON.",
                key_concepts.join(", ")
            )),
        ],
        params: params(
            &cfg.judge.sampling,
            seed_for(seed, &format!("{id}/judge")),
            Some(crate::quality::verdict_schema()),
        ),
        meta: json!({}),
    }
}

/// Step 6 (ours): the judge's request for every answered pair.
pub fn judge_items(recs: &[StageRecord], cfg: &GlanConfig, seed: u64) -> Vec<StageItem> {
    recs.iter()
        .map(|r| {
            let m = &r.meta;
            let list: Vec<String> = m["homework"]["key_concepts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            judge_item(
                &r.id,
                m["homework"]["subject"]["discipline"]["name"]
                    .as_str()
                    .unwrap_or_default(),
                &list,
                m["question"].as_str().unwrap_or_default(),
                r.text.trim(),
                cfg,
                seed,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every schema GLAN sends compiles on llama.cpp-based servers, at the default sizes.
    #[test]
    fn every_stage_schema_is_portable_to_llama_cpp_servers() {
        let cfg = GlanConfig::default();
        for (what, s) in [
            ("subjects", subjects_schema(&cfg.subjects)),
            ("syllabus", syllabus_schema(&cfg.syllabus)),
            ("homework", homework_schema()),
            ("judge", crate::quality::verdict_schema()),
        ] {
            pw_llm::schema::portable(&s).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}
