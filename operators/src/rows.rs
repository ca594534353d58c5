//! A finished [`VideoContext`] as typed table rows, and the declarations of the built-in tables.
//!
//! Every input gets one `videos` row (the engine's accounting: id, URI, size, status, error);
//! `probe`, `shots` and `window` declare the columns and tables they fill (`videos` facts,
//! `boundaries`, `clips` and `rejected_clips`), and every other operator adds columns or brings
//! tables of its own. The pipeline converts these rows to Arrow by column name, knowing no video
//! type.

use std::collections::BTreeMap;

use crate::context::{boundary_span_s, Boundary, BoundaryKind, Clip, VideoContext};
use crate::output::{
    ColumnSpec, ColumnType as T, TableRows, TableSpec, Value, TABLE_CLIPS, TABLE_REJECTED_CLIPS,
    TABLE_REJECTIONS, TABLE_VIDEOS,
};

/// The `boundaries` table (brought by `shots`).
pub const TABLE_BOUNDARIES: &str = "boundaries";

const fn req(table: &'static str, name: &'static str, kind: T, doc: &'static str) -> ColumnSpec {
    ColumnSpec::of(table, name, kind, doc).required()
}

/// The columns of `videos` every input has, and of `rejections`.
const VIDEO_BASE: &[ColumnSpec] = &[
    req(
        TABLE_VIDEOS,
        "video_id",
        T::Utf8,
        "32 hex digits: BLAKE3 of the file's bytes (of the URI when unreadable)",
    ),
    req(TABLE_VIDEOS, "uri", T::Utf8, "the source as listed"),
    req(TABLE_VIDEOS, "size_bytes", T::Int64, "bytes, ≥ 0"),
    req(
        TABLE_VIDEOS,
        "status",
        T::Utf8,
        "`ok`, `error` or `rejected`",
    ),
    ColumnSpec::video(
        "error",
        T::Utf8,
        "why the video failed, naming the input; null when ok",
    ),
];

const REJECTION_BASE: &[ColumnSpec] = &[
    req(TABLE_REJECTIONS, "video_id", T::Utf8, "the video"),
    req(TABLE_REJECTIONS, "uri", T::Utf8, "the source video's URI"),
    req(
        TABLE_REJECTIONS,
        "node",
        T::Utf8,
        "id of the DAG node that rejected it",
    ),
    ColumnSpec::of(
        TABLE_REJECTIONS,
        "clip_id",
        T::Utf8,
        "the clip; null when the whole video was rejected",
    ),
    req(
        TABLE_REJECTIONS,
        "reason",
        T::Utf8,
        "the predicate or threshold that turned it away",
    ),
];

/// The tables every dataset has, whatever its DAG: `videos` (one row per input) and
/// `rejections` (what a node turned away).
pub fn source_tables() -> Vec<TableSpec> {
    vec![
        TableSpec {
            name: TABLE_VIDEOS,
            key: &["video_id"],
            doc: "one row per source video, whatever happened to it",
            columns: VIDEO_BASE.to_vec(),
            mirrors: None,
        },
        TableSpec {
            name: TABLE_REJECTIONS,
            key: &["video_id", "node", "clip_id"],
            doc: "every video or clip a node turned away, and why",
            columns: REJECTION_BASE.to_vec(),
            mirrors: None,
        },
    ]
}

/// The `videos` columns `probe` fills.
pub const PROBE_COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::video(
        "container",
        T::Utf8,
        "FFmpeg demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`",
    ),
    ColumnSpec::video("codec", T::Utf8, "video codec, e.g. `h264`"),
    ColumnSpec::video(
        "pixel_format",
        T::Utf8,
        "decoded pixel format, e.g. `yuv420p`",
    ),
    ColumnSpec::video("width", T::Int32, "pixels, coded (before rotation), > 0"),
    ColumnSpec::video("height", T::Int32, "pixels, coded (before rotation), > 0"),
    ColumnSpec::video("fps", T::Float64, "frames per second (average), > 0"),
    ColumnSpec::video("variable_fps", T::Boolean, "true when frame spacing varies"),
    ColumnSpec::video(
        "duration_s",
        T::Float64,
        "seconds, as the container declares",
    ),
    ColumnSpec::video("rotation", T::Int32, "degrees clockwise: 0, 90, 180 or 270"),
    ColumnSpec::video("bitrate", T::Int64, "bits per second, 0 when unknown"),
    ColumnSpec::video("has_audio", T::Boolean, "an audio stream is present"),
    ColumnSpec::video(
        "frame_count",
        T::Int64,
        "frames the container declares; null when it does not",
    ),
    ColumnSpec::video(
        "decoded_frames",
        T::Int64,
        "frames actually decoded; null when nothing decoded",
    ),
];

