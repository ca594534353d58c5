//! `bucket`: assigns each kept clip to a resolution × aspect-ratio × frame-count training bucket
//! (Open-Sora style), from the clip's picture as it will be cut: the crop box when a `crop` node
//! ran, else the coded picture, turned by the video's rotation.
//!
//! - Resolutions are named by height ("256p", "480p", "720p"); a resolution's pixel area is that of
//!   its 16:9 picture (720p = 1280×720). For an aspect ratio `r` the bucket's size has that area
//!   and ratio, each side rounded to a multiple of `multiple`.
//! - A clip takes the aspect ratio nearest its own (in log scale; rejected when even the nearest
//!   would cut away more than `max_aspect_change` of the picture), then the largest resolution
//!   whose size fits inside its picture (no upscaling unless `upscale`, which lets a small clip
//!   into the smallest resolution), then the largest frame count it has enough frames for, at
//!   `fps` when the DAG resamples.
//! - A clip that fits no bucket is rejected with the reason.

use serde::Deserialize;

use crate::clip_stage::Target;
use crate::context::VideoContext;
use crate::error::{OperatorError, Result};
use crate::operator::{FrameSink, Operator};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product, Value};

/// Parameters of the `bucket` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BucketConfig {
    /// Resolutions by height, e.g. `["256p", "480p", "720p"]`.
    pub resolutions: Vec<String>,
    /// Aspect ratios as width:height, e.g. `["9:16", "1:1", "16:9"]`.
    pub aspect_ratios: Vec<String>,
    /// Frame counts a clip may be cut to, e.g. `[17, 33, 65]`.
    pub frames: Vec<u64>,
    /// Frames per second of the media; unset keeps the source's rate.
    pub fps: Option<f64>,
    /// Let a clip smaller than every bucket into the smallest resolution (scaled up).
    pub upscale: bool,
    /// Width and height are multiples of this (16 suits video VAEs and H.264 macroblocks).
    pub multiple: u32,
    /// Largest share of the picture the centre crop to the bucket's aspect may remove (0–1).
    pub max_aspect_change: f64,
}

impl Default for BucketConfig {
    fn default() -> Self {
        BucketConfig {
            resolutions: vec!["256p".into(), "480p".into(), "720p".into()],
            aspect_ratios: ["9:16", "3:4", "1:1", "4:3", "16:9", "21:9"]
                .map(String::from)
                .to_vec(),
            frames: vec![17, 33, 65, 129],
            fps: None,
            upscale: false,
            multiple: 16,
            max_aspect_change: 0.2,
        }
    }
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip(
        "bucket",
        ColumnType::Utf8,
        "training bucket, `<resolution>-<w:h>-<frames>f`, e.g. `480p-16:9-65f`",
    ),
    ColumnSpec::clip(
        "target_width",
        ColumnType::Int32,
        "pixels, multiple of the bucket's `multiple`: width of the clip's media",
    ),
    ColumnSpec::clip(
        "target_height",
        ColumnType::Int32,
        "pixels: height of the clip's media",
    ),
    ColumnSpec::clip(
        "target_frames",
        ColumnType::Int32,
        "frames of the clip's media (its first frames), > 0",
    ),
    ColumnSpec::clip(
        "target_fps",
        ColumnType::Float64,
        "frames per second of the clip's media, > 0",
    ),
];

/// Needs clips (and reads the crop box when there is one); writes the bucket columns.
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .produces(&[BUCKETS])
        .columns(COLUMNS)
}

/// Made by `bucket`: each kept clip's media size, frame count and rate.
pub const BUCKETS: Product = Product("buckets");

/// A resolution: its name and the pixel area of its pictures.
#[derive(Debug, Clone, PartialEq)]
struct Resolution {
    name: String,
    area: f64,
}

/// An aspect ratio: its name and width ÷ height.
#[derive(Debug, Clone, PartialEq)]
struct Ratio {
    name: String,
    value: f64,
}

/// A clip's bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub bucket: String,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    pub fps: f64,
}

