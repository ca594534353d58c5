//! Previews and clip media, read from the dataset's own tables (`previews`: JPEG thumbnail and
//! animated WebP; `media`: the clip's MP4) through its object store, by clip id.
//!
//! A table's index (clip id → shard and row, 24 bytes a clip: ~240 MB for 10M clips) is built
//! once, from its shards' `clip_id` columns only, in the background when the server starts. A
//! value is then one ranged read of its pages, the shard's footer cached (the shards are written
//! for this: one large value per page, offset index).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelector};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;

use super::{paths, AppState, ServeError};
use crate::dataset::manifest::ShardInfo;
use crate::dataset::ranged::ShardReader;
use crate::dataset::Dataset;

/// What the page can ask for by clip id: file name → (table, column, content type).
pub const FILES: &[(&str, &str, &str, &str)] = &[
    ("thumbnail.jpg", "previews", "thumbnail", "image/jpeg"),
    ("animation.webp", "previews", "animation", "image/webp"),
    ("clip.mp4", "media", "data", "video/mp4"),
];

/// Where each clip's row is, in one table.
struct Index {
    shards: Vec<ShardInfo>,
    /// (clip key, shard, row in shard), sorted by key.
    rows: Vec<([u8; 16], u32, u32)>,
}

/// One table of per-clip binary values, indexed on first use.
pub struct BlobTable {
    pub table: &'static str,
    index: tokio::sync::OnceCell<Result<Arc<Index>, String>>,
    footers: Mutex<HashMap<u32, ArrowReaderMetadata>>,
}

fn read_err(table: &str, shard: &str, e: impl std::fmt::Display) -> String {
    format!("{table}: reading {shard}: {e}")
}

impl BlobTable {
    pub fn new(table: &'static str) -> BlobTable {
        BlobTable {
            table,
            index: tokio::sync::OnceCell::new(),
            footers: Mutex::new(HashMap::new()),
        }
    }

    /// The shard's footer and page index (read once, then cached).
    async fn footer(
        &self,
        ds: &Dataset,
        i: u32,
        shard: &ShardInfo,
    ) -> Result<ArrowReaderMetadata, String> {
        if let Some(m) = self.footers.lock().ok().and_then(|f| f.get(&i).cloned()) {
            return Ok(m);
        }
        let mut reader = reader_of(ds, shard);
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(|e| read_err(self.table, &shard.path, e))?;
        if let Ok(mut f) = self.footers.lock() {
            f.insert(i, meta.clone());
        }
        Ok(meta)
    }

    async fn build(&self, ds: &Dataset) -> Result<Arc<Index>, String> {
        let shards = ds.shards(self.table).to_vec();
        let mut rows = Vec::new();
        for (i, shard) in shards.iter().enumerate() {
            let i = i as u32;
            let meta = self.footer(ds, i, shard).await?;
            let Ok(col) = meta.schema().index_of("clip_id") else {
                return Err(format!(
                    "{}: {} has no clip_id column",
                    self.table, shard.path
                ));
            };
            let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
                reader_of(ds, shard),
                meta.clone(),
            );
            let mask = ProjectionMask::roots(builder.parquet_schema(), [col]);
            let batches: Vec<RecordBatch> = builder
                .with_projection(mask)
                .build()
                .map_err(|e| read_err(self.table, &shard.path, e))?
                .try_collect()
                .await
                .map_err(|e| read_err(self.table, &shard.path, e))?;
            let mut row = 0u32;
            for b in &batches {
                let ids = b.column(0).as_string_opt::<i32>();
                for r in 0..b.num_rows() {
                    let key = ids
                        .filter(|a| a.is_valid(r))
                        .and_then(|a| paths::clip_key(a.value(r)));
                    if let Some(key) = key {
                        rows.push((key, i, row));
                    }
                    row += 1;
                }
            }
        }
        rows.sort_unstable();
        tracing::info!(table = self.table, clips = rows.len(), "blob index built");
        Ok(Arc::new(Index { shards, rows }))
    }

    async fn index(&self, ds: &Dataset) -> Result<Arc<Index>, ServeError> {
        self.index
            .get_or_init(|| self.build(ds))
            .await
            .clone()
            .map_err(ServeError::Internal)
    }

    /// True when the table has a row for clip `id`.
    pub async fn has(&self, ds: &Dataset, id: &str) -> Result<bool, ServeError> {
        if ds.manifest.table(self.table).is_none() {
            return Ok(false);
        }
        let Some(key) = paths::clip_key(id) else {
            return Ok(false);
        };
        let index = self.index(ds).await?;
        Ok(index.rows.binary_search_by(|(k, _, _)| k.cmp(&key)).is_ok())
    }

    /// The value of `column` for clip `id`, `None` when the table has no row or a null there.
    pub async fn get(
        &self,
        ds: &Dataset,
        id: &str,
        column: &str,
    ) -> Result<Option<Bytes>, ServeError> {
        if ds.manifest.table(self.table).is_none() {
            return Ok(None);
        }
        let Some(key) = paths::clip_key(id) else {
            return Ok(None);
        };
        let index = self.index(ds).await?;
        let Ok(at) = index.rows.binary_search_by(|(k, _, _)| k.cmp(&key)) else {
            return Ok(None);
        };
        let (_, shard_no, row) = index.rows[at];
        let shard = &index.shards[shard_no as usize];
        let fail =
            |e: &dyn std::fmt::Display| ServeError::Internal(read_err(self.table, &shard.path, e));
        let meta = self
            .footer(ds, shard_no, shard)
            .await
            .map_err(ServeError::Internal)?;
        let Ok(col) = meta.schema().index_of(column) else {
            return Ok(None);
        };
        // The row group holding `row`, and the row's place in it.
        let mut first = 0usize;
        let mut group = None;
        for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
            let n = rg.num_rows() as usize;
            if (row as usize) < first + n {
                group = Some(g);
                break;
            }
            first += n;
        }
        let Some(group) = group else {
            return Err(fail(&format!("row {row} past the shard's end")));
        };
        let builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader_of(ds, shard), meta.clone());
        let mask = ProjectionMask::roots(builder.parquet_schema(), [col]);
        let selection = vec![
            RowSelector::skip(row as usize - first),
            RowSelector::select(1),
        ];
        let batches: Vec<RecordBatch> = builder
            .with_projection(mask)
            .with_row_groups(vec![group])
            .with_row_selection(selection.into())
            .build()
            .map_err(|e| fail(&e))?
            .try_collect()
            .await
            .map_err(|e| fail(&e))?;
        let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        let values = b.column(0);
        if values.is_null(0) {
            return Ok(None);
        }
        let bytes = match values.data_type() {
            DataType::Binary => values.as_binary::<i32>().value(0),
            DataType::LargeBinary => values.as_binary::<i64>().value(0),
            other => return Err(fail(&format!("column {column} is {other}, not binary"))),
        };
        Ok(Some(Bytes::copy_from_slice(bytes)))
    }
}

fn reader_of(ds: &Dataset, shard: &ShardInfo) -> ShardReader {
    ShardReader::new(
        ds.location.store.clone(),
        ds.location.child(&shard.path),
        shard.bytes,
    )
}

/// Builds the preview and media indexes in the background.
pub fn warm(state: Arc<AppState>) {
    tokio::spawn(async move {
        for t in [&state.previews, &state.media] {
            if state.dataset.manifest.table(t.table).is_some() {
                if let Err(e) = t.index(&state.dataset).await {
                    tracing::warn!("{e}");
                }
            }
        }
    });
}
