//! Weight-format conversion at load time (`--requant`).
//!
//! Why: a batch of sequences is only faster than one at a time if the matrix products reuse
//! each weight for several tokens. llama.cpp's CPU backend has such GEMM kernels (llamafile's
//! tinyBLAS and the AVX2 repacked layouts) for Q4_0, Q5_0, Q8_0 and the K-quants, but not for
//! Q4_1, the format SmolLM2 ships in: there every token pays a separate dot product per
//! weight row, and 8 parallel sequences run only ~1.8x faster than one. Converting Q4_1 to
//! Q8_0 is nearly lossless (Q8_0's step is 1/8 of Q4_1's for the same block range) and turns
//! on the GEMM path. The converted file is written once, atomically, into a cache folder.

use super::engine::backend;
use crate::LlmError;
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requant {
    Q8_0,
    Q5_0,
    Q4_0,
}

impl Requant {
    pub fn name(self) -> &'static str {
        match self {
            Requant::Q8_0 => "q8_0",
            Requant::Q5_0 => "q5_0",
            Requant::Q4_0 => "q4_0",
        }
    }
    fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        match self {
            Requant::Q8_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0,
            Requant::Q5_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_0,
            Requant::Q4_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0,
        }
    }
}

impl std::str::FromStr for Requant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Requant::Q8_0),
            "q5_0" => Ok(Requant::Q5_0),
            "q4_0" => Ok(Requant::Q4_0),
            other => Err(format!(
                "unknown weight format {other:?} (q8_0, q5_0 or q4_0)"
            )),
        }
    }
}

/// What to do with the weights at load: `auto` converts formats without a batched CPU kernel
/// (Q4_1, Q5_1) to Q8_0 and keeps the rest; `keep` never converts; a format converts to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    #[default]
    Auto,
    Keep,
    Q8_0,
    Q5_0,
    Q4_0,
}

impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(WeightFormat::Auto),
            "keep" | "none" => Ok(WeightFormat::Keep),
            other => match other.parse::<Requant>() {
                Ok(Requant::Q8_0) => Ok(WeightFormat::Q8_0),
                Ok(Requant::Q5_0) => Ok(WeightFormat::Q5_0),
                Ok(Requant::Q4_0) => Ok(WeightFormat::Q4_0),
                Err(_) => Err(format!(
                    "unknown weight format {other:?} (auto, keep, q8_0, q5_0 or q4_0)"
                )),
            },
        }
    }
}

/// llama.cpp's `general.file_type` values of the formats `auto` converts.
const FTYPE_Q4_1: u32 = 3;
const FTYPE_Q5_1: u32 = 9;

impl WeightFormat {
    /// The format the reproductions decode in. Their stages decode 8-16 sequences at a time or
    /// force whole code lines, where llama.cpp's Q8_0 GEMM (tinyBLAS) outruns the K-quants'
    /// kernels. Qwen2.5-Coder-0.5B Q4_K_M as Q8_0 on 2 cores: prompt 124 -> 146 tokens/s, 16
    /// streams 79 -> 85, `comments augment` of 16 functions 41 -> 35.5 s. One stream is slower
    /// (28-31 -> 24-28 tokens/s: more bytes per token), so interactive use keeps `auto`. Q8_0
    /// holds a Q4_K value to within a small part of the Q4_K step: of 16 functions commented
    /// both ways, 13 came out identical and the others differ at close calls.
    pub const BATCHED: WeightFormat = WeightFormat::Q8_0;

