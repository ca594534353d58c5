//! Clip cards: what the page shows for each clip a query returns, whatever columns the query
//! selected — kept or rejected (by which node, and why), times, size, bucket, caption, a few
//! scores, and its near-duplicate group. Built with a handful of queries over the clip ids of
//! one page, reading only the tables the dataset has (captions and duplicate groups are shown
//! when a DAG produced them).

use std::collections::HashMap;

use datafusion::prelude::SessionContext;
use serde::Serialize;
use serde_json::{Map, Value};

use super::query::collect;
use super::{json, ServeError};

/// Score columns a card shows, in order of preference, when the dataset has them (every column
/// is on the clip page).
const SCORES: &[&str] = &[
    "aesthetic",
    "sharpness",
    "brisque",
    "motion_mean",
    "text_area",
    "luma_mean",
    "nsfw",
    "shake",
    "colorfulness",
    "contrast",
];
const SCORES_SHOWN: usize = 4;
/// Columns a card reads from `clips` / `rejected_clips` when present.
const FACTS: &[&str] = &[
    "clip_id",
    "video_id",
    "uri",
    "start_s",
    "end_s",
    "duration_s",
    "width",
    "height",
    "fps",
    "bucket",
    "caption",
    "caption_short",
];

#[derive(Debug, Clone, Default, Serialize)]
pub struct Card {
    pub clip_id: String,
    /// `kept`, `rejected`, or `unknown` (no table knows the id).
    pub status: &'static str,
    pub video_id: Option<String>,
    pub uri: Option<String>,
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub fps: Option<f64>,
    pub bucket: Option<String>,
    pub caption: Option<String>,
    pub rejections: Vec<Rejection>,
    pub scores: Vec<Score>,
    pub duplicate: Option<Duplicate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub node: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub name: String,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub group_id: String,
    /// This clip is the one its group keeps.
    pub kept: bool,
    pub kept_clip_id: String,
    /// Clips in the group, this one included.
    pub members: i64,
    pub distance: Option<f64>,
}

