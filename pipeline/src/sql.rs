//! SQL over a dataset with DataFusion: every table the manifest lists is registered under its
//! name (`videos`, `boundaries`, `clips`, ...), reading only committed shards. While a run is
//! unfinished, the committed partitions' shards are what the tables hold.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::dataset::{manifest, schema};
use crate::error::{PipelineError, Result};
use crate::store;

/// A DataFusion session with the dataset at `uri` registered.
pub async fn session_for(uri: &str) -> Result<SessionContext> {
    session_with(uri, &store::StoreOptions::default()).await
}

/// [`session_for`] with S3 endpoint options.
pub async fn session_with(uri: &str, opts: &store::StoreOptions) -> Result<SessionContext> {
    let loc = store::resolve_with(uri, opts)?;
    let m = manifest::open(&loc)
        .await?
        .ok_or_else(|| PipelineError::NoDataset {
            uri: uri.to_string(),
        })?;
    let ctx = SessionContext::new();
    ctx.register_object_store(&loc.base_url, loc.store.clone());
    for (name, table) in &m.tables {
        if table.shards.is_empty() {
            let schema = schema::table_schema(name).ok_or_else(|| {
                PipelineError::Sql(format!("table {name} has no shards and no known schema"))
            })?;
            let empty = MemTable::try_new(schema, vec![vec![]])?;
            ctx.register_table(name.as_str(), Arc::new(empty))?;
            continue;
        }
        let urls = table
            .shards
            .iter()
            .map(|s| ListingTableUrl::parse(loc.object_url(&loc.child(&s.path))))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .infer_schema(&ctx.state())
            .await?;
        ctx.register_table(name.as_str(), Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(ctx)
}

/// Runs one query and collects its result.
pub async fn query(uri: &str, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    query_with(uri, sql, &store::StoreOptions::default()).await
}

/// [`query`] with S3 endpoint options.
pub async fn query_with(
    uri: &str,
    sql: &str,
    opts: &store::StoreOptions,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let ctx = session_with(uri, opts).await?;
    let df = ctx.sql(sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok((schema, batches))
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
