//! The `caption` node's clip-stage subscriber: each kept clip's frames, spread evenly over it,
//! cropped and upright; colour counts for every backend, JPEGs for `openai`; and at the end one
//! `captions` row per clip — complete for `structured`, waiting for its remote call for `openai`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::colours::{dominant, ColourCounts};
use super::jpeg::JpegEncoder;
use super::labels::{self, CameraMeasures};
use super::openai::{ChatJob, ChatSettings};
use super::structured;
use super::{caption_columns, CaptionConfig, Mode, TABLE_CAPTIONS};
use crate::bucket::clip_picture;
use crate::clip_stage::{
    ClipDone, ClipFrame, ClipLayout, ClipRequest, ClipSink, Fit, Rate, Target,
};
use crate::context::VideoContext;
use crate::error::Result;
use crate::output::Value;
use crate::remote::{RemoteCall, RemoteRequest, STATUS_ERROR, STATUS_OK, STATUS_PENDING};

/// Short side of the frames the structured captioner looks at (colours only).
const STRUCTURED_SIDE: u32 = 96;
/// A colour is dominant when it covers at least this share of the picture.
const COLOUR_SHARE: f64 = 0.15;

/// What one clip's frames left behind.
#[derive(Default)]
struct Collected {
    width: u32,
    height: u32,
    times: Vec<f64>,
    jpegs: Vec<Vec<u8>>,
    colours: ColourCounts,
    error: Option<String>,
}

pub(super) struct CaptionSink {
    config: CaptionConfig,
    mode: Mode,
    clips: BTreeMap<usize, Collected>,
    jpeg: JpegEncoder,
}

impl CaptionSink {
    pub(super) fn new(config: CaptionConfig, mode: Mode) -> Self {
        CaptionSink {
            jpeg: JpegEncoder::new(config.jpeg_qscale),
            config,
            mode,
            clips: BTreeMap::new(),
        }
    }

    fn short_side(&self) -> u32 {
        match self.mode {
            Mode::Structured => STRUCTURED_SIDE,
            Mode::Openai { .. } => self.config.frame_size,
        }
    }
}

/// `(w, h)` with its short side at most `short` (even sides, aspect kept, never upscaled).
fn fit_short_side(w: u32, h: u32, short: u32) -> (u32, u32) {
    let scale = (short as f64 / w.min(h).max(1) as f64).min(1.0);
    let even = |x: u32| (((x as f64 * scale) / 2.0).round() as u32 * 2).max(2);
    (even(w), even(h))
}

impl ClipSink for CaptionSink {
    fn request(&self, ctx: &VideoContext, target: Target) -> Option<ClipRequest> {
        if !target.is_kept() {
            return None;
        }
        let (w, h) = clip_picture(ctx, target)?;
        let (w, h) = fit_short_side(w, h, self.short_side());
        let clip = target.clip(ctx)?;
        let step = ctx.mean_frame_step();
        let duration = clip.duration_s().max(step);
        let rate = (self.config.frames as f64 / duration).min(1.0 / step);
        Some(ClipRequest {
            width: w,
            height: h,
            layout: ClipLayout::Yuv420p,
            fit: Fit::Stretch,
            rate: Some(Rate::from_fps(rate)),
            max_frames: Some(self.config.frames as u64),
        })
    }

    fn frame(&mut self, target: Target, frame: &ClipFrame<'_>) -> Result<()> {
        let Target::Kept(i) = target else {
            return Ok(());
        };
        let c = self.clips.entry(i).or_default();
        c.width = frame.width;
        c.height = frame.height;
        c.times.push(frame.time_s);
        c.colours
            .add_yuv420(frame.pixels, frame.width, frame.height);
        if matches!(self.mode, Mode::Openai { .. }) && c.error.is_none() {
            match self.jpeg.encode(frame.pixels, frame.width, frame.height) {
                Ok(j) => c.jpegs.push(j),
                Err(e) => c.error = Some(format!("JPEG encoding failed: {e}")),
            }
        }
        Ok(())
    }

    fn end_clip(&mut self, _target: Target, _done: ClipDone) -> Result<()> {
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut VideoContext, failed: &[Target]) -> Result<()> {
        let names: Vec<&str> = caption_columns().iter().map(|c| c.name).collect();
        let node = ctx.node.clone();
        let mut clips = self.clips;
        for i in 0..ctx.clips.len() {
            let target = Target::Kept(i);
            if failed.contains(&target) {
                continue;
            }
            let got = clips.remove(&i).unwrap_or_default();
            let row = Row::of(ctx, target, &got);
            let (caption, call) = match &self.mode {
                Mode::Structured => (row.structured(), None),
                Mode::Openai {
                    settings, prompt, ..
                } => openai_cells(
                    ctx,
                    target,
                    &row,
                    got,
                    settings,
                    prompt,
                    self.config.jpeg_qscale,
                ),
            };
            let clip_id = ctx.clips[i].clip_id.clone();
            let mut cells: Vec<Value> = vec![
                clip_id.into(),
                ctx.video_id.clone().into(),
                node.clone().into(),
            ];
            cells.extend(caption);
            cells.extend([
                row.camera.clone().into(),
                row.tempo.into(),
                row.lighting.into(),
                (!row.colours.is_empty())
                    .then(|| row.colours.join(", "))
                    .into(),
                labels::label_prompt(row.camera.as_deref(), row.tempo, row.lighting).into(),
            ]);
            let index = ctx.tables.get(TABLE_CAPTIONS).map_or(0, |t| t.len);
            ctx.add_row(TABLE_CAPTIONS, &names, cells)?;
            if let Some(job) = call {
                ctx.remote.push(RemoteCall {
                    node: node.clone(),
                    table: TABLE_CAPTIONS.into(),
                    row: index,
                    job,
                });
            }
        }
        Ok(())
    }
}

