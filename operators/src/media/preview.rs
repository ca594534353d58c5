//! `preview`: for each kept clip, a JPEG thumbnail (its middle frame) and a short looping
//! animated WebP sampled across the whole clip, small enough for a browser grid; one `previews`
//! row per clip.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::encode::{jpeg, ClipEncoder, EncoderSpec};
use crate::bucket::clip_picture;
use crate::clip_stage::{
    ClipDone, ClipFrame, ClipLayout, ClipRequest, ClipSink, Fit, Rate, Target,
};
use crate::context::VideoContext;
use crate::error::{OperatorError, Result};
use crate::operator::{FrameSink, Operator};
use crate::output::{ColumnSpec, ColumnType as T, Outputs, Product, TableSpec, Value};

/// The table of clip previews.
pub const TABLE_PREVIEWS: &str = "previews";

/// Parameters of the `preview` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreviewConfig {
    /// Short side of thumbnails and animations, pixels (never upscaled).
    pub short_side: u32,
    /// Frames in the animation at most; they are spread evenly over the clip.
    pub animation_frames: u32,
    /// Playback rate of the animation, frames per second.
    pub animation_fps: f64,
    /// WebP quality, 0–100.
    pub webp_quality: u32,
    /// WebP compression effort, 0 (fastest) … 6 (smallest). 2 encodes in about half the time
    /// of libwebp's default 4 for ~6% more bytes (measured on 240 frames at 256×144).
    pub webp_method: u32,
    /// JPEG quality as FFmpeg's qscale: 2 = best … 31 = worst.
    pub jpeg_qscale: u32,
    /// Make the animation (off: thumbnails only).
    pub animation: bool,
    /// Previews of rejected clips too (decoded in the same pass), so a browser can show why.
    pub rejected: bool,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        PreviewConfig {
            short_side: 180,
            animation_frames: 24,
            animation_fps: 8.0,
            webp_quality: 60,
            webp_method: 2,
            jpeg_qscale: 4,
            animation: true,
            rejected: false,
        }
    }
}

fn preview_columns() -> Vec<ColumnSpec> {
    let c = |name, kind, doc| ColumnSpec::of(TABLE_PREVIEWS, name, kind, doc);
    vec![
        c("clip_id", T::Utf8, "the clip (`clips.clip_id`)").required(),
        c("video_id", T::Utf8, "its source video").required(),
        c(
            "width",
            T::Int32,
            "pixels, > 0: size of thumbnail and animation",
        ),
        c("height", T::Int32, "pixels, > 0"),
        c("thumbnail", T::Binary, "JPEG of the clip's middle frame"),
        c(
            "animation",
            T::Binary,
            "animated WebP (looping), null when off",
        ),
        c("animation_frames", T::Int32, "frames in `animation`, ≥ 0"),
        c(
            "kept",
            T::Boolean,
            "false for a rejected clip's preview (`rejected = true`)",
        ),
    ]
}

/// Needs kept clips; brings `previews`.
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .table(TableSpec {
            name: TABLE_PREVIEWS,
            key: &["clip_id"],
            doc: "a thumbnail and a short animation per kept clip, for browsing",
            columns: preview_columns(),
            mirrors: None,
        })
}

pub struct Preview {
    config: PreviewConfig,
}

impl Preview {
    pub fn new(config: PreviewConfig) -> std::result::Result<Self, OperatorError> {
        let bad = |message: String| OperatorError::Config {
            op: "preview".into(),
            message,
        };
        if config.short_side < 16 {
            return Err(bad(format!(
                "short_side must be ≥ 16 (got {})",
                config.short_side
            )));
        }
        if config.animation_frames == 0
            || config.animation_fps.is_nan()
            || config.animation_fps <= 0.0
        {
            return Err(bad("animation_frames and animation_fps must be > 0".into()));
        }
        if config.webp_quality > 100 {
            return Err(bad(format!(
                "webp_quality must be 0–100 (got {})",
                config.webp_quality
            )));
        }
        if config.webp_method > 6 {
            return Err(bad(format!(
                "webp_method must be 0–6 (got {})",
                config.webp_method
            )));
        }
        Ok(Preview { config })
    }
}

impl Operator for Preview {
    fn kind(&self) -> &'static str {
        "preview"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn clip_sink(&self, _ctx: &VideoContext) -> Result<Option<Box<dyn ClipSink>>> {
        Ok(Some(Box::new(PreviewSink {
            config: self.config.clone(),
            frames: BTreeMap::new(),
            done: BTreeMap::new(),
        })))
    }
}

/// A clip's sampled frames: size and the packed YUV planes of each.
struct Sampled {
    width: u32,
    height: u32,
    frames: Vec<Vec<u8>>,
}

struct Made {
    width: u32,
    height: u32,
    thumbnail: Vec<u8>,
    animation: Option<Vec<u8>>,
    frames: u32,
}

