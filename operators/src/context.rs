//! What kelp knows about one source video while a DAG runs over it.
//!
//! Operators read and extend a [`VideoContext`]; the pipeline turns a finished context into rows
//! of the `videos`, `boundaries` and `clips` tables. Frame numbers count decoded frames in
//! presentation order from 0; times are seconds from the first decoded frame's timestamp.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::output::{TableRows, Value};

/// A source video as the pipeline hands it over: where it came from and where it can be read.
#[derive(Debug, Clone)]
pub struct SourceVideo {
    /// The URI the user named (or the listing produced), kept verbatim in the dataset.
    pub uri: String,
    /// A local, seekable path the decoder can open.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    Ok,
    Error,
    /// Turned away by a node's thresholds before its clips were made (see `rejections`).
    Rejected,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Ok => "ok",
            VideoStatus::Error => "error",
            VideoStatus::Rejected => "rejected",
        }
    }
}

/// Container and stream facts, read without decoding.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeInfo {
    /// Container format short name(s) as FFmpeg reports them, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    /// Video codec short name, e.g. `h264`.
    pub codec: String,
    /// Decoded pixel format, e.g. `yuv420p`.
    pub pixel_format: String,
    /// Coded width and height in pixels (before rotation).
    pub width: u32,
    pub height: u32,
    /// Average frame rate in frames per second.
    pub fps: f64,
    /// True when the spacing of frame timestamps varies (variable frame rate).
    pub variable_fps: bool,
    /// Duration in seconds (container's, else the stream's).
    pub duration_s: f64,
    /// Display rotation in degrees clockwise (0, 90, 180, 270), from the display matrix.
    pub rotation: i32,
    /// Overall bit rate in bits per second, 0 when unknown.
    pub bitrate: u64,
    pub has_audio: bool,
    /// Frame count from the container header, when it declares one.
    pub frame_count: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BoundaryKind {
    Cut,
    Fade,
    Dissolve,
}

impl BoundaryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BoundaryKind::Cut => "cut",
            BoundaryKind::Fade => "fade",
            BoundaryKind::Dissolve => "dissolve",
        }
    }
}

/// One detected shot boundary.
#[derive(Debug, Clone, Serialize)]
pub struct Boundary {
    /// For a cut: the first frame of the new shot. For a fade or dissolve: the middle frame of
    /// the transition.
    pub frame: u64,
    /// Presentation time of `frame`, seconds.
    pub time_s: f64,
    pub kind: BoundaryKind,
    /// First frame of the transition (equals `frame` for a cut).
    pub span_start: u64,
    /// Frames belonging to the transition itself (0 for a cut).
    pub span_frames: u64,
    /// Detector confidence: for cuts the content score over its local mean, for gradual
    /// transitions the long-range change explained by a blend (both unitless, larger = surer).
    pub score: f64,
}

/// A boundary's transition span in seconds, `(start_s, end_s)` (the `boundaries` table's
/// `span_start_s`, `span_end_s`), from `time_s`, `frame`, `span_start`, `span_frames` and the
/// video's frame rate: a cut or a video without a known rate spans only `time_s`.
pub fn boundary_span_s(
    time_s: f64,
    frame: f64,
    span_start: Option<f64>,
    span_frames: Option<f64>,
    fps: Option<f64>,
) -> (f64, f64) {
    match (fps.filter(|r| *r > 0.0), span_start, span_frames) {
        (Some(fps), Some(start), Some(n)) if n > 0.0 => {
            let start_s = time_s - (frame - start) / fps;
            (start_s, start_s + n / fps)
        }
        _ => (time_s, time_s),
    }
}

#[cfg(test)]
mod boundary_span_tests {
    use super::boundary_span_s;

    #[test]
    fn a_dissolve_spans_its_frames_and_a_cut_only_its_instant() {
        // A 10-frame dissolve at 25 fps whose middle frame 105 is at 4.2 s starts at frame 100.
        let (a, b) = boundary_span_s(4.2, 105.0, Some(100.0), Some(10.0), Some(25.0));
        assert!((a - 4.0).abs() < 1e-9 && (b - 4.4).abs() < 1e-9, "{a} {b}");
        assert_eq!(
            boundary_span_s(3.0, 75.0, Some(75.0), Some(0.0), Some(25.0)),
            (3.0, 3.0)
        );
        assert_eq!(
            boundary_span_s(3.0, 75.0, Some(70.0), Some(10.0), None),
            (3.0, 3.0)
        );
    }
}

/// A maximal run of frames between boundaries (transition frames excluded).
#[derive(Debug, Clone, Serialize)]
pub struct Shot {
    pub index: u32,
    pub start_frame: u64,
    /// Exclusive.
    pub end_frame: u64,
    pub boundary_in: Option<BoundaryKind>,
    pub boundary_out: Option<BoundaryKind>,
}

