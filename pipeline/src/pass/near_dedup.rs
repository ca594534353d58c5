//! `near_dedup`: near-duplicate groups over the whole dataset, from the `signatures` table of the
//! `signature` operator ([`kelp_operators::dedup`] does the matching). In each group the best
//! clip is kept — highest resolution (its crop box when it has one), then the higher
//! `sharpness` when that column exists, then the longer, then the smaller `clip_id` — and the
//! `duplicates` table says, for every clip of a group, which clip was kept, how close it is and
//! how much of it matched. Clips with `kept = false` there are the duplicates a training set
//! leaves out.
//!
//! With `against = [URI, ...]` the clips of older datasets join the search as fixed keepers:
//! they are never paired with each other, never rejected and never rewritten; a clip of this
//! dataset that matches one is a duplicate of it (`kept_in` names its dataset).
//!
//! Clips are numbered by the keep rule (older datasets' first), never by shard order, so the
//! result is the same whatever partitioning wrote the dataset. Cost: ~210 bytes per good-quality
//! frame signature held in memory (its six hashes: 10M ≈ 2 GB) plus one LSH table's words per
//! thread (see the README, "Deduplication").

mod read;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use futures::future::BoxFuture;
use kelp_operators::dedup::group_frames;
use kelp_operators::dedup::groups::{FrameSignature, MatchRule, Membership};
use kelp_operators::{ColumnSpec, ColumnType as T, TableSpec};
use serde::Deserialize;

use super::{Pass, PassWriter};
use crate::dataset::Dataset;
use crate::error::{PipelineError, Result};
use crate::store::StoreOptions;
use read::Rank;

pub const TABLE: &str = "duplicates";

/// Parameters of the `near_dedup` pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NearDedupConfig {
    /// Largest Hamming distance (of 256 bits) between two matching frames. PDQ's authors call
    /// ≤ 31 a confident match; see the README for the distances copies measured.
    pub radius: u32,
    /// Smallest share of the shorter clip's good frames that must match.
    pub min_fraction: f64,
    /// Frames under this PDQ quality are not matched on (flat, black, blurred frames).
    pub min_quality: i32,
    /// A mirrored copy counts as a duplicate.
    pub mirrors: bool,
    /// Older datasets (URIs): their clips are kept, and this dataset's copies of them rejected.
    pub against: Vec<String>,
    /// S3-compatible endpoint for the `against` datasets (else `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Allow a plain-http endpoint for them.
    pub allow_http: bool,
}

impl Default for NearDedupConfig {
    fn default() -> Self {
        NearDedupConfig {
            radius: 31,
            min_fraction: 0.5,
            min_quality: 50,
            mirrors: true,
            against: Vec::new(),
            endpoint: None,
            allow_http: false,
        }
    }
}

impl NearDedupConfig {
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.radius > 128 {
            return Err(format!(
                "radius must be ≤ 128 of 256 bits (got {}); unrelated pictures are ~128 apart",
                self.radius
            ));
        }
        if !(self.min_fraction > 0.0 && self.min_fraction <= 1.0) {
            return Err(format!(
                "min_fraction must be in (0, 1] (got {})",
                self.min_fraction
            ));
        }
        if let Some(bad) = self.against.iter().find(|u| u.trim().is_empty()) {
            return Err(format!("against: an empty dataset URI ({bad:?})"));
        }
        Ok(())
    }
}

pub fn tables() -> Vec<TableSpec> {
    let c = |name, kind, doc| ColumnSpec::of(TABLE, name, kind, doc);
    vec![TableSpec {
        name: TABLE,
        key: &["clip_id"],
        doc: "one row per clip of this dataset in a near-duplicate group (written by the `near_dedup` pass): the clip kept for the group, and how close this one is",
        columns: vec![
            c("clip_id", T::Utf8, "the clip").required(),
            c("group_id", T::Utf8, "the group: its kept clip's id").required(),
            c("kept_clip_id", T::Utf8, "the clip kept for the group (this one when `kept`)").required(),
            c("kept", T::Boolean, "true for the group's kept clip; false for its duplicates").required(),
            c("distance", T::Float64, "0–256: mean Hamming distance of its matching frames to the kept clip's"),
            c("matched_fraction", T::Float64, "0–1: share of the shorter clip's good frames with a match"),
            c("kept_in", T::Utf8, "the older dataset (an `against` URI) holding the kept clip; null when it is this one's"),
            c("reason", T::Utf8, "`duplicate of <kept_clip_id>` (`… in <dataset>` for an older dataset's clip); null when kept"),
        ],
        mirrors: None,
    }]
}

