//! Evaluation of parameter sets (§4): accuracy on the validation and test splits, the wrongly
//! predicted test samples of each model, and the similarity of two models as the IoU of those
//! sets. A set's "best" model is chosen on validation accuracy, never on test accuracy.

use crate::diffusion::ParamDataset;
use crate::model::Cnn;
use crate::train::{evaluate_head, with_subset_from};
use pw_core::Result;
use pw_nn::burn::tensor::Device;
use std::path::Path;

/// Cached trunk features and labels of the validation and test splits.
pub struct EvalData {
    pub val_feats: Vec<f32>,
    pub val_labels: Vec<u8>,
    pub test_feats: Vec<f32>,
    pub test_labels: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct ModelScore {
    pub val_acc: f64,
    pub test_acc: f64,
    /// Per test sample: predicted wrongly.
    pub wrong: Vec<bool>,
}

/// Scores every parameter vector of `rows` (in `ds`'s layout) loaded into `base`.
pub fn score_rows(
    base: &Cnn,
    ds: &ParamDataset,
    rows: &[Vec<f32>],
    data: &EvalData,
    device: &Device,
) -> Result<Vec<ModelScore>> {
    let base_tensors = pw_nn::checkpoint::module_tensors(base);
    rows.iter()
        .map(|r| {
            let m = with_subset_from(
                base,
                &base_tensors,
                &ds.to_named(r),
                Path::new("<generated>"),
            )?;
            let (val_acc, _) = evaluate_head(&m, &data.val_feats, &data.val_labels, device);
            let (test_acc, wrong) = evaluate_head(&m, &data.test_feats, &data.test_labels, device);
            Ok(ModelScore {
                val_acc,
                test_acc,
                wrong,
            })
        })
        .collect()
}

/// IoU of two models' sets of wrongly predicted samples.
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (mut inter, mut union) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        inter += usize::from(x && y);
        union += usize::from(x || y);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// For each model of `set`, its highest IoU with any model of `reference` (skipping the same
/// index when `set` is `reference`, so an original is not compared with itself).
pub fn max_similarity(set: &[ModelScore], reference: &[ModelScore], same: bool) -> Vec<f64> {
    set.iter()
        .enumerate()
        .map(|(i, s)| {
            reference
                .iter()
                .enumerate()
                .filter(|(j, _)| !same || *j != i)
                .map(|(_, r)| iou(&s.wrong, &r.wrong))
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Summary of a set: test accuracy of the validation-selected model, mean, median, min, max.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SetSummary {
    pub best_by_val: f64,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summarize(set: &[ModelScore]) -> SetSummary {
    let best = set
        .iter()
        .max_by(|a, b| a.val_acc.total_cmp(&b.val_acc))
        .expect("a non-empty set");
    let mut t: Vec<f64> = set.iter().map(|s| s.test_acc).collect();
    t.sort_by(f64::total_cmp);
    let median = if t.len() % 2 == 1 {
        t[t.len() / 2]
    } else {
        (t[t.len() / 2 - 1] + t[t.len() / 2]) / 2.0
    };
    SetSummary {
        best_by_val: best.test_acc,
        mean: t.iter().sum::<f64>() / t.len() as f64,
        median,
        min: t[0],
        max: t[t.len() - 1],
    }
}

/// Mean of a slice (0 when empty).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(val: f64, test: f64, wrong: &[bool]) -> ModelScore {
        ModelScore {
            val_acc: val,
            test_acc: test,
            wrong: wrong.to_vec(),
        }
    }

    #[test]
    fn iou_and_max_similarity_follow_the_definition() {
        assert_eq!(
            iou(&[true, true, false, false], &[true, false, true, false]),
            1.0 / 3.0
        );
        assert_eq!(iou(&[false, false], &[false, false]), 1.0);
        let a = [
            score(0.9, 0.8, &[true, false, false]),
            score(0.8, 0.9, &[true, true, false]),
        ];
        // Each original is compared with the others only.
        assert_eq!(max_similarity(&a, &a, true), vec![0.5, 0.5]);
        assert_eq!(max_similarity(&a, &a, false), vec![1.0, 1.0]);
    }

    #[test]
    fn best_is_chosen_on_validation_not_test() {
        let s = summarize(&[
            score(0.95, 0.80, &[]),
            score(0.90, 0.99, &[]),
            score(0.10, 0.5, &[]),
        ]);
        assert_eq!(s.best_by_val, 0.80);
        assert_eq!(s.median, 0.80);
        assert_eq!(s.max, 0.99);
    }
}
