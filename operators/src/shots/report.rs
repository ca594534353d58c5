//! `kelp shots`: one video's boundaries as a table, CSV or JSON.

use std::fmt::Write;

use crate::context::VideoContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// The boundaries the `shots` operator found in `ctx`, rendered.
pub fn render(ctx: &VideoContext, format: Format) -> Result<String, String> {
    let mut out = String::new();
    let w = |e: std::fmt::Error| e.to_string();
    match format {
        Format::Json => {
            out = serde_json::to_string_pretty(&ctx.boundaries).map_err(|e| e.to_string())?;
            out.push('\n');
        }
        Format::Csv => {
            writeln!(out, "frame,time_s,kind,span_start,span_frames,score").map_err(w)?;
            for b in &ctx.boundaries {
                writeln!(
                    out,
                    "{},{:.3},{},{},{},{:.3}",
                    b.frame,
                    b.time_s,
                    b.kind.as_str(),
                    b.span_start,
                    b.span_frames,
                    b.score
                )
                .map_err(w)?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "{:>8}  {:>9}  {:<8}  {:>6}  {:>7}",
                "frame", "time_s", "kind", "span", "score"
            )
            .map_err(w)?;
            for b in &ctx.boundaries {
                writeln!(
                    out,
                    "{:>8}  {:>9.3}  {:<8}  {:>6}  {:>7.2}",
                    b.frame,
                    b.time_s,
                    b.kind.as_str(),
                    b.span_frames,
                    b.score
                )
                .map_err(w)?;
            }
            writeln!(
                out,
                "{} boundaries, {} shots, {} frames decoded",
                ctx.boundaries.len(),
                ctx.shots.len(),
                ctx.frame_times.len()
            )
            .map_err(w)?;
        }
    }
    Ok(out)
}
