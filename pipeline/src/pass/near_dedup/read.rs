//! What `near_dedup` reads of a dataset: every clip's keep-rule facts from `clips`, and the
//! good-quality frame signatures of `signatures`, decoded straight into the matcher's frames.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, FixedSizeBinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use kelp_operators::dedup::groups::FrameSignature;
use kelp_operators::dedup::index::{hash_of, Hash};

use super::err;
use crate::dataset::Dataset;
use crate::error::Result;

const SIGNATURES: &str = "signatures";
const CLIPS: &str = "clips";

/// A clip's place in the keep order: better first.
#[derive(Debug, Clone, PartialEq)]
pub struct Rank {
    pub pixels: i64,
    pub sharpness: f64,
    pub duration: f64,
    pub clip_id: String,
}

impl Rank {
    /// Most pixels, then the sharper, then the longer, then the smaller id.
    pub fn better_first(x: &Rank, y: &Rank) -> std::cmp::Ordering {
        y.pixels
            .cmp(&x.pixels)
            .then(y.sharpness.total_cmp(&x.sharpness))
            .then(y.duration.total_cmp(&x.duration))
            .then(x.clip_id.cmp(&y.clip_id))
    }
}

fn number(batch: &RecordBatch, name: &str, i: usize) -> Option<f64> {
    let c = batch.column_by_name(name)?;
    if c.is_null(i) {
        return None;
    }
    match c.data_type() {
        DataType::Int32 => Some(c.as_primitive::<Int32Type>().value(i) as f64),
        DataType::Int64 => Some(c.as_primitive::<Int64Type>().value(i) as f64),
        DataType::Float64 => Some(c.as_primitive::<Float64Type>().value(i)),
        _ => None,
    }
}

/// The keep-rule facts of every clip of `input`.
pub async fn clip_ranks(input: &Dataset) -> Result<Vec<Rank>> {
    let mut ranks = Vec::new();
    for shard in input.shards(CLIPS) {
        for batch in input.read_shard(shard, &[]).await? {
            let ids = batch
                .column_by_name("clip_id")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| {
                    err(format!(
                        "{}: {}: no clip_id",
                        input.location.uri, shard.path
                    ))
                })?;
            for i in 0..batch.num_rows() {
                let (w, h) = match (number(&batch, "crop_w", i), number(&batch, "crop_h", i)) {
                    (Some(w), Some(h)) => (w, h),
                    _ => (
                        number(&batch, "width", i).unwrap_or(0.0),
                        number(&batch, "height", i).unwrap_or(0.0),
                    ),
                };
                ranks.push(Rank {
                    pixels: (w * h) as i64,
                    sharpness: number(&batch, "sharpness", i).unwrap_or(0.0),
                    duration: number(&batch, "duration_s", i).unwrap_or(0.0),
                    clip_id: ids.value(i).to_string(),
                });
            }
        }
    }
    Ok(ranks)
}

/// The signatures of `input`'s clips with quality ≥ `min_quality`, as frames of the clips
/// numbered in `numbers` (signatures of other clips are skipped), appended to `out`.
pub async fn signatures(
    input: &Dataset,
    numbers: &HashMap<String, u32>,
    min_quality: i32,
    out: &mut Vec<FrameSignature>,
) -> Result<()> {
    if input.shards(SIGNATURES).is_empty() && !input.shards(CLIPS).is_empty() {
        return Err(err(format!(
            "{}: the dataset has no signatures table (its DAG needs a `signature` node)",
            input.location.uri
        )));
    }
    for shard in input.shards(SIGNATURES) {
        for batch in input
            .read_shard(
                shard,
                &["clip_id", "hash", "hash_mirror", "quality", "hash_views"],
            )
            .await?
        {
            let bad = || {
                err(format!(
                    "{}: {}: unexpected signature columns",
                    input.location.uri, shard.path
                ))
            };
            let col = |n: &str| batch.column_by_name(n).ok_or_else(bad);
            let ids = col("clip_id")?
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(bad)?;
            let hashes = col("hash")?
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(bad)?;
            let mirrors = col("hash_mirror")?
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(bad)?;
            let quality = col("quality")?
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(bad)?;
            // Datasets signed before the views were hashed have no such column.
            let views = batch
                .column_by_name("hash_views")
                .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>());
            for i in 0..batch.num_rows() {
                if quality.is_null(i) || quality.value(i) < min_quality || hashes.is_null(i) {
                    continue;
                }
                // Signatures of clips no longer in `clips` (none, in a committed dataset) are skipped.
                let Some(&clip) = numbers.get(ids.value(i)) else {
                    continue;
                };
                let hash = hash_of(hashes.value(i));
                let mirror = if mirrors.is_null(i) {
                    hash
                } else {
                    hash_of(mirrors.value(i))
                };
                let views = views
                    .filter(|v| !v.is_null(i))
                    .and_then(|v| views_of(v.value(i)));
                if let (Some(hash), Some(mirror)) = (hash, mirror) {
                    out.push(FrameSignature {
                        clip,
                        hash,
                        mirror,
                        views,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The four view hashes stored back to back in `hash_views`.
fn views_of(bytes: &[u8]) -> Option<[Hash; 4]> {
    let mut out = [[0u64; 4]; 4];
    if bytes.len() != 32 * out.len() {
        return None;
    }
    for (v, chunk) in out.iter_mut().zip(bytes.chunks_exact(32)) {
        *v = hash_of(chunk)?;
    }
    Some(out)
}
