//! Names C libraries can open. llama-cpp-2, its multimodal loader and ffmpeg-next turn a path
//! into a C string through `&str`, so a file whose name is not UTF-8 (legal on Linux) is
//! refused or panics inside them. [`OpenName`] gives such a file a UTF-8 name: on Linux the
//! file is opened here and named through `/proc/self/fd/N`, which stays valid while the
//! `OpenName` lives.

use crate::error::{IoContext, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

pub struct OpenName {
    name: String,
    // Keeps `/proc/self/fd/N` pointing at the file.
    _file: Option<File>,
}

impl OpenName {
    pub fn new(path: &Path) -> Result<OpenName> {
        if let Some(s) = path.to_str() {
            return Ok(OpenName {
                name: s.to_string(),
                _file: None,
            });
        }
        proc_fd_name(path)
    }

    /// The UTF-8 name to hand to the library (the path itself when it is UTF-8).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn as_path(&self) -> PathBuf {
        PathBuf::from(&self.name)
    }
}

/// serde `serialize_with` for a path in a manifest or record: a name that is not UTF-8 is
/// written with U+FFFD in place of its odd bytes instead of failing the whole record.
pub fn lossy<S: serde::Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// [`lossy`] for an optional path.
pub fn lossy_opt<S: serde::Serializer>(
    p: &Option<PathBuf>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

#[cfg(target_os = "linux")]
fn proc_fd_name(path: &Path) -> Result<OpenName> {
    use std::os::fd::AsRawFd;
    let file = File::open(path).at(path)?;
    Ok(OpenName {
        name: format!("/proc/self/fd/{}", file.as_raw_fd()),
        _file: Some(file),
    })
}

#[cfg(not(target_os = "linux"))]
fn proc_fd_name(path: &Path) -> Result<OpenName> {
    Err(crate::error::Error::invalid(
        path,
        "this file name is not UTF-8, which the C libraries reading it need here; rename it",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_whose_name_is_not_utf8_opens_through_its_utf8_name() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.bin");
        std::fs::write(&plain, b"plain").unwrap();
        let n = OpenName::new(&plain).unwrap();
        assert_eq!(n.as_path(), plain);
        let odd = dir
            .path()
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.bin"));
        std::fs::write(&odd, b"odd bytes").unwrap();
        let n = OpenName::new(&odd).unwrap();
        assert!(n.as_str().is_ascii());
        assert_eq!(std::fs::read(n.as_path()).unwrap(), b"odd bytes");
        let missing = dir.path().join(std::ffi::OsStr::from_bytes(b"gone\xff"));
        let e = OpenName::new(&missing).err().unwrap().to_string();
        assert!(e.contains("gone"), "{e}");
    }
}
