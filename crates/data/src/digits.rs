//! scikit-learn's digits: 1797 images of 8x8 pixels (values 0..=16) and their digit, one CSV row
//! each (64 pixel columns then the label), gzipped, as in `sklearn/datasets/data/digits.csv.gz`.

use crate::idx::ImageSet;
use crate::read_maybe_gz;
use pw_core::{Error, Result};
use std::path::Path;

pub const DIGITS_ROWS: usize = 1797;

pub fn load_digits(path: &Path) -> Result<ImageSet> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::invalid(path, "not UTF-8 text"))?;
    let mut images = Vec::with_capacity(DIGITS_ROWS * 64);
    let mut labels = Vec::with_capacity(DIGITS_ROWS);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut n = 0;
        for (j, cell) in line.split(',').enumerate() {
            let v: f32 = cell.trim().parse().map_err(|_| {
                Error::corrupt(
                    path,
                    i + 1,
                    format!("column {}: {cell:?} is not a number", j + 1),
                )
            })?;
            if v.fract() != 0.0 || !(0.0..=16.0).contains(&v) {
                return Err(Error::corrupt(
                    path,
                    i + 1,
                    format!("column {}: {v} is outside 0..=16", j + 1),
                ));
            }
            if j < 64 {
                images.push(v as u8);
            } else if j == 64 {
                if v > 9.0 {
                    return Err(Error::corrupt(
                        path,
                        i + 1,
                        format!("label {v} is not a digit"),
                    ));
                }
                labels.push(v as u8);
            }
            n += 1;
        }
        if n != 65 {
            return Err(Error::corrupt(
                path,
                i + 1,
                format!("{n} columns, expected 65 (64 pixels and a label)"),
            ));
        }
    }
    if labels.len() != DIGITS_ROWS {
        return Err(Error::invalid(
            path,
            format!(
                "{} rows, expected {DIGITS_ROWS}: truncated file?",
                labels.len()
            ),
        ));
    }
    Ok(ImageSet {
        images,
        labels,
        rows: 8,
        cols: 8,
        classes: 10,
    })
}
