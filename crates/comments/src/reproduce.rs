//! The miniature reproduction, orchestration only: comment density across corpora and
//! languages ([`crate::data`]); one set of standard-library functions commented by the
//! generator under line constraints ([`crate::augment`], [`crate::run::augment`]); a byte-level
//! code model pre-trained on raw code, then continued-trained at equal steps on raw,
//! commented and commented + filtered versions of those functions, and on the high- and
//! low-density halves of another set ([`crate::train`]); each variant scored at its best
//! validation step on held-out functions and HumanEval ([`crate::evaluate`]); claims and
//! tables in [`crate::report`].

use crate::augment::Unit;
use crate::config::CommentsConfig;
use crate::data::{self, Split, python_stdlib, stdlib_files};
use crate::density::Analyzer;
use crate::evaluate::{NlExample, bits_per_byte, mean};
use crate::export::AugRecord;
use crate::lang::Lang;
use crate::model::new_lm;
use crate::report::{self, DensityCell, Measured, Variant};
use crate::run::{AugmentOptions, Backend, augment};
use crate::train::{pack, train_windows};
use pw_core::{
    Claim, Error, ReproContext, ReproOutcome, Reproduction, Size, Stopwatch, resolve_config,
};
use pw_nn::burn::module::Module;
use pw_nn::checkpoint::load_or_train;
use pw_nn::transformer::CausalLm;
use pw_nn::{seed_everything, train_device};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::HashSet;
use std::path::Path;

/// The registered reproduction; `config` overrides the size's defaults (tests use a tiny one).
#[derive(Default)]
pub struct CommentsReproduction {
    pub config: Option<CommentsConfig>,
}

/// The continued-training variants: (name, file tag).
pub const RAW: &str = "raw code";
pub const AUGMENTED: &str = "commented (all accepted)";
pub const FILTERED: &str = "commented + implicit filter";
pub const HIGH: &str = "high-density half";
pub const LOW: &str = "low-density half";
pub const ROUND2: &str = "round 2 (commented by the round-1 model) + implicit filter";

/// The data of the miniature, drawn once from the corpus before anything is measured.
pub struct Corpus {
    pub files: usize,
    pub decontaminated_files: usize,
    pub pretrain: Vec<String>,
    pub augment: Vec<Unit>,
    /// Round 2 of self-augmentation: other training functions, as many.
    pub round2: Vec<Unit>,
    pub high: Vec<String>,
    pub low: Vec<String>,
    pub validation: Vec<NlExample>,
    pub test: Vec<NlExample>,
    pub humaneval: Vec<NlExample>,
    pub humaneval_total: usize,
}

fn fits(e: &NlExample, max_len: usize) -> bool {
    e.prompt.len() + e.body.len() + 1 < max_len
}

