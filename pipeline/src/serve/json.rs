//! Query results as JSON for the page: rows as arrays (so repeated column names survive), values
//! encoded by arrow-json exactly as `kelp sql --format json` encodes them, except binary values,
//! which are never sent whole: up to 32 bytes (hashes) as hex, larger ones (thumbnails, MP4s) as
//! a note of their size — the page fetches media by clip id instead.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::writer::{make_encoder, Encoder, EncoderFactory, EncoderOptions, NullableEncoder};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

use super::ServeError;

/// Binary values up to this many bytes are sent as hex.
const HEX_MAX: usize = 32;

/// A column of a result: its name and Arrow type, as the page shows them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

pub fn columns(schema: &SchemaRef) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect()
}

/// Appends rows `from..to` of `batch` to `out`, each as a JSON array, comma-separated (the
/// caller writes the brackets and the commas between calls).
pub fn write_rows(
    batch: &RecordBatch,
    from: usize,
    to: usize,
    first: &mut bool,
    out: &mut Vec<u8>,
) -> Result<(), ServeError> {
    let options = EncoderOptions::default().with_encoder_factory(Arc::new(SummarisedBinary));
    let fields = batch.schema().fields().clone();
    let mut encoders = Vec::with_capacity(batch.num_columns());
    for (field, column) in fields.iter().zip(batch.columns()) {
        encoders.push(encoder_for(field, column.as_ref(), &options)?);
    }
    for row in from..to.min(batch.num_rows()) {
        if !*first {
            out.push(b',');
        }
        *first = false;
        out.push(b'[');
        for (i, enc) in encoders.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if enc.is_null(row) {
                out.extend_from_slice(b"null");
            } else {
                enc.encode(row, out);
            }
        }
        out.push(b']');
    }
    Ok(())
}

/// arrow-json's encoder for the column, or its display text as a JSON string for the few types
/// arrow-json does not encode.
fn encoder_for<'a>(
    field: &'a FieldRef,
    column: &'a dyn Array,
    options: &'a EncoderOptions,
) -> Result<NullableEncoder<'a>, ServeError> {
    match make_encoder(field, column, options) {
        Ok(e) => Ok(e),
        Err(_) => {
            let fmt = ArrayFormatter::try_new(column, &FormatOptions::default())
                .map_err(|e| ServeError::Internal(format!("column {}: {e}", field.name())))?;
            Ok(NullableEncoder::new(
                Box::new(DisplayEncoder(fmt)),
                column.logical_nulls(),
            ))
        }
    }
}

struct DisplayEncoder<'a>(ArrayFormatter<'a>);

impl Encoder for DisplayEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let text = self.0.value(idx).to_string();
        push_json_string(&text, out);
    }
}

fn push_json_string(text: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping; a String never fails to serialise.
    let quoted = serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""));
    out.extend_from_slice(quoted.as_bytes());
}

/// Binary columns as hex (short values) or `"<N bytes>"`.
#[derive(Debug)]
struct SummarisedBinary;

impl EncoderFactory for SummarisedBinary {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let bytes: Box<dyn Fn(usize) -> &'a [u8] + 'a> = match array.data_type() {
            DataType::Binary => {
                let a = array.as_binary::<i32>();
                Box::new(move |i| a.value(i))
            }
            DataType::LargeBinary => {
                let a = array.as_binary::<i64>();
                Box::new(move |i| a.value(i))
            }
            DataType::BinaryView => {
                let a = array.as_binary_view();
                Box::new(move |i| a.value(i))
            }
            DataType::FixedSizeBinary(_) => {
                let a = array.as_fixed_size_binary();
                Box::new(move |i| a.value(i))
            }
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(
            Box::new(BinaryEncoder(bytes)),
            array.logical_nulls(),
        )))
    }
}

struct BinaryEncoder<'a>(Box<dyn Fn(usize) -> &'a [u8] + 'a>);

impl Encoder for BinaryEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v = (self.0)(idx);
        out.push(b'"');
        if v.len() <= HEX_MAX {
            for b in v {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        } else {
            out.extend_from_slice(format!("<{} bytes>", v.len()).as_bytes());
        }
        out.push(b'"');
    }
}

/// Every row of `batches` as a JSON array of arrays.
pub fn rows_value(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>, ServeError> {
    let mut out = vec![b'['];
    let mut first = true;
    for b in batches {
        write_rows(b, 0, b.num_rows(), &mut first, &mut out)?;
    }
    out.push(b']');
    serde_json::from_slice(&out).map_err(|e| ServeError::Internal(format!("encoding rows: {e}")))
}

/// Every row of `batches` as an object keyed by column name (for small internal queries whose
/// column names are distinct).
pub fn objects(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<Map<String, Value>>, ServeError> {
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    Ok(rows_value(batches)?
        .into_iter()
        .map(|row| {
            names
                .iter()
                .map(|n| (*n).clone())
                .zip(row)
                .collect::<Map<String, Value>>()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn rows_are_arrays_and_large_binary_values_are_summarised() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("blob", DataType::Binary, true),
        ]));
        let big = vec![7u8; 5000];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a\"b", "c"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(Float64Array::from(vec![Some(0.5), Some(2.0)])),
                Arc::new(BinaryArray::from(vec![
                    Some(&[0xabu8, 0x01][..]),
                    Some(&big[..]),
                ])),
            ],
        )
        .unwrap();
        let rows = rows_value(&[batch]).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![
                    Value::from("a\"b"),
                    Value::from(1),
                    Value::from(0.5),
                    Value::from("ab01")
                ],
                vec![
                    Value::from("c"),
                    Value::Null,
                    Value::from(2.0),
                    Value::from("<5000 bytes>")
                ],
            ]
        );
    }
}
