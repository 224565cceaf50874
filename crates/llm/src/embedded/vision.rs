//! A local vision-language model: a GGUF and its multimodal projector (`--mmproj`) through
//! llama.cpp's mtmd library, as a [`Generator`] that reads image parts.
//!
//! One engine thread owns the model, the projector context and one llama.cpp context, and
//! answers requests one at a time: the chat template is applied with mtmd's media marker
//! where each image part stood, mtmd tokenizes text and images into chunks and evaluates them
//! (the projector encodes each image into embeddings), then tokens are sampled with the same
//! seeded sampler as the text engine. JSON-schema requests are refused (no grammar here).

use super::engine::{backend, load_model, take_last_error};
use super::sampler::Sampler;
use super::template::ChatTemplate;
use super::{EmbeddedConfig, check_gguf, prepare};
use crate::{
    BatchResult, ChatMessage, Choice, Completion, Content, Generator, LlmError, Request, Usage,
    finish,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{
    MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputText, mtmd_default_marker,
};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// A vision GGUF and its projector.
#[derive(Clone, Debug)]
pub struct VisionConfig {
    /// The text model (its `parallel` is ignored: one request at a time).
    pub model: EmbeddedConfig,
    pub mmproj: PathBuf,
}

struct Job {
    req: Request,
    reply: mpsc::Sender<Result<Completion, LlmError>>,
}

/// Handle to the engine thread; dropping it stops the engine.
pub struct EmbeddedVision {
    tx: Option<mpsc::Sender<Job>>,
    name: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The projector file is checked before llama.cpp sees it: it must exist and be a GGUF.
pub fn check_mmproj(path: &Path) -> Result<(), LlmError> {
    check_gguf(path).map_err(|e| match e {
        LlmError::Model { reason, .. } => LlmError::model(path, format!("mmproj: {reason}")),
        other => other,
    })
}

impl EmbeddedVision {
    /// Loads the model and the projector. Errors name the file: a missing or non-GGUF
    /// projector, or one mtmd refuses (not a projector, or made for another model: its
    /// embedding width differs from the model's).
    pub fn load(cfg: VisionConfig) -> Result<Self, LlmError> {
        check_mmproj(&cfg.mmproj)?;
        let model_cfg = prepare(cfg.model.clone())?;
        let name = model_cfg
            .name
            .clone()
            .unwrap_or_else(|| super::default_name(&model_cfg.model));
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LlmError>>();
        let mmproj = cfg.mmproj.clone();
        let thread_name = name.clone();
        let thread = std::thread::Builder::new()
            .name("paperworks-vision".into())
            .spawn(move || serve(model_cfg, mmproj, thread_name, rx, ready_tx))
            .map_err(|e| LlmError::Stopped(format!("cannot start the vision engine: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(EmbeddedVision {
                tx: Some(tx),
                name,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(LlmError::Stopped(
                "the vision engine stopped while loading".into(),
            )),
        }
    }
}

impl Drop for EmbeddedVision {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Generator for EmbeddedVision {
    fn model(&self) -> String {
        self.name.clone()
    }

    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        if req.prompt.is_some() {
            return Err(LlmError::request(
                &req.id,
                "the vision engine takes chat messages, not a raw prompt",
            ));
        }
        let (reply, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| LlmError::Stopped("the vision engine is stopped".into()))?
            .send(Job {
                req: req.clone(),
                reply,
            })
            .map_err(|_| LlmError::Stopped("the vision engine is stopped".into()))?;
        rx.recv()
            .map_err(|_| LlmError::Stopped("the vision engine stopped".into()))?
    }

    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        for r in reqs {
            let result = self.generate(&r);
            on_result(BatchResult { id: r.id, result });
        }
    }
}

/// (role, text) of each message, the text holding the media marker where an image stood.
type Texts = Vec<(String, String)>;

/// The prompt text with the media marker where each image part stood, and the images' bytes
/// in order.
fn prompt_parts(messages: &[ChatMessage]) -> Result<(Texts, Vec<Vec<u8>>), String> {
    let marker = mtmd_default_marker();
    let mut images = Vec::new();
    let mut out = Vec::new();
    for m in messages {
        let text = match &m.content {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => {
                let mut s = String::new();
                for p in parts {
                    if let Some(img) = &p.image_url {
                        images.push(crate::image::image_bytes(&img.url)?);
                        s.push_str(marker);
                        s.push('\n');
                    } else if let Some(t) = &p.text {
                        s.push_str(t);
                    }
                }
                s
            }
        };
        out.push((m.role.clone(), text));
    }
    Ok((out, images))
}

fn serve(
    cfg: EmbeddedConfig,
    mmproj: PathBuf,
    name: String,
    rx: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<(), LlmError>>,
) {
    let claim = super::ThreadClaim::start();
    let model = match load_model(&cfg) {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let template = match ChatTemplate::load(&model, &cfg) {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = claim.threads(&cfg);
    let params = MtmdContextParams {
        use_gpu: cfg.gpu_layers > 0,
        print_timings: false,
        n_threads: threads as i32,
        ..MtmdContextParams::default()
    };
    take_last_error();
    let mmproj_name = match pw_core::cpath::OpenName::new(&mmproj) {
        Ok(n) => n,
        Err(e) => {
            let _ = ready.send(Err(LlmError::model(&mmproj, e.to_string())));
            return;
        }
    };
    let mut mtmd = match MtmdContext::init_from_file(mmproj_name.as_str(), &model, &params) {
        Ok(c) => c,
        Err(e) => {
            let why = take_last_error().unwrap_or_else(|| e.to_string());
            let _ = ready.send(Err(LlmError::model(
                &mmproj,
                format!(
                    "mmproj: llama.cpp's mtmd could not load it as a projector for {name} (not \
                     a projector, or one made for another model): {why}"
                ),
            )));
            return;
        }
    };
    if !mtmd.support_vision() {
        let _ = ready.send(Err(LlmError::model(
            &mmproj,
            "mmproj: this projector has no vision encoder (audio only?)",
        )));
        return;
    }
    let n_ctx = cfg.ctx_per_seq.min(model.n_ctx_train().max(16)).max(256);
    let n_batch = cfg.batch_tokens.max(64);
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(1)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut ctx = match model.new_context(backend, cparams) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(LlmError::model(
                &cfg.model,
                format!("cannot create a context of {n_ctx} tokens: {e}"),
            )));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    for job in rx {
        let t0 = Instant::now();
        let result = answer(
            &model, &template, &mut mtmd, &mut ctx, &job.req, n_ctx, n_batch, &name, t0,
        );
        let _ = job.reply.send(result);
    }
}

#[allow(clippy::too_many_arguments)]
fn answer(
    model: &LlamaModel,
    template: &ChatTemplate,
    mtmd: &mut MtmdContext,
    ctx: &mut llama_cpp_2::context::LlamaContext,
    req: &Request,
    n_ctx: u32,
    n_batch: u32,
    name: &str,
    t0: Instant,
) -> Result<Completion, LlmError> {
    let id = &req.id;
    if req.params.json_schema.is_some() {
        return Err(LlmError::request(
            id,
            "the mtmd vision backend has no JSON-schema constraint; use an endpoint for a \
             structured judge",
        ));
    }
    let (msgs, images) = prompt_parts(&req.messages).map_err(|e| LlmError::request(id, e))?;
    let prompt = template
        .apply(model, &msgs)
        .map_err(|e| LlmError::request(id, e))?;
    let bitmaps = images
        .iter()
        .map(|b| MtmdBitmap::from_buffer(mtmd, b, false))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LlmError::request(id, format!("image: mtmd could not decode it ({e})")))?;
    let refs: Vec<&MtmdBitmap> = bitmaps.iter().collect();
    let chunks = mtmd
        .tokenize(
            MtmdInputText {
                text: prompt,
                add_special: true,
                parse_special: true,
            },
            &refs,
        )
        .map_err(|e| LlmError::request(id, format!("mtmd tokenize: {e}")))?;
    let prompt_tokens = chunks.total_tokens();
    let max_new = req.params.max_tokens as usize;
    if prompt_tokens + max_new > n_ctx as usize {
        return Err(LlmError::request(
            id,
            format!("{prompt_tokens} prompt tokens + {max_new} new exceed the context of {n_ctx}"),
        ));
    }
    ctx.clear_kv_cache();
    let n_prompt = chunks
        .eval_chunks(mtmd, ctx, 0, 0, n_batch as i32, true)
        .map_err(|e| LlmError::request(id, format!("mtmd eval: {e}")))?;
    let mut sampler = Sampler::new(
        req.params.temperature,
        req.params.top_p,
        req.params.seed.unwrap_or(0),
    );
    let n_vocab = model.n_vocab() as usize;
    let mut eog = req
        .params
        .ignore_eos
        .then(|| super::engine::EogMask::new(model));
    let mut batch = LlamaBatch::new(1, 1);
    let mut text = Vec::<u8>::new();
    let mut reason = finish::LENGTH;
    let mut generated = 0u64;
    // The logits after the prompt are the last ones eval_chunks computed.
    let mut logits_index = -1i32;
    for n_past in n_prompt..n_prompt + max_new as i32 {
        let mut logits = &ctx.get_logits_ith(logits_index)[..n_vocab];
        if let Some(m) = eog.as_mut() {
            logits = m.apply(logits);
        }
        let tok = sampler.sample(logits);
        let token = llama_cpp_2::token::LlamaToken(tok as i32);
        if model.vocab().is_eog(token) {
            reason = finish::STOP;
            break;
        }
        generated += 1;
        model
            .vocab()
            .token_to_piece_into(token, &mut text, false, None);
        let s = String::from_utf8_lossy(&text);
        if let Some(cut) = req
            .params
            .stop
            .iter()
            .filter_map(|st| s.find(st.as_str()))
            .min()
        {
            text.truncate(cut);
            reason = finish::STOP;
            break;
        }
        batch.clear();
        batch
            .add(token, n_past, &[0], true)
            .map_err(|e| LlmError::request(id, format!("batch: {e}")))?;
        ctx.decode(&mut batch)
            .map_err(|e| LlmError::request(id, format!("decode: {e}")))?;
        logits_index = 0;
    }
    Ok(Completion {
        id: id.clone(),
        model: name.to_string(),
        choices: vec![Choice {
            text: String::from_utf8_lossy(&text).into_owned(),
            finish_reason: reason.to_string(),
        }],
        usage: Usage {
            prompt_tokens: prompt_tokens as u64,
            completion_tokens: generated,
            prompt_evaluated: Some(prompt_tokens as u64),
        },
        latency_ms: t0.elapsed().as_secs_f64() * 1e3,
        cached: false,
    })
}
