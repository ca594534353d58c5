//! The `kelp stats` report on the page: the same sections ([`crate::stats::compute`]) and the
//! same plots ([`crate::stats::plots::svg`]) as `kelp stats --html`, computed once on first
//! request. Plots are served as SVG images (`/api/stats/<key>.svg`), never inlined, so text
//! taken from the data cannot become markup.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{json, AppState, ServeError};
use crate::stats::{self, plots, Section};

/// The computed report.
pub struct StatsView {
    pub sections: Vec<Section>,
    /// SVG per plotted section, by key.
    pub svgs: Vec<(&'static str, String)>,
}

/// One section as the page gets it.
#[derive(Debug, Serialize)]
pub struct SectionJson {
    pub key: &'static str,
    pub title: String,
    pub sql: String,
    /// `/api/stats/<key>.svg` when the section has a plot.
    pub plot: Option<String>,
    pub columns: Vec<json::Column>,
    pub rows: Vec<Vec<Value>>,
}

/// The report, computed on first use.
pub async fn view(state: &AppState) -> Result<Arc<StatsView>, ServeError> {
    state
        .stats
        .get_or_init(|| async {
            let sections = stats::compute(&state.dataset)
                .await
                .map_err(|e| e.to_string())?;
            let mut svgs = Vec::new();
            for s in &sections {
                if let Some(svg) = plots::svg(s).map_err(|e| e.to_string())? {
                    svgs.push((s.key, svg));
                }
            }
            Ok(Arc::new(StatsView { sections, svgs }))
        })
        .await
        .clone()
        .map_err(|e| ServeError::Internal(format!("kelp stats: {e}")))
}

pub fn sections(view: &StatsView) -> Result<Vec<SectionJson>, ServeError> {
    view.sections
        .iter()
        .map(|s| {
            Ok(SectionJson {
                key: s.key,
                title: s.title.clone(),
                sql: s.sql.clone(),
                plot: view
                    .svgs
                    .iter()
                    .any(|(k, _)| *k == s.key)
                    .then(|| format!("/api/stats/{}.svg", s.key)),
                columns: json::columns(&s.schema),
                rows: json::rows_value(&s.batches)?,
            })
        })
        .collect()
}
