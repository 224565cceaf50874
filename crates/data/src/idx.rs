//! The IDX format (LeCun's MNIST files) and Fashion-MNIST.
//!
//! Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then each
//! dimension as a big-endian u32, then the data in row-major order.

use crate::{plain_or_gz, read_maybe_gz};
use pw_core::{Error, Result};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses IDX bytes (unsigned-byte type only, which is what MNIST-style files use).
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<Idx> {
    if bytes.len() < 4 {
        return Err(Error::invalid(
            path,
            format!("truncated IDX header ({} bytes)", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::invalid(
            path,
            format!(
                "wrong IDX magic {:02x}{:02x}{:02x}{:02x}: not an IDX file",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::invalid(
            path,
            format!(
                "IDX type code 0x{:02x} is not unsigned byte (0x08)",
                bytes[2]
            ),
        ));
    }
    let nd = bytes[3] as usize;
    if nd == 0 || nd > 4 {
        return Err(Error::invalid(
            path,
            format!("IDX with {nd} dimensions is not supported"),
        ));
    }
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(Error::invalid(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::invalid(path, "IDX dimensions overflow"))?;
    let have = bytes.len() - header;
    if have != want {
        return Err(Error::invalid(
            path,
            format!(
                "IDX dims {dims:?} need {want} data bytes but the file has {have}: {}",
                if have < want {
                    "truncated"
                } else {
                    "trailing garbage"
                }
            ),
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

pub fn read_idx(path: &Path) -> Result<Idx> {
    let bytes = read_maybe_gz(path)?;
    parse_idx(path, &bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Grayscale images with labels: `images[i * rows * cols ..]` is image `i`.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    pub classes: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.images[i * n..(i + 1) * n]
    }
}

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Loads a Fashion-MNIST split from `dir` (files named as upstream, gzipped or not), checking
/// magic numbers, 28x28 images, label range and that image and label counts agree
/// (60,000 train, 10,000 test).
pub fn load_fashion_mnist(dir: &Path, split: Split) -> Result<ImageSet> {
    let (stem, expect) = match split {
        Split::Train => ("train", 60_000),
        Split::Test => ("t10k", 10_000),
    };
    let ip = plain_or_gz(dir, &format!("{stem}-images-idx3-ubyte"));
    let lp = plain_or_gz(dir, &format!("{stem}-labels-idx1-ubyte"));
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
    if images.dims.len() != 3 || images.dims[1] != 28 || images.dims[2] != 28 {
        return Err(Error::invalid(
            &ip,
            format!("expected N x 28 x 28 images, found dims {:?}", images.dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::invalid(
            &lp,
            format!("expected a 1-D label file, found dims {:?}", labels.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::invalid(
            &lp,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                ip.display()
            ),
        ));
    }
    if images.dims[0] != expect {
        return Err(Error::invalid(
            &ip,
            format!(
                "expected {expect} images for this split, found {}",
                images.dims[0]
            ),
        ));
    }
    if let Some(i) = labels.data.iter().position(|&l| l >= 10) {
        return Err(Error::invalid(
            &lp,
            format!("label {} at index {i} is outside 0..10", labels.data[i]),
        ));
    }
    Ok(ImageSet {
        images: images.data,
        labels: labels.data,
        rows: 28,
        cols: 28,
        classes: 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_a_well_formed_file() {
        let b = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let idx = parse_idx(Path::new("x"), &b).unwrap();
        assert_eq!(idx.dims, vec![2, 3]);
        assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn truncated_data_names_the_file_and_the_shortfall() {
        let b = idx_bytes(&[2, 3], &[1, 2, 3]);
        let e = parse_idx(Path::new("imgs.idx"), &b)
            .unwrap_err()
            .to_string();
        assert!(e.contains("imgs.idx") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut b = idx_bytes(&[1], &[0]);
        b[0] = 0x50;
        assert!(
            parse_idx(Path::new("x"), &b)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        let mut b = idx_bytes(&[1], &[0]);
        b[2] = 0x0d; // float type
        assert!(
            parse_idx(Path::new("x"), &b)
                .unwrap_err()
                .to_string()
                .contains("type code")
        );
    }
}
