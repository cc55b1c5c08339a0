//! Records -> bytes: JSONL (one `serde_json` object per line) or Parquet (the same records
//! decoded into Arrow with a fixed schema per shape by `arrow_json`, written by `parquet`'s
//! `ArrowWriter` with zstd). Encoded bytes are taken out after every page of records, so memory
//! holds at most one Arrow batch and one open row group.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow_json::reader::Decoder;
use arrow_json::ReaderBuilder;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::records::Record;
use crate::request::{Format, Shape};
use crate::DatasetError;

/// Rows per Arrow batch.
pub const BATCH_ROWS: usize = 4096;
/// Rows per Parquet row group (what a writer holds before bytes leave).
pub const ROW_GROUP_ROWS: usize = 16384;

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn messages(name: &str) -> Field {
    let item = DataType::Struct(Fields::from(vec![utf8("role"), utf8("content")]));
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        false,
    )
}

fn strukt(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), false)
}

fn list_of(name: &str, fields: Vec<Field>) -> Field {
    let item = DataType::Struct(Fields::from(fields));
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        false,
    )
}

fn metadata() -> Field {
    strukt(
        "metadata",
        [
            "project",
            "trace_id",
            "span_id",
            "model",
            "timestamp",
            "conversation_id",
            "user_id",
        ]
        .into_iter()
        .map(utf8)
        .collect(),
    )
}

/// The Arrow schema of a shape; field for field the JSON records of [`crate::records`].
pub fn schema(shape: Shape) -> SchemaRef {
    let fields = match shape {
        Shape::Sft => vec![messages("messages"), metadata()],
        Shape::Preference => vec![
            messages("prompt"),
            messages("chosen"),
            messages("rejected"),
            utf8("source"),
            strukt(
                "metadata",
                vec![
                    utf8("project"),
                    utf8("model"),
                    utf8("conversation_id"),
                    utf8("timestamp"),
                    utf8("chosen_trace_id"),
                    utf8("chosen_span_id"),
                    utf8("rejected_trace_id"),
                    utf8("rejected_span_id"),
                    Field::new(
                        "evidence",
                        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                        false,
                    ),
                ],
            ),
        ],
        Shape::Eval => vec![
            messages("input"),
            utf8("output"),
            list_of(
                "feedback",
                vec![
                    utf8("id"),
                    utf8("name"),
                    utf8("value_type"),
                    Field::new("score", DataType::Float64, true),
                    utf8("label"),
                    utf8("text"),
                    utf8("comment"),
                    utf8("source"),
                    utf8("level"),
                    utf8("timestamp"),
                ],
            ),
            list_of(
                "signals",
                vec![
                    utf8("id"),
                    utf8("type"),
                    utf8("source"),
                    utf8("level"),
                    utf8("timestamp"),
                    utf8("discarded_trace_id"),
                    utf8("discarded_span_id"),
                    Field::new("tokens_received", DataType::UInt64, true),
                    Field::new("ms_since_start", DataType::Float64, true),
                    Field::new("edit_ratio", DataType::Float64, true),
                    utf8("edited_text"),
                    utf8("text"),
                    Field::new("turn_count", DataType::UInt32, true),
                ],
            ),
            metadata(),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// A `Write` whose bytes are taken out between batches.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct ParquetState {
    writer: ArrowWriter<SharedBuf>,
    decoder: Decoder,
    pending: Vec<Record>,
    out: SharedBuf,
}

/// Encodes records of one shape into one format.
pub struct Encoder {
    jsonl: Vec<u8>,
    parquet: Option<ParquetState>,
}

impl Encoder {
    pub fn new(shape: Shape, format: Format) -> Result<Self, DatasetError> {
        let parquet = match format {
            Format::Jsonl => None,
            Format::Parquet => {
                let schema = schema(shape);
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let out = SharedBuf::default();
                Some(ParquetState {
                    writer: ArrowWriter::try_new(out.clone(), schema.clone(), Some(props))?,
                    decoder: ReaderBuilder::new(schema)
                        .with_batch_size(BATCH_ROWS)
                        .build_decoder()?,
                    pending: Vec::with_capacity(BATCH_ROWS),
                    out,
                })
            }
        };
        Ok(Self {
            jsonl: Vec::new(),
            parquet,
        })
    }

    /// Adds one record.
    pub fn push(&mut self, record: Record) -> Result<(), DatasetError> {
        match &mut self.parquet {
            None => {
                serde_json::to_writer(&mut self.jsonl, &record)?;
                self.jsonl.push(b'\n');
            }
            Some(p) => {
                p.pending.push(record);
                if p.pending.len() >= BATCH_ROWS {
                    p.write_pending()?;
                }
            }
        }
        Ok(())
    }

    /// Bytes encoded so far and not yet taken (Parquet: complete row groups only).
    pub fn take(&mut self) -> Bytes {
        match &self.parquet {
            None => Bytes::from(std::mem::take(&mut self.jsonl)),
            Some(p) => Bytes::from(p.out.take()),
        }
    }

    /// Encodes what is pending and ends the file (the Parquet footer); returns the last bytes.
    pub fn finish(mut self) -> Result<Bytes, DatasetError> {
        if let Some(mut p) = self.parquet.take() {
            p.write_pending()?;
            p.writer.close()?;
            return Ok(Bytes::from(p.out.take()));
        }
        Ok(self.take())
    }
}

impl ParquetState {
    fn write_pending(&mut self) -> Result<(), DatasetError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.decoder.serialize(&self.pending)?;
        self.pending.clear();
        if let Some(batch) = self.decoder.flush()? {
            self.writer.write(&batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Message;
    use crate::records::{Metadata, SftRecord};
    use arrow_array::{Array, ListArray, StructArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn record(i: usize) -> Record {
        Record::Sft(SftRecord {
            messages: vec![
                Message::new("user", format!("q{i}")),
                Message::new("assistant", format!("a{i}")),
            ],
            metadata: Metadata {
                project: "p".into(),
                trace_id: format!("t{i}"),
                span_id: "s".into(),
                model: "m".into(),
                timestamp: "2026-11-28T00:00:00.000000000Z".into(),
                conversation_id: String::new(),
                user_id: String::new(),
            },
        })
    }

    #[test]
    fn jsonl_is_one_object_per_line() {
        let mut e = Encoder::new(Shape::Sft, Format::Jsonl).unwrap();
        e.push(record(1)).unwrap();
        let first = e.take();
        e.push(record(2)).unwrap();
        let rest = e.finish().unwrap();
        let text = String::from_utf8([first, rest].concat()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.starts_with(r#"{"messages":[{"role":"user","content":"q1"}"#),
            "{text}"
        );
    }

    #[test]
    fn parquet_round_trips_across_batches_and_row_groups() {
        let n = ROW_GROUP_ROWS + BATCH_ROWS + 3;
        let mut e = Encoder::new(Shape::Sft, Format::Parquet).unwrap();
        let mut file = Vec::new();
        for i in 0..n {
            e.push(record(i)).unwrap();
            file.extend_from_slice(&e.take());
        }
        // A full row group left before the end: bytes stream out during the export.
        assert!(file.len() > 4, "nothing left before finish");
        file.extend_from_slice(&e.finish().unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap();
        assert_eq!(reader.schema(), &schema(Shape::Sft));
        assert!(reader.metadata().num_row_groups() >= 2);
        let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), n);
        let messages = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        let first = messages.value(0);
        let first = first.as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(first.len(), 2);
    }
}
