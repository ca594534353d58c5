//! `clip_index`: every clip's global row number in the dataset's shard order, with the shard and
//! the row inside it — what a loader needs to address any clip without scanning.
//!
//! Cost: it reads the `clip_id` and `video_id` columns of every `clips` shard once, in manifest
//! order, and writes one output shard per `shard_rows` rows as it goes; memory holds one input
//! shard at a time, so it runs on one machine for any dataset size (10M clips ≈ 400 MB of ids
//! read, a few seconds a million rows).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use kelp_operators::{ColumnSpec, ColumnType as T, TableSpec};
use serde::Deserialize;

use super::{Pass, PassWriter};
use crate::dataset::Dataset;
use crate::error::{PipelineError, Result};

pub const TABLE: &str = "clip_index";

/// `clip_index` takes no parameters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipIndexConfig {}

pub fn tables() -> Vec<TableSpec> {
    vec![TableSpec {
        name: TABLE,
        key: &["clip_id"],
        doc: "one row per clip: its global position in shard order (written by the `clip_index` pass)",
        columns: vec![
            ColumnSpec::of(TABLE, "clip_id", T::Utf8, "the clip").required(),
            ColumnSpec::of(TABLE, "row", T::UInt64, "0 … clips − 1: position in the dataset, shards in manifest order").required(),
            ColumnSpec::of(TABLE, "shard", T::Utf8, "the `clips` shard holding it, relative to the dataset root").required(),
            ColumnSpec::of(TABLE, "shard_row", T::UInt64, "its row inside that shard, from 0").required(),
            ColumnSpec::of(TABLE, "video_id", T::Utf8, "its source video").required(),
        ],
        mirrors: None,
    }]
}

pub struct ClipIndex;

impl Pass for ClipIndex {
    fn name(&self) -> &'static str {
        "clip_index"
    }

    fn run<'a>(&'a self, input: &'a Dataset, out: &'a mut PassWriter) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let schema = Arc::new(Schema::new(vec![
                Field::new("clip_id", DataType::Utf8, false),
                Field::new("row", DataType::UInt64, false),
                Field::new("shard", DataType::Utf8, false),
                Field::new("shard_row", DataType::UInt64, false),
                Field::new("video_id", DataType::Utf8, false),
            ]));
            let mut row = 0u64;
            for shard in input.shards(kelp_operators::output::TABLE_CLIPS) {
                let mut shard_row = 0u64;
                for batch in input.read_shard(shard, &["clip_id", "video_id"]).await? {
                    let col = |name: &str| -> Result<&StringArray> {
                        batch
                            .column_by_name(name)
                            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                            .ok_or_else(|| {
                                PipelineError::Other(format!(
                                    "clip_index: {} has no text column {name}",
                                    shard.path
                                ))
                            })
                    };
                    let (ids, videos) = (col("clip_id")?, col("video_id")?);
                    let n = batch.num_rows();
                    let mut rows = UInt64Builder::with_capacity(n);
                    let mut in_shard = UInt64Builder::with_capacity(n);
                    let mut shards = StringBuilder::new();
                    for _ in 0..n {
                        rows.append_value(row);
                        in_shard.append_value(shard_row);
                        shards.append_value(&shard.path);
                        row += 1;
                        shard_row += 1;
                    }
                    let arrays: Vec<ArrayRef> = vec![
                        Arc::new(ids.clone()),
                        Arc::new(rows.finish()),
                        Arc::new(shards.finish()),
                        Arc::new(in_shard.finish()),
                        Arc::new(videos.clone()),
                    ];
                    let out_batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| {
                        PipelineError::Other(format!("clip_index: {}: {e}", shard.path))
                    })?;
                    out.push(TABLE, out_batch).await?;
                }
            }
            tracing::info!(clips = row, "clip index built");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_schema_is_the_one_written() {
        let mut s = crate::dataset::schema::DatasetSchema::base();
        s.add(
            "p",
            &kelp_operators::Outputs {
                tables: tables(),
                ..Default::default()
            },
        )
        .unwrap();
        let declared = s.table(TABLE).unwrap().schema.clone();
        let names: Vec<_> = declared
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["clip_id", "row", "shard", "shard_row", "video_id"]);
        assert!(declared.fields().iter().all(|f| !f.is_nullable()));
    }
}
