//! Image parts of chat messages: local files become `data:` URIs when a request is sent (so a
//! request names a path, and the bytes travel only on the wire), and the cache key hashes the
//! image bytes rather than the path, so an edited image is a new request.

use crate::types::{Content, ImageUrl};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// OpenAI's limit for one image.
pub const MAX_IMAGE_BYTES: u64 = 20 << 20;

/// A local file named by `url` (a plain path or a `file://` URL); `None` for data URIs and
/// remote URLs.
pub fn local_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("data:") || url.starts_with("http://") || url.starts_with("https://") {
        return None;
    }
    Some(PathBuf::from(url.strip_prefix("file://").unwrap_or(url)))
}

/// The MIME type of an image by its first bytes (PNG, JPEG, GIF, WebP).
pub fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Reads a local image, checked: it exists, is at most [`MAX_IMAGE_BYTES`] and is a PNG, JPEG,
/// GIF or WebP. `Err` names the file.
pub fn read_image(path: &Path) -> Result<(Vec<u8>, &'static str), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("image {}: {e}", path.display()))?;
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "image {}: {} bytes, more than the {MAX_IMAGE_BYTES} an image may have",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("image {}: {e}", path.display()))?;
    let mime = sniff_mime(&bytes).ok_or_else(|| {
        format!(
            "image {}: not a PNG, JPEG, GIF or WebP file",
            path.display()
        )
    })?;
    Ok((bytes, mime))
}

/// `data:<mime>;base64,<bytes>`.
pub fn data_uri(bytes: &[u8], mime: &str) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// What an image URL becomes on the wire: local files are read into data URIs; a data URI must
/// be a base64 image; remote URLs pass through for the server to fetch.
pub fn wire_url(url: &str) -> Result<String, String> {
    if let Some(path) = local_path(url) {
        let (bytes, mime) = read_image(&path)?;
        return Ok(data_uri(&bytes, mime));
    }
    if let Some(rest) = url.strip_prefix("data:") {
        let ok = rest.starts_with("image/") && rest.contains(";base64,");
        if !ok {
            return Err("image data URI: expected data:image/<type>;base64,...".into());
        }
    }
    Ok(url.to_string())
}

/// The bytes of an image URL for a model that runs here: a local file (checked as
/// [`read_image`] does) or a base64 data URI; a remote URL is refused (nothing is downloaded).
pub fn image_bytes(url: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = local_path(url) {
        return read_image(&path).map(|(b, _)| b);
    }
    if let Some(rest) = url.strip_prefix("data:") {
        let (_, b64) = rest
            .split_once(";base64,")
            .ok_or("image data URI: expected data:image/<type>;base64,...")?;
        return base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("image data URI: invalid base64 ({e})"));
    }
    Err(format!(
        "image {url}: remote images are not fetched for a local model (give a path or a data URI)"
    ))
}

/// `content` with every image URL made sendable by [`wire_url`].
pub fn wire_content(content: &Content) -> Result<Content, String> {
    match content {
        Content::Text(_) => Ok(content.clone()),
        Content::Parts(parts) => {
            let mut out = parts.clone();
            for p in out.iter_mut() {
                if let Some(img) = &mut p.image_url {
                    img.url = wire_url(&img.url)?;
                }
            }
            Ok(Content::Parts(out))
        }
    }
}

/// What stands for an image in a cache key: the SHA-256 of its bytes for a local file (of its
/// URI for a data URI, which holds the bytes; the URL itself for a remote one).
pub fn key_of(img: &ImageUrl) -> String {
    match local_path(&img.url) {
        Some(path) => match std::fs::read(&path) {
            Ok(bytes) => format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            // Unreadable: the request fails when sent, and failures are never cached.
            Err(_) => format!("unreadable:{}", img.url),
        },
        None if img.url.starts_with("data:") => {
            format!("sha256:{}", hex::encode(Sha256::digest(img.url.as_bytes())))
        }
        None => img.url.clone(),
    }
}

/// `content` as it enters a cache key: image URLs replaced by [`key_of`].
pub fn key_content(content: &Content) -> Content {
    match content {
        Content::Text(_) => content.clone(),
        Content::Parts(parts) => {
            let mut out = parts.clone();
            for p in out.iter_mut() {
                if let Some(img) = &mut p.image_url {
                    img.url = key_of(img);
                }
            }
            Content::Parts(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ContentPart;

    const PNG_1X1: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8,
        0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    #[test]
    fn a_local_image_is_sent_as_a_data_uri_and_keyed_by_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dot.png");
        std::fs::write(&p, PNG_1X1).unwrap();
        let c = Content::Parts(vec![
            ContentPart::image(p.to_str().unwrap()),
            ContentPart::text("what is this?"),
        ]);
        let wire = wire_content(&c).unwrap();
        let url = wire.images().next().unwrap().url.clone();
        assert!(url.starts_with("data:image/png;base64,iVBOR"), "{url}");
        let k1 = key_content(&c);
        // Same bytes under another name: the same key; other bytes under the same name: not.
        let q = dir.path().join("copy.png");
        std::fs::write(&q, PNG_1X1).unwrap();
        let c2 = Content::Parts(vec![
            ContentPart::image(format!("file://{}", q.display())),
            ContentPart::text("what is this?"),
        ]);
        assert_eq!(k1, key_content(&c2));
        let mut other = PNG_1X1.to_vec();
        other.push(0);
        std::fs::write(&p, &other).unwrap();
        assert_ne!(k1, key_content(&c));
    }

    #[test]
    fn a_missing_or_foreign_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.jpg");
        let e = wire_url(missing.to_str().unwrap()).unwrap_err();
        assert!(e.contains("nope.jpg"), "{e}");
        let txt = dir.path().join("notes.png");
        std::fs::write(&txt, "not an image").unwrap();
        let e = wire_url(txt.to_str().unwrap()).unwrap_err();
        assert!(e.contains("notes.png") && e.contains("not a PNG"), "{e}");
        assert!(wire_url("data:text/plain,hello").is_err());
        assert_eq!(
            wire_url("https://example.org/a.png").unwrap(),
            "https://example.org/a.png"
        );
    }
}
