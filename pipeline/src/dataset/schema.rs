//! The one definition of the dataset's tables: every column with its type, unit and range.
//! `kelp schema` prints these docs; the README's schema section is generated from them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use kelp_operators::{BoundaryKind, ColumnSpec, Table, ValueKind, VideoContext};

use crate::error::{PipelineError, Result};

/// One documented column.
pub struct Column {
    pub name: &'static str,
    pub data_type: DataType,
    pub nullable: bool,
    /// Unit and range, then meaning.
    pub doc: &'static str,
}

const fn col(name: &'static str, data_type: DataType, nullable: bool, doc: &'static str) -> Column {
    Column {
        name,
        data_type,
        nullable,
        doc,
    }
}

use DataType::{Boolean as B, Float64 as F, Int32 as I32, Int64 as I64, Utf8 as S};

pub static VIDEOS: &[Column] = &[
    col(
        "video_id",
        S,
        false,
        "32 hex digits: BLAKE3 of the file's bytes (of the URI when unreadable)",
    ),
    col("uri", S, false, "the source as listed"),
    col("size_bytes", I64, false, "bytes, ≥ 0"),
    col("status", S, false, "`ok` or `error`"),
    col(
        "error",
        S,
        true,
        "why the video failed, naming the input; null when ok",
    ),
    col(
        "container",
        S,
        true,
        "FFmpeg demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`",
    ),
    col("codec", S, true, "video codec, e.g. `h264`"),
    col(
        "pixel_format",
        S,
        true,
        "decoded pixel format, e.g. `yuv420p`",
    ),
    col("width", I32, true, "pixels, coded (before rotation), > 0"),
    col("height", I32, true, "pixels, coded (before rotation), > 0"),
    col("fps", F, true, "frames per second (average), > 0"),
    col("variable_fps", B, true, "true when frame spacing varies"),
    col("duration_s", F, true, "seconds, as the container declares"),
    col(
        "rotation",
        I32,
        true,
        "degrees clockwise: 0, 90, 180 or 270",
    ),
    col("bitrate", I64, true, "bits per second, 0 when unknown"),
    col("has_audio", B, true, "an audio stream is present"),
    col(
        "frame_count",
        I64,
        true,
        "frames the container declares; null when it does not",
    ),
    col(
        "decoded_frames",
        I64,
        true,
        "frames actually decoded; null when nothing decoded",
    ),
    col("shots", I64, false, "shots found, ≥ 0"),
    col("clips", I64, false, "clips kept, ≥ 0"),
];

pub static BOUNDARIES: &[Column] = &[
    col("video_id", S, false, "the video"),
    col("frame", I64, false, "decoded-frame index, ≥ 0: first frame of the new shot (cut) or middle of the transition"),
    col("time_s", F, false, "seconds from the stream start, ≥ 0"),
    col("kind", S, false, "`cut`, `fade` or `dissolve`"),
    col("span_start", I64, false, "first frame of the transition (= frame for a cut)"),
    col("span_frames", I64, false, "frames in the transition, 0 for a cut"),
    col("score", F, false, "cut: content change ÷ neighbours' mean (≥ 3 by default); fade: 1–2 (1 + pre-fade brightness); dissolve: 0–1, share of the change a blend explains"),
];

pub static CLIPS: &[Column] = &[
    col(
        "clip_id",
        S,
        false,
        "32 hex digits: BLAKE3 of video id and frame range",
    ),
    col("video_id", S, false, "the video"),
    col("uri", S, false, "the source video's URI"),
    col("shot_index", I32, false, "shot number in the video, from 0"),
    col(
        "start_frame",
        I64,
        false,
        "first frame (decoded-frame index)",
    ),
    col("end_frame", I64, false, "one past the last frame"),
    col("frames", I64, false, "end_frame − start_frame, > 0"),
    col("start_s", F, false, "seconds from the stream start"),
    col("end_s", F, false, "seconds; time of end_frame"),
    col(
        "duration_s",
        F,
        false,
        "end_s − start_s, seconds, within the window's min_s..max_s",
    ),
    col("width", I32, false, "pixels (the source's coded width)"),
    col("height", I32, false, "pixels"),
    col("fps", F, false, "frames per second of the source"),
    col(
        "boundary_in",
        S,
        true,
        "`cut`, `fade`, `dissolve`; null at the video start or inside a split shot",
    ),
    col("boundary_out", S, true, "likewise at the clip's end"),
];

