//! What the page opens with: the dataset's tables and counts, and the preset queries its
//! buttons run (kept clips, rejected clips with node and reason, both, near-duplicate groups,
//! ...), written for the tables this dataset has. Presets are plain SQL put in the SQL box, so
//! a curator sees and edits what runs.

use serde::Serialize;
use serde_json::Value;

use super::cards::columns_of;
use super::query::collect;
use super::{json, AppState, ServeError};

#[derive(Debug, Serialize)]
pub struct Info {
    pub uri: String,
    /// False while a run is unfinished (only committed partitions are shown).
    pub complete: bool,
    pub dag: String,
    pub tables: Vec<TableInfo>,
    pub counts: Counts,
    pub presets: Vec<Preset>,
    pub max_rows: usize,
    pub timeout_s: f64,
}

#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub rows: u64,
    pub shards: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub videos: Option<i64>,
    pub kept: Option<i64>,
    pub rejected: Option<i64>,
    pub duplicate_groups: Option<i64>,
    pub kept_hours: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Preset {
    pub key: &'static str,
    pub label: &'static str,
    pub sql: String,
}

async fn scalar(state: &AppState, sql: &str) -> Result<Option<Value>, ServeError> {
    let (_, batches) = collect(&state.ctx, sql).await?;
    Ok(json::rows_value(&batches)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next()))
}

pub async fn info(state: &AppState) -> Result<Info, ServeError> {
    let ds = &state.dataset;
    let ctx = &state.ctx;
    let clips = columns_of(ctx, "clips").await;
    let has = |cols: &Option<Vec<String>>, c: &str| {
        cols.as_ref()
            .is_some_and(|cols| cols.iter().any(|x| x == c))
    };
    let rejections = columns_of(ctx, "rejections").await;
    let duplicates = columns_of(ctx, "duplicates").await;
    let mut counts = Counts::default();
    if columns_of(ctx, "videos").await.is_some() {
        counts.videos = scalar(state, "SELECT count(*) FROM videos")
            .await?
            .and_then(|v| v.as_i64());
    }
    if has(&clips, "clip_id") {
        counts.kept = scalar(state, "SELECT count(*) FROM clips")
            .await?
            .and_then(|v| v.as_i64());
    }
    if has(&clips, "duration_s") {
        counts.kept_hours = scalar(state, "SELECT sum(duration_s) / 3600 FROM clips")
            .await?
            .and_then(|v| v.as_f64());
    }
    if has(&rejections, "clip_id") {
        counts.rejected = scalar(
            state,
            "SELECT count(*) FROM rejections WHERE clip_id IS NOT NULL",
        )
        .await?
        .and_then(|v| v.as_i64());
    }
    if has(&duplicates, "group_id") {
        counts.duplicate_groups = scalar(
            state,
            "SELECT count(*) FROM (SELECT group_id FROM duplicates GROUP BY group_id HAVING count(*) > 1)",
        )
        .await?
        .and_then(|v| v.as_i64());
    }
    let mut presets = Vec::new();
    if has(&clips, "clip_id") {
        let order = if has(&clips, "start_s") {
            " ORDER BY uri, start_s"
        } else {
            ""
        };
        presets.push(Preset {
            key: "kept",
            label: "Kept clips",
            sql: format!("SELECT * FROM clips{order}"),
        });
    }
    if has(&rejections, "clip_id") {
        presets.push(Preset {
            key: "rejected",
            label: "Rejected clips",
            sql: "SELECT clip_id, node, reason, uri, start_s, duration_s FROM rejections \
                  WHERE clip_id IS NOT NULL ORDER BY uri, start_s"
                .into(),
        });
        if has(&clips, "start_s") {
            presets.push(Preset {
                key: "all",
                label: "Kept and rejected",
                sql: "SELECT clip_id, 'kept' AS status, CAST(NULL AS VARCHAR) AS node, \
                      CAST(NULL AS VARCHAR) AS reason, uri, start_s, duration_s FROM clips \
                      UNION ALL SELECT clip_id, 'rejected', node, reason, uri, start_s, duration_s \
                      FROM rejections WHERE clip_id IS NOT NULL ORDER BY uri, start_s"
                    .into(),
            });
        }
    }
    if has(&duplicates, "group_id") {
        presets.push(Preset {
            key: "duplicates",
            label: "Near-duplicate groups",
            sql: "SELECT group_id, clip_id, kept, distance, matched_fraction FROM duplicates \
                  ORDER BY group_id, kept DESC, distance NULLS FIRST, clip_id"
                .into(),
        });
    }
    if rejections.is_some() {
        presets.push(Preset {
            key: "reasons",
            label: "Rejections by reason",
            sql: "SELECT node, reason, count(*) AS rejected, count(clip_id) AS clips \
                  FROM rejections GROUP BY node, reason ORDER BY rejected DESC, node, reason"
                .into(),
        });
    }
    if has(&clips, "bucket") {
        presets.push(Preset {
            key: "buckets",
            label: "Clips per bucket",
            sql: "SELECT bucket, count(*) AS clips, round(sum(duration_s) / 60, 2) AS minutes \
                  FROM clips GROUP BY bucket ORDER BY clips DESC, bucket"
                .into(),
        });
    }
    Ok(Info {
        uri: ds.uri().to_string(),
        complete: ds.complete(),
        dag: ds.manifest.dag.clone(),
        tables: ds
            .tables()
            .map(|(name, t)| TableInfo {
                name: name.to_string(),
                rows: t.rows,
                shards: t.shards.len(),
            })
            .collect(),
        counts,
        presets,
        max_rows: state.limits.max_rows,
        timeout_s: state.limits.timeout.as_secs_f64(),
    })
}