/// The table `shots` brings, and the count it adds to `videos`.
pub fn shots_tables() -> (TableSpec, ColumnSpec) {
    const B: &str = TABLE_BOUNDARIES;
    let table = TableSpec {
        name: B,
        key: &["video_id", "frame"],
        doc: "one row per detected shot boundary",
        columns: vec![
            req(B, "video_id", T::Utf8, "the video"),
            req(B, "frame", T::Int64, "decoded-frame index, ≥ 0: first frame of the new shot (cut) or middle of the transition"),
            req(B, "time_s", T::Float64, "seconds from the stream start, ≥ 0"),
            req(B, "kind", T::Utf8, "`cut`, `fade` or `dissolve`"),
            req(B, "span_start", T::Int64, "first frame of the transition (= frame for a cut)"),
            req(B, "span_frames", T::Int64, "frames in the transition, 0 for a cut"),
            req(B, "span_start_s", T::Float64, "seconds: start of the transition (= `time_s` for a cut)"),
            req(B, "span_end_s", T::Float64, "seconds: end of the transition (= `time_s` for a cut)"),
            req(B, "score", T::Float64, "cut: content change ÷ neighbours' mean (≥ 3 by default); fade: 1–2 (1 + pre-fade brightness); dissolve: 0–1, share of the change a blend explains"),
        ],
        mirrors: None,
    };
    (
        table,
        ColumnSpec::video("shots", T::Int64, "shots found, ≥ 0"),
    )
}

const CLIP_BASE: &[ColumnSpec] = &[
    req(
        TABLE_CLIPS,
        "clip_id",
        T::Utf8,
        "32 hex digits: BLAKE3 of video id and frame range",
    ),
    req(TABLE_CLIPS, "video_id", T::Utf8, "the video"),
    req(TABLE_CLIPS, "uri", T::Utf8, "the source video's URI"),
    req(
        TABLE_CLIPS,
        "shot_index",
        T::Int32,
        "shot number in the video, from 0",
    ),
    req(
        TABLE_CLIPS,
        "start_frame",
        T::Int64,
        "first frame (decoded-frame index)",
    ),
    req(
        TABLE_CLIPS,
        "end_frame",
        T::Int64,
        "one past the last frame",
    ),
    req(
        TABLE_CLIPS,
        "frames",
        T::Int64,
        "end_frame − start_frame, > 0",
    ),
    req(
        TABLE_CLIPS,
        "start_s",
        T::Float64,
        "seconds from the stream start",
    ),
    req(
        TABLE_CLIPS,
        "end_s",
        T::Float64,
        "seconds; time of end_frame",
    ),
    req(
        TABLE_CLIPS,
        "duration_s",
        T::Float64,
        "end_s − start_s, seconds, within the window's min_s..max_s",
    ),
    req(
        TABLE_CLIPS,
        "width",
        T::Int32,
        "pixels (the source's coded width)",
    ),
    req(TABLE_CLIPS, "height", T::Int32, "pixels"),
    req(
        TABLE_CLIPS,
        "fps",
        T::Float64,
        "frames per second of the source",
    ),
    ColumnSpec::clip(
        "boundary_in",
        T::Utf8,
        "`cut`, `fade`, `dissolve`; null at the video start or inside a split shot",
    ),
    ColumnSpec::clip("boundary_out", T::Utf8, "likewise at the clip's end"),
];

