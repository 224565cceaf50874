//! Augmented records, the implicit filter, and the exports for pre-training: JSONL and
//! Parquet with `content` (augmented), `original`, `lang`, `path`, density before / after and
//! provenance, readable by HF `datasets` and pyarrow.

use crate::lang::Lang;
use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use pw_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// One augmented unit, as the ledger and the exports hold it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AugRecord {
    pub id: String,
    pub path: String,
    pub line: usize,
    pub lang: Lang,
    /// The augmented code (the original when nothing was inserted).
    pub content: String,
    pub original: String,
    pub inserted_lines: usize,
    pub trailing_comments: usize,
    pub density_before: f64,
    pub density_after: f64,
    /// The implicit filter's verdict, and why a unit was dropped.
    pub kept: bool,
    pub filter_reason: Option<String>,
    pub model: String,
    /// `constrained` (forced code tokens) or `generate-verify`.
    pub method: String,
    /// Self-augmentation round (1: the generator; r + 1: the model trained on round r).
    pub round: u32,
    pub seed: u64,
}

/// The implicit filter: code the generator leaves uncommented is judged poorly aligned with
/// natural language and dropped; optionally also code whose density stays below a threshold
/// (fixed before looking at results).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterOptions {
    /// Fewest inserted comments (lines + trailing) a kept unit has.
    pub min_inserted: usize,
    /// Lowest comment density (by characters) after augmentation of a kept unit.
    pub min_density_after: f64,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions {
            min_inserted: 1,
            min_density_after: 0.0,
        }
    }
}

impl FilterOptions {
    /// `None` when the unit is kept, else the reason it is dropped.
    pub fn verdict(&self, inserted: usize, density_after: f64) -> Option<String> {
        if inserted < self.min_inserted {
            Some(format!(
                "the generator inserted {inserted} comment(s), fewer than {}",
                self.min_inserted
            ))
        } else if density_after < self.min_density_after {
            Some(format!(
                "comment density {:.3} after augmentation, under {:.3}",
                density_after, self.min_density_after
            ))
        } else {
            None
        }
    }
}

/// The export schema (stated in the README).
pub fn schema() -> Schema {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    Schema::new(vec![
        s("id"),
        s("content"),
        s("original"),
        s("lang"),
        s("path"),
        Field::new("line", DataType::UInt64, false),
        Field::new("inserted_lines", DataType::UInt32, false),
        Field::new("trailing_comments", DataType::UInt32, false),
        Field::new("density_before", DataType::Float64, false),
        Field::new("density_after", DataType::Float64, false),
        Field::new("kept", DataType::Boolean, false),
        s("model"),
        s("method"),
        Field::new("round", DataType::UInt32, false),
        Field::new("seed", DataType::UInt64, false),
    ])
}

/// Writes the records as Parquet (zstd), atomically.
pub fn write_parquet(path: &Path, rows: &[AugRecord]) -> Result<()> {
    let schema = Arc::new(schema());
    let strs = |f: &dyn Fn(&AugRecord) -> &str| -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in rows {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let u32s = |f: &dyn Fn(&AugRecord) -> u32| -> ArrayRef {
        let mut b = UInt32Builder::new();
        for r in rows {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let u64s = |f: &dyn Fn(&AugRecord) -> u64| -> ArrayRef {
        let mut b = UInt64Builder::new();
        for r in rows {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let f64s = |f: &dyn Fn(&AugRecord) -> f64| -> ArrayRef {
        let mut b = Float64Builder::new();
        for r in rows {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let cols: Vec<ArrayRef> = vec![
        strs(&|r| &r.id),
        strs(&|r| &r.content),
        strs(&|r| &r.original),
        strs(&|r| r.lang.name()),
        strs(&|r| &r.path),
        u64s(&|r| r.line as u64),
        u32s(&|r| r.inserted_lines as u32),
        u32s(&|r| r.trailing_comments as u32),
        f64s(&|r| r.density_before),
        f64s(&|r| r.density_after),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.kept)))),
        strs(&|r| &r.model),
        strs(&|r| &r.method),
        u32s(&|r| r.round),
        u64s(&|r| r.seed),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols)
        .map_err(|e| Error::Other(format!("parquet batch: {e}")))?;
    let mut buf = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let pq = |e: parquet::errors::ParquetError| Error::invalid(path, format!("parquet: {e}"));
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(pq)?;
    w.write(&batch).map_err(pq)?;
    w.close().map_err(pq)?;
    pw_core::write_atomic(path, &buf)
}

/// Reads back the `content` and `kept` columns of an export (tests, and a user's check).
pub fn read_parquet_contents(path: &Path) -> Result<Vec<(String, bool)>> {
    use arrow_array::Array;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| Error::invalid(path, format!("not a Parquet file ({e})")))?;
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| Error::invalid(path, format!("parquet: {e}")))?;
        let content = b
            .column_by_name("content")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
            .ok_or_else(|| Error::invalid(path, "no string column content"))?;
        let kept = b
            .column_by_name("kept")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| Error::invalid(path, "no boolean column kept"))?;
        for i in 0..content.len() {
            out.push((content.value(i).to_string(), kept.value(i)));
        }
    }
    Ok(out)
}
