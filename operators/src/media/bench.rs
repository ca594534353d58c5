//! `kelp bench transcode`: the clip stage with `transcode` over the kept clips of each video,
//! against the per-clip ffmpeg CLI approach users reach for (`ffmpeg -ss S -i F -frames:v N -vf
//! crop,scale ... ` once per clip, same filters and encoder settings), and the clip stage's
//! decode against a bare CLI decode of the same ranges. One thread each.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::bench::{cpu_seconds, timed, Timing};
use crate::clip_stage::{filter_chain, ClipStageReport, Fit};
use crate::context::SourceVideo;
use crate::media::transcode::{media_request, FitName, TranscodeConfig};
use crate::plan::VideoPlan;

/// One video's kept clips, transcoded both ways.
#[derive(Debug, Clone)]
pub struct TranscodeRow {
    pub file: String,
    pub clips: usize,
    /// Seconds of media made (frames ÷ fps over the clips).
    pub media_s: f64,
    pub kelp: Timing,
    pub report: ClipStageReport,
    /// The per-clip CLI encodes.
    pub cli: Timing,
    /// A CLI decode of the same ranges, nothing else (one process, `-f null`).
    pub bare_decode: Timing,
}

/// Analyses `video` with the plan, then times its clip stage (only `node`, a `transcode`)
/// against one ffmpeg CLI encode per kept clip, writing the CLI's files under `scratch`.
pub fn run(
    plan: &VideoPlan,
    node: &str,
    config: &TranscodeConfig,
    video: &Path,
    scratch: &Path,
) -> Result<TranscodeRow, String> {
    let source = SourceVideo {
        uri: video.display().to_string(),
        path: video.to_path_buf(),
    };
    let analysed = plan.analyse(source);
    if let Some(e) = &analysed.error {
        return Err(e.clone());
    }
    let mut ctx = analysed.clone();
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let t = Instant::now();
    plan.clip_stage(&mut ctx, Some(&[node]));
    let kelp = Timing {
        cpu: cpu_seconds(libc::RUSAGE_SELF) - cpu0,
        wall: t.elapsed().as_secs_f64(),
    };
    if let Some(e) = &ctx.error {
        return Err(e.clone());
    }
    let report = ctx.clip_stage.clone().unwrap_or_default();
    let media = ctx.tables.get(super::transcode::TABLE_MEDIA);
    let media_s = media
        .map(|m| {
            let frames = m.column("frames").unwrap_or_default();
            let fps = m.column("fps").unwrap_or_default();
            frames
                .iter()
                .zip(fps)
                .filter_map(|(n, f)| Some(n.as_f64()? / f.as_f64()?.max(1e-9)))
                .sum()
        })
        .unwrap_or(0.0);

    let fit = match config.fit {
        FitName::Cover => Fit::Cover,
        FitName::Stretch => Fit::Stretch,
    };
    let probe = analysed.probe.clone().unwrap_or_default();
    let mut cli = Timing::default();
    let mut ranges: Vec<(String, String, u64)> = Vec::new();
    for (i, clip) in analysed.clips.iter().enumerate() {
        let target = crate::clip_stage::Target::Kept(i);
        let Some(request) = media_request(&analysed, target, fit) else {
            continue;
        };
        let crop = target.crop_box(&analysed);
        let chain = filter_chain((probe.width, probe.height), crop, probe.rotation, &request);
        let frames = request.max_frames.unwrap_or(clip.frames()).to_string();
        let start = format!("{:.6}", analysed.time_of(clip.start_frame));
        let out = scratch.join(format!("{}.mp4", clip.clip_id));
        let mut encode = Command::new("ffmpeg");
        encode
            .args(["-hide_banner", "-loglevel", "error", "-y", "-threads", "1"])
            .args(["-noautorotate", "-ss", &start, "-i"])
            .arg(video)
            .args(["-frames:v", &frames, "-vf", &chain, "-filter_threads", "1"])
            .args([
                "-c:v",
                &config.codec,
                "-threads",
                &config.threads.to_string(),
            ])
            .args(["-crf", &config.crf.to_string(), "-preset", &config.preset]);
        if config.gop > 0 {
            encode.args(["-g", &config.gop.to_string()]);
        }
        encode.args(["-an"]).arg(&out);
        let t = timed(&mut encode)?;
        cli.cpu += t.cpu;
        cli.wall += t.wall;
        // Input `-t`: stop reading the input at the clip's end (plus a second for reordering).
        let span = format!("{:.6}", clip.duration_s() + 1.0);
        ranges.push((start, span, clip.frames()));
    }
    // The bare decode of the same ranges: one CLI process, one seeking input per range, each
    // decoded to a null output (so one process start, not one per clip).
    let mut bare = Timing::default();
    if !ranges.is_empty() {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error"]);
        for (start, span, _) in &ranges {
            cmd.args(["-threads", "1", "-ss", start, "-t", span, "-i"])
                .arg(video);
        }
        for (k, (_, _, frames)) in ranges.iter().enumerate() {
            cmd.args([
                "-map",
                &format!("{k}:v:0"),
                "-frames:v",
                &frames.to_string(),
            ])
            .args(["-f", "null", "-"]);
        }
        bare = timed(&mut cmd)?;
    }
    Ok(TranscodeRow {
        file: video
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string(),
        clips: media.map_or(0, |m| m.len),
        media_s,
        kelp,
        report,
        cli,
        bare_decode: bare,
    })
}

/// The benchmark as Markdown, one row per video and a total.
pub fn table(rows: &[TranscodeRow]) -> String {
    let mut out = String::from(
        "| file | clips | media s | kelp CPU s | kelp clips/s | kelp media s per CPU s | CLI CPU s | CLI clips/s | CLI media s per CPU s | CLI ÷ kelp CPU | ceiling: CLI ÷ kelp's non-decode CPU | clip-stage decode s | bare decode CPU s | decode ÷ bare |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut total = TranscodeRow {
        file: "**total**".into(),
        clips: 0,
        media_s: 0.0,
        kelp: Timing::default(),
        report: ClipStageReport::default(),
        cli: Timing::default(),
        bare_decode: Timing::default(),
    };
    for r in rows {
        out.push_str(&line(r));
        total.clips += r.clips;
        total.media_s += r.media_s;
        total.kelp.cpu += r.kelp.cpu;
        total.kelp.wall += r.kelp.wall;
        total.cli.cpu += r.cli.cpu;
        total.cli.wall += r.cli.wall;
        total.bare_decode.cpu += r.bare_decode.cpu;
        total.report.decode_seconds += r.report.decode_seconds;
    }
    out.push_str(&line(&total));
    out
}

fn line(r: &TranscodeRow) -> String {
    let per = |n: f64, d: f64| n / d.max(1e-9);
    format!(
        "| {} | {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2}x | {:.2}x | {:.2} | {:.2} | {:.2}x |\n",
        r.file,
        r.clips,
        r.media_s,
        r.kelp.cpu,
        per(r.clips as f64, r.kelp.wall),
        per(r.media_s, r.kelp.cpu),
        r.cli.cpu,
        per(r.clips as f64, r.cli.wall),
        per(r.media_s, r.cli.cpu),
        per(r.cli.cpu, r.kelp.cpu),
        // What the ratio would be if kelp's decode cost nothing: the encode (same frames, same
        // x264 settings on both sides) and scaling alone bound it.
        per(r.cli.cpu, r.kelp.cpu - r.report.decode_seconds),
        r.report.decode_seconds,
        r.bare_decode.cpu,
        per(r.report.decode_seconds, r.bare_decode.cpu),
    )
}