/// Splits the standard library by file, removes files that share a 13-word n-gram with
/// HumanEval, and draws the function sets (seeded).
pub fn corpus(
    stdlib: &Path,
    humaneval: &Path,
    cfg: &CommentsConfig,
    seed: u64,
) -> pw_core::Result<Corpus> {
    let tasks = pw_data::humaneval::load_humaneval(humaneval, false)?;
    let contamination = pw_data::dedup::Contamination::new(
        tasks
            .iter()
            .map(|t| (t.task_id.clone(), t.canonical_solution.as_str())),
        13,
    );
    let mut files = stdlib_files(stdlib, 2 << 20)?;
    let n_files = files.len();
    files.retain(|(_, text)| contamination.matches(text).is_none());
    let decontaminated = n_files - files.len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(pw_core::seed::derive(seed, "comments/corpus"));
    files.shuffle(&mut rng);
    let mut an = Analyzer::new();
    let mut candidates: Vec<Unit> = Vec::new();
    let (mut validation, mut test) = (Vec::new(), Vec::new());
    for (rel, text) in &files {
        let fs = crate::verify::functions(&mut an, Lang::Python, text);
        match data::split_of(rel) {
            Split::Train => {
                for f in fs {
                    let n = f.code.lines().count();
                    if (3..=40).contains(&n) && f.code.len() * 2 < cfg.lm.max_len * 4 {
                        candidates.push(Unit {
                            id: format!("{rel}#L{}", f.line),
                            lang: Lang::Python,
                            path: rel.clone(),
                            line: f.line,
                            code: f.code,
                        });
                    }
                }
            }
            split => {
                for f in fs {
                    let id = format!("{rel}#L{}", f.line);
                    if let Some(e) = data::nl_example(&mut an, id, &f.code)
                        && fits(&e, cfg.lm.max_len)
                    {
                        match split {
                            Split::Validation => validation.push(e),
                            _ => test.push(e),
                        }
                    }
                }
            }
        }
    }
    // Functions are drawn across files, not file by file (a test module holds dozens of
    // near-identical functions).
    candidates.shuffle(&mut rng);
    validation.shuffle(&mut rng);
    test.shuffle(&mut rng);
    validation.truncate(cfg.validation_functions);
    test.truncate(cfg.test_functions);
    let n = cfg.augment_functions;
    if candidates.len() < 6 * n {
        return Err(Error::Other(format!(
            "the standard library at {} has {} training functions of 3..=40 lines; the \
             miniature needs {} (augment_functions x 6)",
            stdlib.display(),
            candidates.len(),
            6 * n
        )));
    }
    let augment: Vec<Unit> = candidates[..n].to_vec();
    let round2: Vec<Unit> = candidates[5 * n..6 * n].to_vec();
    let mut pool: Vec<(f64, String)> = candidates[n..5 * n]
        .iter()
        .map(|u| {
            (
                crate::augment::char_density(&mut an, u.lang, &u.code),
                u.code.clone(),
            )
        })
        .collect();
    pool.sort_by(|a, b| a.0.total_cmp(&b.0));
    let low: Vec<String> = pool[..n].iter().map(|p| p.1.clone()).collect();
    let high: Vec<String> = pool[pool.len() - n..].iter().map(|p| p.1.clone()).collect();
    // Files that gave a continued-training function stay out of pre-training: continued
    // training sees new code, as in the paper.
    let held: HashSet<&str> = candidates[..6 * n]
        .iter()
        .map(|u| u.path.as_str())
        .collect();
    let mut pretrain = Vec::new();
    let mut bytes = 0;
    for (rel, text) in &files {
        if bytes >= cfg.pretrain_bytes {
            break;
        }
        if data::split_of(rel) == Split::Train && !held.contains(rel.as_str()) {
            bytes += text.len();
            pretrain.push(text.clone());
        }
    }
    let humaneval: Vec<NlExample> = tasks
        .iter()
        .map(|t| NlExample {
            id: t.task_id.clone(),
            prompt: t.prompt.clone(),
            body: t.canonical_solution.clone(),
        })
        .filter(|e| fits(e, cfg.lm.max_len))
        .collect();
    Ok(Corpus {
        files: n_files,
        decontaminated_files: decontaminated,
        pretrain,
        augment,
        round2,
        high,
        low,
        validation,
        test,
        humaneval,
        humaneval_total: tasks.len(),
    })
}

