//! The dataset as Parquet: chat `messages` (a list of `{role, content}` structs) beside the
//! provenance columns, the schema the README states, readable by pyarrow and HF `datasets`.

use crate::dataset::*;
use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StringArray, StructArray, UInt64Array};
use arrow_schema::{DataType, Field, Fields, Schema};
use pw_core::{Error, IoContext, Result};
use pw_llm::ChatMessage;
use std::path::Path;
use std::sync::Arc;

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

/// The Parquet schema (also stated in the README).
pub fn schema() -> Schema {
    let list_str = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "messages",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(message_fields()),
                true,
            ))),
            false,
        ),
    ];
    for f in [
        "field",
        "subfield",
        "discipline",
        "subject",
        "level",
        "difficulty",
    ] {
        fields.push(Field::new(f, DataType::Utf8, false));
    }
    fields.push(Field::new("sessions", list_str(), false));
    fields.push(Field::new("key_concepts", list_str(), false));
    fields.push(Field::new("question_model", DataType::Utf8, false));
    fields.push(Field::new("answer_model", DataType::Utf8, false));
    fields.push(Field::new("question_seed", DataType::UInt64, true));
    fields.push(Field::new("answer_seed", DataType::UInt64, true));
    Schema::new(fields)
}

fn strings(rows: &[Pair], f: impl Fn(&Pair) -> &str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn string_lists(rows: &[Pair], f: impl Fn(&Pair) -> &Vec<String>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for s in f(r) {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

pub fn write(path: &Path, rows: &[Pair]) -> Result<()> {
    let schema = Arc::new(schema());
    let mut msgs =
        ListBuilder::new(StructBuilder::from_fields(message_fields(), rows.len() * 2)).with_field(
            Arc::new(Field::new("item", DataType::Struct(message_fields()), true)),
        );
    for r in rows {
        let sb = msgs.values();
        for m in &r.messages {
            sb.field_builder::<StringBuilder>(0)
                .expect("role")
                .append_value(&m.role);
            sb.field_builder::<StringBuilder>(1)
                .expect("content")
                .append_value(m.text());
            sb.append(true);
        }
        msgs.append(true);
    }
    let seeds = |f: fn(&Pair) -> Option<u64>| -> ArrayRef {
        let mut b = UInt64Builder::new();
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let cols: Vec<ArrayRef> = vec![
        strings(rows, |p| &p.id),
        Arc::new(msgs.finish()),
        strings(rows, |p| &p.field),
        strings(rows, |p| &p.subfield),
        strings(rows, |p| &p.discipline),
        strings(rows, |p| &p.subject),
        strings(rows, |p| &p.level),
        strings(rows, |p| &p.difficulty),
        string_lists(rows, |p| &p.sessions),
        string_lists(rows, |p| &p.key_concepts),
        strings(rows, |p| &p.question_model),
        strings(rows, |p| &p.answer_model),
        seeds(|p| p.question_seed),
        seeds(|p| p.answer_seed),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols)
        .map_err(|e| Error::Other(format!("parquet batch: {e}")))?;
    let mut buf = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props))
        .map_err(|e| Error::Other(format!("parquet: {e}")))?;
    w.write(&batch)
        .map_err(|e| Error::Other(format!("parquet: {e}")))?;
    w.close()
        .map_err(|e| Error::Other(format!("parquet: {e}")))?;
    pw_core::write_atomic(path, &buf)
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::invalid(path, format!("column {name} missing or of another type")))
}

fn list_strings(l: &ListArray, i: usize) -> Vec<String> {
    let v = l.value(i);
    let s = v
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("list of strings");
    (0..s.len()).map(|k| s.value(k).to_string()).collect()
}

pub fn read(path: &Path) -> Result<Vec<Pair>> {
    let f = std::fs::File::open(path).at(path)?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| Error::invalid(path, format!("not a readable Parquet file: {e}")))?;
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| Error::invalid(path, e.to_string()))?;
        let s = |n: &str| col::<StringArray>(&b, n, path);
        let (id, field, subfield, disc, subj, level, diff, qm, am) = (
            s("id")?,
            s("field")?,
            s("subfield")?,
            s("discipline")?,
            s("subject")?,
            s("level")?,
            s("difficulty")?,
            s("question_model")?,
            s("answer_model")?,
        );
        let msgs = col::<ListArray>(&b, "messages", path)?;
        let sess = col::<ListArray>(&b, "sessions", path)?;
        let kc = col::<ListArray>(&b, "key_concepts", path)?;
        let qs = col::<UInt64Array>(&b, "question_seed", path)?;
        let as_ = col::<UInt64Array>(&b, "answer_seed", path)?;
        for i in 0..b.num_rows() {
            let m = msgs.value(i);
            let st = m
                .as_any()
                .downcast_ref::<StructArray>()
                .expect("struct messages");
            let roles = st
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("role");
            let contents = st
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("content");
            out.push(Pair {
                id: id.value(i).into(),
                messages: (0..st.len())
                    .map(|k| ChatMessage::new(roles.value(k), contents.value(k)))
                    .collect(),
                field: field.value(i).into(),
                subfield: subfield.value(i).into(),
                discipline: disc.value(i).into(),
                subject: subj.value(i).into(),
                level: level.value(i).into(),
                difficulty: diff.value(i).into(),
                sessions: list_strings(sess, i),
                key_concepts: list_strings(kc, i),
                question_model: qm.value(i).into(),
                answer_model: am.value(i).into(),
                question_seed: (!qs.is_null(i)).then(|| qs.value(i)),
                answer_seed: (!as_.is_null(i)).then(|| as_.value(i)),
            });
        }
    }
    Ok(out)
}
