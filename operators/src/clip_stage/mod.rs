//! The clip stage: after every node has finished its analysis (and filters have dropped what they
//! drop), one more decode of the source reads only the kept clips' frame ranges, in order, and
//! hands each clip's frames — cropped to its crop box, turned upright, scaled — to the operators
//! that work on clip pictures (`transcode`, `preview`).
//!
//! Frames are found again by the timestamps the analysis decode recorded, so a clip's first frame
//! here is exactly the frame the analysis numbered `start_frame`; the decoder seeks to the
//! keyframe before a range only when that skips frames, and drops frames before the range. A
//! clip whose range cannot be decoded is rejected with the reason; the others are written. No
//! clip stage runs when no node asks for one, and rejected clips are not decoded again.

mod decode;
mod graph;

use crate::context::{Clip, VideoContext};
use crate::error::Result;
use crate::output::Value;

pub use decode::{run, ClipStageReport};
pub use graph::{filter_chain, CropBox};

/// A clip the stage reads: a kept one (an index into `ctx.clips`) or, for sinks that ask for
/// them, a rejected one (an index into `ctx.rejections`), decoded in the same pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Kept(usize),
    Rejected(usize),
}

impl Target {
    /// The clip itself.
    pub fn clip(self, ctx: &VideoContext) -> Option<&Clip> {
        match self {
            Target::Kept(i) => ctx.clips.get(i),
            Target::Rejected(r) => ctx.rejections.get(r).and_then(|r| r.clip.as_ref()),
        }
    }

    /// One of its column values (a rejected clip has those it had when it was turned away).
    pub fn cell(self, ctx: &VideoContext, name: &str) -> Option<Value> {
        match self {
            Target::Kept(i) => ctx.clip_cell(name, i).cloned(),
            Target::Rejected(r) => ctx.rejections.get(r).and_then(|r| {
                r.values
                    .iter()
                    .find(|(n, v)| n == name && !v.is_null())
                    .map(|(_, v)| v.clone())
            }),
        }
    }

    /// A numeric column value.
    pub fn value(self, ctx: &VideoContext, name: &str) -> Option<f64> {
        self.cell(ctx, name).and_then(|v| v.as_f64())
    }

    /// Its crop box on the coded picture (left, top, width, height), when a `crop` node gave it
    /// a usable one.
    pub fn crop_box(self, ctx: &VideoContext) -> Option<graph::CropBox> {
        let cell = |n: &str| self.value(ctx, n).filter(|v| *v >= 0.0).map(|v| v as u32);
        match (
            cell("crop_x"),
            cell("crop_y"),
            cell("crop_w"),
            cell("crop_h"),
        ) {
            (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 => Some((x, y, w, h)),
            _ => None,
        }
    }

    pub fn is_kept(self) -> bool {
        matches!(self, Target::Kept(_))
    }
}

/// Pixel layout of clip frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClipLayout {
    /// Packed R, G, B bytes.
    Rgb24,
    /// Planar 8-bit 4:2:0: the Y plane, then U, then V, each rows packed (what encoders take).
    Yuv420p,
}

/// How a clip's picture is brought to the requested size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fit {
    /// Scaled to cover the size (aspect kept), then centre-cropped to it.
    Cover,
    /// Scaled to exactly the size (aspect changes when it differs).
    Stretch,
}

/// Frames per second as a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub num: i32,
    pub den: i32,
}

impl Rate {
    /// The fraction for a rate given in frames per second (NTSC rates become n×1000/1001).
    pub fn from_fps(fps: f64) -> Rate {
        for base in [24.0, 30.0, 60.0, 120.0] {
            if (fps - base * 1000.0 / 1001.0).abs() < 0.005 {
                return Rate {
                    num: base as i32 * 1000,
                    den: 1001,
                };
            }
        }
        if (fps - fps.round()).abs() < 1e-6 {
            return Rate {
                num: fps.round().max(1.0) as i32,
                den: 1,
            };
        }
        Rate {
            num: (fps * 1000.0).round().max(1.0) as i32,
            den: 1000,
        }
    }
    pub fn fps(self) -> f64 {
        self.num as f64 / self.den.max(1) as f64
    }
}

/// The frames a clip sink wants of one clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipRequest {
    pub width: u32,
    pub height: u32,
    pub layout: ClipLayout,
    pub fit: Fit,
    /// Resample to this rate; `None` keeps every source frame.
    pub rate: Option<Rate>,
    /// At most this many frames from the clip's start; `None` for the whole clip.
    pub max_frames: Option<u64>,
}

/// One clip frame handed to a sink.
#[derive(Debug, Clone, Copy)]
pub struct ClipFrame<'a> {
    /// 0 for the clip's first delivered frame.
    pub index: u64,
    /// Seconds from the clip's first frame.
    pub time_s: f64,
    /// Frame rate of what is delivered (the request's, else the source's).
    pub rate: Rate,
    pub width: u32,
    pub height: u32,
    pub layout: ClipLayout,
    /// Rows packed; for YUV 4:2:0 the three planes one after another.
    pub pixels: &'a [u8],
}

/// What a clip sink was given of one clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipDone {
    pub frames: u64,
    pub rate: Rate,
}

/// Per-video state of an operator working on clip pictures.
pub trait ClipSink: Send {
    /// What this sink wants of a clip (every kept clip and every rejected one is offered);
    /// `None` skips it.
    fn request(&self, ctx: &VideoContext, target: Target) -> Option<ClipRequest>;
    /// One frame of a clip, in order.
    fn frame(&mut self, target: Target, frame: &ClipFrame<'_>) -> Result<()>;
    /// After the clip's last frame.
    fn end_clip(&mut self, target: Target, done: ClipDone) -> Result<()>;
    /// After every clip; `failed` lists the clips whose frames could not be read (kept ones are
    /// rejected after every sink has finished, so per-clip columns still cover them).
    fn finish(self: Box<Self>, ctx: &mut VideoContext, failed: &[Target]) -> Result<()>;
}
