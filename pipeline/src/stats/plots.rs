//! Plots of `kelp stats` sections with plotters: bar charts for histograms and a heat map for
//! duration × resolution, as SVG inside one HTML page or as PNG files.
//!
//! Text is laid out with a TrueType font: DejaVu Sans from Debian's `fonts-dejavu-core`
//! (installed by `infra/install-deps.sh`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow::array::{Array, RecordBatch};
use arrow::util::display::array_value_to_string;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Chart, Section};
use crate::error::{PipelineError, Result};

const SIZE: (u32, u32) = (900, 420);
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn plot_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Other(format!("plotting: {e}"))
}

/// Registers DejaVu Sans for bitmap text once per process (also used by `kelp plot`).
pub fn ensure_font() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = FONT_PATHS.iter().find(|p| Path::new(p).exists()).ok_or_else(|| {
                format!("PNG plots need a font: none of {} exists (install Debian's fonts-dejavu-core: bash infra/install-deps.sh)", FONT_PATHS.join(", "))
            })?;
            let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).map_err(|_| format!("{path}: not a usable font"))
        })
        .clone()
        .map_err(PipelineError::Other)
}

/// Rows of a section as strings, column by column.
fn cells(batches: &[RecordBatch], columns: usize) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let row: Vec<String> = (0..columns.min(b.num_columns()))
                .map(|c| {
                    let col = b.column(c);
                    if col.is_null(r) {
                        "null".to_string()
                    } else {
                        array_value_to_string(col, r).unwrap_or_default()
                    }
                })
                .collect();
            rows.push(row);
        }
    }
    rows
}

fn number(s: &str) -> f64 {
    s.parse::<f64>().unwrap_or(0.0)
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Section,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let rows = cells(&s.batches, 2);
    let labels: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
    let counts: Vec<f64> = rows.iter().map(|r| number(&r[1])).collect();
    let ymax = counts.iter().copied().fold(1.0, f64::max) * 1.1;
    let n = labels.len().max(1);
    let x_name = s.schema.field(0).name().clone();
    let y_name = s
        .schema
        .fields()
        .get(1)
        .map(|f| f.name().clone())
        .unwrap_or_default();
    let mut chart = ChartBuilder::on(root)
        .caption(&s.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)
        .map_err(|e| e.to_string())?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(30))
        .x_label_formatter(&label_of)
        .x_desc(x_name)
        .y_desc(y_name)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x = i as f64;
            Rectangle::new(
                [(x - 0.4, 0.0), (x + 0.4, *c)],
                RGBColor(46, 125, 160).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn draw_heat<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Section,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let rows = cells(&s.batches, 3);
    let mut xs: Vec<String> = Vec::new();
    let mut ys: Vec<String> = Vec::new();
    for r in &rows {
        if !xs.contains(&r[0]) {
            xs.push(r[0].clone());
        }
        if !ys.contains(&r[1]) {
            ys.push(r[1].clone());
        }
    }
    ys.sort_by(|a, b| number(a).total_cmp(&number(b)));
    let max = rows.iter().map(|r| number(&r[2])).fold(1.0, f64::max);
    let (nx, ny) = (xs.len().max(1), ys.len().max(1));
    let mut chart = ChartBuilder::on(root)
        .caption(&s.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(nx as f64 - 0.5), -0.5f64..(ny as f64 - 0.5))
        .map_err(|e| e.to_string())?;
    let at = |labels: &[String], v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let fx = |v: &f64| at(&xs, v);
    let fy = |v: &f64| at(&ys, v);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nx.min(30))
        .y_labels(ny.min(20))
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_desc(s.schema.field(0).name().clone())
        .y_desc(s.schema.field(1).name().clone())
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(rows.iter().map(|r| {
            let x = xs.iter().position(|v| *v == r[0]).unwrap_or(0) as f64;
            let y = ys.iter().position(|v| *v == r[1]).unwrap_or(0) as f64;
            let t = number(&r[2]) / max;
            let colour = HSLColor(0.62 - 0.62 * t, 0.75, 0.35 + 0.3 * (1.0 - t));
            Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], colour.filled())
        }))
        .map_err(|e| e.to_string())?;
    // The count in each cell, so the map can be read exactly.
    chart
        .draw_series(rows.iter().map(|r| {
            let x = xs.iter().position(|v| *v == r[0]).unwrap_or(0) as f64;
            let y = ys.iter().position(|v| *v == r[1]).unwrap_or(0) as f64;
            Text::new(
                r[2].clone(),
                (x, y),
                ("sans-serif", 14).into_font().color(&WHITE),
            )
        }))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Section,
) -> std::result::Result<(), String> {
    match s.chart {
        Chart::Bars => draw_bars(root, s),
        Chart::Heat => draw_heat(root, s),
        Chart::None => Ok(()),
    }
}

/// Writes one PNG per plotted section into `dir`; returns their paths.
pub fn write_pngs(sections: &[Section], dir: &Path) -> Result<Vec<PathBuf>> {
    ensure_font()?;
    std::fs::create_dir_all(dir)
        .map_err(|e| PipelineError::Other(format!("{}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for s in sections.iter().filter(|s| s.chart != Chart::None) {
        let path = dir.join(format!("{}.png", s.key));
        {
            let root = BitMapBackend::new(&path, SIZE).into_drawing_area();
            draw(&root, s).map_err(plot_err)?;
        }
        out.push(path);
    }
    Ok(out)
}

/// The section's plot as an SVG document, `None` for a table-only section.
pub fn svg(s: &Section) -> Result<Option<String>> {
    if s.chart == Chart::None {
        return Ok(None);
    }
    // plotters lays text out with the registered font even for SVG.
    ensure_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, s).map_err(plot_err)?;
    }
    Ok(Some(svg))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One self-contained HTML page: every section's table and, where it has one, its plot (SVG).
pub fn write_html(sections: &[Section], path: &Path) -> Result<()> {
    // plotters lays text out with the registered font even for SVG.
    ensure_font()?;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kelp stats</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;margin:.5em 0 2em}\
         td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}code{color:#555;font-size:85%}</style></head><body>\
         <h1>kelp stats</h1>\n",
    );
    for s in sections {
        html.push_str(&format!(
            "<h2>{}</h2>\n<p><code>{}</code></p>\n",
            escape(&s.title),
            escape(&s.sql)
        ));
        if let Some(svg) = svg(s)? {
            html.push_str(&svg);
            html.push('\n');
        }
        let names: Vec<String> = s.schema.fields().iter().map(|f| f.name().clone()).collect();
        html.push_str("<table><tr>");
        for n in &names {
            html.push_str(&format!("<th>{}</th>", escape(n)));
        }
        html.push_str("</tr>\n");
        for row in cells(&s.batches, names.len()) {
            html.push_str("<tr>");
            for c in row {
                html.push_str(&format!("<td>{}</td>", escape(&c)));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    std::fs::write(path, html).map_err(|e| PipelineError::Other(format!("{}: {e}", path.display())))
}
