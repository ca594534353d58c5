//! `transcode`: each kept clip's frames (from the clip stage: cropped, upright, scaled to its
//! bucket, cut to its bucket's frame count) encoded as H.264 in MP4, one `media` row per clip
//! carrying the bytes, their checksum and what a loader needs to know before decoding.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::encode::{has_encoder, ClipEncoder, EncoderSpec};
use crate::bucket::clip_picture;
use crate::clip_stage::{
    ClipDone, ClipFrame, ClipLayout, ClipRequest, ClipSink, Fit, Rate, Target,
};
use crate::context::VideoContext;
use crate::error::{OperatorError, Result};
use crate::operator::{FrameSink, Operator};
use crate::output::{ColumnSpec, ColumnType as T, Outputs, Product, TableSpec, Value};

/// The table of encoded clips.
pub const TABLE_MEDIA: &str = "media";

/// Made by `transcode`: every kept clip has media.
pub const MEDIA: Product = Product("media");

/// How a clip's picture meets its bucket's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FitName {
    /// Scale to cover the bucket, centre-crop the rest (aspect kept).
    Cover,
    /// Scale to the bucket's size exactly (aspect may change).
    Stretch,
}

/// Parameters of the `transcode` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// FFmpeg encoder: `libx264` (CPU), or `h264_nvenc` where the library and a GPU have it.
    pub codec: String,
    /// Constant rate factor (x264 `crf`, NVENC `cq`): 0 = lossless … 51; 18–23 is visually good.
    pub crf: u32,
    /// Encoder speed preset (x264: ultrafast … veryslow; NVENC: p1 … p7).
    pub preset: String,
    /// Keyframe interval in frames; 0 keeps the encoder's default.
    pub gop: u32,
    /// Pixel format of the media (4:2:0, what every H.264 decoder plays).
    pub pixel_format: String,
    /// Encoder threads per clip (videos already run in parallel).
    pub threads: usize,
    pub fit: FitName,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            codec: "libx264".into(),
            crf: 23,
            preset: "medium".into(),
            gop: 0,
            pixel_format: "yuv420p".into(),
            threads: 1,
            fit: FitName::Cover,
        }
    }
}

impl TranscodeConfig {
    /// The encoder settings (the options differ between x264 and NVENC).
    pub fn encoder_spec(&self) -> EncoderSpec {
        let crf = self.crf.to_string();
        let options = if self.codec.contains("nvenc") {
            vec![
                ("rc".into(), "vbr".into()),
                ("cq".into(), crf),
                ("preset".into(), self.preset.clone()),
            ]
        } else {
            vec![("crf".into(), crf), ("preset".into(), self.preset.clone())]
        };
        EncoderSpec {
            codec: self.codec.clone(),
            options,
            gop: self.gop,
            threads: self.threads,
            container: "mp4".into(),
            muxer_options: Vec::new(),
        }
    }
}

fn media_columns() -> Vec<ColumnSpec> {
    let c = |name, kind, doc| ColumnSpec::of(TABLE_MEDIA, name, kind, doc);
    vec![
        c("clip_id", T::Utf8, "the clip (`clips.clip_id`)").required(),
        c("video_id", T::Utf8, "its source video").required(),
        c(
            "bucket",
            T::Utf8,
            "the clip's bucket, null without a `bucket` node",
        ),
        c("codec", T::Utf8, "video codec of `data`, e.g. `h264`"),
        c("container", T::Utf8, "container of `data`, e.g. `mp4`"),
        c("width", T::Int32, "pixels, > 0"),
        c("height", T::Int32, "pixels, > 0"),
        c("frames", T::Int32, "frames in `data`, > 0"),
        c("fps", T::Float64, "frames per second (constant), > 0"),
        c(
            "start_frame",
            T::Int64,
            "source frame of the media's first frame",
        ),
        c("bytes", T::Int64, "size of `data`, bytes"),
        c("checksum", T::Utf8, "BLAKE3 of `data`, 64 hex digits"),
        c(
            "data",
            T::LargeBinary,
            "the encoded clip (a whole MP4 file)",
        ),
    ]
}

/// Needs kept clips (reads their bucket and crop when present); brings `media`.
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .produces(&[MEDIA])
        .table(TableSpec {
            name: TABLE_MEDIA,
            key: &["clip_id"],
            doc: "one encoded clip per kept clip: H.264 in MP4, at its bucket's size and frames",
            columns: media_columns(),
            mirrors: None,
        })
}

pub struct Transcode {
    config: TranscodeConfig,
}

impl Transcode {
    pub fn new(config: TranscodeConfig) -> std::result::Result<Self, OperatorError> {
        let bad = |message: String| OperatorError::Config {
            op: "transcode".into(),
            message,
        };
        if !has_encoder(&config.codec) {
            return Err(bad(format!(
                "this FFmpeg build has no encoder \"{}\" (libx264 is the CPU one)",
                config.codec
            )));
        }
        if config.pixel_format != "yuv420p" {
            return Err(bad(format!(
                "pixel_format \"{}\": only yuv420p is supported",
                config.pixel_format
            )));
        }
        if config.crf > 51 {
            return Err(bad(format!("crf must be 0–51 (got {})", config.crf)));
        }
        Ok(Transcode { config })
    }
}

