//! `kelp bench shots`: shot detection against the bare decode (the ffmpeg CLI, one thread) and
//! PySceneDetect's `detect-adaptive`, with CPU and wall time, frames per second, and F1 where
//! labels exist, printed as a Markdown table with the peer's numbers from the same run; and the
//! CPU/wall timing helpers the other benchmarks share.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::context::SourceVideo;
use crate::shots::eval::{read_labels, score, Detected, Label, Score};
use crate::shots::{self, ShotsConfig};

/// Benchmarks fail with a sentence naming the file or command.
pub type Result<T> = std::result::Result<T, String>;

/// CPU seconds (user + system) of this process or of its waited-for children.
pub fn cpu_seconds(who: i32) -> f64 {
    // SAFETY: getrusage fills the struct we own; both `who` values are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU and wall seconds of one measured step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub cpu: f64,
    pub wall: f64,
}

/// One file's measurements.
#[derive(Debug, Clone)]
pub struct Row {
    pub file: String,
    pub frames: u64,
    pub decode: Option<Timing>,
    pub kelp: Timing,
    pub peer: Option<Timing>,
    pub kelp_score: Option<Score>,
    pub peer_score: Option<Score>,
    pub kelp_boundaries: usize,
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub videos: Vec<PathBuf>,
    /// Where `<file name>.labels.csv` files live, when not beside the videos.
    pub labels_dir: Option<PathBuf>,
    /// Run PySceneDetect (`scenedetect` on PATH).
    pub peer: bool,
    /// Time the bare decode with the ffmpeg CLI.
    pub decode: bool,
}

fn labels_for(video: &Path, dir: Option<&Path>) -> Result<Option<Vec<Label>>> {
    let name = format!(
        "{}.labels.csv",
        video
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    );
    let beside = video.with_file_name(&name);
    let candidates = [dir.map(|d| d.join(&name)), Some(beside)];
    for c in candidates.into_iter().flatten() {
        if c.exists() {
            return read_labels(&c).map(Some);
        }
    }
    Ok(None)
}

/// Runs a command to completion, returning its children's CPU and wall time.
pub fn timed(cmd: &mut Command) -> Result<Timing> {
    let cpu0 = cpu_seconds(libc::RUSAGE_CHILDREN);
    let t = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Timing {
        cpu: cpu_seconds(libc::RUSAGE_CHILDREN) - cpu0,
        wall,
    })
}

/// PySceneDetect's adaptive detector: its cut frames (0-based) and its time.
fn run_peer(video: &Path, scratch: &Path) -> Result<(Vec<u64>, Timing)> {
    let timing = timed(
        Command::new("scenedetect")
            .arg("-i")
            .arg(video)
            .args(["-q", "detect-adaptive", "list-scenes", "-s", "-q", "-o"])
            .arg(scratch),
    )?;
    let stem = video
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let csv = scratch.join(format!("{stem}-Scenes.csv"));
    let text = std::fs::read_to_string(&csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Scene Number"));
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "Start Frame")
        .ok_or_else(|| format!("{}: no Start Frame column", csv.display()))?;
    let mut cuts = Vec::new();
    for (i, line) in lines.enumerate() {
        if let Some(v) = line
            .split(',')
            .nth(col)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            // Scene starts are 1-based; the first scene's start is the video start, not a cut.
            if i > 0 {
                cuts.push(v.saturating_sub(1));
            }
        }
    }
    let _ = std::fs::remove_file(&csv);
    Ok((cuts, timing))
}

