//! Writes one table as deterministic, atomically-put Parquet shards (zstd), named
//! `<table>/part-<partition>-<seq>.parquet` under the writer's location (a partition attempt's
//! staging prefix during a run; the names stay the same once promoted).
//!
//! Tables of large binary values (encoded clips, previews) are laid out for ranged reads: a shard
//! closes at [`MAX_SHARD_BYTES`] whatever its row count, those columns are stored as they are
//! (already compressed; no dictionary), pages hold one value each and the offset index is
//! written, so a reader fetches one clip's bytes with one range request after the footer.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::manifest::{ShardInfo, TableManifest};
use crate::error::{PipelineError, Result};
use crate::store::{self, Location};

/// A shard is put once its buffered rows reach this many bytes in memory, even under
/// `shard_rows` (a table of encoded clips reaches it long before).
pub const MAX_SHARD_BYTES: usize = 256 << 20;

/// A binary column whose values average more than this is stored for ranged reads.
const BLOB_VALUE_BYTES: usize = 16 << 10;

/// Buffers rows of one table and puts a shard every `shard_rows` rows (or [`MAX_SHARD_BYTES`]).
pub struct TableWriter {
    loc: Location,
    table: String,
    schema: SchemaRef,
    shard_rows: usize,
    partition: u32,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    written: TableManifest,
}

impl TableWriter {
    pub fn new(
        loc: Location,
        table: &str,
        schema: SchemaRef,
        shard_rows: usize,
        partition: u32,
    ) -> Self {
        TableWriter {
            loc,
            table: table.into(),
            schema,
            shard_rows: shard_rows.max(1),
            partition,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            written: TableManifest::default(),
        }
    }

    pub async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += batch.num_rows();
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch);
        while self.pending_rows >= self.shard_rows {
            self.flush(self.shard_rows).await?;
        }
        if self.pending_bytes >= MAX_SHARD_BYTES {
            self.flush(self.pending_rows).await?;
        }
        Ok(())
    }

    /// The schema every pushed batch must have.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Puts the remaining rows and returns what was written.
    pub async fn finish(mut self) -> Result<TableManifest> {
        // An empty table still gets one (empty) shard: its Parquet footer carries the schema, so
        // readers see every column of a table that happens to have no rows.
        if self.pending_rows > 0 || self.written.shards.is_empty() {
            self.flush(self.pending_rows).await?;
        }
        Ok(self.written)
    }

    async fn flush(&mut self, rows: usize) -> Result<()> {
        let all = arrow::compute::concat_batches(&self.schema, &self.pending)
            .map_err(|e| self.write_err(e.to_string()))?;
        let take = rows.min(all.num_rows());
        let shard = all.slice(0, take);
        let rest = all.slice(take, all.num_rows() - take);
        self.pending_bytes = rest.get_array_memory_size();
        self.pending = if rest.num_rows() > 0 {
            vec![rest]
        } else {
            self.pending_bytes = 0;
            Vec::new()
        };
        self.pending_rows -= take;

        let rel = format!(
            "{}/part-{:05}-{:05}.parquet",
            self.table,
            self.partition,
            self.written.shards.len()
        );
        let bytes = encode(&shard).map_err(|m| self.write_err(m))?;
        let size = store::put_object(
            &self.loc,
            &self.loc.child(&rel),
            bytes::Bytes::from(bytes),
            store::MULTIPART_THRESHOLD,
        )
        .await?;
        self.written.rows += take as u64;
        self.written.shards.push(ShardInfo {
            path: rel,
            rows: take as u64,
            bytes: size,
        });
        Ok(())
    }

    fn write_err(&self, message: String) -> PipelineError {
        PipelineError::Write {
            what: format!("{}/{}", self.loc.uri, self.table),
            message,
        }
    }
}

/// One Parquet file in memory.
pub fn encode(batch: &RecordBatch) -> std::result::Result<Vec<u8>, String> {
    let mut builder = WriterProperties::builder().set_compression(Compression::ZSTD(
        ZstdLevel::try_new(3).map_err(|e| e.to_string())?,
    ));
    let blobs = blob_columns(batch);
    if !blobs.is_empty() {
        // Pages are checked against their size limit after every row, so each holds exactly one
        // large value; row groups stay small (a reader may fetch a whole one).
        builder = builder
            .set_write_batch_size(1)
            .set_data_page_size_limit(1)
            .set_max_row_group_bytes(Some(4 << 20))
            .set_offset_index_disabled(false);
        for name in blobs {
            let path = ColumnPath::from(name);
            builder = builder
                .set_column_compression(path.clone(), Compression::UNCOMPRESSED)
                .set_column_dictionary_enabled(path, false);
        }
    }
    let props = builder.build();
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Binary columns whose values average more than [`BLOB_VALUE_BYTES`].
fn blob_columns(batch: &RecordBatch) -> Vec<String> {
    use arrow::datatypes::DataType;
    let rows = batch.num_rows().max(1);
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, c)| {
            matches!(
                f.data_type(),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            ) && c.get_array_memory_size() / rows > BLOB_VALUE_BYTES
        })
        .map(|(f, _)| f.name().clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, LargeBinaryArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Compression;

    use super::*;

    #[test]
    fn large_binary_values_are_stored_uncompressed_one_per_page_with_an_offset_index() {
        let blobs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 100_000]).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("data", DataType::LargeBinary, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..6)),
                Arc::new(LargeBinaryArray::from_iter_values(blobs.iter())),
            ],
        )
        .unwrap();
        let bytes = Bytes::from(encode(&batch).unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            bytes.clone(),
            parquet::arrow::arrow_reader::ArrowReaderOptions::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
        )
        .unwrap();
        let meta = reader.metadata().clone();
        let data = meta.row_group(0).column(1);
        assert_eq!(data.compression(), Compression::UNCOMPRESSED);
        let pages = &meta.offset_index().unwrap()[0][1].page_locations;
        assert_eq!(pages.len(), 6, "one page per large value");
        // The numeric column is still zstd.
        assert!(matches!(
            meta.row_group(0).column(0).compression(),
            Compression::ZSTD(_)
        ));
        let back = reader.build().unwrap().next().unwrap().unwrap();
        assert_eq!(back, batch);
    }
}
