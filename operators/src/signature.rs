//! `signature`: perceptual signatures of every kept clip, for near-duplicate search over the whole
//! dataset: PDQ hashes ([`crate::pdq`]) of frames sampled from the shared decode at `sample_fps`,
//! each over the clip's crop region (when a `crop` node ran) turned upright, with the hash of its
//! mirror image and its quality, one `signatures` row per sampled frame.
//!
//! PDQ moves ~80–110 bits when a picture is cropped by 10–16% and up to ~50 when a corner logo
//! is drawn on it (measured, README "Deduplication"), so each frame also gets hashes of other
//! views of the same picture ([`VIEWS`]): its centre at 94%, 89% and 84% of each side — a
//! cropped copy's whole picture is one of those views of its original — and the picture with its
//! four corners masked, where logos sit. The matcher compares whole pictures with views, and
//! masked pictures with masked ones (`kelp_operators::dedup::lsh`).
//!
//! Frames are kept small (luma at `short_side` pixels) until the clips and their crop boxes are
//! known, then hashed: about 90 KB a sample at the default 256, so a one-hour video at
//! 1 sample/s holds ~300 MB while it is analysed.

use serde::Deserialize;

use crate::context::VideoContext;
use crate::error::{OperatorError, Result};
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType as T, Outputs, Product, TableSpec, Value};
use crate::pdq::{hash_luma, hash_luma_and_mirror, Pdq};

/// The table of frame signatures.
pub const TABLE_SIGNATURES: &str = "signatures";

/// Made by `signature`: every kept clip has its frames' hashes.
pub const SIGNATURES: Product = Product("signatures");

/// Parameters of the `signature` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignatureConfig {
    /// Frames hashed per second of video. At 2, a sub-clip cut anywhere has samples within a
    /// quarter second of its original's (at 1, half a second: on moving footage 2 of 5 real
    /// sub-clips were missed).
    pub sample_fps: f64,
    /// Short side, pixels, of the luma kept per sample. PDQ works at 64×64, but its blur and
    /// decimation need some room: at 256 a mirrored copy's mirror hash is ~2 bits from the
    /// original's (at 128, ~28), and a letterboxed copy's cropped hash ~6 (at 128, ~16).
    pub short_side: u32,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        SignatureConfig {
            sample_fps: 2.0,
            short_side: 256,
        }
    }
}

fn signature_columns() -> Vec<ColumnSpec> {
    let c = |name, kind, doc| ColumnSpec::of(TABLE_SIGNATURES, name, kind, doc);
    vec![
        c("clip_id", T::Utf8, "the clip (`clips.clip_id`)").required(),
        c("video_id", T::Utf8, "its source video").required(),
        c(
            "frame",
            T::Int64,
            "the sampled frame (decoded-frame index in the source)",
        )
        .required(),
        c(
            "time_s",
            T::Float64,
            "its time, seconds from the stream start",
        ),
        c(
            "hash",
            T::FixedSizeBinary(32),
            "PDQ hash of the frame's crop region, upright (256 bits; bytes read as PDQ's hex)",
        ),
        c(
            "hash_mirror",
            T::FixedSizeBinary(32),
            "PDQ hash of the same picture mirrored left to right",
        ),
        c(
            "quality",
            T::Int32,
            "0–100: PDQ quality; under ~50 the frame is too flat to match on",
        ),
        c(
            "hash_views",
            T::FixedSizeBinary(32 * VIEWS.len() as i32),
            "PDQ hashes of other views of the same picture, 32 bytes each: its centre at 94%, 89% and 84% of each side, then the picture with its four corners (24% of each side) masked",
        ),
    ]
}

/// The other views hashed per frame, in `hash_views` order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// The centre of the picture, this share of each side: a copy cropped to it.
    Centre(f64),
    /// The picture with its corners (this share of each side) filled with the mean of the rest:
    /// blind to corner logos.
    CornersMasked(f64),
}

pub const VIEWS: [View; 4] = [
    View::Centre(0.94),
    View::Centre(0.89),
    View::Centre(0.84),
    View::CornersMasked(0.24),
];

/// The hash of one view of a `w`×`h` luma picture.
pub fn view_hash(luma: &[f32], w: usize, h: usize, view: View) -> Pdq {
    match view {
        View::Centre(share) => {
            let (cw, ch) = (
                ((w as f64 * share).round() as usize).clamp(1, w),
                ((h as f64 * share).round() as usize).clamp(1, h),
            );
            let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
            let mut centre = Vec::with_capacity(cw * ch);
            for row in luma.chunks_exact(w).skip(y0).take(ch) {
                centre.extend_from_slice(&row[x0..x0 + cw]);
            }
            hash_luma(&centre, cw, ch).0
        }
        View::CornersMasked(share) => {
            let (mw, mh) = (
                (w as f64 * share).round() as usize,
                (h as f64 * share).round() as usize,
            );
            let corner = |x: usize, y: usize| (x < mw || x + mw >= w) && (y < mh || y + mh >= h);
            let (mut sum, mut n) = (0f64, 0usize);
            for (i, v) in luma.iter().enumerate().take(w * h) {
                if !corner(i % w, i / w) {
                    sum += *v as f64;
                    n += 1;
                }
            }
            let mean = (sum / n.max(1) as f64) as f32;
            let masked: Vec<f32> = luma
                .iter()
                .enumerate()
                .take(w * h)
                .map(|(i, &v)| if corner(i % w, i / w) { mean } else { v })
                .collect();
            hash_luma(&masked, w, h).0
        }
    }
}