/// The measured side of one clip's row.
struct Row {
    camera: Option<String>,
    tempo: Option<&'static str>,
    lighting: Option<&'static str>,
    colours: Vec<&'static str>,
    facts: structured::Facts,
    duration_s: f64,
}

impl Row {
    fn of(ctx: &VideoContext, target: Target, got: &Collected) -> Row {
        let measures = CameraMeasures::of(ctx, target);
        let luma_mean = target
            .value(ctx, "luma_mean")
            .or_else(|| got.colours.luma_mean());
        let colours = dominant(&got.colours, COLOUR_SHARE, 3);
        let duration_s = target.clip(ctx).map_or(0.0, |c| c.duration_s());
        let mut facts = structured::facts(
            duration_s,
            &measures,
            luma_mean,
            target.value(ctx, "contrast"),
            colours.clone(),
            target.value(ctx, "text_area"),
            target.value(ctx, "overlay_area"),
        );
        facts.monochrome = target
            .value(ctx, "colorfulness")
            .is_some_and(|c| c < structured::MONOCHROME);
        Row {
            camera: facts.camera.clone(),
            tempo: facts.tempo,
            lighting: facts.lighting,
            colours,
            facts,
            duration_s,
        }
    }

    /// The caption cells (`caption` … `request_key`) of a structured caption.
    fn structured(&self) -> Vec<Value> {
        let (detailed, short) = structured::captions(&self.facts);
        caption_cells(CaptionCells {
            caption: Some(detailed),
            short: Some(short),
            source: "structured",
            model: None,
            status: STATUS_OK,
            error: None,
            key: None,
        })
    }
}

/// The caption columns of a row that has no remote reply (yet).
struct CaptionCells {
    caption: Option<String>,
    short: Option<String>,
    source: &'static str,
    model: Option<String>,
    status: &'static str,
    error: Option<String>,
    key: Option<String>,
}

/// In column order: caption, caption_short, caption_source, caption_model, caption_status,
/// caption_error, caption_fields, prompt_tokens, completion_tokens, request_key.
fn caption_cells(c: CaptionCells) -> Vec<Value> {
    vec![
        c.caption.into(),
        c.short.into(),
        c.source.into(),
        c.model.into(),
        c.status.into(),
        c.error.into(),
        Value::Null,
        Value::Null,
        Value::Null,
        c.key.into(),
    ]
}

/// The caption cells of an `openai` row and its call: `pending` with the call, or `error` when
/// the clip gave no frames to send.
fn openai_cells(
    ctx: &VideoContext,
    target: Target,
    row: &Row,
    got: Collected,
    settings: &Arc<ChatSettings>,
    prompt: &str,
    qscale: u32,
) -> (Vec<Value>, Option<Box<dyn crate::remote::RemoteJob>>) {
    let model = Some(settings.model.clone());
    let failed = |error: String| CaptionCells {
        caption: None,
        short: None,
        source: "openai",
        model: model.clone(),
        status: STATUS_ERROR,
        error: Some(error),
        key: None,
    };
    if let Some(e) = got.error {
        return (caption_cells(failed(e)), None);
    }
    if got.jpegs.is_empty() {
        return (
            caption_cells(failed("no frame of the clip reached the captioner".into())),
            None,
        );
    }
    let labels = labels::label_prompt(row.camera.as_deref(), row.tempo, row.lighting)
        .unwrap_or_else(|| "none measured".into());
    let text = prompt
        .replace("{frames}", &got.jpegs.len().to_string())
        .replace("{duration}", &format!("{:.1}", row.duration_s))
        .replace("{labels}", &labels);
    let key = request_key(
        ctx,
        target,
        &got,
        qscale,
        &settings.detailed_identity(&text),
    );
    let body = settings.detailed_body(&text, &got.jpegs);
    let job = ChatJob::new(
        settings.clone(),
        RemoteRequest {
            key: key.clone(),
            body: body.into(),
        },
    );
    let cells = caption_cells(CaptionCells {
        caption: None,
        short: None,
        source: "openai",
        model,
        status: STATUS_PENDING,
        error: None,
        key: Some(key),
    });
    (cells, Some(Box::new(job)))
}

/// The content address of a clip's detailed request: the source's bytes (its id), the clip's
/// frame range, the times of the frames sent, the crop and rotation, the picture size and JPEG
/// quality, and everything of the request but the pictures (model, prompts, limits).
fn request_key(
    ctx: &VideoContext,
    target: Target,
    got: &Collected,
    qscale: u32,
    identity: &str,
) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"kelp-caption-v1\0");
    h.update(ctx.video_id.as_bytes());
    if let Some(c) = target.clip(ctx) {
        h.update(&c.start_frame.to_le_bytes());
        h.update(&c.end_frame.to_le_bytes());
    }
    match target.crop_box(ctx) {
        Some((x, y, w, hh)) => {
            for v in [x, y, w, hh] {
                h.update(&v.to_le_bytes());
            }
        }
        None => {
            h.update(b"uncropped");
        }
    }
    let rotation = ctx.probe.as_ref().map_or(0, |p| p.rotation);
    h.update(&rotation.to_le_bytes());
    h.update(&got.width.to_le_bytes());
    h.update(&got.height.to_le_bytes());
    h.update(&qscale.to_le_bytes());
    for t in &got.times {
        h.update(&t.to_bits().to_le_bytes());
    }
    h.update(identity.as_bytes());
    h.finalize().to_hex().to_string()
}
