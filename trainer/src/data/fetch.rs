//! Fetching one clip's media value: from the cache's local copy of its shard, or by one range
//! request to the dataset's store (datasets on a local disk are read in place). The shard's
//! footer was loaded when the index was built, so a read asks only for the pages of that row.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use bytes::Bytes;
use futures::TryStreamExt;
use kelp_pipeline::dataset::ranged::ShardReader;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::RowSelector;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use tokio::sync::Semaphore;

use super::cache::{Acquired, ShardCache};
use super::index::{Index, MediaShard, Sample};
use super::stats::{add_s, Counters};

pub struct Fetcher {
    pub index: Arc<Index>,
    /// Per dataset: whether its shards go through the cache.
    pub cache: Option<ShardCache>,
    pub requests: Arc<Semaphore>,
    pub counters: Arc<Counters>,
    local: Arc<dyn ObjectStore>,
}

impl Fetcher {
    pub fn new(
        index: Arc<Index>,
        cache: Option<ShardCache>,
        requests: Arc<Semaphore>,
        counters: Arc<Counters>,
    ) -> Fetcher {
        Fetcher {
            index,
            cache,
            requests,
            counters,
            local: Arc::new(LocalFileSystem::new()),
        }
    }

    /// The clip's encoded bytes, checked against its checksum.
    pub async fn fetch(&self, sample: &Sample) -> Result<Bytes, String> {
        let started = Instant::now();
        let shard = self
            .index
            .shards
            .get(sample.shard as usize)
            .ok_or("no such shard")?;
        let acquired = match &self.cache {
            Some(c) => c.acquire(sample.shard).await?,
            None => Acquired::Bypass,
        };
        let value = match acquired {
            Acquired::Local(pin) => {
                let path = ObjectPath::from_absolute_path(&pin.path).map_err(|e| e.to_string())?;
                let reader = ShardReader::new(self.local.clone(), path, shard.info.bytes);
                let v = read_row(reader, shard, sample.row).await;
                drop(pin);
                v?
            }
            Acquired::Bypass => {
                let loc = &self.index.sources[shard.dataset as usize].dataset.location;
                let reader = ShardReader::new(
                    loc.store.clone(),
                    loc.child(&shard.info.path),
                    shard.info.bytes,
                );
                let _permit = self.requests.acquire().await.map_err(|e| e.to_string())?;
                let v = read_row(reader, shard, sample.row).await?;
                if loc.local_dir.is_none() {
                    self.counters.remote_requests.fetch_add(1, Relaxed);
                    self.counters
                        .remote_bytes
                        .fetch_add(v.len() as u64, Relaxed);
                }
                v
            }
        };
        self.counters
            .media_bytes
            .fetch_add(value.len() as u64, Relaxed);
        if let Some(want) = &sample.checksum {
            let got = blake3::hash(&value).to_hex();
            if got.as_str() != want {
                return Err(format!(
                    "checksum mismatch: media.checksum {want}, the bytes hash to {got}"
                ));
            }
        }
        add_s(&self.counters.fetch_ns, started.elapsed().as_secs_f64());
        Ok(value)
    }
}

/// Reads row `row`'s `data` value of a shard with only the pages holding it.
async fn read_row(reader: ShardReader, shard: &MediaShard, row: u32) -> Result<Bytes, String> {
    let meta = &shard.metadata;
    let row = row as usize;
    let mut first = 0usize;
    let mut group = None;
    for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
        let n = rg.num_rows() as usize;
        if row < first + n {
            group = Some(g);
            break;
        }
        first += n;
    }
    let group = group.ok_or_else(|| format!("{}: no row {row}", shard.info.path))?;
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone());
    let mask = ProjectionMask::roots(builder.parquet_schema(), [shard.data_column]);
    let selection = vec![RowSelector::skip(row - first), RowSelector::select(1)];
    let bad = |e: parquet::errors::ParquetError| format!("{}: row {row}: {e}", shard.info.path);
    let batches: Vec<RecordBatch> = builder
        .with_projection(mask)
        .with_row_groups(vec![group])
        .with_row_selection(selection.into())
        .build()
        .map_err(bad)?
        .try_collect()
        .await
        .map_err(bad)?;
    let column = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).clone())
        .ok_or_else(|| format!("{}: row {row} not found", shard.info.path))?;
    if !column.is_valid(0) {
        return Err("the media value is null".into());
    }
    let value = match column.data_type() {
        arrow::datatypes::DataType::LargeBinary => column.as_binary::<i64>().value(0).to_vec(),
        arrow::datatypes::DataType::Binary => column.as_binary::<i32>().value(0).to_vec(),
        other => return Err(format!("media.data is {other}, not binary")),
    };
    Ok(Bytes::from(value))
}
