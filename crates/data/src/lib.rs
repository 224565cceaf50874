//! pw-data: loaders for the data that ships offline (see docs/ARCHITECTURE.md, "Offline assets").
//!
//! - [`idx`]: the IDX format and Fashion-MNIST (Debian `dataset-fashion-mnist`), gzipped or not;
//! - [`digits`]: scikit-learn's 8x8 digits (1797 images, 10 classes);
//! - [`humaneval`]: OpenAI HumanEval (164 Python tasks);
//! - [`dedup`]: exact/near-duplicate (MinHash-LSH) and n-gram contamination checks for generated
//!   text datasets;
//! - [`video`]: video files through FFmpeg (uniform / fps / all frames, resize + centre crop,
//!   clips in windows, decoding on worker threads);
//! - [`synthvideo`]: synthetic captioned videos with appearance and motion labels.
//!
//! Every loader checks what it reads (magic numbers, dimensions, counts, fields) and rejects a
//! corrupt or truncated file with an error naming the file and what is wrong with it.

pub mod assets;
pub mod dedup;
pub mod digits;
pub mod humaneval;
pub mod idx;
pub mod synthvideo;
pub mod video;

use pw_core::{Error, IoContext, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The assets directory: `$PAPERWORKS_ASSETS`, else `./assets`.
pub fn default_assets_dir() -> PathBuf {
    std::env::var_os("PAPERWORKS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("assets"))
}

/// Fails with a "missing asset" error that tells how to get it.
pub fn require_asset(path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(Error::MissingAsset {
            path: path.to_path_buf(),
            hint: "run scripts/setup.sh (or `make reproduce`) to fetch the offline assets, or set PAPERWORKS_ASSETS".into(),
        })
    }
}

/// The most bytes [`read_maybe_gz`] unpacks from one file: far above any shipped data set
/// (Fashion-MNIST's largest file unpacks to 47 MB), far below what a gzip bomb asks for.
pub const MAX_GUNZIPPED_BYTES: u64 = 1 << 30;

/// Reads a whole file, gunzipping it when it starts with the gzip magic. A truncated gzip
/// stream, or one that unpacks to more than [`MAX_GUNZIPPED_BYTES`], is an error naming the
/// file.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    read_maybe_gz_bounded(path, MAX_GUNZIPPED_BYTES)
}

fn read_maybe_gz_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    require_asset(path)?;
    let raw = std::fs::read(path).at(path)?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(max as usize));
        flate2::read::GzDecoder::new(&raw[..])
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid(path, format!("corrupt or truncated gzip data: {e}")))?;
        if out.len() as u64 > max {
            return Err(Error::invalid(
                path,
                format!(
                    "unpacks to more than {} MiB: not one of the data sets we read (a gzip bomb?)",
                    max >> 20
                ),
            ));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Picks `name` or `name.gz` inside `dir`, whichever exists (the plain file first).
pub fn plain_or_gz(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    if plain.exists() {
        plain
    } else {
        dir.join(format!("{name}.gz"))
    }
}

#[cfg(test)]
mod gz_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_gzip_bomb_is_refused_at_the_bound_not_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() < 200_000);
        let e = read_maybe_gz_bounded(&p, 8 << 20).unwrap_err().to_string();
        assert!(
            e.contains("bomb.gz") && e.contains("more than 8 MiB"),
            "{e}"
        );
        assert_eq!(read_maybe_gz_bounded(&p, 64 << 20).unwrap().len(), 64 << 20);
    }
}