/// What `window` adds to `rejections` about a rejected clip.
const REJECTION_CLIP: &[ColumnSpec] = &[
    ColumnSpec::of(
        TABLE_REJECTIONS,
        "start_s",
        T::Float64,
        "clip start, seconds; null for a whole video",
    ),
    ColumnSpec::of(TABLE_REJECTIONS, "end_s", T::Float64, "clip end, seconds"),
    ColumnSpec::of(
        TABLE_REJECTIONS,
        "duration_s",
        T::Float64,
        "clip duration, seconds (for a whole video: its duration)",
    ),
];

/// The tables `window` brings (`clips`, and `rejected_clips` with every column `clips` gets)
/// and the columns it adds to `videos` and `rejections`.
pub fn window_tables() -> (Vec<TableSpec>, Vec<ColumnSpec>) {
    let mirror: Vec<ColumnSpec> = CLIP_BASE
        .iter()
        .map(|c| ColumnSpec {
            table: TABLE_REJECTED_CLIPS,
            ..c.clone()
        })
        .collect();
    let tables = vec![
        TableSpec {
            name: TABLE_CLIPS,
            key: &["clip_id"],
            doc: "one row per kept clip",
            columns: CLIP_BASE.to_vec(),
            mirrors: None,
        },
        TableSpec {
            name: TABLE_REJECTED_CLIPS,
            key: &["clip_id"],
            doc: "one row per rejected clip, with every `clips` column as it was when a node turned it away (null for columns of later nodes); `rejections` says which node and why",
            columns: mirror,
            mirrors: Some(TABLE_CLIPS),
        },
    ];
    let mut columns = vec![ColumnSpec::video("clips", T::Int64, "clips kept, ≥ 0")];
    columns.extend_from_slice(REJECTION_CLIP);
    (tables, columns)
}

impl VideoContext {
    /// Every table's rows for this video; the rows of operator-brought tables are moved out, not
    /// copied (call once, when the video is finished). Columns a DAG does not declare are ignored
    /// by the writer, so the facts of every built-in table are always exported.
    pub fn take_rows(&mut self) -> BTreeMap<String, TableRows> {
        let mut out = std::mem::take(&mut self.tables);
        out.insert(TABLE_VIDEOS.into(), self.video_row());
        out.insert(TABLE_BOUNDARIES.into(), self.boundary_rows());
        out.insert(TABLE_CLIPS.into(), self.clip_rows());
        out.insert(TABLE_REJECTIONS.into(), self.rejection_rows());
        out.insert(TABLE_REJECTED_CLIPS.into(), self.rejected_clip_rows());
        out
    }

    fn video_row(&self) -> TableRows {
        let p = self.probe.as_ref();
        let decoded = (!self.frame_times.is_empty()).then_some(self.frame_times.len() as i64);
        let mut cells: Vec<(&str, Value)> = vec![
            ("video_id", self.video_id.clone().into()),
            ("uri", self.source.uri.clone().into()),
            ("size_bytes", (self.size_bytes as i64).into()),
            ("status", self.status.as_str().into()),
            ("error", self.error.clone().into()),
            ("container", p.map(|p| p.container.clone()).into()),
            ("codec", p.map(|p| p.codec.clone()).into()),
            ("pixel_format", p.map(|p| p.pixel_format.clone()).into()),
            ("width", p.map(|p| p.width as i32).into()),
            ("height", p.map(|p| p.height as i32).into()),
            ("fps", p.map(|p| p.fps).into()),
            ("variable_fps", p.map(|p| p.variable_fps).into()),
            ("duration_s", p.map(|p| p.duration_s).into()),
            ("rotation", p.map(|p| p.rotation).into()),
            ("bitrate", p.map(|p| p.bitrate as i64).into()),
            ("has_audio", p.map(|p| p.has_audio).into()),
            (
                "frame_count",
                p.and_then(|p| p.frame_count).map(|c| c as i64).into(),
            ),
            ("decoded_frames", decoded.into()),
            ("shots", (self.shots.len() as i64).into()),
            ("clips", (self.clips.len() as i64).into()),
        ];
        for (name, v) in &self.video_values {
            cells.push((name.as_str(), v.clone()));
        }
        let names: Vec<&str> = cells.iter().map(|(n, _)| *n).collect();
        let mut rows = TableRows::with_columns(&names);
        rows.len = 1;
        for (col, (_, v)) in rows.columns.iter_mut().zip(cells) {
            col.push(v);
        }
        rows
    }