pub struct Bucket {
    config: BucketConfig,
    resolutions: Vec<Resolution>,
    ratios: Vec<Ratio>,
    frames: Vec<u64>,
}

fn config_error(message: String) -> OperatorError {
    OperatorError::Config {
        op: "bucket".into(),
        message,
    }
}

impl Bucket {
    pub fn new(config: BucketConfig) -> std::result::Result<Self, OperatorError> {
        let mut resolutions = config
            .resolutions
            .iter()
            .map(|r| parse_resolution(r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(config_error)?;
        resolutions.sort_by(|a, b| a.area.total_cmp(&b.area));
        let ratios = config
            .aspect_ratios
            .iter()
            .map(|r| parse_ratio(r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(config_error)?;
        let mut frames = config.frames.clone();
        frames.sort_unstable();
        frames.dedup();
        if resolutions.is_empty() || ratios.is_empty() || frames.is_empty() {
            return Err(config_error(
                "resolutions, aspect_ratios and frames each need at least one entry".into(),
            ));
        }
        if frames[0] == 0 {
            return Err(config_error("frames must be > 0".into()));
        }
        if config.multiple == 0 || !config.multiple.is_multiple_of(2) {
            return Err(config_error(format!(
                "multiple must be even and > 0 (got {})",
                config.multiple
            )));
        }
        if !(0.0..1.0).contains(&config.max_aspect_change) {
            return Err(config_error(format!(
                "max_aspect_change must be in [0, 1) (got {})",
                config.max_aspect_change
            )));
        }
        if let Some(fps) = config.fps {
            if !(fps.is_finite() && fps > 0.0) {
                return Err(config_error(format!("fps must be > 0 (got {fps})")));
            }
        }
        Ok(Bucket {
            config,
            resolutions,
            ratios,
            frames,
        })
    }

    /// The bucket of a clip whose picture (cropped, rotated) is `width`×`height` and which has
    /// `frames` frames at `fps`; `Err` says why none fits.
    pub fn assign(
        &self,
        width: u32,
        height: u32,
        frames: u64,
        fps: f64,
    ) -> std::result::Result<Assignment, String> {
        if width == 0 || height == 0 {
            return Err(format!("picture {width}x{height} is empty"));
        }
        let aspect = width as f64 / height as f64;
        let ratio = self
            .ratios
            .iter()
            .min_by(|a, b| {
                (a.value / aspect)
                    .ln()
                    .abs()
                    .total_cmp(&(b.value / aspect).ln().abs())
            })
            .ok_or("no aspect ratios")?;
        // The centre crop to the bucket's aspect keeps min(r, 1/r) of the picture.
        let kept = (ratio.value / aspect).min(aspect / ratio.value);
        if 1.0 - kept > self.config.max_aspect_change + 1e-9 {
            return Err(format!(
                "aspect {aspect:.3} ({width}x{height}) is too far from every bucket ratio: the nearest, {}, would crop away {:.0}% (max_aspect_change = {})",
                ratio.name,
                100.0 * (1.0 - kept),
                self.config.max_aspect_change
            ));
        }
        let size_of = |r: &Resolution| bucket_size(r.area, ratio.value, self.config.multiple);
        let fitting = self.resolutions.iter().rev().find(|r| {
            let (w, h) = size_of(r);
            w <= width && h <= height
        });
        let resolution = match fitting {
            Some(r) => r,
            None if self.config.upscale => &self.resolutions[0],
            None => {
                let smallest = &self.resolutions[0];
                let (w, h) = size_of(smallest);
                return Err(format!(
                    "picture {width}x{height} is smaller than the smallest bucket ({} {} = {w}x{h}) and upscale = false",
                    smallest.name, ratio.name
                ));
            }
        };
        let (w, h) = size_of(resolution);
        let target_fps = self.config.fps.unwrap_or(fps);
        if !(fps > 0.0 && target_fps > 0.0) {
            return Err(format!("frame rate {fps} is unusable"));
        }
        // Frames available once resampled to the media's rate.
        let available = ((frames as f64) * target_fps / fps + 1e-6).floor() as u64;
        let Some(&count) = self.frames.iter().rev().find(|&&n| n <= available) else {
            return Err(format!(
                "{available} frames at {target_fps:.3} fps, fewer than the smallest bucket's {}",
                self.frames[0]
            ));
        };
        Ok(Assignment {
            bucket: format!("{}-{}-{count}f", resolution.name, ratio.name),
            width: w,
            height: h,
            frames: count,
            fps: target_fps,
        })
    }
}

/// Width and height with pixel area `area` and aspect `ratio`, each a multiple of `multiple`.
fn bucket_size(area: f64, ratio: f64, multiple: u32) -> (u32, u32) {
    let h = (area / ratio).sqrt();
    let w = h * ratio;
    let m = multiple as f64;
    let snap = |x: f64| (((x / m).round() as u32).max(1)) * multiple;
    (snap(w), snap(h))
}

fn parse_resolution(text: &str) -> std::result::Result<Resolution, String> {
    let height: u32 = text
        .strip_suffix('p')
        .and_then(|n| n.parse().ok())
        .filter(|&n| (16..=8640).contains(&n))
        .ok_or_else(|| {
            format!("resolution \"{text}\": expected a height like \"480p\" (16p to 8640p)")
        })?;
    let width = (height as f64 * 16.0 / 9.0).round();
    Ok(Resolution {
        name: text.to_string(),
        area: width * height as f64,
    })
}

fn parse_ratio(text: &str) -> std::result::Result<Ratio, String> {
    let bad = || format!("aspect ratio \"{text}\": expected width:height like \"16:9\"");
    let (w, h) = text.split_once(':').ok_or_else(bad)?;
    let (w, h): (f64, f64) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite()) {
        return Err(bad());
    }
    Ok(Ratio {
        name: text.to_string(),
        value: w / h,
    })
}

/// The picture a clip's media is cut from: the crop box (or the coded picture), turned upright.
pub fn clip_picture(ctx: &VideoContext, clip: Target) -> Option<(u32, u32)> {
    let probe = ctx.probe.as_ref()?;
    let (w, h) = match (clip.value(ctx, "crop_w"), clip.value(ctx, "crop_h")) {
        (Some(w), Some(h)) if w >= 1.0 && h >= 1.0 => (w as u32, h as u32),
        _ => (probe.width, probe.height),
    };
    Some(if probe.rotation.rem_euclid(180) == 90 {
        (h, w)
    } else {
        (w, h)
    })
}

impl Operator for Bucket {
    fn kind(&self) -> &'static str {
        "bucket"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn finish(&self, ctx: &mut VideoContext) -> Result<()> {
        let fps = 1.0 / ctx.mean_frame_step();
        let mut assigned: Vec<std::result::Result<Assignment, String>> = Vec::new();
        for (i, clip) in ctx.clips.iter().enumerate() {
            assigned.push(match clip_picture(ctx, Target::Kept(i)) {
                Some((w, h)) => self.assign(w, h, clip.frames(), fps),
                None => Err("no probe facts (add a `probe` node)".into()),
            });
        }
        let mut columns: [Vec<Value>; 5] = std::array::from_fn(|_| Vec::new());
        for a in &assigned {
            let row: [Value; 5] = match a {
                Ok(a) => [
                    a.bucket.clone().into(),
                    (a.width as i32).into(),
                    (a.height as i32).into(),
                    (a.frames as i32).into(),
                    a.fps.into(),
                ],
                Err(_) => std::array::from_fn(|_| Value::Null),
            };
            for (col, v) in columns.iter_mut().zip(row) {
                col.push(v);
            }
        }
        for (spec, values) in COLUMNS.iter().zip(columns) {
            ctx.set_clip_column(spec.name, values)?;
        }
        for (i, a) in assigned.iter().enumerate().rev() {
            if let Err(reason) = a {
                ctx.reject_clip(i, format!("fits no bucket: {reason}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