/// Column names of `table`, `None` when the dataset has no such table.
pub async fn columns_of(ctx: &SessionContext, table: &str) -> Option<Vec<String>> {
    let df = ctx.table(table).await.ok()?;
    Some(
        df.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
    )
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn id_list(ids: &[String]) -> String {
    ids.iter()
        .map(|i| literal(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows of `sql` as objects keyed by `clip_id`.
async fn by_clip(
    ctx: &SessionContext,
    sql: &str,
) -> Result<HashMap<String, Map<String, Value>>, ServeError> {
    let (schema, batches) = collect(ctx, sql).await?;
    Ok(json::objects(&schema, &batches)?
        .into_iter()
        .filter_map(|row| Some((row.get("clip_id")?.as_str()?.to_string(), row)))
        .collect())
}

fn text(row: &Map<String, Value>, key: &str) -> Option<String> {
    row.get(key)?.as_str().map(str::to_string)
}

fn num(row: &Map<String, Value>, key: &str) -> Option<f64> {
    row.get(key)?.as_f64()
}

fn int(row: &Map<String, Value>, key: &str) -> Option<i64> {
    row.get(key)?.as_i64()
}

fn fill(card: &mut Card, row: &Map<String, Value>) {
    card.video_id = card.video_id.take().or_else(|| text(row, "video_id"));
    card.uri = card.uri.take().or_else(|| text(row, "uri"));
    card.start_s = card.start_s.or_else(|| num(row, "start_s"));
    card.end_s = card.end_s.or_else(|| num(row, "end_s"));
    card.duration_s = card.duration_s.or_else(|| num(row, "duration_s"));
    card.width = card.width.or_else(|| int(row, "width"));
    card.height = card.height.or_else(|| int(row, "height"));
    card.fps = card.fps.or_else(|| num(row, "fps"));
    card.bucket = card.bucket.take().or_else(|| text(row, "bucket"));
    card.caption = card
        .caption
        .take()
        .or_else(|| text(row, "caption"))
        .or_else(|| text(row, "caption_short"));
    if card.scores.is_empty() {
        card.scores = SCORES
            .iter()
            .filter_map(|s| {
                Some(Score {
                    name: (*s).to_string(),
                    value: num(row, s)?,
                })
            })
            .take(SCORES_SHOWN)
            .collect();
    }
}

/// Columns of `FACTS` and `SCORES` that `table` has, quoted.
fn select_list(have: &[String]) -> String {
    FACTS
        .iter()
        .chain(SCORES)
        .filter(|c| have.iter().any(|h| h == *c))
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cards for `ids` (checked clip ids), in their order.
pub async fn cards(ctx: &SessionContext, ids: &[String]) -> Result<Vec<Card>, ServeError> {
    let mut cards: Vec<Card> = ids
        .iter()
        .map(|id| Card {
            clip_id: id.clone(),
            status: "unknown",
            ..Default::default()
        })
        .collect();
    if ids.is_empty() {
        return Ok(cards);
    }
    let list = id_list(ids);
    for (table, status) in [("clips", "kept"), ("rejected_clips", "rejected")] {
        let Some(have) = columns_of(ctx, table).await else {
            continue;
        };
        if !have.iter().any(|c| c == "clip_id") {
            continue;
        }
        let rows = by_clip(
            ctx,
            &format!(
                "SELECT {} FROM {table} WHERE clip_id IN ({list})",
                select_list(&have)
            ),
        )
        .await?;
        for card in cards.iter_mut().filter(|c| c.status == "unknown") {
            if let Some(row) = rows.get(&card.clip_id) {
                card.status = status;
                fill(card, row);
            }
        }
    }
    if columns_of(ctx, "rejections").await.is_some() {
        let (schema, batches) = collect(
            ctx,
            &format!("SELECT * FROM rejections WHERE clip_id IN ({list}) ORDER BY clip_id, node"),
        )
        .await?;
        let rows = json::objects(&schema, &batches)?;
        for row in &rows {
            let Some(id) = text(row, "clip_id") else {
                continue;
            };
            for card in cards.iter_mut().filter(|c| c.clip_id == id) {
                if card.status == "unknown" {
                    card.status = "rejected";
                }
                fill(card, row);
                card.rejections.push(Rejection {
                    node: text(row, "node").unwrap_or_default(),
                    reason: text(row, "reason").unwrap_or_default(),
                });
            }
        }
    }
    if let Some(have) = columns_of(ctx, "captions").await {
        let col = ["caption", "caption_short", "text"]
            .into_iter()
            .find(|c| have.iter().any(|h| h == c));
        if let (Some(col), true) = (col, have.iter().any(|h| h == "clip_id")) {
            let rows = by_clip(
                ctx,
                &format!(
                    "SELECT clip_id, \"{col}\" AS caption FROM captions WHERE clip_id IN ({list})"
                ),
            )
            .await?;
            for card in &mut cards {
                if card.caption.is_none() {
                    card.caption = rows.get(&card.clip_id).and_then(|r| text(r, "caption"));
                }
            }
        }
    }
    if columns_of(ctx, "duplicates").await.is_some() {
        let rows = by_clip(
            ctx,
            &format!(
                "SELECT d.clip_id, d.group_id, d.kept, d.kept_clip_id, d.distance, g.members \
                 FROM duplicates d JOIN (SELECT group_id, count(*) AS members FROM duplicates \
                 GROUP BY group_id) g ON g.group_id = d.group_id WHERE d.clip_id IN ({list})"
            ),
        )
        .await?;
        for card in &mut cards {
            if let Some(r) = rows.get(&card.clip_id) {
                card.duplicate = Some(Duplicate {
                    group_id: text(r, "group_id").unwrap_or_default(),
                    kept: r.get("kept").and_then(Value::as_bool).unwrap_or(false),
                    kept_clip_id: text(r, "kept_clip_id").unwrap_or_default(),
                    members: int(r, "members").unwrap_or(1),
                    distance: num(r, "distance"),
                });
            }
        }
    }
    Ok(cards)
}
