//! `near_dedup`: near-duplicate groups over the whole dataset, from the `signatures` table of the
//! `signature` operator ([`crate::dedup`] does the matching). In each group the best clip is kept
//! — highest resolution (its crop box when it has one), then the higher `sharpness` when that
//! column exists, then the longer, then the smaller `clip_id` — and the `duplicates` table says,
//! for every clip of a group, which clip was kept, how close it is and how much of it matched.
//! Clips with `kept = false` there are the duplicates a training set leaves out.
//!
//! Cost: it holds the good-quality frame signatures of the whole dataset (about 100 bytes each:
//! 1M ≈ 100 MB) and matches them in one process (1M in ~13 s on 2 cores).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, FixedSizeBinaryArray, Float64Builder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type, Schema};
use futures::future::BoxFuture;
use kelp_operators::{ColumnSpec, ColumnType as T, TableSpec};
use serde::Deserialize;

use super::{Pass, PassWriter};
use crate::dataset::Dataset;
use crate::error::{PipelineError, Result};
use kelp_operators::dedup::group_signatures;
use kelp_operators::dedup::groups::MatchRule;

pub const TABLE: &str = "duplicates";
const SIGNATURES: &str = "signatures";
const CLIPS: &str = "clips";

/// Parameters of the `near_dedup` pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NearDedupConfig {
    /// Largest Hamming distance (of 256 bits) between two matching frames. PDQ's authors call
    /// ≤ 31 a confident match; copies of one clip measured 2–6 (see the README).
    pub radius: u32,
    /// Smallest share of the shorter clip's good frames that must match.
    pub min_fraction: f64,
    /// Frames under this PDQ quality are not matched on (flat, black, blurred frames).
    pub min_quality: i32,
    /// A mirrored copy counts as a duplicate.
    pub mirrors: bool,
}

impl Default for NearDedupConfig {
    fn default() -> Self {
        NearDedupConfig {
            radius: 31,
            min_fraction: 0.5,
            min_quality: 50,
            mirrors: true,
        }
    }
}

pub fn tables() -> Vec<TableSpec> {
    let c = |name, kind, doc| ColumnSpec::of(TABLE, name, kind, doc);
    vec![TableSpec {
        name: TABLE,
        key: &["clip_id"],
        doc: "one row per clip in a near-duplicate group (written by the `near_dedup` pass): the clip kept for the group, and how close this one is",
        columns: vec![
            c("clip_id", T::Utf8, "the clip").required(),
            c("group_id", T::Utf8, "the group: its kept clip's id").required(),
            c("kept_clip_id", T::Utf8, "the clip kept for the group (this one when `kept`)").required(),
            c("kept", T::Boolean, "true for the group's kept clip; false for its duplicates").required(),
            c("distance", T::Float64, "0–256: mean Hamming distance of its matching frames to the kept clip's"),
            c("matched_fraction", T::Float64, "0–1: share of the shorter clip's good frames with a match"),
        ],
        mirrors: None,
    }]
}

pub struct NearDedup {
    pub config: NearDedupConfig,
}

/// A clip's place in the keep order: better first.
#[derive(Debug, Clone, PartialEq)]
struct Rank {
    pixels: i64,
    sharpness: f64,
    duration: f64,
    clip_id: String,
}

fn err(what: String) -> PipelineError {
    PipelineError::Other(format!("near_dedup: {what}"))
}

/// Reads the keep-rule facts of every clip, in shard order.
async fn clip_ranks(input: &Dataset) -> Result<Vec<Rank>> {
    let mut ranks = Vec::new();
    for shard in input.shards(CLIPS) {
        for batch in input.read_shard(shard, &[]).await? {
            let text = |n: &str| {
                batch
                    .column_by_name(n)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            };
            let ids = text("clip_id").ok_or_else(|| err(format!("{}: no clip_id", shard.path)))?;
            let num = |n: &str, i: usize| -> Option<f64> {
                let c = batch.column_by_name(n)?;
                if c.is_null(i) {
                    return None;
                }
                match c.data_type() {
                    DataType::Int32 => Some(c.as_primitive::<Int32Type>().value(i) as f64),
                    DataType::Int64 => Some(c.as_primitive::<Int64Type>().value(i) as f64),
                    DataType::Float64 => Some(c.as_primitive::<Float64Type>().value(i)),
                    _ => None,
                }
            };
            for i in 0..batch.num_rows() {
                let (w, h) = match (num("crop_w", i), num("crop_h", i)) {
                    (Some(w), Some(h)) => (w, h),
                    _ => (
                        num("width", i).unwrap_or(0.0),
                        num("height", i).unwrap_or(0.0),
                    ),
                };
                ranks.push(Rank {
                    pixels: (w * h) as i64,
                    sharpness: num("sharpness", i).unwrap_or(0.0),
                    duration: num("duration_s", i).unwrap_or(0.0),
                    clip_id: ids.value(i).to_string(),
                });
            }
        }
    }
    Ok(ranks)
}