pub struct NearDedup {
    pub config: NearDedupConfig,
}

pub(crate) fn err(what: String) -> PipelineError {
    PipelineError::Other(format!("near_dedup: {what}"))
}

/// The clips of one dataset taking part, numbered from `first`.
struct Numbered {
    /// The dataset's URI for older datasets; `None` for the pass's own.
    uri: Option<String>,
    ids: Vec<String>,
    first: u32,
}

impl Numbered {
    fn map(&self) -> HashMap<String, u32> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), self.first + i as u32))
            .collect()
    }
}

impl NearDedup {
    /// Every clip numbered and every good frame read: older datasets' clips first (by id),
    /// then this dataset's in keep-rule order.
    async fn gather(&self, input: &Dataset) -> Result<(Vec<Numbered>, Vec<FrameSignature>)> {
        let opts = StoreOptions {
            endpoint: self.config.endpoint.clone(),
            allow_http: self.config.allow_http,
        };
        let mut parts = Vec::new();
        let mut frames = Vec::new();
        let mut next = 0u32;
        for uri in &self.config.against {
            let old = Dataset::open(uri, &opts)
                .await
                .map_err(|e| err(format!("against {uri}: {e}")))?;
            let mut ids: Vec<String> = read::clip_ranks(&old)
                .await?
                .into_iter()
                .map(|r| r.clip_id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let part = Numbered {
                uri: Some(uri.clone()),
                first: next,
                ids,
            };
            read::signatures(&old, &part.map(), self.config.min_quality, &mut frames).await?;
            next += part.ids.len() as u32;
            parts.push(part);
        }
        let mut ranks: Vec<Rank> = read::clip_ranks(input).await?;
        ranks.sort_by(Rank::better_first);
        let part = Numbered {
            uri: None,
            first: next,
            ids: ranks.into_iter().map(|r| r.clip_id).collect(),
        };
        read::signatures(input, &part.map(), self.config.min_quality, &mut frames).await?;
        parts.push(part);
        Ok((parts, frames))
    }
}

/// The clip numbered `n`: its id and, for an older dataset's, that dataset's URI.
fn clip_of(parts: &[Numbered], n: u32) -> Option<(&str, Option<&str>)> {
    let part = parts.iter().rev().find(|p| p.first <= n)?;
    let id = part.ids.get((n - part.first) as usize)?;
    Some((id.as_str(), part.uri.as_deref()))
}

fn duplicates_batch(parts: &[Numbered], members: &[Membership], fixed: u32) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("clip_id", DataType::Utf8, false),
        Field::new("group_id", DataType::Utf8, false),
        Field::new("kept_clip_id", DataType::Utf8, false),
        Field::new("kept", DataType::Boolean, false),
        Field::new("distance", DataType::Float64, true),
        Field::new("matched_fraction", DataType::Float64, true),
        Field::new("kept_in", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, true),
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
    let (mut kept_in, mut reason) = (StringBuilder::new(), StringBuilder::new());
    // Rows for this dataset's clips only: an older dataset is never rewritten.
    for m in members.iter().filter(|m| m.clip >= fixed) {
        let lost = || err(format!("clip number {} out of range", m.clip));
        let (id, _) = clip_of(parts, m.clip).ok_or_else(lost)?;
        let (keeper, keeper_in) = clip_of(parts, m.keeper).ok_or_else(lost)?;
        ids.append_value(id);
        group.append_value(keeper);
        kept_id.append_value(keeper);
        kept.append_value(m.clip == m.keeper);
        dist.append_value(m.distance);
        frac.append_value(m.fraction);
        kept_in.append_option(keeper_in);
        if m.clip == m.keeper {
            reason.append_null();
        } else {
            match keeper_in {
                Some(uri) => reason.append_value(format!("duplicate of {keeper} in {uri}")),
                None => reason.append_value(format!("duplicate of {keeper}")),
            }
        }
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        Arc::new(group.finish()),
        Arc::new(kept_id.finish()),
        Arc::new(kept.finish()),
        Arc::new(dist.finish()),
        Arc::new(frac.finish()),
        Arc::new(kept_in.finish()),
        Arc::new(reason.finish()),
    ];
    RecordBatch::try_new(schema, arrays).map_err(|e| err(e.to_string()))
}

