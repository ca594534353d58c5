//! Writes one table as deterministic, atomically-put Parquet shards (zstd), named
//! `<table>/part-<partition>-<seq>.parquet` under the writer's location (a partition attempt's
//! staging prefix during a run; the names stay the same once promoted).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::manifest::{ShardInfo, TableManifest};
use crate::error::{PipelineError, Result};
use crate::store::{self, Location};

/// Buffers rows of one table and puts a shard every `shard_rows` rows.
pub struct TableWriter {
    loc: Location,
    table: String,
    schema: SchemaRef,
    shard_rows: usize,
    partition: u32,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
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
            written: TableManifest::default(),
        }
    }

    pub async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        while self.pending_rows >= self.shard_rows {
            self.flush(self.shard_rows).await?;
        }
        Ok(())
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
        self.pending = if rest.num_rows() > 0 {
            vec![rest]
        } else {
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
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| e.to_string())?,
        ))
        .build();
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(buf)
}