/// Every table name with its columns.
pub static REJECTIONS: &[Column] = &[
    col("video_id", S, false, "the video"),
    col("uri", S, false, "the source video's URI"),
    col("node", S, false, "id of the DAG node that rejected it"),
    col(
        "clip_id",
        S,
        true,
        "the clip; null when the whole video was rejected",
    ),
    col(
        "start_s",
        F,
        true,
        "clip start, seconds; null for a whole video",
    ),
    col("end_s", F, true, "clip end, seconds"),
    col(
        "duration_s",
        F,
        true,
        "clip duration, seconds (for a whole video: its duration)",
    ),
    col(
        "reason",
        S,
        false,
        "the predicate or threshold that turned it away",
    ),
];

pub static TABLES: &[(&str, &[Column])] = &[
    ("videos", VIDEOS),
    ("boundaries", BOUNDARIES),
    ("clips", CLIPS),
    ("rejections", REJECTIONS),
];

pub fn schema_of(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.data_type.clone(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// The schema of a named table.
pub fn table_schema(name: &str) -> Option<SchemaRef> {
    TABLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| schema_of(c))
}

fn kind_str(k: Option<BoundaryKind>) -> Option<&'static str> {
    k.map(BoundaryKind::as_str)
}

fn batch(columns: &[Column], arrays: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema_of(columns), arrays).map_err(|e| PipelineError::Write {
        what: "record batch".into(),
        message: e.to_string(),
    })
}

/// `videos` rows for a group of finished videos.
pub fn videos_batch(videos: &[VideoContext]) -> Result<RecordBatch> {
    let n = videos.len();
    let mut id = StringBuilder::new();
    let mut uri = StringBuilder::new();
    let mut size = Int64Builder::with_capacity(n);
    let mut status = StringBuilder::new();
    let mut error = StringBuilder::new();
    let (mut container, mut codec, mut pixfmt) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut width, mut height, mut rotation) = (
        Int32Builder::new(),
        Int32Builder::new(),
        Int32Builder::new(),
    );
    let (mut fps, mut duration) = (Float64Builder::new(), Float64Builder::new());
    let (mut vfr, mut audio) = (BooleanBuilder::new(), BooleanBuilder::new());
    let (mut bitrate, mut frame_count, mut decoded, mut shots, mut clips) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    for v in videos {
        id.append_value(&v.video_id);
        uri.append_value(&v.source.uri);
        size.append_value(v.size_bytes as i64);
        status.append_value(v.status.as_str());
        error.append_option(v.error.as_deref());
        let p = v.probe.as_ref();
        container.append_option(p.map(|p| p.container.as_str()));
        codec.append_option(p.map(|p| p.codec.as_str()));
        pixfmt.append_option(p.map(|p| p.pixel_format.as_str()));
        width.append_option(p.map(|p| p.width as i32));
        height.append_option(p.map(|p| p.height as i32));
        fps.append_option(p.map(|p| p.fps));
        vfr.append_option(p.map(|p| p.variable_fps));
        duration.append_option(p.map(|p| p.duration_s));
        rotation.append_option(p.map(|p| p.rotation));
        bitrate.append_option(p.map(|p| p.bitrate as i64));
        audio.append_option(p.map(|p| p.has_audio));
        frame_count.append_option(p.and_then(|p| p.frame_count).map(|c| c as i64));
        decoded.append_option((!v.frame_times.is_empty()).then_some(v.frame_times.len() as i64));
        shots.append_value(v.shots.len() as i64);
        clips.append_value(v.clips.len() as i64);
    }
    batch(
        VIDEOS,
        vec![
            Arc::new(id.finish()),
            Arc::new(uri.finish()),
            Arc::new(size.finish()),
            Arc::new(status.finish()),
            Arc::new(error.finish()),
            Arc::new(container.finish()),
            Arc::new(codec.finish()),
            Arc::new(pixfmt.finish()),
            Arc::new(width.finish()),
            Arc::new(height.finish()),
            Arc::new(fps.finish()),
            Arc::new(vfr.finish()),
            Arc::new(duration.finish()),
            Arc::new(rotation.finish()),
            Arc::new(bitrate.finish()),
            Arc::new(audio.finish()),
            Arc::new(frame_count.finish()),
            Arc::new(decoded.finish()),
            Arc::new(shots.finish()),
            Arc::new(clips.finish()),
        ],
    )
}

/// `boundaries` rows.
pub fn boundaries_batch(videos: &[VideoContext]) -> Result<RecordBatch> {
    let (mut id, mut kind) = (StringBuilder::new(), StringBuilder::new());
    let (mut frame, mut span_start, mut span) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let (mut time, mut score) = (Float64Builder::new(), Float64Builder::new());
    for v in videos {
        for b in &v.boundaries {
            id.append_value(&v.video_id);
            frame.append_value(b.frame as i64);
            time.append_value(b.time_s);
            kind.append_value(b.kind.as_str());
            span_start.append_value(b.span_start as i64);
            span.append_value(b.span_frames as i64);
            score.append_value(b.score);
        }
    }
    batch(
        BOUNDARIES,
        vec![
            Arc::new(id.finish()),
            Arc::new(frame.finish()),
            Arc::new(time.finish()),
            Arc::new(kind.finish()),
            Arc::new(span_start.finish()),
            Arc::new(span.finish()),
            Arc::new(score.finish()),
        ],
    )
}

