//! `kelp plot RUN`: a run's metrics as one PNG, a panel per curve against the step (loss terms,
//! learning rate, gradient norm, throughput), drawn with plotters like `kelp stats`'s plots.

use std::path::{Path, PathBuf};

use kelp_pipeline::store::StoreOptions;
use plotters::prelude::*;

use super::metrics::{parse_jsonl, JSONL};
use super::store::RunStore;
use super::TrainError;

const PANEL: (u32, u32) = (520, 300);

/// Curves whose values span more than a factor 50 are drawn on a log scale.
fn wants_log(points: &[(u64, f64)]) -> bool {
    let pos: Vec<f64> = points.iter().map(|p| p.1).filter(|v| *v > 0.0).collect();
    if pos.len() != points.len() || pos.is_empty() {
        return false;
    }
    let (lo, hi) = pos
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    hi / lo > 50.0
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    name: &str,
    points: &[(u64, f64)],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let finite: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(s, v)| (s as f64, v))
        .collect();
    if finite.is_empty() {
        return Ok(());
    }
    let x0 = finite.first().map_or(0.0, |p| p.0);
    let x1 = finite.last().map_or(1.0, |p| p.0).max(x0 + 1.0);
    let (lo, hi) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-12);
    let style = RGBColor(46, 125, 160);
    if wants_log(points) {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{name} (log)"), ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (lo * 0.9..hi * 1.1).log_scale())
            .map_err(e)?;
        chart.configure_mesh().x_desc("step").draw().map_err(e)?;
        chart
            .draw_series(LineSeries::new(
                finite.iter().copied(),
                style.stroke_width(2),
            ))
            .map_err(e)?;
    } else {
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
            .map_err(e)?;
        chart.configure_mesh().x_desc("step").draw().map_err(e)?;
        chart
            .draw_series(LineSeries::new(
                finite.iter().copied(),
                style.stroke_width(2),
            ))
            .map_err(e)?;
    }
    Ok(())
}

/// Renders `metrics.jsonl` text into a PNG at `out`.
pub fn render_png(jsonl: &str, out: &Path) -> Result<(), TrainError> {
    let cols = parse_jsonl(jsonl);
    let cols: Vec<_> = cols
        .into_iter()
        .filter(|(_, pts)| pts.iter().any(|p| p.1.is_finite()))
        .collect();
    if cols.is_empty() {
        return Err(TrainError::Other(format!(
            "no metrics rows to plot for {}",
            out.display()
        )));
    }
    kelp_pipeline::stats::plots::ensure_font().map_err(|e| TrainError::Other(e.to_string()))?;
    let per_row = 3usize;
    let rows = cols.len().div_ceil(per_row);
    let size = (PANEL.0 * per_row as u32, PANEL.1 * rows as u32);
    let root = BitMapBackend::new(out, size).into_drawing_area();
    let panels = root.split_evenly((rows, per_row));
    for ((name, pts), area) in cols.iter().zip(panels.iter()) {
        draw_panel(area, name, pts)
            .map_err(|m| TrainError::Other(format!("plotting {name}: {m}")))?;
    }
    root.present()
        .map_err(|e| TrainError::Io(format!("{}: {e}", out.display())))
}

/// `kelp plot RUN [-o FILE]`: reads the run's `metrics.jsonl` (local or object storage) and
/// writes the PNG (default `<run>/metrics.png` for a local run, `metrics.png` otherwise).
pub fn plot_run(run: &str, opts: &StoreOptions, out: Option<&Path>) -> Result<PathBuf, TrainError> {
    let store = RunStore::open(run, opts)?;
    let bytes = store.get(JSONL)?.ok_or_else(|| {
        TrainError::Other(format!(
            "{run}: no {JSONL} (not a kelp training run, or no step logged yet)"
        ))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let out = match (out, &store.loc.local_dir) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(d)) => d.join("metrics.png"),
        (None, None) => PathBuf::from("metrics.png"),
    };
    render_png(&text, &out)?;
    Ok(out)
}
