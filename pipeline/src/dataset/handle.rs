//! [`Dataset`]: the one way to open a committed dataset for reading. `kelp sql`, `kelp stats`,
//! `kelp status`, dataset passes (and later the loader and the browser) all start here.
//!
//! It reads the manifest (or, for an unfinished run, the view its commit records give: committed
//! partitions only), lists tables and shards with their row counts, and builds a DataFusion
//! session with every table registered under its name.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::commit::{self, RunStatus};
use super::manifest::{self, Manifest, ShardInfo, TableManifest};
use crate::error::{PipelineError, Result};
use crate::store::{self, Location, StoreOptions};

/// An opened dataset: where it is and what its manifest lists.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub location: Location,
    pub manifest: Manifest,
}

impl Dataset {
    /// Opens the dataset at `uri`: its manifest, or the committed partitions of an unfinished
    /// run. Fails naming the URI when nothing is there.
    pub async fn open(uri: &str, opts: &StoreOptions) -> Result<Dataset> {
        let location = store::resolve_with(uri, opts)?;
        Self::at(location).await
    }

    /// [`Dataset::open`] for a resolved location.
    pub async fn at(location: Location) -> Result<Dataset> {
        let manifest = match manifest::read(&location).await? {
            Some(m) => Some(m),
            None => commit::view(&location).await?,
        };
        let manifest = manifest.ok_or_else(|| PipelineError::NoDataset {
            uri: location.uri.clone(),
        })?;
        Ok(Dataset { location, manifest })
    }

    pub fn uri(&self) -> &str {
        &self.location.uri
    }

    /// True when every partition of its run is committed (a manifest is written).
    pub fn complete(&self) -> bool {
        self.manifest.committed_partitions == self.manifest.partitions
    }

    /// Table names with their row counts and shards.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &TableManifest)> {
        self.manifest.tables.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// The shards of one table (empty when the table is absent).
    pub fn shards(&self, table: &str) -> &[ShardInfo] {
        self.manifest
            .table(table)
            .map(|t| t.shards.as_slice())
            .unwrap_or(&[])
    }

    /// Reads one shard of a table, only `columns` (all when empty), in its stored row order.
    pub async fn read_shard(
        &self,
        shard: &ShardInfo,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use parquet::arrow::ProjectionMask;
        let loc = &self.location;
        let path = loc.child(&shard.path);
        let bytes = super::io::retry(&shard.path, || async {
            object_store::ObjectStoreExt::get(loc.store.as_ref(), &path)
                .await?
                .bytes()
                .await
        })
        .await
        .map_err(|e| super::io::store_err(loc, &shard.path, "reading", e))?;
        let bad = |e: parquet::errors::ParquetError| {
            super::io::store_err(loc, &shard.path, "not a readable Parquet shard", e)
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(bad)?;
        let builder = if columns.is_empty() {
            builder
        } else {
            let fields = builder.schema().fields();
            let mut roots = Vec::with_capacity(columns.len());
            for c in columns {
                let i = fields.iter().position(|f| f.name() == c).ok_or_else(|| {
                    super::io::store_err(loc, &shard.path, "reading", format!("no column {c}"))
                })?;
                roots.push(i);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        };
        let reader = builder.build().map_err(bad)?;
        reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| super::io::store_err(loc, &shard.path, "decoding", e))
    }

    /// A DataFusion session with every table registered, reading only listed shards.
    pub async fn session(&self) -> Result<SessionContext> {
        let loc = &self.location;
        // DATAFUSION_* environment variables tune the session (e.g.
        // DATAFUSION_EXECUTION_TARGET_PARTITIONS); the defaults suit most datasets.
        let config = datafusion::prelude::SessionConfig::from_env()?;
        let ctx = SessionContext::new_with_config(config);
        ctx.register_object_store(&loc.base_url, loc.store.clone());
        for (name, table) in self.tables() {
            if table.shards.is_empty() {
                // Every writer puts at least one (possibly empty) shard, which carries the
                // schema; a table with none has no columns to offer.
                let empty =
                    MemTable::try_new(Arc::new(arrow::datatypes::Schema::empty()), vec![vec![]])?;
                ctx.register_table(name, Arc::new(empty))?;
                continue;
            }
            let urls = table
                .shards
                .iter()
                .map(|s| ListingTableUrl::parse(loc.object_url(&loc.child(&s.path))))
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .infer_schema(&ctx.state())
                .await?;
            ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
        }
        Ok(ctx)
    }

    /// Runs one query and collects its result.
    pub async fn query(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let ctx = self.session().await?;
        let df = ctx.sql(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    }
}

/// What `kelp status` reports about a dataset URI.
pub enum DatasetStatus {
    /// A partitioned run (finished or not): its partitions.
    Run(RunStatus),
    /// A dataset written before partitioned runs: complete, with no run record.
    Legacy,
}

/// The state of the run at `uri`; an error naming the URI when no kelp run is there.
pub async fn status(uri: &str, opts: &StoreOptions) -> Result<DatasetStatus> {
    let loc = store::resolve_with(uri, opts)?;
    if let Some(st) = commit::status(&loc).await? {
        return Ok(DatasetStatus::Run(st));
    }
    if manifest::read(&loc).await?.is_some() {
        return Ok(DatasetStatus::Legacy);
    }
    Err(PipelineError::Other(format!(
        "{uri}: no kelp run here (no _kelp/run.json)"
    )))
}