/// A training clip cut from one shot.
#[derive(Debug, Clone, Serialize)]
pub struct Clip {
    /// Stable id: hash of the video id and the frame range.
    pub clip_id: String,
    pub shot_index: u32,
    pub start_frame: u64,
    /// Exclusive.
    pub end_frame: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub boundary_in: Option<BoundaryKind>,
    pub boundary_out: Option<BoundaryKind>,
}

impl Clip {
    pub fn duration_s(&self) -> f64 {
        self.end_s - self.start_s
    }
    pub fn frames(&self) -> u64 {
        self.end_frame - self.start_frame
    }
}

/// A video or clip a node turned away, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// The DAG node that rejected it.
    pub node: String,
    /// The clip, or `None` when the whole video was rejected.
    pub clip: Option<Clip>,
    /// The clip's operator columns as they were when it was rejected (name, value).
    #[serde(skip)]
    pub values: Vec<(String, Value)>,
    pub reason: String,
}

/// Per-clip values of one operator column, aligned with [`VideoContext::clips`].
#[derive(Debug, Clone, Default)]
pub struct ClipColumn {
    pub name: String,
    pub values: Vec<Value>,
}

/// Everything the operators have learned about one video so far.
#[derive(Debug, Clone)]
pub struct VideoContext {
    pub source: SourceVideo,
    /// Stable id from the file's content (BLAKE3, 32 hex digits); from the URI when unreadable.
    pub video_id: String,
    pub size_bytes: u64,
    pub status: VideoStatus,
    pub error: Option<String>,
    pub probe: Option<ProbeInfo>,
    /// Presentation time (seconds) of every decoded frame, once the decoder has run.
    pub frame_times: Vec<f64>,
    /// The decoder's timestamp of every decoded frame (stream time base), when it had one.
    pub frame_pts: Vec<Option<i64>>,
    /// Indices of the decoded frames that are keyframes.
    pub key_frames: Vec<u64>,
    /// What the clip stage did, when one ran.
    pub clip_stage: Option<crate::clip_stage::ClipStageReport>,
    pub boundaries: Vec<Boundary>,
    pub shots: Vec<Shot>,
    pub clips: Vec<Clip>,
    /// Values of operator-declared `videos` columns (name → value).
    pub video_values: Vec<(String, Value)>,
    /// Values of operator-declared `clips` columns, each aligned with `clips`.
    pub clip_columns: Vec<ClipColumn>,
    /// Rows of the tables operators bring themselves (`signatures`, `captions`, ...), by table.
    pub tables: BTreeMap<String, TableRows>,
    /// Calls to remote services that rows of `tables` wait for; the pipeline sends them after
    /// the decode and settles their cells before the rows are written.
    pub remote: crate::remote::RemoteCalls,
    /// Videos and clips turned away, with reasons.
    pub rejections: Vec<Rejection>,
    /// Wall-clock seconds spent per operator on this video (operator id → seconds).
    pub timings: Vec<(String, f64)>,
    /// Id of the DAG node now running (set by the plan), named in rejections.
    pub node: String,
}

impl VideoContext {
    pub fn new(source: SourceVideo, video_id: String, size_bytes: u64) -> Self {
        VideoContext {
            source,
            video_id,
            size_bytes,
            status: VideoStatus::Ok,
            error: None,
            probe: None,
            frame_times: Vec::new(),
            frame_pts: Vec::new(),
            key_frames: Vec::new(),
            clip_stage: None,
            boundaries: Vec::new(),
            shots: Vec::new(),
            clips: Vec::new(),
            video_values: Vec::new(),
            clip_columns: Vec::new(),
            tables: BTreeMap::new(),
            remote: Default::default(),
            rejections: Vec::new(),
            timings: Vec::new(),
            node: String::new(),
        }
    }

    /// A source whose bytes equal an earlier one's (`first_uri`): rejected without being read.
    /// Its `video_id` comes from its URI, since the content id belongs to the first copy.
    pub fn exact_copy(source: SourceVideo, size_bytes: u64, first_uri: &str) -> Self {
        let id = text_id(&format!("uri:{}", source.uri));
        let mut ctx = VideoContext::new(source, id, size_bytes);
        ctx.node = "exact_copies".into();
        ctx.reject(format!(
            "exact copy of {first_uri} (the same bytes; not decoded)"
        ));
        ctx
    }