impl Reproduction for CommentsReproduction {
    fn name(&self) -> &'static str {
        "comments"
    }

    fn title(&self) -> &'static str {
        "Code Needs Comments: comment density and line-constrained comment augmentation"
    }

    fn claims(&self) -> Vec<Claim> {
        report::claims()
    }

    fn check(&self, size: Size, overrides: Option<&serde_json::Value>) -> Result<(), String> {
        resolve_config(self.config.as_ref(), size, overrides).map(|_| ())
    }

    fn run(
        &self,
        ctx: &ReproContext,
    ) -> Result<ReproOutcome, Box<dyn std::error::Error + Send + Sync>> {
        let cfg: CommentsConfig = ctx.config(self.config.as_ref())?;
        let mut times = Stopwatch::new();
        let stdlib = python_stdlib().ok_or_else(|| {
            Error::Other(
                "no Python standard library found (python3 on PATH or /usr/lib/python3.X)".into(),
            )
        })?;

        // (a) density across corpora and languages.
        let mut cells = Vec::new();
        let read = data::ReadOptions::default();
        let mut corpora = vec![("Python standard library".to_string(), stdlib.clone())];
        if let Some(reg) = data::cargo_registry() {
            corpora.push(("cargo registry sources".into(), reg));
        }
        for (name, root) in &corpora {
            let (mut files, _) = data::walk(std::slice::from_ref(root))?;
            if cfg.density_files > 0 && files.len() > cfg.density_files {
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(pw_core::seed::derive(ctx.seed, name));
                files.shuffle(&mut rng);
                files.truncate(cfg.density_files);
            }
            let d = data::density_of_files(&files, &read);
            for (lang, c) in &d.per_lang {
                cells.push(DensityCell {
                    corpus: name.clone(),
                    lang: lang.clone(),
                    counts: c.clone(),
                });
            }
        }
        times.lap("density of the corpora");

        let humaneval = ctx.assets.join(pw_data::assets::paths::HUMANEVAL);
        let corpus = corpus(&stdlib, &humaneval, &cfg, ctx.seed)?;
        times.lap("corpus");

        // The generator comments the continued-training set (resumable ledger).
        let aug_dir = ctx.dir.join("augment");
        std::fs::create_dir_all(&aug_dir).map_err(|e| Error::io(&aug_dir, e))?;
        let model = match &cfg.generator {
            Some(g) => ctx.assets.join(g),
            None => pw_data::assets::code_model(&ctx.assets),
        };
        let mut emb = pw_llm::EmbeddedConfig::new(&model);
        emb.parallel = cfg.parallel;
        emb.weights = cfg.generator_weights;
        emb.ctx_per_seq = 2048;
        let summary = augment(
            &aug_dir,
            &corpus.augment,
            &AugmentOptions {
                backend: Backend::Constrained(emb),
                constrained: crate::augment::ConstrainedOptions {
                    bias: cfg.bias,
                    parallel: cfg.parallel,
                    ..Default::default()
                },
                filter: crate::export::FilterOptions {
                    min_inserted: 1,
                    min_density_after: cfg.min_density_after,
                },
                seed: ctx.seed,
                ..AugmentOptions::default()
            },
        )?;
        times.lap("augmentation");
        let records: Vec<AugRecord> = pw_core::Ledger::read_all(&summary.ledger)?;
        let rejects: Vec<pw_llm::stage::RejectRecord> =
            pw_core::Ledger::read_all(&summary.rejects)?;

        // Training: the base, then each variant from it at equal steps.
        let ad = train_device(true)?;
        let mut rng = seed_everything(&ad, pw_core::seed::derive(ctx.seed, "comments/base"));
        let base_path = ctx.dir.join("base.safetensors");
        let base = load_or_train(
            &base_path,
            || new_lm(&cfg.lm, &ad),
            || {
                let stream = pack(&corpus.pretrain);
                let (m, _) = train_windows(
                    new_lm(&cfg.lm, &ad),
                    &stream,
                    &cfg.pretrain,
                    &mut rng,
                    "pre-training",
                    None,
                    &mut |_, _| {},
                );
                Ok(m)
            },
        )?;
        times.lap("pre-training");
        // Scored off the autodiff device: a forward pass there records a graph that no
        // backward frees (evaluations accumulate until memory runs out).
        let frozen = base.valid();
        let base_scores = (
            mean(&bits_per_byte(&frozen, &corpus.validation, 16)),
            bits_per_byte(&frozen, &corpus.test, 16),
            bits_per_byte(&frozen, &corpus.humaneval, 8),
        );
        let raw: Vec<String> = corpus.augment.iter().map(|u| u.code.clone()).collect();
        let by_id: std::collections::HashMap<&str, &AugRecord> =
            records.iter().map(|r| (r.id.as_str(), r)).collect();
        // A unit the generator could not comment (rejected) stays raw in the commented set,
        // so every variant holds the same functions.
        let augmented: Vec<String> = corpus
            .augment
            .iter()
            .map(|u| {
                by_id
                    .get(u.id.as_str())
                    .map_or(u.code.clone(), |r| r.content.clone())
            })
            .collect();
        let filtered: Vec<String> = records
            .iter()
            .filter(|r| r.kept)
            .map(|r| r.content.clone())
            .collect();
        let mut variants = Vec::new();
        for (name, tag, texts) in [
            (RAW, "raw", &raw),
            (AUGMENTED, "augmented", &augmented),
            (FILTERED, "filtered", &filtered),
            (HIGH, "high", &corpus.high),
            (LOW, "low", &corpus.low),
        ] {
            let v = continued(
                &cfg, &ctx.dir, tag, name, &base_path, texts, &corpus, &ad, ctx.seed,
            )?;
            times.lap(format!("continued training: {name}"));
            variants.push(v);
        }

        // Self-augmentation: the model trained on round 1's filtered data (its last step:
        // the best validation step may be the base itself) comments round 2's functions; a
        // variant is trained on what its implicit filter keeps.
        let round1 = pw_nn::checkpoint::load_module(
            new_lm(&cfg.lm, &ad),
            &ctx.dir.join("variant-filtered-final.safetensors"),
        )?
        .valid();
        let round2 = self_augment(
            &ctx.dir.join("round2"),
            &round1,
            &corpus.round2,
            &cfg,
            ctx.seed,
        )?;
        times.lap("self-augmentation: round 2 commented by the round-1 model");
        let kept2: Vec<String> = round2
            .records
            .iter()
            .filter(|r| r.kept)
            .map(|r| r.content.clone())
            .collect();
        if !kept2.is_empty() {
            let v = continued(
                &cfg, &ctx.dir, "round2", ROUND2, &base_path, &kept2, &corpus, &ad, ctx.seed,
            )?;
            times.lap(format!("continued training: {ROUND2}"));
            variants.push(v);
        }
        let measured = Measured {
            cells,
            corpus_files: corpus.files,
            decontaminated_files: corpus.decontaminated_files,
            pretrain_bytes: corpus.pretrain.iter().map(|t| t.len()).sum(),
            augment: summary,
            records,
            rejects,
            base_validation: base_scores.0,
            base_test: base_scores.1,
            base_humaneval: base_scores.2,
            validation_n: corpus.validation.len(),
            humaneval_total: corpus.humaneval_total,
            variants,
            round2,
            cfg: cfg.clone(),
            stdlib: stdlib.display().to_string(),
            times: times.laps().to_vec(),
        };
        Ok(report::outcome(&measured))
    }
}