    fn boundary_rows(&self) -> TableRows {
        let mut rows = TableRows::with_columns(&[
            "video_id",
            "frame",
            "time_s",
            "kind",
            "span_start",
            "span_frames",
            "span_start_s",
            "span_end_s",
            "score",
        ]);
        let fps = self.probe.as_ref().map(|p| p.fps);
        for b in &self.boundaries {
            let Boundary {
                frame,
                time_s,
                kind,
                span_start,
                span_frames,
                score,
            } = b;
            let span_s = boundary_span_s(
                *time_s,
                *frame as f64,
                Some(*span_start as f64),
                Some(*span_frames as f64),
                fps,
            );
            push(
                &mut rows,
                vec![
                    self.video_id.clone().into(),
                    (*frame as i64).into(),
                    (*time_s).into(),
                    kind.as_str().into(),
                    (*span_start as i64).into(),
                    (*span_frames as i64).into(),
                    span_s.0.into(),
                    span_s.1.into(),
                    (*score).into(),
                ],
            );
        }
        rows
    }

    fn clip_base(&self, clips: &[&Clip]) -> TableRows {
        let names: Vec<&str> = CLIP_BASE.iter().map(|c| c.name).collect();
        let mut rows = TableRows::with_columns(&names);
        let (w, h, rate) = match &self.probe {
            Some(p) => (p.width as i32, p.height as i32, p.fps),
            None => (0, 0, 0.0),
        };
        let kind = |k: Option<BoundaryKind>| Value::from(k.map(BoundaryKind::as_str));
        for c in clips {
            push(
                &mut rows,
                vec![
                    c.clip_id.clone().into(),
                    self.video_id.clone().into(),
                    self.source.uri.clone().into(),
                    (c.shot_index as i32).into(),
                    (c.start_frame as i64).into(),
                    (c.end_frame as i64).into(),
                    (c.frames() as i64).into(),
                    c.start_s.into(),
                    c.end_s.into(),
                    c.duration_s().into(),
                    w.into(),
                    h.into(),
                    rate.into(),
                    kind(c.boundary_in),
                    kind(c.boundary_out),
                ],
            );
        }
        rows
    }

    /// The `clips` rows of the clips kept so far, with every operator column.
    pub fn clip_rows(&self) -> TableRows {
        let clips: Vec<&Clip> = self.clips.iter().collect();
        let mut rows = self.clip_base(&clips);
        for col in &self.clip_columns {
            if col.values.len() == rows.len {
                // Lengths were checked when the column was set.
                let _ = rows.set_column(&col.name, col.values.clone());
            }
        }
        rows
    }

    fn rejection_rows(&self) -> TableRows {
        let mut rows = TableRows::with_columns(&[
            "video_id",
            "uri",
            "node",
            "clip_id",
            "reason",
            "start_s",
            "end_s",
            "duration_s",
        ]);
        for r in &self.rejections {
            let (clip_id, start, end, dur) = match &r.clip {
                Some(c) => (
                    Some(c.clip_id.clone()),
                    Some(c.start_s),
                    Some(c.end_s),
                    Some(c.duration_s()),
                ),
                None => (None, None, None, self.probe.as_ref().map(|p| p.duration_s)),
            };
            push(
                &mut rows,
                vec![
                    self.video_id.clone().into(),
                    self.source.uri.clone().into(),
                    r.node.clone().into(),
                    clip_id.into(),
                    r.reason.clone().into(),
                    start.into(),
                    end.into(),
                    dur.into(),
                ],
            );
        }
        rows
    }

    fn rejected_clip_rows(&self) -> TableRows {
        let mut out = TableRows::default();
        for r in &self.rejections {
            let Some(clip) = &r.clip else { continue };
            let mut one = self.clip_base(&[clip]);
            for (name, v) in &r.values {
                let _ = one.set_column(name, vec![v.clone()]);
            }
            out.append(one);
        }
        out
    }
}

/// Pushes a row whose width is right by construction.
fn push(rows: &mut TableRows, row: Vec<Value>) {
    let pushed = rows.push(row);
    debug_assert!(pushed.is_ok(), "{pushed:?}");
}
