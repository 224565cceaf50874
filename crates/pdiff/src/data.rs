//! Fashion-MNIST for p-diff: 55,000 training / 5,000 validation images carved (seeded) from the
//! official training set, and the official 10,000 test images. Checkpoint selection uses the
//! validation split only; the test split is for reporting (the official code picked "best" on
//! test data).

use pw_core::Result;
use pw_data::idx::{ImageSet, Split as IdxSplit, load_fashion_mnist};
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::path::Path;

/// Fashion-MNIST pixel mean and standard deviation (over the training set, in [0, 1]).
const MEAN: f32 = 0.2860;
const STD: f32 = 0.3530;
pub const VALIDATION: usize = 5_000;

/// Normalised images, row-major [n, 28 * 28], with labels.
#[derive(Debug, Clone)]
pub struct Split {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Split {
    fn from_indices(set: &ImageSet, idx: &[usize]) -> Split {
        let mut images = Vec::with_capacity(idx.len() * 784);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend(
                set.image(i)
                    .iter()
                    .map(|&p| (p as f32 / 255.0 - MEAN) / STD),
            );
            labels.push(set.labels[i]);
        }
        Split { images, labels }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Images `idx` as [b, 1, 28, 28] and their labels.
    pub fn batch(&self, idx: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let mut x = Vec::with_capacity(idx.len() * 784);
        for &i in idx {
            x.extend_from_slice(&self.images[i * 784..(i + 1) * 784]);
        }
        let y: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        (
            Tensor::from_data(TensorData::new(x, [idx.len(), 1, 28, 28]), device),
            Tensor::from_data(TensorData::new(y, [idx.len()]), device),
        )
    }

    /// A contiguous range of images as [b, 1, 28, 28].
    pub fn range(&self, start: usize, len: usize, device: &Device) -> Tensor<4> {
        let x = self.images[start * 784..(start + len) * 784].to_vec();
        Tensor::from_data(TensorData::new(x, [len, 1, 28, 28]), device)
    }
}

pub struct FashionSplits {
    pub train: Split,
    pub val: Split,
    pub test: Split,
}

/// Loads Fashion-MNIST from `dir` and splits it. `limit` keeps only the first N training (and
/// N/5 test) images, for smoke tests.
pub fn load_splits(dir: &Path, seed: u64, limit: Option<usize>) -> Result<FashionSplits> {
    let train_set = load_fashion_mnist(dir, IdxSplit::Train)?;
    let test_set = load_fashion_mnist(dir, IdxSplit::Test)?;
    let mut idx: Vec<usize> = (0..train_set.len()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_da7a));
    let (val_idx, train_idx) = idx.split_at(VALIDATION);
    let take = |v: &[usize], n: Option<usize>| v[..n.unwrap_or(v.len()).min(v.len())].to_vec();
    let test_idx: Vec<usize> = (0..test_set.len()).collect();
    Ok(FashionSplits {
        train: Split::from_indices(&train_set, &take(train_idx, limit)),
        val: Split::from_indices(&train_set, &take(val_idx, limit.map(|n| n / 5))),
        test: Split::from_indices(&test_set, &take(&test_idx, limit.map(|n| n / 5))),
    })
}