/// `clips` rows.
pub fn clips_batch(videos: &[VideoContext]) -> Result<RecordBatch> {
    let (mut clip_id, mut video_id, mut uri) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut shot, mut width, mut height) = (
        Int32Builder::new(),
        Int32Builder::new(),
        Int32Builder::new(),
    );
    let (mut start_f, mut end_f, mut frames) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let (mut start_s, mut end_s, mut dur, mut fps) = (
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
    );
    let (mut b_in, mut b_out) = (StringBuilder::new(), StringBuilder::new());
    for v in videos {
        let (w, h, rate) = match &v.probe {
            Some(p) => (p.width as i32, p.height as i32, p.fps),
            None => (0, 0, 0.0),
        };
        for c in &v.clips {
            clip_id.append_value(&c.clip_id);
            video_id.append_value(&v.video_id);
            uri.append_value(&v.source.uri);
            shot.append_value(c.shot_index as i32);
            start_f.append_value(c.start_frame as i64);
            end_f.append_value(c.end_frame as i64);
            frames.append_value(c.frames() as i64);
            start_s.append_value(c.start_s);
            end_s.append_value(c.end_s);
            dur.append_value(c.duration_s());
            width.append_value(w);
            height.append_value(h);
            fps.append_value(rate);
            b_in.append_option(kind_str(c.boundary_in));
            b_out.append_option(kind_str(c.boundary_out));
        }
    }
    batch(
        CLIPS,
        vec![
            Arc::new(clip_id.finish()),
            Arc::new(video_id.finish()),
            Arc::new(uri.finish()),
            Arc::new(shot.finish()),
            Arc::new(start_f.finish()),
            Arc::new(end_f.finish()),
            Arc::new(frames.finish()),
            Arc::new(start_s.finish()),
            Arc::new(end_s.finish()),
            Arc::new(dur.finish()),
            Arc::new(width.finish()),
            Arc::new(height.finish()),
            Arc::new(fps.finish()),
            Arc::new(b_in.finish()),
            Arc::new(b_out.finish()),
        ],
    )
}

/// Markdown reference of every table, for `kelp schema` and the README: base columns, then the
/// columns each operator adds when a DAG uses it.
pub fn markdown(operator_columns: &[(&str, Vec<ColumnSpec>)]) -> String {
    let mut out = String::new();
    for (name, cols) in TABLES {
        out.push_str(&format!(
            "### `{name}`\n\n| column | type | unit, range, meaning |\n|---|---|---|\n"
        ));
        for c in cols.iter() {
            let null = if c.nullable { ", nullable" } else { "" };
            out.push_str(&format!(
                "| `{}` | {}{} | {} |\n",
                c.name, c.data_type, null, c.doc
            ));
        }
        let table = match *name {
            "videos" => Some(Table::Videos),
            "clips" => Some(Table::Clips),
            _ => None,
        };
        for (op, specs) in operator_columns {
            for c in specs.iter().filter(|c| Some(c.table) == table) {
                out.push_str(&format!(
                    "| `{}` | {}, nullable | {} (`{op}`) |\n",
                    c.name,
                    arrow_type(c.kind),
                    c.doc
                ));
            }
        }
        out.push('\n');
    }
    out
}

fn arrow_type(kind: ValueKind) -> DataType {
    match kind {
        ValueKind::Float => DataType::Float64,
        ValueKind::Int => DataType::Int64,
        ValueKind::Bool => DataType::Boolean,
    }
}

/// The tables of one DAG's dataset: the base columns plus the columns its operators declare.
#[derive(Debug, Clone)]
pub struct DatasetSchema {
    video_extra: Vec<ColumnSpec>,
    clip_extra: Vec<ColumnSpec>,
    pub videos: SchemaRef,
    pub boundaries: SchemaRef,
    pub clips: SchemaRef,
    pub rejections: SchemaRef,
}

