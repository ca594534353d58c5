//! The clip page: one clip's card, every column of its row, its source video's timeline (shot
//! boundaries, every clip cut from it, kept or rejected, this one marked), its near-duplicate
//! group side by side, and links to its preview and media.

use serde::Serialize;
use serde_json::{Map, Value};

use super::cards::{self, columns_of, literal, Card};
use super::query::collect;
use super::{blobs, json, AppState, ServeError};

#[derive(Debug, Serialize)]
pub struct ClipPage {
    pub card: Card,
    /// The table its row is in (`clips` or `rejected_clips`), if any.
    pub table: Option<&'static str>,
    /// Every column of that row, in table order.
    pub columns: Vec<(String, Value)>,
    /// Its `videos` row.
    pub video: Option<Map<String, Value>>,
    pub timeline: Timeline,
    /// Its near-duplicate group, the kept clip first; empty when it is in none.
    pub group: Vec<Card>,
    /// Preview and media files served for it.
    pub files: Vec<FileLink>,
}

#[derive(Debug, Default, Serialize)]
pub struct Timeline {
    /// The source's duration (its container's, else the end of its last clip or boundary).
    pub duration_s: f64,
    /// The `boundaries` table's rows of this source, as marks on the timeline.
    pub boundaries: Vec<TimelineMark>,
    /// Every clip of the source, kept or rejected, in time order.
    pub clips: Vec<Segment>,
}