struct PreviewSink {
    config: PreviewConfig,
    frames: BTreeMap<Target, Sampled>,
    done: BTreeMap<Target, Made>,
}

/// Scales `(w, h)` so its short side is at most `short` (even sides, aspect kept).
fn preview_size(w: u32, h: u32, short: u32) -> (u32, u32) {
    let scale = (short as f64 / w.min(h).max(1) as f64).min(1.0);
    let even = |x: u32| (((x as f64 * scale) / 2.0).round() as u32 * 2).max(2);
    (even(w), even(h))
}

impl ClipSink for PreviewSink {
    fn request(&self, ctx: &VideoContext, clip: Target) -> Option<ClipRequest> {
        if !clip.is_kept() && !self.config.rejected {
            return None;
        }
        let (w, h) = clip_picture(ctx, clip)?;
        let (w, h) = preview_size(w, h, self.config.short_side);
        let c = clip.clip(ctx)?;
        // Enough frames spread over the whole clip for the animation (and its middle frame).
        let duration = c.duration_s().max(ctx.mean_frame_step());
        let rate =
            (self.config.animation_frames as f64 / duration).min(1.0 / ctx.mean_frame_step());
        Some(ClipRequest {
            width: w,
            height: h,
            layout: ClipLayout::Yuv420p,
            fit: Fit::Stretch,
            rate: Some(Rate::from_fps(rate)),
            max_frames: Some(self.config.animation_frames as u64),
        })
    }

    fn frame(&mut self, clip: Target, frame: &ClipFrame<'_>) -> Result<()> {
        let s = self.frames.entry(clip).or_insert_with(|| Sampled {
            width: frame.width,
            height: frame.height,
            frames: Vec::new(),
        });
        s.frames.push(frame.pixels.to_vec());
        Ok(())
    }

    fn end_clip(&mut self, clip: Target, _done: ClipDone) -> Result<()> {
        let Some(s) = self.frames.remove(&clip) else {
            return Err(preview_error("no frame reached the preview".into()));
        };
        let middle = s.frames.len() / 2;
        let thumbnail = jpeg(
            &s.frames[middle],
            s.width,
            s.height,
            self.config.jpeg_qscale,
        )
        .map_err(preview_error)?;
        let animation = if self.config.animation {
            let spec = EncoderSpec {
                codec: "libwebp_anim".into(),
                options: vec![
                    ("quality".into(), self.config.webp_quality.to_string()),
                    (
                        "compression_level".into(),
                        self.config.webp_method.to_string(),
                    ),
                ],
                gop: 0,
                threads: 1,
                container: "webp".into(),
                muxer_options: vec![("loop".into(), "0".into())],
            };
            let rate = Rate::from_fps(self.config.animation_fps);
            let mut enc =
                ClipEncoder::new(&spec, s.width, s.height, rate).map_err(preview_error)?;
            for f in &s.frames {
                enc.push(f).map_err(preview_error)?;
            }
            Some(enc.finish().map_err(preview_error)?)
        } else {
            None
        };
        self.done.insert(
            clip,
            Made {
                width: s.width,
                height: s.height,
                thumbnail,
                frames: if animation.is_some() {
                    s.frames.len() as u32
                } else {
                    0
                },
                animation,
            },
        );
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut VideoContext, failed: &[Target]) -> Result<()> {
        let names: Vec<&str> = preview_columns().iter().map(|c| c.name).collect();
        for (clip, made) in self.done {
            if failed.contains(&clip) {
                continue;
            }
            let Some(c) = clip.clip(ctx) else {
                continue;
            };
            let row: Vec<Value> = vec![
                c.clip_id.clone().into(),
                ctx.video_id.clone().into(),
                (made.width as i32).into(),
                (made.height as i32).into(),
                made.thumbnail.into(),
                made.animation.into(),
                (made.frames as i32).into(),
                clip.is_kept().into(),
            ];
            ctx.add_row(TABLE_PREVIEWS, &names, row)?;
        }
        Ok(())
    }
}

/// A preview failure; the clip stage names the file and the clip around it.
fn preview_error(reason: String) -> OperatorError {
    OperatorError::Failed {
        op: "preview".into(),
        path: Default::default(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_settings_are_refused_with_their_name() {
        let refused = |config: PreviewConfig, name: &str| match Preview::new(config) {
            Err(e) => assert!(e.to_string().contains(name), "{e}"),
            Ok(_) => panic!("{name} accepted"),
        };
        refused(
            PreviewConfig {
                webp_method: 7,
                ..Default::default()
            },
            "webp_method",
        );
        refused(
            PreviewConfig {
                webp_quality: 101,
                ..Default::default()
            },
            "webp_quality",
        );
        refused(
            PreviewConfig {
                short_side: 8,
                ..Default::default()
            },
            "short_side",
        );
        assert!(Preview::new(PreviewConfig::default()).is_ok());
    }
}