    /// The conversion to do for `path` (`None`: load it as it is). With GPU offload `auto`
    /// keeps the file: the conversion is for the CPU kernels.
    pub fn resolve(self, path: &Path, gpu_layers: u32) -> Option<Requant> {
        match self {
            WeightFormat::Keep => None,
            WeightFormat::Q8_0 => Some(Requant::Q8_0),
            WeightFormat::Q5_0 => Some(Requant::Q5_0),
            WeightFormat::Q4_0 => Some(Requant::Q4_0),
            WeightFormat::Auto => {
                if gpu_layers > 0 {
                    return None;
                }
                let ctx = llama_cpp_2::gguf::GgufContext::from_file(path)?;
                let i = ctx.find_key("general.file_type");
                if i < 0 {
                    return None;
                }
                matches!(ctx.val_u32(i), FTYPE_Q4_1 | FTYPE_Q5_1).then_some(Requant::Q8_0)
            }
        }
    }
}

/// Where the converted copy of `src` lives: `<cache>/<stem>.<key>.<format>.gguf`, the key a
/// hash of the source's contents, so every checkout of the same model (a clean clone, a test's
/// temporary copy) shares one copy, and a changed file gets a new one.
pub fn cached_path(src: &Path, to: Requant, cache: &Path) -> Result<PathBuf, LlmError> {
    let key = content_key(src, cache)?;
    let stem = src
        .file_name()
        .map(|f| f.to_string_lossy().trim_end_matches(".gguf").to_string())
        .unwrap_or_else(|| "model".into());
    Ok(cache.join(format!("{stem}.{key}.{}.gguf", to.name())))
}

