//! Messages with image parts over HTTP: a local image is sent as a data URI in OpenAI's
//! `image_url` form, the response cache keys on the image's bytes, a missing image is a
//! per-request error naming the file, and `serve` (a model without a vision projector)
//! refuses an image with a 400 that says why.

mod common;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use pw_llm::serve::ServeConfig;
use pw_llm::{
    Cache, Cached, ChatMessage, Embedded, EmbeddedConfig, GenParams, Generator, Http, HttpConfig,
    Request,
};
use std::sync::{Arc, Mutex};

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Every request body the fake vision endpoint received.
type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

async fn vision(State(seen): State<Seen>, body: String) -> axum::Json<serde_json::Value> {
    let req: serde_json::Value = serde_json::from_str(&body).unwrap();
    let parts = req["messages"][0]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let images = parts.iter().filter(|p| p["type"] == "image_url").count();
    seen.lock().unwrap().push(req);
    axum::Json(serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant",
            "content": format!("I see {images} image(s).")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4}
    }))
}

#[test]
fn images_travel_as_data_uris_and_the_cache_keys_on_their_bytes() {
    let seen: Seen = Arc::default();
    let (_rt, url) = common::serve_on_loopback(
        Router::new()
            .route("/v1/chat/completions", post(vision))
            .with_state(seen.clone()),
    );
    let http = Http::new(HttpConfig {
        endpoints: vec![url],
        model: "vlm".into(),
        max_retries: 0,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("cat.png");
    std::fs::write(&img, PNG).unwrap();
    let cache = Arc::new(Cache::open(dir.path().join("cache.redb")).unwrap());
    let g = Cached::new(http, cache);
    let ask = |id: &str| {
        Request::new(
            id,
            vec![ChatMessage::user_with_images(
                "Is there a dog in this image?",
                &[img.to_str().unwrap()],
            )],
            GenParams::greedy(16),
        )
    };

    let c = g.generate(&ask("a")).unwrap();
    assert_eq!(c.text(), "I see 1 image(s).");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let parts = seen[0]["messages"][0]["content"].as_array().unwrap();
        assert_eq!(parts[0]["type"], "image_url");
        let url = parts[0]["image_url"]["url"].as_str().unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").expect(url);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(bytes, PNG, "the file's bytes, not its path, are sent");
        assert_eq!(parts[1]["type"], "text");
        assert_eq!(parts[1]["text"], "Is there a dog in this image?");
    }
    // The same image again: answered from the cache.
    let again = g.generate(&ask("b")).unwrap();
    assert!(again.cached);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The same path with other bytes is another request.
    let mut other = PNG.to_vec();
    other.extend_from_slice(b"trailing");
    std::fs::write(&img, &other).unwrap();
    let fresh = g.generate(&ask("c")).unwrap();
    assert!(!fresh.cached);
    assert_eq!(seen.lock().unwrap().len(), 2);
    // A missing image fails that request with its name, and nothing is sent.
    std::fs::remove_file(&img).unwrap();
    let err = g.generate(&ask("d")).unwrap_err().to_string();
    assert!(err.contains("cat.png"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn serve_refuses_an_image_without_a_vision_projector() {
    let mut cfg = EmbeddedConfig::new(common::smollm2());
    cfg.ctx_per_seq = 512;
    cfg.parallel = 1;
    let engine = Arc::new(Embedded::load(cfg).unwrap());
    // The embedded backend refuses it directly too.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.png");
    std::fs::write(&img, PNG).unwrap();
    let req = Request::new(
        "v",
        vec![ChatMessage::user_with_images(
            "What is this?",
            &[img.to_str().unwrap()],
        )],
        GenParams::greedy(8),
    );
    let e = engine.generate(&req).unwrap_err().to_string();
    assert!(e.contains("vision projector"), "{e}");

    let server = common::start_serve(
        engine.clone(),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: None,
            max_body_bytes: 1 << 20,
            max_queue: 4,
            ..Default::default()
        },
    );
    let addr = server.addr;
    let http = Http::new(HttpConfig {
        endpoints: vec![format!("http://{addr}/v1")],
        model: "smol".into(),
        max_retries: 0,
        ..Default::default()
    })
    .unwrap();
    let e = http.generate(&req).unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("vision projector"), "{e}");
    // Text still works on the same server.
    let ok = http
        .generate(&Request::user("t", "Say hi.", GenParams::greedy(4)))
        .unwrap();
    assert!(!ok.text().is_empty());
}

/// The mtmd path (a user's vision GGUF + mmproj) up to the load: no vision GGUF ships
/// offline, so what is checked is that every wrong projector is one clear error naming it.
#[test]
fn a_wrong_mmproj_is_refused_with_a_line_naming_it() {
    use pw_llm::embedded::vision::{EmbeddedVision, VisionConfig};
    let model = common::smollm2();
    let dir = tempfile::tempdir().unwrap();
    let load = |mmproj: std::path::PathBuf| {
        EmbeddedVision::load(VisionConfig {
            model: EmbeddedConfig {
                threads: Some(1),
                ..EmbeddedConfig::new(&model)
            },
            mmproj,
        })
        .err()
        .expect("must be refused")
        .to_string()
    };
    let missing = dir.path().join("missing-mmproj.gguf");
    let e = load(missing.clone());
    assert!(
        e.contains("missing-mmproj.gguf") && e.contains("mmproj"),
        "{e}"
    );
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a GGUF file at all").unwrap();
    let e = load(garbage);
    assert!(e.contains("garbage.gguf") && e.contains("mmproj"), "{e}");
    // A GGUF that is a language model, not a projector (as a projector for another model
    // would be, it is refused by mtmd at load).
    let e = load(model.clone());
    assert!(
        e.contains("mmproj") && e.contains("could not load it as a projector"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}