/// Continued training of one variant from the base: the best validation step's model is
/// scored on test and HumanEval; the result is kept in `<tag>.json` so a rerun skips it.
#[allow(clippy::too_many_arguments)]
fn continued(
    cfg: &CommentsConfig,
    dir: &Path,
    tag: &str,
    name: &str,
    base_path: &Path,
    texts: &[String],
    corpus: &Corpus,
    ad: &pw_nn::burn::tensor::Device,
    seed: u64,
) -> pw_core::Result<Variant> {
    let path = dir.join(format!("variant-{tag}.json"));
    let model_path = dir.join(format!("variant-{tag}.safetensors"));
    let final_path = dir.join(format!("variant-{tag}-final.safetensors"));
    if model_path.is_file()
        && final_path.is_file()
        && let Ok(bytes) = std::fs::read(&path)
        && let Ok(v) = serde_json::from_slice::<Variant>(&bytes)
    {
        return Ok(v);
    }
    let base = pw_nn::checkpoint::load_module(new_lm(&cfg.lm, ad), base_path)?;
    // The same seed for every variant: the same initial state and batch positions.
    let mut rng = seed_everything(ad, pw_core::seed::derive(seed, "comments/continued"));
    let stream = pack(texts);
    let mut best: Option<(f64, usize, CausalLm)> = None;
    let mut curve = Vec::new();
    // Evaluated off the autodiff device (see `run`).
    let mut eval = |m: &CausalLm, step: usize| {
        let frozen = m.valid();
        let v = mean(&bits_per_byte(&frozen, &corpus.validation, 16));
        curve.push((step, v));
        if best.as_ref().is_none_or(|(b, _, _)| v < *b) {
            best = Some((v, step, frozen));
        }
    };
    eval(&base, 0);
    let (last, losses) = train_windows(
        base,
        &stream,
        &cfg.cont,
        &mut rng,
        &format!("continued: {tag}"),
        Some(cfg.eval_every),
        &mut eval,
    );
    let (val, step, model) = best.expect("evaluated at least once");
    let v = Variant {
        name: name.to_string(),
        functions: texts.len(),
        bytes: texts.iter().map(|t| t.len()).sum(),
        best_step: step,
        validation: val,
        test: bits_per_byte(&model, &corpus.test, 16),
        humaneval: bits_per_byte(&model, &corpus.humaneval, 8),
        validation_curve: curve,
        final_loss: losses.last().map_or(f32::NAN, |l| l.1),
    };
    // The best validation step's model (what was scored) and the last step's (the model
    // trained on this data: self-augmentation's round-1 model).
    pw_nn::checkpoint::save_module(&model, &model_path)?;
    pw_nn::checkpoint::save_module(&last, &final_path)?;
    pw_core::write_json_atomic(&path, &v)?;
    Ok(v)
}