/// The first 16 hex digits of the SHA-256 of `src`'s bytes.
///
/// Hashing a model costs about 0.3 s per 100 MB here, so the result is remembered in
/// `<cache>/keys/<hash of path, size, mtime>`: a file is read once per place and version. A
/// missing or unreadable memo only means hashing again.
fn content_key(src: &Path, cache: &Path) -> Result<String, LlmError> {
    let meta = std::fs::metadata(src).map_err(|e| LlmError::model(src, e.to_string()))?;
    let abs = std::fs::canonicalize(src).map_err(|e| LlmError::model(src, e.to_string()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(abs.to_string_lossy().as_bytes());
    h.update(meta.len().to_le_bytes());
    h.update(mtime.to_le_bytes());
    let memo = cache.join("keys").join(hex::encode(&h.finalize()[..8]));
    if let Ok(key) = std::fs::read_to_string(&memo)
        && key.len() == 16
        && key.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(key);
    }
    let mut file = std::fs::File::open(src).map_err(|e| LlmError::model(src, e.to_string()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| LlmError::model(src, e.to_string()))?;
    let key = hex::encode(&h.finalize()[..8]);
    // Best effort: a read-only cache still converts, it just hashes at every load.
    if std::fs::create_dir_all(memo.parent().expect("keys/ has a parent")).is_ok() {
        let _ = pw_core::write_atomic(&memo, key.as_bytes());
    }
    Ok(key)
}

/// Converts `src` into `to` unless the cached copy exists; returns the copy's path.
pub fn ensure(src: &Path, to: Requant, cache: &Path, threads: usize) -> Result<PathBuf, LlmError> {
    let dst = cached_path(src, to, cache)?;
    remove_dead_conversions(cache);
    let done = done_marker(&dst);
    if dst.exists() {
        // The marker holds the size the conversion wrote: a copy cut short later (a full
        // disk, a hand edit) is converted again instead of failing at every load.
        let want = std::fs::read_to_string(&done)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let have = std::fs::metadata(&dst).map(|m| m.len()).ok();
        if want.is_some() && want == have {
            return Ok(dst);
        }
        tracing::warn!(
            "{}: converted copy is incomplete ({} bytes, {} expected); converting again",
            dst.display(),
            have.unwrap_or(0),
            want.map_or("unknown".to_string(), |w| w.to_string())
        );
        // Not removed: a process that opened it keeps reading its copy; the rename of the
        // new conversion replaces it for everyone else.
    }
    std::fs::create_dir_all(cache)
        .map_err(|e| LlmError::model(cache, format!("cannot create the cache folder: {e}")))?;
    backend()?;
    super::engine::take_last_error();
    let tmp = dst.with_extension(format!(
        "tmp{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    let cs = |p: &Path| {
        // fopen takes the name's bytes as they are: no UTF-8 needed
        CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
            .map_err(|e| LlmError::model(p, e.to_string()))
    };
    let (csrc, ctmp) = (cs(src)?, cs(&tmp)?);
    tracing::info!(
        "converting {} to {} (once; cached at {})",
        src.display(),
        to.name(),
        dst.display()
    );
    let rc = unsafe {
        let mut p = llama_cpp_sys_2::llama_model_quantize_default_params();
        p.nthread = threads as i32;
        p.ftype = to.ftype();
        p.allow_requantize = true;
        llama_cpp_sys_2::llama_model_quantize(csrc.as_ptr(), ctmp.as_ptr(), &p)
    };
    if rc != 0 {
        let _ = std::fs::remove_file(&tmp);
        let why = super::engine::take_last_error().unwrap_or_else(|| format!("code {rc}"));
        return Err(LlmError::model(
            src,
            format!(
                "llama.cpp could not load it (to convert to {}): {why}",
                to.name()
            ),
        ));
    }
    let size = std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all().and_then(|_| f.metadata()))
        .map(|m| m.len())
        .map_err(|e| LlmError::model(&tmp, e.to_string()))?;
    // The marker first: a copy in place always has the size it must have beside it.
    pw_core::write_atomic(&done, size.to_string().as_bytes())
        .map_err(|e| LlmError::model(&done, e.to_string()))?;
    std::fs::rename(&tmp, &dst).map_err(|e| LlmError::model(&dst, e.to_string()))?;
    Ok(dst)
}

/// `<copy>.done`: written after a conversion finished, holding the copy's size.
fn done_marker(dst: &Path) -> PathBuf {
    let mut s = dst.as_os_str().to_owned();
    s.push(".done");
    PathBuf::from(s)
}

/// Removes `*.tmp<PID>-<nanos>` conversions of processes that no longer run (killed mid-conversion:
/// hundreds of MB each).
fn remove_dead_conversions(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let pid = p
            .extension()
            .and_then(|x| x.to_str())
            .and_then(|x| x.strip_prefix("tmp"))
            .and_then(|x| x.split('-').next())
            .and_then(|x| x.parse::<u32>().ok());
        if let Some(pid) = pid
            && !pw_core::atomic::process_alive(pid)
            && std::fs::remove_file(&p).is_ok()
        {
            tracing::info!("removed {} (a conversion a killed run left)", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two checkouts of one model share a converted copy; different bytes get their own.
    #[test]
    fn the_cached_copy_is_keyed_by_the_source_contents_not_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (a, b, c) = (
            dir.path().join("a/m.gguf"),
            dir.path().join("b/m.gguf"),
            dir.path().join("c/m.gguf"),
        );
        for (p, bytes) in [(&a, b"GGUF one"), (&b, b"GGUF one"), (&c, b"GGUF two")] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let pa = cached_path(&a, Requant::Q8_0, &cache).unwrap();
        assert_eq!(pa, cached_path(&b, Requant::Q8_0, &cache).unwrap());
        assert_ne!(pa, cached_path(&c, Requant::Q8_0, &cache).unwrap());
        assert_eq!(pa.parent(), Some(cache.as_path()));
        let name = pa.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("m.") && name.ends_with(".q8_0.gguf"),
            "{name}"
        );
        // the memo answers the second time; a changed file (new size) is hashed again
        assert_eq!(pa, cached_path(&a, Requant::Q8_0, &cache).unwrap());
        std::fs::write(&a, b"GGUF two, longer").unwrap();
        assert_ne!(pa, cached_path(&a, Requant::Q8_0, &cache).unwrap());
        // an unusable memo is not trusted
        for memo in std::fs::read_dir(cache.join("keys")).unwrap() {
            std::fs::write(memo.unwrap().path(), "not a key").unwrap();
        }
        assert_eq!(pa, cached_path(&b, Requant::Q8_0, &cache).unwrap());
    }
}