/// A named instant on the timeline with the span around it (the operators define what a
/// row means: `kelp_operators::context::boundary_span_s` for the shots' boundaries).
#[derive(Debug, Serialize)]
pub struct TimelineMark {
    pub time_s: f64,
    pub kind: String,
    /// The span around `time_s` (equal to it for an instant).
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Segment {
    pub clip_id: String,
    pub start_s: f64,
    pub end_s: f64,
    pub status: &'static str,
    /// The rejecting node, for a rejected clip.
    pub node: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FileLink {
    pub name: &'static str,
    pub url: String,
    pub content_type: &'static str,
}

fn f(row: &Map<String, Value>, k: &str) -> Option<f64> {
    row.get(k)?.as_f64()
}

/// Everything the clip page shows for clip `id` (a checked id).
pub async fn page(state: &AppState, id: &str) -> Result<ClipPage, ServeError> {
    let ctx = &state.ctx;
    let card = cards::cards(ctx, &[id.to_string()])
        .await?
        .pop()
        .ok_or_else(|| ServeError::NotFound(format!("no clip {id}")))?;
    if card.status == "unknown" {
        return Err(ServeError::NotFound(format!(
            "no clip {id} in this dataset (not in clips, rejected_clips or rejections)"
        )));
    }
    let mut table = None;
    let mut columns = Vec::new();
    for t in ["clips", "rejected_clips"] {
        if columns_of(ctx, t).await.is_none() {
            continue;
        }
        let (schema, batches) = collect(
            ctx,
            &format!("SELECT * FROM {t} WHERE clip_id = {}", literal(id)),
        )
        .await?;
        if let Some(row) = json::rows_value(&batches)?.into_iter().next() {
            table = Some(t);
            columns = schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .zip(row)
                .collect();
            break;
        }
    }
    let video = match &card.video_id {
        Some(v) if columns_of(ctx, "videos").await.is_some() => {
            let (schema, batches) = collect(
                ctx,
                &format!("SELECT * FROM videos WHERE video_id = {}", literal(v)),
            )
            .await?;
            json::objects(&schema, &batches)?.into_iter().next()
        }
        _ => None,
    };
    let timeline = match &card.video_id {
        Some(v) => timeline(state, v, video.as_ref()).await?,
        None => Timeline::default(),
    };
    let group = group(state, id).await?;
    let mut files = Vec::new();
    for &(name, table, _, content_type) in blobs::FILES {
        let t = if table == "media" {
            &state.media
        } else {
            &state.previews
        };
        if t.has(&state.dataset, id).await? {
            files.push(FileLink {
                name,
                url: format!("/media/{id}/{name}"),
                content_type,
            });
        }
    }
    Ok(ClipPage {
        card,
        table,
        columns,
        video,
        timeline,
        group,
        files,
    })
}

async fn timeline(
    state: &AppState,
    video_id: &str,
    video: Option<&Map<String, Value>>,
) -> Result<Timeline, ServeError> {
    let ctx = &state.ctx;
    let vid = literal(video_id);
    let mut out = Timeline::default();
    if let Some(have) = columns_of(ctx, "boundaries").await {
        if ["time_s", "kind"]
            .iter()
            .all(|c| have.iter().any(|h| h == c))
        {
            let (schema, batches) = collect(
                ctx,
                &format!("SELECT * FROM boundaries WHERE video_id = {vid} ORDER BY time_s"),
            )
            .await?;
            for b in json::objects(&schema, &batches)? {
                let time_s = f(&b, "time_s").unwrap_or(0.0);
                // The transition's span as `shots` wrote it; an instant in datasets without it.
                let start_s = f(&b, "span_start_s").unwrap_or(time_s);
                let end_s = f(&b, "span_end_s").unwrap_or(time_s);
                out.boundaries.push(TimelineMark {
                    time_s,
                    kind: b
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or("cut")
                        .to_string(),
                    start_s,
                    end_s,
                });
            }
        }
    }
    let mut segments = Vec::new();
    if columns_of(ctx, "clips").await.is_some() {
        let (schema, batches) = collect(
            ctx,
            &format!("SELECT clip_id, start_s, end_s FROM clips WHERE video_id = {vid}"),
        )
        .await?;
        for r in json::objects(&schema, &batches)? {
            segments.push(segment(&r, "kept"));
        }
    }
    if columns_of(ctx, "rejections").await.is_some() {
        let (schema, batches) = collect(
            ctx,
            &format!(
                "SELECT clip_id, start_s, end_s, node FROM rejections \
                 WHERE video_id = {vid} AND clip_id IS NOT NULL AND start_s IS NOT NULL"
            ),
        )
        .await?;
        for r in json::objects(&schema, &batches)? {
            segments.push(segment(&r, "rejected"));
        }
    }
    segments.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let last = segments
        .iter()
        .map(|s| s.end_s)
        .chain(out.boundaries.iter().map(|b| b.end_s))
        .fold(0.0, f64::max);
    out.duration_s = video
        .and_then(|v| f(v, "duration_s"))
        .filter(|d| *d > 0.0)
        .unwrap_or(last)
        .max(last);
    out.clips = segments;
    Ok(out)
}

fn segment(r: &Map<String, Value>, status: &'static str) -> Segment {
    Segment {
        clip_id: r
            .get("clip_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        start_s: f(r, "start_s").unwrap_or(0.0),
        end_s: f(r, "end_s").unwrap_or(0.0),
        status,
        node: r.get("node").and_then(Value::as_str).map(str::to_string),
    }
}

/// The clip's near-duplicate group as cards, the kept clip first, then the closest.
async fn group(state: &AppState, id: &str) -> Result<Vec<Card>, ServeError> {
    let ctx = &state.ctx;
    if columns_of(ctx, "duplicates").await.is_none() {
        return Ok(Vec::new());
    }
    let (schema, batches) = collect(
        ctx,
        &format!(
            "SELECT clip_id FROM duplicates WHERE group_id IN \
             (SELECT group_id FROM duplicates WHERE clip_id = {}) \
             ORDER BY kept DESC, distance NULLS FIRST, clip_id",
            literal(id)
        ),
    )
    .await?;
    let ids: Vec<String> = json::objects(&schema, &batches)?
        .iter()
        .filter_map(|r| r.get("clip_id")?.as_str().map(str::to_string))
        .collect();
    cards::cards(ctx, &ids).await
}