/// What round 2 of self-augmentation produced.
#[derive(Clone, Debug)]
pub struct Round2 {
    pub records: Vec<AugRecord>,
    pub rejects: Vec<pw_llm::stage::RejectRecord>,
    pub wall_s: f64,
}

/// Round 2: `model` (trained on round 1) comments `units` under the line constraint; each
/// accepted unit goes to a resumable ledger with the implicit filter's verdict.
pub fn self_augment(
    dir: &Path,
    model: &CausalLm,
    units: &[Unit],
    cfg: &CommentsConfig,
    seed: u64,
) -> pw_core::Result<Round2> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let t0 = std::time::Instant::now();
    let ledger_path = dir.join("augmented.jsonl");
    let rejects_path = dir.join("rejects.jsonl");
    let mut ledger = pw_core::Ledger::open(&ledger_path)?;
    let mut rejects = pw_core::Ledger::open(&rejects_path)?;
    let todo: Vec<Unit> = units
        .iter()
        .filter(|u| !ledger.contains(&u.id) && !rejects.contains(&u.id))
        .cloned()
        .collect();
    let filter = crate::export::FilterOptions {
        min_inserted: 1,
        min_density_after: cfg.min_density_after,
    };
    let opts = crate::selfaug::ByteOptions {
        bias: cfg.bias,
        ..Default::default()
    };
    let mut an = Analyzer::new();
    let mut failed: Option<pw_core::Error> = None;
    let bar = pw_core::progress::bar(todo.len() as u64, "self-augmentation round 2");
    crate::selfaug::comment_with_byte_model(model, &todo, &opts, &mut |u, o| {
        bar.inc(1);
        let r = match o {
            crate::augment::Outcome::Accepted(a) => {
                let rec = crate::run::record(
                    &mut an,
                    u,
                    &a,
                    &filter,
                    crate::run::Provenance {
                        model: "byte-level code model (round 1: commented + implicit filter)",
                        method: "constrained-bytes",
                        round: 2,
                        seed,
                    },
                );
                ledger.append(&u.id, &rec)
            }
            crate::augment::Outcome::Rejected { reason, text } => rejects.append(
                &u.id,
                &pw_llm::stage::RejectRecord {
                    id: u.id.clone(),
                    meta: serde_json::Value::Null,
                    reason,
                    text,
                    attempts: 1,
                },
            ),
        };
        if let Err(e) = r.and_then(|_| ledger.flush()).and_then(|_| rejects.flush()) {
            failed.get_or_insert(e);
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = failed {
        return Err(e);
    }
    let records: Vec<AugRecord> = pw_core::Ledger::read_all(&ledger_path)?;
    Ok(Round2 {
        records,
        rejects: pw_core::Ledger::read_all(&rejects_path)?,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}
