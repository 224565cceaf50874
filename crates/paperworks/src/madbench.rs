//! `paperworks madbench scenes | build | run | judge | report`: flags to one pw-madbench call
//! each, and the printed summary.

use crate::Global;
use crate::llm::BackendArgs;
use clap::{Args, Subcommand};
use pw_core::{Error, Result, RunDir};
use pw_llm::Generator;
use pw_madbench::data::read_bench;
use pw_madbench::models::DescribeThenAnswer;
use pw_madbench::run::{BuildInput, build, judge, load_tiny, report, run as run_bench, scenes};
use pw_madbench::{Category, Variant};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The benchmark: our JSONL (from `madbench build`) or the official release's
    /// mad_bench_prompt_image.json.
    #[arg(long, value_name = "FILE")]
    bench: PathBuf,
    /// Folder holding the images by file name (the official release names them by URL;
    /// nothing is downloaded). For our JSONL, relative image paths are taken from here
    /// (default: beside the bench file).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Only the first N items.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

impl BenchArgs {
    fn items(&self) -> Result<Vec<pw_madbench::BenchItem>> {
        let mut items = read_bench(&self.bench, self.images.as_deref())?;
        if let Some(n) = self.limit {
            items.truncate(n);
        }
        Ok(items)
    }
}

// Parsed once per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum MadBenchCommand {
    /// Render synthetic scenes with COCO annotations (the miniature's images).
    ///
    /// Writes DIR/images/*.png (64x64: objects with a shape, colour and size on a named scene;
    /// about a third hold a poster showing an object that is not really there),
    /// DIR/instances.json (COCO, with `scene`, `attributes` and `depicted` extensions) and
    /// DIR/captions.json.
    ///
    /// Example: paperworks madbench scenes --out scenes --n 50
    Scenes {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 50)]
        n: usize,
    },
    /// Build deceptive prompts from COCO-format annotations.
    ///
    /// Every image gets up to one prompt per category (count_of_object, non-existent_object,
    /// object_attribute, scene_understanding, spatial_relationship, visual_confusion), each
    /// with a paired neutral prompt (the same question without the false premise), the
    /// structured premise and a truth sentence ("there are two balls, not five"). Attributes
    /// come from the annotations' `attributes` or --attributes; the scene from the images'
    /// `scene` or the captions.
    ///
    /// Example: paperworks madbench build --coco scenes/instances.json --images scenes/images
    /// --captions scenes/captions.json --out bench.jsonl
    Build {
        #[arg(long, value_name = "FILE")]
        coco: PathBuf,
        #[arg(long, value_name = "DIR")]
        images: PathBuf,
        #[arg(long, value_name = "FILE")]
        captions: Option<PathBuf>,
        /// `{"annotations": [{"annotation_id": N, "attributes": {"color": "red"}}]}`.
        #[arg(long, value_name = "FILE")]
        attributes: Option<PathBuf>,
        /// Categories to build (default: all six).
        #[arg(long, value_delimiter = ',')]
        categories: Vec<String>,
        #[arg(long, value_name = "FILE", default_value = "bench.jsonl")]
        out: PathBuf,
    },
    /// Ask a model every prompt: neutral, deceptive, deceptive + remedy, neutral + remedy.
    ///
    /// The model is a vision endpoint (--endpoint: images go as image parts, data URIs), a
    /// local vision GGUF with its projector (--model M.gguf --mmproj P.gguf, llama.cpp's
    /// mtmd), the tiny VLM a reproduction trained (--tiny DIR), or describe-then-answer
    /// (--describe-with DIR: the tiny VLM describes, the backend answers from the
    /// description). Answers go to a
    /// resumable ledger in the run directory (default runs/madbench-run): a killed run
    /// resumes; results.jsonl has the official notebook's fields (question_id, prompt, text).
    ///
    /// Example: paperworks madbench run --bench bench.jsonl --endpoint http://127.0.0.1:8000/v1
    Run {
        #[command(flatten)]
        bench: BenchArgs,
        /// A tiny VLM folder (a reproduction's madbench/vlm or madbench/vlm-robust).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["describe_with", "mmproj"])]
        tiny: Option<PathBuf>,
        /// Describe-then-answer: this tiny VLM describes, the backend answers.
        #[arg(long, value_name = "DIR")]
        describe_with: Option<PathBuf>,
        /// The multimodal projector of --model (a vision GGUF): the model runs here through
        /// llama.cpp's mtmd, one request at a time.
        #[arg(long, value_name = "GGUF")]
        mmproj: Option<PathBuf>,
        /// Variants to ask (default: all four).
        #[arg(long, value_delimiter = ',')]
        variants: Vec<String>,
        #[arg(long, default_value_t = 64)]
        max_tokens: u32,
        /// Bypass the response cache.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Judge a run's answers: exactly from the premises (built items), and by an LLM judge
    /// when --judge is given (the rubric per category; JSON-schema reply {verdict, reason}).
    ///
    /// Writes judged.jsonl in the run directory (default: the results file's folder) and
    /// prints both of the notebook's accuracies (over all rows, over decided rows).
    ///
    /// Example: paperworks madbench judge --bench bench.jsonl --results runs/madbench-run/results.jsonl --judge
    Judge {
        #[command(flatten)]
        bench: BenchArgs,
        #[arg(long, value_name = "FILE")]
        results: PathBuf,
        /// Also grade with an LLM judge (the backend flags choose it; default the strongest
        /// GGUF in the assets).
        #[arg(long)]
        judge: bool,
        /// Send the image to the judge (a vision judge); otherwise the item's truth sentence
        /// stands in for it.
        #[arg(long)]
        with_image: bool,
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Accuracy tables and bar charts of judged files (one per model) as report.md/html.
    ///
    /// Example: paperworks madbench report runs/a/judged.jsonl runs/b/judged.jsonl --out report
    Report {
        #[arg(value_name = "JUDGED", required = true)]
        judged: Vec<PathBuf>,
        #[arg(long, value_name = "DIR", default_value = "runs/madbench-report")]
        out: PathBuf,
    },
}

fn variants(names: &[String]) -> Result<Vec<Variant>> {
    if names.is_empty() {
        return Ok(Variant::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Variant::parse(n).ok_or_else(|| {
                Error::Other(format!(
                    "unknown variant {n:?} (neutral, deceptive, remedy, neutral_remedy)"
                ))
            })
        })
        .collect()
}

pub fn run(g: &Global, cmd: &MadBenchCommand) -> Result<()> {
    match cmd {
        MadBenchCommand::Scenes { out, n } => {
            let s = scenes(out, *n, g.seed)?;
            println!(
                "{} scenes ({} with a poster): {} images in {}, {} and {}",
                s.scenes,
                s.with_poster,
                s.scenes,
                s.images.display(),
                s.instances.display(),
                s.captions.display()
            );
            Ok(())
        }
        MadBenchCommand::Build {
            coco,
            images,
            captions,
            attributes,
            categories,
            out,
        } => {
            let cats = if categories.is_empty() {
                Category::PAPER.to_vec()
            } else {
                categories
                    .iter()
                    .map(|c| {
                        Category::parse(c)
                            .filter(|c| Category::PAPER.contains(c))
                            .ok_or_else(|| Error::Other(format!("unknown category {c:?}")))
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let o = build(&BuildInput {
                coco: coco.clone(),
                captions: captions.clone(),
                attributes: attributes.clone(),
                images: images.clone(),
                out: out.clone(),
                categories: cats,
                seed: g.seed,
            })?;
            println!(
                "{} items from {} images: {}",
                o.summary.items,
                o.summary.images,
                o.summary
                    .per_category
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !o.summary.unsupported.is_empty() && !g.quiet {
                eprintln!(
                    "images whose annotations support no prompt of a category: {}",
                    o.summary
                        .unsupported
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            println!("wrote {}", o.out.display());
            Ok(())
        }
        MadBenchCommand::Run {
            bench,
            tiny,
            describe_with,
            mmproj,
            variants: vs,
            max_tokens,
            no_cache,
            backend,
        } => {
            let vs = variants(vs)?;
            let items = bench.items()?;
            let dir = g
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/madbench-run"));
            let cache = (!no_cache).then(|| dir.join("cache.redb"));
            let model: Arc<dyn Generator> = match (tiny, describe_with) {
                (Some(t), _) => Arc::new(load_tiny(t)?),
                (None, None) if mmproj.is_some() => {
                    let cfg = backend.config(g, None);
                    let m = backend.model.clone().ok_or_else(|| {
                        Error::Other(
                            "--mmproj needs --model (the vision GGUF it belongs to)".into(),
                        )
                    })?;
                    let vision = pw_llm::embedded::vision::EmbeddedVision::load(
                        pw_llm::embedded::vision::VisionConfig {
                            model: pw_llm::EmbeddedConfig {
                                model: m,
                                ..cfg.embedded
                            },
                            mmproj: mmproj.clone().expect("checked"),
                        },
                    )
                    .map_err(|e| Error::Other(e.to_string()))?;
                    pw_llm::backend::cached(Arc::new(vision), cache.as_deref())
                        .map_err(|e| Error::Other(e.to_string()))?
                }
                (None, Some(d)) => {
                    let mut b = backend.clone();
                    if b.model.is_none() {
                        b.model = Some(pw_data::assets::code_model(&g.assets));
                    }
                    let answerer = pw_llm::backend::open(&b.config(g, cache))
                        .map_err(|e| Error::Other(e.to_string()))?;
                    Arc::new(DescribeThenAnswer {
                        describer: Arc::new(load_tiny(d)?),
                        answerer,
                    })
                }
                (None, None) => {
                    if backend.endpoint.is_empty() {
                        return Err(Error::Other(
                            "no model that can see images: give --endpoint (a vision model \
                             served OpenAI-style), --tiny DIR, or --describe-with DIR (with \
                             --model/--endpoint as the answerer)"
                                .into(),
                        ));
                    }
                    pw_llm::backend::open(&backend.config(g, cache))
                        .map_err(|e| Error::Other(e.to_string()))?
                }
            };
            let config = serde_json::json!({
                "bench": bench.bench, "items": items.len(), "model": model.model(),
                "variants": vs.iter().map(|v| v.tag()).collect::<Vec<_>>(),
                "max_tokens": max_tokens,
            });
            let s = RunDir::scope(&dir, config, g.seed, g.fresh, |run| {
                // The ledger holds this model's answers to these items: another bench file
                // or model must not resume from it.
                run.check_inputs(
                    "madbench run",
                    &[bench.bench.as_path()],
                    serde_json::json!({"model": model.model(), "max_tokens": max_tokens}),
                )?;
                run_bench(model.as_ref(), &items, run.root(), &vs, *max_tokens)
            })?;
            println!(
                "{} items x {} variants: {} answered ({} before), {} rejected, {:.1} s",
                items.len(),
                vs.len(),
                s.stats.done,
                s.stats.already_done,
                s.stats.rejected,
                s.stats.wall_s
            );
            println!(
                "wrote {} ({} rows; the ledger is {})",
                s.results.display(),
                s.rows.len(),
                s.ledger.display()
            );
            Ok(())
        }
        MadBenchCommand::Judge {
            bench,
            results,
            judge: use_judge,
            with_image,
            no_cache,
            backend,
        } => {
            let items = read_bench(&bench.bench, bench.images.as_deref())?;
            let dir = g.run_dir.clone().unwrap_or_else(|| {
                results
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_else(|| PathBuf::from("."))
            });
            let judge_model: Option<Arc<dyn Generator>> = if *use_judge {
                let mut b = backend.clone();
                if b.model.is_none() {
                    b.model = Some(pw_data::assets::code_model(&g.assets));
                }
                let cache = (!no_cache).then(|| dir.join("judge-cache.redb"));
                Some(
                    pw_llm::backend::open(&b.config(g, cache))
                        .map_err(|e| Error::Other(e.to_string()))?,
                )
            } else {
                None
            };
            let o = judge(&items, results, judge_model.as_deref(), *with_image, &dir)?;
            let pct = |x: Option<f64>| {
                x.map(|v| format!("{:.1}%", 100.0 * v))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "{} answers: exact judge {}; LLM judge {} over all rows, {} over decided rows; agreement {}",
                o.rows,
                pct(o.exact_accuracy),
                pct(o.llm_accuracy),
                pct(o.llm_accuracy_decided),
                pct(o.agreement)
            );
            println!("wrote {}", o.judged.display());
            if o.exact_accuracy.is_none() && o.llm_accuracy.is_none() {
                return Err(Error::Other(
                    "nothing was judged: the items have no premises (the official release) \
                     and no --judge was given"
                        .into(),
                ));
            }
            Ok(())
        }
        MadBenchCommand::Report { judged, out } => {
            let p = report(judged, out)?;
            println!("wrote {} and report.html", p.display());
            Ok(())
        }
    }
}