impl Operator for Transcode {
    fn kind(&self) -> &'static str {
        "transcode"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn clip_sink(&self, _ctx: &VideoContext) -> Result<Option<Box<dyn ClipSink>>> {
        Ok(Some(Box::new(TranscodeSink {
            spec: self.config.encoder_spec(),
            fit: match self.config.fit {
                FitName::Cover => Fit::Cover,
                FitName::Stretch => Fit::Stretch,
            },
            open: BTreeMap::new(),
            done: BTreeMap::new(),
        })))
    }
}

/// An encoded clip waiting for the end of the stage.
struct Encoded {
    bytes: Vec<u8>,
    width: u32,
    height: u32,
    frames: u64,
    rate: Rate,
}

struct TranscodeSink {
    spec: EncoderSpec,
    fit: Fit,
    open: BTreeMap<Target, (ClipEncoder, u32, u32)>,
    done: BTreeMap<Target, Encoded>,
}

/// The media size and length of a clip: its bucket's when a `bucket` node ran, else its own
/// picture (rounded down to even sides) and every frame at the source rate.
pub fn media_request(ctx: &VideoContext, clip: Target, fit: Fit) -> Option<ClipRequest> {
    let cell = |n: &str| clip.value(ctx, n);
    let source_fps = 1.0 / ctx.mean_frame_step();
    let (w, h) = match (cell("target_width"), cell("target_height")) {
        (Some(w), Some(h)) if w >= 2.0 && h >= 2.0 => (w as u32, h as u32),
        _ => {
            let (w, h) = clip_picture(ctx, clip)?;
            (w & !1, h & !1)
        }
    };
    let rate = cell("target_fps")
        .filter(|f| *f > 0.0 && (f - source_fps).abs() > 1e-3)
        .map(Rate::from_fps);
    Some(ClipRequest {
        width: w.max(2),
        height: h.max(2),
        layout: ClipLayout::Yuv420p,
        fit,
        rate,
        max_frames: cell("target_frames")
            .filter(|n| *n >= 1.0)
            .map(|n| n as u64),
    })
}

impl ClipSink for TranscodeSink {
    fn request(&self, ctx: &VideoContext, clip: Target) -> Option<ClipRequest> {
        // Media are for kept clips only.
        clip.is_kept()
            .then(|| media_request(ctx, clip, self.fit))
            .flatten()
    }

    fn frame(&mut self, clip: Target, frame: &ClipFrame<'_>) -> Result<()> {
        if !self.open.contains_key(&clip) {
            let encoder = ClipEncoder::new(&self.spec, frame.width, frame.height, frame.rate)
                .map_err(encode_error)?;
            self.open.insert(clip, (encoder, frame.width, frame.height));
        }
        if let Some((encoder, ..)) = self.open.get_mut(&clip) {
            encoder.push(frame.pixels).map_err(encode_error)?;
        }
        Ok(())
    }

    fn end_clip(&mut self, clip: Target, done: ClipDone) -> Result<()> {
        let Some((encoder, width, height)) = self.open.remove(&clip) else {
            return Err(encode_error("no frame reached the encoder".into()));
        };
        let bytes = encoder.finish().map_err(encode_error)?;
        self.done.insert(
            clip,
            Encoded {
                bytes,
                width,
                height,
                frames: done.frames,
                rate: done.rate,
            },
        );
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut VideoContext, failed: &[Target]) -> Result<()> {
        let names: Vec<&str> = media_columns().iter().map(|c| c.name).collect();
        let codec = if self.spec.codec.contains("264") {
            "h264"
        } else {
            self.spec.codec.as_str()
        };
        for (clip, media) in self.done {
            if failed.contains(&clip) {
                continue;
            }
            let Some(c) = clip.clip(ctx) else {
                continue;
            };
            let bucket = clip.cell(ctx, "bucket").unwrap_or(Value::Null);
            let row: Vec<Value> = vec![
                c.clip_id.clone().into(),
                ctx.video_id.clone().into(),
                bucket,
                codec.into(),
                self.spec.container.clone().into(),
                (media.width as i32).into(),
                (media.height as i32).into(),
                (media.frames as i32).into(),
                media.rate.fps().into(),
                (c.start_frame as i64).into(),
                (media.bytes.len() as i64).into(),
                blake3::hash(&media.bytes).to_hex().to_string().into(),
                media.bytes.into(),
            ];
            ctx.add_row(TABLE_MEDIA, &names, row)?;
        }
        Ok(())
    }
}

/// An encoder failure; the clip stage names the file and the clip around it.
fn encode_error(reason: String) -> OperatorError {
    OperatorError::Failed {
        op: "transcode".into(),
        path: Default::default(),
        reason,
    }
}