impl DatasetSchema {
    /// Fails when an operator column collides with a base column or another operator's.
    pub fn new(extra: &[ColumnSpec]) -> std::result::Result<Self, String> {
        let mut video_extra = Vec::new();
        let mut clip_extra = Vec::new();
        for spec in extra {
            let (base, list) = match spec.table {
                Table::Videos => (VIDEOS, &mut video_extra),
                Table::Clips => (CLIPS, &mut clip_extra),
            };
            if base.iter().any(|c| c.name == spec.name)
                || list.iter().any(|c: &ColumnSpec| c.name == spec.name)
            {
                return Err(format!(
                    "column \"{}\" is produced twice; each operator may appear once per DAG",
                    spec.name
                ));
            }
            list.push(spec.clone());
        }
        let extend = |base: &[Column], extra: &[ColumnSpec]| -> SchemaRef {
            let mut fields: Vec<Field> = base
                .iter()
                .map(|c| Field::new(c.name, c.data_type.clone(), c.nullable))
                .collect();
            fields.extend(
                extra
                    .iter()
                    .map(|c| Field::new(c.name, arrow_type(c.kind), true)),
            );
            Arc::new(Schema::new(fields))
        };
        Ok(DatasetSchema {
            videos: extend(VIDEOS, &video_extra),
            clips: extend(CLIPS, &clip_extra),
            boundaries: schema_of(BOUNDARIES),
            rejections: schema_of(REJECTIONS),
            video_extra,
            clip_extra,
        })
    }

    /// Table names and schemas, in the order they are written.
    pub fn tables(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![
            ("videos", self.videos.clone()),
            ("boundaries", self.boundaries.clone()),
            ("clips", self.clips.clone()),
            ("rejections", self.rejections.clone()),
        ]
    }

    /// The rows of every table for a group of finished videos.
    pub fn batches(&self, group: &[VideoContext]) -> Result<Vec<(&'static str, RecordBatch)>> {
        Ok(vec![
            ("videos", self.videos_batch(group)?),
            ("boundaries", boundaries_batch(group)?),
            ("clips", self.clips_batch(group)?),
            ("rejections", rejections_batch(group)?),
        ])
    }

    pub fn videos_batch(&self, group: &[VideoContext]) -> Result<RecordBatch> {
        let base = videos_batch(group)?;
        let extra = self.video_extra.iter().map(|spec| {
            let values = group.iter().map(|v| {
                v.video_values
                    .iter()
                    .find(|(n, _)| n == spec.name)
                    .and_then(|(_, x)| *x)
            });
            values_array(spec.kind, values)
        });
        extend_batch(&self.videos, base, extra.collect())
    }

    pub fn clips_batch(&self, group: &[VideoContext]) -> Result<RecordBatch> {
        let base = clips_batch(group)?;
        let extra = self.clip_extra.iter().map(|spec| {
            let values = group
                .iter()
                .flat_map(|v| (0..v.clips.len()).map(move |i| v.clip_value(spec.name, i)));
            values_array(spec.kind, values)
        });
        extend_batch(&self.clips, base, extra.collect())
    }
}

fn values_array(kind: ValueKind, values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    match kind {
        ValueKind::Float => Arc::new(
            values
                .map(|v| v.filter(|x| x.is_finite()))
                .collect::<arrow::array::Float64Array>(),
        ),
        ValueKind::Int => Arc::new(
            values
                .map(|v| v.filter(|x| x.is_finite()).map(|x| x.round() as i64))
                .collect::<arrow::array::Int64Array>(),
        ),
        ValueKind::Bool => Arc::new(
            values
                .map(|v| v.map(|x| x != 0.0))
                .collect::<arrow::array::BooleanArray>(),
        ),
    }
}

fn extend_batch(
    schema: &SchemaRef,
    base: RecordBatch,
    extra: Vec<ArrayRef>,
) -> Result<RecordBatch> {
    let mut columns = base.columns().to_vec();
    columns.extend(extra);
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| PipelineError::Write {
        what: "record batch".into(),
        message: e.to_string(),
    })
}

/// `rejections` rows.
pub fn rejections_batch(videos: &[VideoContext]) -> Result<RecordBatch> {
    let (mut vid, mut uri, mut node, mut clip, mut reason) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut start, mut end, mut dur) = (
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
    );
    for v in videos {
        for r in &v.rejections {
            vid.append_value(&v.video_id);
            uri.append_value(&v.source.uri);
            node.append_value(&r.node);
            reason.append_value(&r.reason);
            match &r.clip {
                Some(c) => {
                    clip.append_value(&c.clip_id);
                    start.append_value(c.start_s);
                    end.append_value(c.end_s);
                    dur.append_value(c.duration_s());
                }
                None => {
                    clip.append_null();
                    start.append_null();
                    end.append_null();
                    dur.append_option(v.probe.as_ref().map(|p| p.duration_s));
                }
            }
        }
    }
    batch(
        REJECTIONS,
        vec![
            Arc::new(vid.finish()),
            Arc::new(uri.finish()),
            Arc::new(node.finish()),
            Arc::new(clip.finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(dur.finish()),
            Arc::new(reason.finish()),
        ],
    )
}