/// Needs kept clips (reads their crop box when present); brings `signatures`.
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .produces(&[SIGNATURES])
        .table(TableSpec {
            name: TABLE_SIGNATURES,
            key: &["clip_id", "frame"],
            doc: "one row per sampled frame of a kept clip: its PDQ hash, mirror hash and quality",
            columns: signature_columns(),
            mirrors: None,
        })
}

pub struct Signature {
    config: SignatureConfig,
}

impl Signature {
    pub fn new(config: SignatureConfig) -> std::result::Result<Self, OperatorError> {
        if !(config.sample_fps > 0.0 && config.sample_fps.is_finite()) {
            return Err(OperatorError::Config {
                op: "signature".into(),
                message: format!("sample_fps must be > 0 (got {})", config.sample_fps),
            });
        }
        if config.short_side < 64 {
            return Err(OperatorError::Config {
                op: "signature".into(),
                message: format!(
                    "short_side must be ≥ 64, PDQ's working size (got {})",
                    config.short_side
                ),
            });
        }
        Ok(Signature { config })
    }
}

impl Operator for Signature {
    fn kind(&self) -> &'static str {
        "signature"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest {
            size: FrameSize::ShortSide(self.config.short_side),
            layout: PixelLayout::Gray8,
            sample_fps: Some(self.config.sample_fps),
            exact_pixels: false,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(Some(Box::new(SignatureSink {
            samples: Vec::new(),
        })))
    }
}

/// One sampled frame's luma.
struct Sample {
    index: u64,
    time_s: f64,
    width: usize,
    height: usize,
    luma: Vec<u8>,
}

struct SignatureSink {
    samples: Vec<Sample>,
}

impl FrameSink for SignatureSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        self.samples.push(Sample {
            index: frame.index,
            time_s: frame.time_s,
            width: frame.width as usize,
            height: frame.height as usize,
            luma: frame.pixels.to_vec(),
        });
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        let Some(probe) = ctx.probe.clone() else {
            return Ok(());
        };
        let names: Vec<&str> = signature_columns().iter().map(|c| c.name).collect();
        let mut rows: Vec<Vec<Value>> = Vec::new();
        for (i, clip) in ctx.clips.iter().enumerate() {
            let crop = ["crop_x", "crop_y", "crop_w", "crop_h"].map(|n| ctx.clip_value(n, i));
            for s in self
                .samples
                .iter()
                .filter(|s| s.index >= clip.start_frame && s.index < clip.end_frame)
            {
                let region = region(s, crop, (probe.width, probe.height));
                let (luma, w, h) = upright(s, region, probe.rotation);
                let (hash, mirror, quality) = hash_luma_and_mirror(&luma, w, h);
                let views: Vec<u8> = VIEWS
                    .iter()
                    .flat_map(|&v| view_hash(&luma, w, h, v).0)
                    .collect();
                rows.push(vec![
                    clip.clip_id.clone().into(),
                    ctx.video_id.clone().into(),
                    (s.index as i64).into(),
                    s.time_s.into(),
                    hash.0.to_vec().into(),
                    mirror.0.to_vec().into(),
                    (quality as i32).into(),
                    views.into(),
                ]);
            }
        }
        for row in rows {
            ctx.add_row(TABLE_SIGNATURES, &names, row)?;
        }
        Ok(())
    }
}

/// The crop box (coded-picture pixels) in the sample's pixels: left, top, width, height.
fn region(s: &Sample, crop: [Option<f64>; 4], coded: (u32, u32)) -> (usize, usize, usize, usize) {
    let (cw, ch) = (coded.0.max(1) as f64, coded.1.max(1) as f64);
    match crop {
        [Some(x), Some(y), Some(w), Some(h)] if w >= 1.0 && h >= 1.0 => {
            let (sx, sy) = (s.width as f64 / cw, s.height as f64 / ch);
            let left = ((x * sx).round() as usize).min(s.width.saturating_sub(1));
            let top = ((y * sy).round() as usize).min(s.height.saturating_sub(1));
            let width = ((w * sx).round() as usize).clamp(1, s.width - left);
            let height = ((h * sy).round() as usize).clamp(1, s.height - top);
            (left, top, width, height)
        }
        _ => (0, 0, s.width, s.height),
    }
}

/// The region's luma as floats, turned by the display rotation (degrees clockwise).
fn upright(
    s: &Sample,
    (left, top, w, h): (usize, usize, usize, usize),
    rotation: i32,
) -> (Vec<f32>, usize, usize) {
    let at = |x: usize, y: usize| s.luma[(top + y) * s.width + left + x] as f32;
    match rotation.rem_euclid(360) {
        90 => {
            // Upright pixel (x, y) of an h×w picture comes from coded (y, h - 1 - x).
            let out = (0..w)
                .flat_map(|y| (0..h).map(move |x| (x, y)))
                .map(|(x, y)| at(y, h - 1 - x))
                .collect();
            (out, h, w)
        }
        180 => {
            let out = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| at(w - 1 - x, h - 1 - y))
                .collect();
            (out, w, h)
        }
        270 => {
            let out = (0..w)
                .flat_map(|y| (0..h).map(move |x| (x, y)))
                .map(|(x, y)| at(w - 1 - y, x))
                .collect();
            (out, h, w)
        }
        _ => {
            let out = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| at(x, y))
                .collect();
            (out, w, h)
        }
    }
}
