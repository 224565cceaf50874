//! The student policy: SFT on reference solutions, then Expert Iteration (sample many
//! solutions per training question, keep the correct ones, fine-tune on them).

use crate::config::TrainConfig;
use crate::model::{ModelConfig, lines_tokens, solve_prompt};
use crate::policy::{ContinueRequest, Policy, StudentPolicy};
use crate::problem::{Problem, Solution};
use crate::train::{LmExample, train_lm};
use crate::vocab::Vocab;
use pw_core::Result;
use pw_nn::burn::tensor::Device;
use pw_nn::decode::Decoder;
use pw_nn::transformer::CausalLm;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudentConfig {
    pub model: ModelConfig,
    pub sft: TrainConfig,
    /// Expert Iteration rounds after SFT.
    pub ei_rounds: usize,
    /// Samples per training question in a round.
    pub ei_samples: usize,
    pub ei_temperature: f32,
    pub ei: TrainConfig,
    /// Longest solution the student writes (tokens).
    pub max_new: usize,
}

impl Default for StudentConfig {
    fn default() -> Self {
        StudentConfig {
            model: ModelConfig::default(),
            sft: TrainConfig {
                steps: 600,
                batch: 32,
                lr: 1e-3,
                warmup: 50,
                ..Default::default()
            },
            ei_rounds: 1,
            ei_samples: 4,
            ei_temperature: 1.0,
            ei: TrainConfig {
                steps: 200,
                batch: 32,
                lr: 3e-4,
                warmup: 20,
                ..Default::default()
            },
            max_new: 96,
        }
    }
}

/// `<bos> question <sep> solution lines <eos>` with the loss on the solution.
pub fn solve_example(v: &Vocab, question: &str, lines: &[String]) -> LmExample {
    let prompt = solve_prompt(v, question, &[]);
    let loss_from = prompt.len();
    let mut tokens = prompt;
    tokens.extend(lines_tokens(v, lines, Some(v.eos())));
    LmExample { tokens, loss_from }
}

/// The reference solutions as SFT data.
pub fn sft_examples(v: &Vocab, problems: &[Problem]) -> Vec<LmExample> {
    problems
        .iter()
        .map(|p| {
            let mut lines = p.steps.clone();
            lines.push(format!("{} {}", crate::problem::ANSWER_MARK, p.answer));
            solve_example(v, &p.question, &lines)
        })
        .collect()
}

pub fn policy(
    lm: &CausalLm,
    cfg: &StudentConfig,
    vocab: &Vocab,
    name: &str,
) -> Result<StudentPolicy> {
    Ok(StudentPolicy {
        decoder: Decoder::new(lm)?,
        vocab: vocab.clone(),
        max_new: cfg.max_new,
        name: name.into(),
    })
}

/// Final-answer accuracy of `policy`'s greedy solutions, and the solutions.
pub fn greedy_accuracy(
    policy: &dyn Policy,
    problems: &[Problem],
    seed: u64,
) -> Result<(f64, Vec<String>)> {
    let reqs: Vec<ContinueRequest> = problems.iter().map(ContinueRequest::from_start).collect();
    let outs = policy
        .continue_batch(&reqs, 1, 0.0, seed)
        .map_err(pw_core::Error::Other)?;
    let texts: Vec<String> = outs.into_iter().map(|mut o| o.remove(0)).collect();
    let right = texts
        .iter()
        .zip(problems)
        .filter(|(t, p)| Solution::parse(t).is_correct(&p.answer))
        .count();
    Ok((right as f64 / problems.len().max(1) as f64, texts))
}

/// What Expert Iteration did in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EiRound {
    pub round: usize,
    pub samples: usize,
    pub correct: usize,
    /// Distinct correct solutions added to the training set.
    pub kept: usize,
}

/// SFT on the reference solutions of `sft_set`, then `ei_rounds` of Expert Iteration on the
/// questions of `train` (the reference data stays in the mix). Returns the student and
/// per-round statistics; `on_model` sees each stage's model ("sft", "ei1", ...), e.g. for
/// validation.
#[allow(clippy::too_many_arguments)] // the stage's inputs
pub fn train_student_on(
    sft_set: &[Problem],
    train: &[Problem],
    cfg: &StudentConfig,
    vocab: &Vocab,
    device: &Device,
    rng: &mut StdRng,
    seed: u64,
    mut on_model: impl FnMut(&str, &CausalLm) -> Result<()>,
) -> Result<(CausalLm, Vec<EiRound>)> {
    let lm = CausalLm::new(&cfg.model.transformer(vocab.len()), device);
    let sft = sft_examples(vocab, sft_set);
    let (mut lm, _) = train_lm(lm, &sft, &cfg.sft, rng, "student SFT");
    on_model("sft", &lm)?;
    let mut rounds = Vec::new();
    let mut data = sft.clone();
    let mut seen: HashSet<Vec<u32>> = data.iter().map(|e| e.tokens.clone()).collect();
    for round in 1..=cfg.ei_rounds {
        let pol = policy(&lm, cfg, vocab, "student")?;
        let reqs: Vec<ContinueRequest> = train
            .iter()
            .map(|p| ContinueRequest {
                id: format!("ei{round}/{}", p.id),
                question: p.question.clone(),
                prefix: vec![],
            })
            .collect();
        let outs = pol
            .continue_batch(&reqs, cfg.ei_samples, cfg.ei_temperature, seed)
            .map_err(pw_core::Error::Other)?;
        let (mut correct, mut kept) = (0, 0);
        for (p, samples) in train.iter().zip(&outs) {
            for s in samples {
                let sol = Solution::parse(s);
                if sol.is_correct(&p.answer) {
                    correct += 1;
                    let ex = solve_example(vocab, &p.question, &sol.lines());
                    if seen.insert(ex.tokens.clone()) {
                        data.push(ex);
                        kept += 1;
                    }
                }
            }
        }
        rounds.push(EiRound {
            round,
            samples: train.len() * cfg.ei_samples,
            correct,
            kept,
        });
        let (next, _) = train_lm(
            lm,
            &data,
            &cfg.ei,
            rng,
            &format!("student EI round {round}"),
        );
        lm = next;
        on_model(&format!("ei{round}"), &lm)?;
    }
    Ok((lm, rounds))
}
