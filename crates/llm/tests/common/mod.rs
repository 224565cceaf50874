#![allow(dead_code)]
use std::path::PathBuf;

/// The SmolLM2 GGUF that scripts/setup.sh fetches (PAPERWORKS_ASSETS or <workspace>/assets).
pub fn smollm2() -> PathBuf {
    let root = std::env::var_os("PAPERWORKS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"));
    let p = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (make test does)",
        p.display()
    );
    p
}

/// Writes a copy of the GGUF at `src` without its `tokenizer.chat_template` key: the new
/// metadata (gguf's own writer), padding to the alignment, then the original tensor data.
pub fn copy_without_chat_template(src: &std::path::Path, dst: &std::path::Path) {
    use std::ffi::CString;
    use std::io::Write;
    let csrc = CString::new(src.to_str().unwrap()).unwrap();
    let cdst = CString::new(dst.to_str().unwrap()).unwrap();
    let key = CString::new("tokenizer.chat_template").unwrap();
    let (data_offset, alignment) = unsafe {
        let params = llama_cpp_sys_2::gguf_init_params {
            no_alloc: true,
            ctx: std::ptr::null_mut(),
        };
        let g = llama_cpp_sys_2::gguf_init_from_file(csrc.as_ptr(), params);
        assert!(!g.is_null(), "cannot read {}", src.display());
        let off = llama_cpp_sys_2::gguf_get_data_offset(g);
        let align = llama_cpp_sys_2::gguf_get_alignment(g);
        assert!(
            llama_cpp_sys_2::gguf_remove_key(g, key.as_ptr()) >= 0,
            "no template key"
        );
        let mode = CString::new("wb").unwrap();
        let f = libc::fopen(cdst.as_ptr(), mode.as_ptr());
        assert!(!f.is_null());
        let ok = llama_cpp_sys_2::gguf_write_to_file_ptr(g, f as *mut _, true);
        libc::fclose(f);
        assert!(ok, "gguf write failed");
        llama_cpp_sys_2::gguf_free(g);
        (off, align)
    };
    let bytes = std::fs::read(src).unwrap();
    let mut out = std::fs::OpenOptions::new().append(true).open(dst).unwrap();
    let len = out.metadata().unwrap().len() as usize;
    let pad = (alignment - len % alignment) % alignment;
    out.write_all(&vec![0u8; pad]).unwrap();
    out.write_all(&bytes[data_offset..]).unwrap();
}

/// The library's schema check (kept under the old name for the tests).
pub fn check_schema(v: &serde_json::Value, s: &serde_json::Value) -> Result<(), String> {
    pw_llm::schema::validate(v, s)
}

/// 50 different JSON schemas with a prompt each (for the structured-output tests).
pub fn schema_cases() -> Vec<(String, serde_json::Value)> {
    use serde_json::json;
    let subjects = [
        "a city",
        "a planet",
        "a book",
        "a chemical element",
        "a programming language",
        "an animal",
        "a river",
        "a musical instrument",
        "a sport",
        "a mountain",
    ];
    let mut out = Vec::new();
    for (i, subj) in subjects.iter().enumerate() {
        let shapes = [
            json!({"type":"object","properties":{"name":{"type":"string","maxLength":40},
                "year":{"type":"integer"}},"required":["name","year"],"additionalProperties":false}),
            json!({"type":"object","properties":{"answer":{"type":"string","enum":["yes","no"]},
                "confidence_pct":{"type":"integer","minimum":0,"maximum":100}},
                "required":["answer","confidence_pct"]}),
            json!({"type":"object","properties":{"facts":{"type":"array","items":{"type":"string","maxLength":60},
                "minItems":1,"maxItems":3}},"required":["facts"]}),
            json!({"type":"object","properties":{"title":{"type":"string","maxLength":30},
                "good":{"type":"boolean"},"score":{"type":"integer","minimum":1,"maximum":10}},
                "required":["title","good","score"]}),
            json!({"type":"array","items":{"type":"object","properties":{"k":{"type":"string","maxLength":20},
                "v":{"type":"integer"}},"required":["k","v"]},"minItems":2,"maxItems":2}),
        ];
        for (j, s) in shapes.into_iter().enumerate() {
            let prompt = format!(
                "Describe {subj} (case {}) as JSON following this schema: {}",
                i * 5 + j,
                s
            );
            out.push((prompt, s));
        }
    }
    out
}

/// A running `serve` on loopback; dropping it stops the server and waits for it.
pub struct Server {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), pw_llm::LlmError>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

/// Starts `serve` over `engine` with `cfg` (bind to port 0 for a free one) on its own thread.
pub fn start_serve(
    engine: std::sync::Arc<pw_llm::Embedded>,
    cfg: pw_llm::serve::ServeConfig,
) -> Server {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(pw_llm::serve::serve(
            engine,
            cfg,
            move |a| addr_tx.send(a).unwrap(),
            async move {
                let _ = stop_rx.await;
            },
        ))
    });
    Server {
        addr: addr_rx.recv().unwrap(),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// Serves `app` (a fake OpenAI-compatible endpoint) on a free loopback port from its own
/// runtime, kept alive by the caller; returns the runtime and the base URL (`http://.../v1`).
pub fn serve_on_loopback(app: axum::Router) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, url)
}