impl Pass for NearDedup {
    fn name(&self) -> &'static str {
        "near_dedup"
    }

    fn run<'a>(&'a self, input: &'a Dataset, out: &'a mut PassWriter) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (parts, frames) = self.gather(input).await?;
            let total: usize = parts.iter().map(|p| p.ids.len()).sum();
            let fixed = parts.last().map_or(0, |p| p.first);
            let rule = MatchRule {
                radius: self.config.radius,
                min_fraction: self.config.min_fraction,
                mirrors: self.config.mirrors,
            };
            let signed = frames.len();
            let members = tokio::task::spawn_blocking(move || {
                let order: Vec<u32> = (0..total as u32).collect();
                group_frames(&frames, total, fixed, &order, rule)
            })
            .await
            .map_err(|e| err(format!("matching: {e}")))?;
            let batch = duplicates_batch(&parts, &members, fixed)?;
            let dropped = members
                .iter()
                .filter(|m| m.clip >= fixed && m.clip != m.keeper)
                .count();
            out.push(TABLE, batch).await?;
            tracing::info!(
                clips = total - fixed as usize,
                older_clips = fixed,
                frames = signed,
                duplicates = dropped,
                "near-duplicate groups built"
            );
            Ok(())
        })
    }
}

/// What `kelp dedup` did.
#[derive(Debug, Clone)]
pub struct StandaloneDedup {
    pub unit: u32,
    /// False when the pass had already been committed (its earlier result is kept).
    pub ran: bool,
    /// Clips kept for their groups, clips rejected, and of those, copies of older datasets'.
    pub kept: u64,
    pub rejected: u64,
    pub rejected_for_older: u64,
}

impl std::fmt::Display for StandaloneDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "near_dedup {} (unit {}): {} clips rejected as duplicates ({} of older datasets' clips), {} kept for their groups; the duplicates table says which and why",
            if self.ran {
                "committed"
            } else {
                "was already committed (its earlier result is kept)"
            },
            self.unit,
            self.rejected,
            self.rejected_for_older,
            self.kept
        )
    }
}

/// `kelp dedup --dataset URI [--against URI...]`: the pass over a finished dataset, committed
/// once like `kelp pass`; the store options serve the older datasets too.
pub async fn run_standalone(
    uri: &str,
    opts: &StoreOptions,
    against: &[String],
    shard_rows: usize,
) -> Result<StandaloneDedup> {
    let mut params = toml::Table::new();
    params.insert(
        "against".into(),
        toml::Value::Array(against.iter().cloned().map(toml::Value::String).collect()),
    );
    if let Some(e) = &opts.endpoint {
        params.insert("endpoint".into(), toml::Value::String(e.clone()));
    }
    params.insert("allow_http".into(), toml::Value::Boolean(opts.allow_http));
    let done = super::run_on_dataset_with(uri, opts, "near_dedup", &params, shard_rows).await?;
    let (_, batches) = crate::sql::query_with(
        uri,
        "SELECT count(*) FILTER (WHERE kept), count(*) FILTER (WHERE NOT kept), \
         count(*) FILTER (WHERE NOT kept AND kept_in IS NOT NULL) FROM duplicates",
        opts,
    )
    .await?;
    let n = |c: usize| -> u64 {
        batches
            .first()
            .and_then(|b| {
                b.column(c)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.value(0).max(0) as u64)
            })
            .unwrap_or(0)
    };
    Ok(StandaloneDedup {
        unit: done.unit,
        ran: done.ran,
        kept: n(0),
        rejected: n(1),
        rejected_for_older: n(2),
    })
}
