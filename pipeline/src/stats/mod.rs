//! `kelp stats`: the distributions people check before training, each computed by one SQL query
//! over the dataset (printed with `--show-sql`, so every number can be reproduced with
//! `kelp sql`), as text tables, JSON, and plots ([`plots`]).

pub mod plots;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use serde_json::{Map, Value};

use crate::dataset::Dataset;
use crate::error::{PipelineError, Result};

/// How a section is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    /// Table only.
    None,
    /// Bars: first column = category, second = count.
    Bars,
    /// Heat map: first two columns = x and y categories, third = count.
    Heat,
}

/// One statistic: its query and result.
#[derive(Debug, Clone)]
pub struct Section {
    pub key: &'static str,
    pub title: String,
    pub sql: String,
    pub chart: Chart,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Clip columns that are positions, not distributions worth a percentile row.
const NOT_SCORES: &[&str] = &["start_s", "end_s"];

fn queries(clip_schema: &SchemaRef) -> Vec<(&'static str, String, String, Chart)> {
    let mut q = vec![
        (
            "sources",
            "Videos, clips and hours by source folder and status".to_string(),
            "SELECT regexp_replace(v.uri, '/[^/]*$', '') AS source, v.status, count(DISTINCT v.video_id) AS videos, \
             count(c.clip_id) AS clips, round(coalesce(sum(c.duration_s), 0) / 3600, 4) AS clip_hours \
             FROM videos v LEFT JOIN clips c ON c.video_id = v.video_id GROUP BY 1, 2 ORDER BY 1, 2"
                .to_string(),
            Chart::None,
        ),
        (
            "duration",
            "Clip duration (seconds, 1 s bins)".to_string(),
            "SELECT CAST(floor(duration_s) AS BIGINT) AS duration_s, count(*) AS clips FROM clips GROUP BY 1 ORDER BY 1".to_string(),
            Chart::Bars,
        ),
        (
            "resolution",
            "Clip height (pixels)".to_string(),
            "SELECT height AS height_px, count(*) AS clips FROM clips GROUP BY 1 ORDER BY 1".to_string(),
            Chart::Bars,
        ),
        (
            "aspect",
            "Clip aspect ratio (width / height)".to_string(),
            "SELECT round(CAST(width AS DOUBLE) / height, 2) AS aspect, count(*) AS clips FROM clips GROUP BY 1 ORDER BY 1".to_string(),
            Chart::Bars,
        ),
        (
            "fps",
            "Clip frame rate (frames per second)".to_string(),
            "SELECT round(fps, 2) AS fps, count(*) AS clips FROM clips GROUP BY 1 ORDER BY 1".to_string(),
            Chart::Bars,
        ),
    ];
    let scores: Vec<String> = clip_schema
        .fields()
        .iter()
        .filter(|f| f.data_type() == &DataType::Float64 && !NOT_SCORES.contains(&f.name().as_str()))
        .map(|f| f.name().clone())
        .collect();
    if !scores.is_empty() {
        let pct = |c: &str, p: f64| {
            format!("round(percentile_cont({p}) WITHIN GROUP (ORDER BY \"{c}\"), 4)")
        };
        let parts: Vec<String> = scores
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "SELECT {i} AS ord, '{c}' AS score, count(\"{c}\") AS clips, {} AS p1, {} AS p10, {} AS p50, {} AS p90, {} AS p99 FROM clips",
                    pct(c, 0.01),
                    pct(c, 0.1),
                    pct(c, 0.5),
                    pct(c, 0.9),
                    pct(c, 0.99)
                )
            })
            .collect();
        let query = format!(
            "SELECT score, clips, p1, p10, p50, p90, p99 FROM ({}) ORDER BY ord",
            parts.join(" UNION ALL ")
        );
        q.push((
            "percentiles",
            "Score percentiles over clips".to_string(),
            query,
            Chart::None,
        ));
    }
    q.push((
        "rejections",
        "Rejections by node and reason".to_string(),
        "SELECT node, reason, count(*) AS rejected, count(clip_id) AS clips, count(*) - count(clip_id) AS videos, \
         round(coalesce(sum(duration_s), 0) / 3600, 4) AS hours FROM rejections GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
            .to_string(),
        Chart::None,
    ));
    q.push((
        "duration_by_height",
        "Clips by duration (1 s bins) and height".to_string(),
        "SELECT CAST(floor(duration_s) AS BIGINT) AS duration_s, height AS height_px, count(*) AS clips FROM clips GROUP BY 1, 2 ORDER BY 1, 2".to_string(),
        Chart::Heat,
    ));
    q
}

/// Runs every statistic over the dataset.
pub async fn compute(dataset: &Dataset) -> Result<Vec<Section>> {
    let ctx = dataset.session().await?;
    let clips = ctx
        .table("clips")
        .await
        .map_err(|e| PipelineError::Sql(e.to_string()))?;
    let clip_schema: SchemaRef = std::sync::Arc::new(clips.schema().as_arrow().clone());
    let mut out = Vec::new();
    for (key, title, query, chart) in queries(&clip_schema) {
        let df = ctx
            .sql(&query)
            .await
            .map_err(|e| PipelineError::Sql(format!("{key}: {e}")))?;
        let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
        let batches = df
            .collect()
            .await
            .map_err(|e| PipelineError::Sql(format!("{key}: {e}")))?;
        out.push(Section {
            key,
            title,
            sql: query,
            chart,
            schema,
            batches,
        });
    }
    Ok(out)
}

/// Text report: a table per section, with its SQL when asked.
pub fn render_text(sections: &[Section], show_sql: bool) -> Result<String> {
    let mut out = String::new();
    for s in sections {
        out.push_str(&format!("## {}\n", s.title));
        if show_sql {
            out.push_str(&format!("-- {}\n", s.sql));
        }
        let table =
            arrow::util::pretty::pretty_format_batches_with_schema(s.schema.clone(), &s.batches)
                .map_err(|e| PipelineError::Sql(e.to_string()))?;
        out.push_str(&format!("{table}\n\n"));
    }
    Ok(out)
}

/// Rows of a section as JSON objects (what `kelp sql --format json` prints for its SQL).
pub fn rows_json(s: &Section) -> Result<Vec<Map<String, Value>>> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    for b in &s.batches {
        w.write(b).map_err(|e| PipelineError::Sql(e.to_string()))?;
    }
    w.finish().map_err(|e| PipelineError::Sql(e.to_string()))?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| PipelineError::Sql(e.to_string()))?;
    Ok(v.as_array()
        .map(|a| a.iter().filter_map(|r| r.as_object().cloned()).collect())
        .unwrap_or_default())
}

/// The whole report as JSON: `[{key, title, sql, rows}]`.
pub fn render_json(sections: &[Section]) -> Result<String> {
    let mut all = Vec::new();
    for s in sections {
        let mut m = Map::new();
        m.insert("key".into(), Value::from(s.key));
        m.insert("title".into(), Value::from(s.title.clone()));
        m.insert("sql".into(), Value::from(s.sql.clone()));
        m.insert(
            "rows".into(),
            Value::Array(rows_json(s)?.into_iter().map(Value::Object).collect()),
        );
        all.push(Value::Object(m));
    }
    serde_json::to_string_pretty(&all).map_err(|e| PipelineError::Other(e.to_string()))
}