    /// Marks the video failed; later operators are skipped and no clips are kept.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.status = VideoStatus::Error;
        self.error = Some(reason.into());
        self.boundaries.clear();
        self.shots.clear();
        self.clips.clear();
        self.clip_columns.clear();
        self.video_values.clear();
        self.tables.clear();
        self.remote.clear();
        self.rejections.clear();
    }

    pub fn is_ok(&self) -> bool {
        self.status == VideoStatus::Ok
    }

    /// Turns the whole video away (a threshold on its attributes); later nodes are skipped.
    pub fn reject(&mut self, reason: impl Into<String>) {
        self.status = VideoStatus::Rejected;
        self.rejections.push(Rejection {
            node: self.node.clone(),
            clip: None,
            values: Vec::new(),
            reason: reason.into(),
        });
        self.clips.clear();
        self.clip_columns.clear();
        self.tables.clear();
        self.remote.clear();
    }

    /// Sets a `videos` column value (replacing an earlier one of the same name).
    pub fn set_video_value(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.video_values.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.video_values.push((name.to_string(), value)),
        }
    }

    /// Sets a whole `clips` column; one value per clip (a wrong count is a bug in the operator
    /// and fails the video).
    pub fn set_clip_column<V: Into<Value>>(
        &mut self,
        name: &str,
        values: Vec<V>,
    ) -> crate::error::Result<()> {
        if values.len() != self.clips.len() {
            return Err(crate::error::OperatorError::Failed {
                op: self.node.clone(),
                path: self.source.path.clone(),
                reason: format!(
                    "column \"{name}\" has {} values for {} clips",
                    values.len(),
                    self.clips.len()
                ),
            });
        }
        let values: Vec<Value> = values.into_iter().map(Into::into).collect();
        match self.clip_columns.iter_mut().find(|c| c.name == name) {
            Some(col) => col.values = values,
            None => self.clip_columns.push(ClipColumn {
                name: name.to_string(),
                values,
            }),
        }
        Ok(())
    }

    /// The value of a clip column for clip `index` (`None` when absent or null).
    pub fn clip_cell(&self, name: &str, index: usize) -> Option<&Value> {
        self.clip_columns
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.values.get(index))
            .filter(|v| !v.is_null())
    }

    /// A numeric clip column's value for clip `index`.
    pub fn clip_value(&self, name: &str, index: usize) -> Option<f64> {
        self.clip_cell(name, index).and_then(Value::as_f64)
    }

    /// Appends rows to a table the running operator brings (columns in its declared order).
    pub fn add_row(
        &mut self,
        table: &str,
        names: &[&str],
        row: Vec<Value>,
    ) -> crate::error::Result<()> {
        let rows = self
            .tables
            .entry(table.to_string())
            .or_insert_with(|| TableRows::with_columns(names));
        rows.push(row)
            .map_err(|reason| crate::error::OperatorError::Failed {
                op: self.node.clone(),
                path: self.source.path.clone(),
                reason: format!("table \"{table}\": {reason}"),
            })
    }

    /// Removes clip `index` (and its column values), recording why and which node.
    pub fn reject_clip(&mut self, index: usize, reason: impl Into<String>) {
        if index >= self.clips.len() {
            return;
        }
        let clip = self.clips.remove(index);
        let mut values = Vec::with_capacity(self.clip_columns.len());
        for col in &mut self.clip_columns {
            if index < col.values.len() {
                values.push((col.name.clone(), col.values.remove(index)));
            }
        }
        self.rejections.push(Rejection {
            node: self.node.clone(),
            clip: Some(clip),
            values,
            reason: reason.into(),
        });
    }

    /// Presentation time of `frame`; past the last frame, extrapolated by the mean frame spacing.
    pub fn time_of(&self, frame: u64) -> f64 {
        let n = self.frame_times.len() as u64;
        if let Some(&t) = self.frame_times.get(frame as usize) {
            return t;
        }
        let step = self.mean_frame_step();
        match self.frame_times.last() {
            Some(&last) => last + step * (frame + 1 - n) as f64,
            None => frame as f64 * step,
        }
    }

    /// Mean seconds between frames (from decoded timestamps, else the probed rate).
    pub fn mean_frame_step(&self) -> f64 {
        let n = self.frame_times.len();
        if n >= 2 {
            let span = self.frame_times[n - 1] - self.frame_times[0];
            if span > 0.0 {
                return span / (n - 1) as f64;
            }
        }
        match &self.probe {
            Some(p) if p.fps > 0.0 => 1.0 / p.fps,
            _ => 1.0 / 25.0,
        }
    }
}

/// Content id of a file: BLAKE3 of its bytes, first 16 bytes as hex.
pub fn content_id(path: &std::path::Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(short_hex(hasher.finalize().as_bytes()))
}

/// A stable id derived from text (used for clip ids and for unreadable inputs).
pub fn text_id(text: &str) -> String {
    short_hex(blake3::hash(text.as_bytes()).as_bytes())
}

fn short_hex(bytes: &[u8]) -> String {
    bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
}
