//! `kelp bench dag`: a whole DAG's per-video work against the bare decode, as a Markdown table:
//! the analysis (every node on the one shared decode, filters included) is what the one-decode
//! rule bounds, so it is timed apart from the clip stage (the second decode, of the kept ranges
//! only, with its encoders), and each step's share of the time and the decodes per video follow.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kelp_operators::bench::{cpu_seconds, timed, Timing};
use kelp_operators::SourceVideo;

use crate::error::{PipelineError, Result};

/// One file through a whole DAG.
#[derive(Debug, Clone)]
pub struct DagRow {
    pub file: String,
    pub frames: u64,
    pub decode: Timing,
    /// Every node's analysis on the one decode (filters included).
    pub kelp: Timing,
    /// The clip stage (media, previews), when the DAG has one.
    pub clip_stage: Timing,
    /// Analysis decodes the DAG made of this video (the design says 1).
    pub decodes: u64,
    /// Seconds per step (node ids and `decode`).
    pub steps: Vec<(String, f64)>,
}

/// Runs the DAG's per-video plan (filters included) over each video, one thread, after timing the bare
/// decode of the same file.
pub fn run_dag(compiled: &crate::dag::CompiledDag, videos: &[PathBuf]) -> Result<Vec<DagRow>> {
    let mut rows = Vec::new();
    for video in videos {
        let decode = timed(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-threads", "1", "-i"])
                .arg(video)
                .args(["-f", "null", "-"]),
        )
        .map_err(PipelineError::Other)?;
        let before = kelp_operators::decode::DECODES.load(Ordering::Relaxed);
        // The same per-video work as `kelp run` (the plan, filters included), in its two phases.
        let source = SourceVideo {
            uri: video.display().to_string(),
            path: video.clone(),
        };
        let (mut ctx, kelp) = measured(|| compiled.plan.analyse(source));
        let decodes = kelp_operators::decode::DECODES.load(Ordering::Relaxed) - before;
        let ((), clip_stage) = measured(|| {
            if ctx.is_ok() && !ctx.clips.is_empty() {
                compiled.plan.clip_stage(&mut ctx, None);
            }
        });
        if let Some(e) = &ctx.error {
            return Err(PipelineError::Other(e.clone()));
        }
        rows.push(DagRow {
            file: video
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
            frames: ctx.frame_times.len() as u64,
            decode,
            kelp,
            clip_stage,
            decodes,
            steps: ctx.timings.clone(),
        });
    }
    Ok(rows)
}

/// Runs `f` on this thread, with its CPU and wall time.
fn measured<T>(f: impl FnOnce() -> T) -> (T, Timing) {
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let t = Instant::now();
    let out = f();
    let timing = Timing {
        cpu: cpu_seconds(libc::RUSAGE_SELF) - cpu0,
        wall: t.elapsed().as_secs_f64(),
    };
    (out, timing)
}

/// The DAG benchmark as Markdown: one row per file plus a total, then the steps' time shares.
pub fn dag_table(rows: &[DagRow]) -> String {
    let mut out = String::from("| file | frames | decodes | decode CPU s | kelp analysis CPU s | analysis wall s | analysis fps | analysis/decode CPU | clip stage CPU s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let (mut frames, mut dcpu, mut kcpu, mut kwall, mut ccpu) = (0u64, 0.0, 0.0, 0.0, 0.0);
    let mut steps: Vec<(String, f64)> = Vec::new();
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2}x | {:.2} |\n",
            r.file,
            r.frames,
            r.decodes,
            r.decode.cpu,
            r.kelp.cpu,
            r.kelp.wall,
            r.frames as f64 / r.kelp.wall.max(1e-9),
            r.kelp.cpu / r.decode.cpu.max(1e-9),
            r.clip_stage.cpu
        ));
        ccpu += r.clip_stage.cpu;
        frames += r.frames;
        dcpu += r.decode.cpu;
        kcpu += r.kelp.cpu;
        kwall += r.kelp.wall;
        for (id, secs) in &r.steps {
            match steps.iter_mut().find(|(n, _)| n == id) {
                Some(e) => e.1 += secs,
                None => steps.push((id.clone(), *secs)),
            }
        }
    }
    out.push_str(&format!(
        "| **total** | {frames} | | {dcpu:.2} | {kcpu:.2} | {kwall:.2} | {:.0} | {:.2}x | {ccpu:.2} |\n\n",
        frames as f64 / kwall.max(1e-9),
        kcpu / dcpu.max(1e-9)
    ));
    let total: f64 = steps.iter().map(|(_, s)| s).sum();
    out.push_str("| step | seconds | share |\n|---|---:|---:|\n");
    for (id, secs) in &steps {
        out.push_str(&format!(
            "| {id} | {secs:.2} | {:.0}% |\n",
            100.0 * secs / total.max(1e-9)
        ));
    }
    out
}
