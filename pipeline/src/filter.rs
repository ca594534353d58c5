//! The `filter` node: keeps the clips a SQL predicate selects, evaluated by DataFusion over each
//! video's clip rows, and records every other clip in `rejections` with the node and predicate.
//!
//! ```toml
//! [[node]]
//! id = "quality"
//! op = "filter"
//! where = "sharpness > 80 AND motion_mean BETWEEN 0.3 AND 25 AND text_area < 0.05"
//! ```
//!
//! A clip whose predicate is NULL (a score missing) is rejected too, with that said.
//!
//! A filter is an ordinary node of the per-video plan: it runs where it stands in the DAG, so
//! nodes after it see only the clips it kept, and a rejected clip keeps the values it was judged
//! on in `rejected_clips`.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_plan::PhysicalExpr;
use datafusion::prelude::SessionContext;
use kelp_operators::{FrameSink, Operator, OperatorError, Outputs, Product, VideoContext};
use serde::Deserialize;

use crate::dataset::schema::batch_of;

/// Parameters of a `filter` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A SQL boolean expression over `clips` columns (those of earlier nodes).
    #[serde(rename = "where")]
    pub predicate: String,
}

/// A compiled `filter` node.
#[derive(Debug, Clone)]
pub struct SqlFilter {
    pub node: String,
    pub predicate: String,
    expr: Arc<dyn PhysicalExpr>,
    /// The `clips` columns of the nodes before this one.
    clips: SchemaRef,
}

/// A filter reads clips and writes nothing but rejections.
pub fn outputs() -> Outputs {
    Outputs::default().needs(&[Product::CLIPS])
}

impl SqlFilter {
    /// Parses and type-checks `predicate` against the clip columns available to it.
    pub fn new(node: &str, predicate: &str, clips: &SchemaRef) -> Result<Self, String> {
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(clips.as_ref().clone()).map_err(|e| e.to_string())?;
        let expr = ctx
            .parse_sql_expr(predicate, &df_schema)
            .map_err(|e| format!("where = {predicate:?}: {}", first_line(&e.to_string())))?;
        let phys = ctx
            .create_physical_expr(expr, &df_schema)
            .map_err(|e| format!("where = {predicate:?}: {}", first_line(&e.to_string())))?;
        let ty = phys.data_type(clips.as_ref()).map_err(|e| e.to_string())?;
        if ty != DataType::Boolean {
            return Err(format!(
                "where = {predicate:?} is {ty}, not a true/false condition"
            ));
        }
        Ok(SqlFilter {
            node: node.to_string(),
            predicate: predicate.to_string(),
            expr: phys,
            clips: clips.clone(),
        })
    }

    /// Rejects the video's clips the predicate does not select; returns how many.
    pub fn apply(&self, ctx: &mut VideoContext) -> Result<usize, String> {
        let rows = ctx.clip_rows();
        if rows.len == 0 {
            return Ok(0);
        }
        let batch = batch_of("clips", &self.clips, &[&rows]).map_err(|e| e.to_string())?;
        let n = batch.num_rows();
        let result = self
            .expr
            .evaluate(&batch)
            .and_then(|v| v.into_array(n))
            .map_err(|e| format!("filter \"{}\": {e}", self.node))?;
        let mask = result
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                format!(
                    "filter \"{}\": the predicate did not give booleans",
                    self.node
                )
            })?;
        let mut rejected = 0;
        ctx.node = self.node.clone();
        for i in (0..n).rev() {
            let keep = mask.is_valid(i) && mask.value(i);
            if !keep {
                let reason = if mask.is_valid(i) {
                    self.predicate.clone()
                } else {
                    format!("{} (NULL: a value it needs is missing)", self.predicate)
                };
                ctx.reject_clip(i, reason);
                rejected += 1;
            }
        }
        Ok(rejected)
    }
}

impl Operator for SqlFilter {
    fn kind(&self) -> &'static str {
        "filter"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(
        &self,
        _ctx: &mut VideoContext,
    ) -> kelp_operators::error::Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn finish(&self, ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        let _span =
            tracing::debug_span!("filter", node = %self.node, uri = %ctx.source.uri).entered();
        self.apply(ctx)
            .map(|_| ())
            .map_err(|reason| OperatorError::Failed {
                op: self.node.clone(),
                path: ctx.source.path.clone(),
                reason,
            })
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::schema::DatasetSchema;
    use kelp_operators::{Clip, SourceVideo};

    fn clips_schema() -> SchemaRef {
        let (tables, cols) = kelp_operators::rows::window_tables();
        let o = Outputs {
            tables,
            columns: cols,
            ..Default::default()
        };
        let s = DatasetSchema::build([("window", &o)]).unwrap();
        s.table("clips").unwrap().schema.clone()
    }

    fn video_with_clips(durations: &[f64]) -> VideoContext {
        let mut ctx = VideoContext::new(
            SourceVideo {
                uri: "v.mp4".into(),
                path: "v.mp4".into(),
            },
            "vid".into(),
            1,
        );
        let mut t = 0.0;
        for (i, d) in durations.iter().enumerate() {
            ctx.clips.push(Clip {
                clip_id: format!("c{i}"),
                shot_index: i as u32,
                start_frame: (t * 25.0) as u64,
                end_frame: ((t + d) * 25.0) as u64,
                start_s: t,
                end_s: t + d,
                boundary_in: None,
                boundary_out: None,
            });
            t += d;
        }
        ctx
    }

    #[test]
    fn keeps_exactly_what_the_predicate_selects_and_records_the_rest() {
        let f = SqlFilter::new("long", "duration_s >= 4", &clips_schema()).unwrap();
        let mut ctx = video_with_clips(&[3.0, 5.0, 4.0, 2.0]);
        assert_eq!(f.apply(&mut ctx).unwrap(), 2);
        let kept: Vec<&str> = ctx.clips.iter().map(|c| c.clip_id.as_str()).collect();
        assert_eq!(kept, ["c1", "c2"]);
        let gone: Vec<&str> = ctx
            .rejections
            .iter()
            .filter_map(|r| r.clip.as_ref().map(|c| c.clip_id.as_str()))
            .collect();
        assert_eq!(gone, ["c3", "c0"]);
        assert!(ctx
            .rejections
            .iter()
            .all(|r| r.node == "long" && r.reason == "duration_s >= 4"));
    }

    #[test]
    fn malformed_and_unknown_column_predicates_are_clear_errors() {
        let clips = clips_schema();
        let e = SqlFilter::new("f", "duration_s >>= 4", &clips).unwrap_err();
        assert!(e.contains("where = \"duration_s >>= 4\""), "{e}");
        let e = SqlFilter::new("f", "sharpnes > 3", &clips).unwrap_err();
        assert!(e.contains("sharpnes"), "{e}");
        let e = SqlFilter::new("f", "duration_s + 1", &clips).unwrap_err();
        assert!(e.contains("not a true/false condition"), "{e}");
    }
}