/// A signature row kept for matching: its clip's number in `index`, hash and mirror hash.
type SignatureRow = (u32, Vec<u8>, Vec<u8>);

/// The good-quality signature rows, with clips numbered by their place in `index`.
async fn signature_rows(
    input: &Dataset,
    index: &HashMap<String, u32>,
    min_quality: i32,
) -> Result<Vec<SignatureRow>> {
    let mut out = Vec::new();
    for shard in input.shards(SIGNATURES) {
        for batch in input
            .read_shard(shard, &["clip_id", "hash", "hash_mirror", "quality"])
            .await?
        {
            let bad = || err(format!("{}: unexpected signature columns", shard.path));
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(bad)?;
            let hashes = batch
                .column(1)
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(bad)?;
            let mirrors = batch
                .column(2)
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(bad)?;
            let quality = batch
                .column(3)
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(bad)?;
            for i in 0..batch.num_rows() {
                if quality.is_null(i) || quality.value(i) < min_quality || hashes.is_null(i) {
                    continue;
                }
                // Signatures of clips no longer in `clips` (none, in a committed dataset) are skipped.
                let Some(&clip) = index.get(ids.value(i)) else {
                    continue;
                };
                out.push((clip, hashes.value(i).to_vec(), mirrors.value(i).to_vec()));
            }
        }
    }
    Ok(out)
}

impl Pass for NearDedup {
    fn name(&self) -> &'static str {
        "near_dedup"
    }

    fn run<'a>(&'a self, input: &'a Dataset, out: &'a mut PassWriter) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if input.shards(SIGNATURES).is_empty() {
                return Err(err(
                    "the dataset has no signatures table (add a `signature` node to the DAG)"
                        .into(),
                ));
            }
            let ranks = clip_ranks(input).await?;
            let index: HashMap<String, u32> = ranks
                .iter()
                .enumerate()
                .map(|(i, r)| (r.clip_id.clone(), i as u32))
                .collect();
            let rows = signature_rows(input, &index, self.config.min_quality).await?;
            let rule = MatchRule {
                radius: self.config.radius,
                min_fraction: self.config.min_fraction,
                mirrors: self.config.mirrors,
            };
            let n = ranks.len();
            let mut order: Vec<u32> = (0..ranks.len() as u32).collect();
            order.sort_by(|&a, &b| {
                let (x, y) = (&ranks[a as usize], &ranks[b as usize]);
                y.pixels
                    .cmp(&x.pixels)
                    .then(y.sharpness.total_cmp(&x.sharpness))
                    .then(y.duration.total_cmp(&x.duration))
                    .then(x.clip_id.cmp(&y.clip_id))
            });
            let members = tokio::task::spawn_blocking(move || {
                let refs: Vec<(u32, &[u8], &[u8])> = rows
                    .iter()
                    .map(|(c, h, m)| (*c, h.as_slice(), m.as_slice()))
                    .collect();
                group_signatures(&refs, n, &order, rule)
            })
            .await
            .map_err(|e| err(format!("matching: {e}")))?;
            let schema = Arc::new(Schema::new(vec![
                Field::new("clip_id", DataType::Utf8, false),
                Field::new("group_id", DataType::Utf8, false),
                Field::new("kept_clip_id", DataType::Utf8, false),
                Field::new("kept", DataType::Boolean, false),
                Field::new("distance", DataType::Float64, true),
                Field::new("matched_fraction", DataType::Float64, true),
            ]));
            let (mut ids, mut group, mut kept_id) = (
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
            );
            let (mut kept, mut dist, mut frac) = (
                BooleanBuilder::new(),
                Float64Builder::new(),
                Float64Builder::new(),
            );
            for m in &members {
                let keeper = &ranks[m.keeper as usize].clip_id;
                ids.append_value(&ranks[m.clip as usize].clip_id);
                group.append_value(keeper);
                kept_id.append_value(keeper);
                kept.append_value(m.clip == m.keeper);
                dist.append_value(m.distance);
                frac.append_value(m.fraction);
            }
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(ids.finish()),
                Arc::new(group.finish()),
                Arc::new(kept_id.finish()),
                Arc::new(kept.finish()),
                Arc::new(dist.finish()),
                Arc::new(frac.finish()),
            ];
            let batch = RecordBatch::try_new(schema, arrays).map_err(|e| err(e.to_string()))?;
            let dropped = members.iter().filter(|m| m.clip != m.keeper).count();
            out.push(TABLE, batch).await?;
            tracing::info!(
                clips = n,
                duplicates = dropped,
                "near-duplicate groups built"
            );
            Ok(())
        })
    }
}