/// Measures every video.
pub fn run(opts: &BenchOptions) -> Result<Vec<Row>> {
    let plan = shots::plan(ShotsConfig::default(), 1);
    let scratch = std::env::temp_dir().join(format!("kelp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut rows = Vec::new();
    for video in &opts.videos {
        let labels = labels_for(video, opts.labels_dir.as_deref())?;
        let decode = if opts.decode {
            Some(timed(
                Command::new("ffmpeg")
                    .args(["-hide_banner", "-loglevel", "error", "-threads", "1", "-i"])
                    .arg(video)
                    .args(["-f", "null", "-"]),
            )?)
        } else {
            None
        };
        let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
        let t = Instant::now();
        let ctx = plan.run(SourceVideo {
            uri: video.display().to_string(),
            path: video.clone(),
        });
        let kelp = Timing {
            cpu: cpu_seconds(libc::RUSAGE_SELF) - cpu0,
            wall: t.elapsed().as_secs_f64(),
        };
        if let Some(e) = &ctx.error {
            return Err(e.clone());
        }
        let detected: Vec<Detected> = ctx.boundaries.iter().map(Detected::from).collect();
        let (peer, peer_cuts) = if opts.peer {
            let (cuts, timing) = run_peer(video, &scratch)?;
            (Some(timing), Some(cuts))
        } else {
            (None, None)
        };
        let kelp_score = labels.as_ref().map(|l| score(&detected, l));
        let peer_score = match (&labels, &peer_cuts) {
            (Some(l), Some(c)) => Some(score(
                &c.iter().map(|&f| Detected::cut(f)).collect::<Vec<_>>(),
                l,
            )),
            _ => None,
        };
        rows.push(Row {
            file: video
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
            frames: ctx.frame_times.len() as u64,
            decode,
            kelp,
            peer,
            kelp_score,
            peer_score,
            kelp_boundaries: ctx.boundaries.len(),
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(rows)
}

fn opt_time(t: Option<Timing>, f: impl Fn(Timing) -> f64) -> String {
    t.map(|t| format!("{:.2}", f(t)))
        .unwrap_or_else(|| "-".into())
}

fn opt_f1(s: Option<Score>) -> String {
    s.map(|s| format!("{:.3}", s.f1()))
        .unwrap_or_else(|| "-".into())
}

/// The benchmark as a Markdown table, with a total row (F1 micro-averaged over all labels).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| file | frames | decode CPU s | decode wall s | kelp CPU s | kelp wall s | kelp fps | kelp/decode CPU | PySceneDetect CPU s | PySceneDetect wall s | kelp F1 | PySceneDetect F1 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut total = Row {
        file: "**total**".into(),
        frames: 0,
        decode: Some(Timing::default()),
        kelp: Timing::default(),
        peer: Some(Timing::default()),
        kelp_score: None,
        peer_score: None,
        kelp_boundaries: 0,
    };
    for r in rows {
        total.frames += r.frames;
        total.kelp.cpu += r.kelp.cpu;
        total.kelp.wall += r.kelp.wall;
        total.decode = match (total.decode, r.decode) {
            (Some(a), Some(b)) => Some(Timing {
                cpu: a.cpu + b.cpu,
                wall: a.wall + b.wall,
            }),
            _ => None,
        };
        total.peer = match (total.peer, r.peer) {
            (Some(a), Some(b)) => Some(Timing {
                cpu: a.cpu + b.cpu,
                wall: a.wall + b.wall,
            }),
            _ => None,
        };
        for (acc, s) in [
            (&mut total.kelp_score, r.kelp_score),
            (&mut total.peer_score, r.peer_score),
        ] {
            if let Some(s) = s {
                acc.get_or_insert_with(Score::default).add(s);
            }
        }
    }
    for r in rows.iter().chain(std::iter::once(&total)) {
        let ratio = r
            .decode
            .map(|d| format!("{:.2}x", r.kelp.cpu / d.cpu.max(1e-9)))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {} | {} | {} | {} | {} |\n",
            r.file,
            r.frames,
            opt_time(r.decode, |t| t.cpu),
            opt_time(r.decode, |t| t.wall),
            r.kelp.cpu,
            r.kelp.wall,
            r.frames as f64 / r.kelp.wall.max(1e-9),
            ratio,
            opt_time(r.peer, |t| t.cpu),
            opt_time(r.peer, |t| t.wall),
            opt_f1(r.kelp_score),
            opt_f1(r.peer_score),
        ));
    }
    out
}
