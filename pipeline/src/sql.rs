//! `kelp sql`: a query over a dataset's tables (registered by [`Dataset::session`]: every table
//! the manifest lists, under its name, reading only committed shards) and the rendering of its
//! result as a table, CSV, JSON or Parquet.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::dataset::Dataset;
use crate::error::{PipelineError, Result};
use crate::store::StoreOptions;

/// Opens the dataset at `uri` and runs one query over it.
pub async fn query_with(
    uri: &str,
    sql: &str,
    opts: &StoreOptions,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    Dataset::open(uri, opts).await?.query(sql).await
}

/// Output formats of `kelp sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

/// Renders a result as text (`table`, `csv`, `json`) or Parquet bytes.
pub fn render(schema: &SchemaRef, batches: &[RecordBatch], format: Format) -> Result<Vec<u8>> {
    let fail = |e: String| PipelineError::Sql(format!("rendering the result: {e}"));
    match format {
        Format::Table => {
            let text =
                arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), batches)
                    .map_err(|e| fail(e.to_string()))?;
            Ok(format!("{text}\n").into_bytes())
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                if batches.is_empty() {
                    w.write(&RecordBatch::new_empty(schema.clone()))
                        .map_err(|e| fail(e.to_string()))?;
                }
                for b in batches {
                    w.write(b).map_err(|e| fail(e.to_string()))?;
                }
            }
            Ok(buf)
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(Vec::new());
            for b in batches {
                w.write(b).map_err(|e| fail(e.to_string()))?;
            }
            w.finish().map_err(|e| fail(e.to_string()))?;
            let mut out = w.into_inner();
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
            Ok(out)
        }
        Format::Parquet => {
            let all =
                arrow::compute::concat_batches(schema, batches).map_err(|e| fail(e.to_string()))?;
            crate::dataset::writer::encode(&all).map_err(fail)
        }
    }
}
