//! `sharpness`: focus / clarity per clip with OpenCV: variance of the Laplacian and Tenengrad
//! (mean squared Sobel gradient), on luma frames scaled to a fixed short side so that 240p and
//! 1080p sources are judged at the same scale.

use opencv::core::{mean_std_dev, no_array, norm, Mat, Scalar, BORDER_DEFAULT, CV_16S, NORM_L2};
use opencv::imgproc;
use opencv::prelude::*;
use serde::Deserialize;

use crate::context::VideoContext;
use crate::cv::{cv_error, frame_mat};
use crate::error::Result;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product};
use crate::samples::{Agg, Samples};

/// Parameters of the `sharpness` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharpnessConfig {
    /// Sampled frames per second.
    pub sample_fps: f64,
    /// Every frame's short side is scaled to this many pixels before measuring.
    pub short_side: u32,
}

impl Default for SharpnessConfig {
    fn default() -> Self {
        SharpnessConfig {
            sample_fps: 2.0,
            short_side: 360,
        }
    }
}

pub struct Sharpness {
    config: SharpnessConfig,
}

impl Sharpness {
    pub fn new(config: SharpnessConfig) -> Self {
        Sharpness { config }
    }
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip("sharpness", ColumnType::Float64, "≥ 0: variance of the Laplacian of luma at a 360-px short side (blurry < ~50, crisp > ~300)"),
    ColumnSpec::clip("tenengrad", ColumnType::Float64, "≥ 0: mean squared Sobel gradient magnitude of luma at the same scale"),
];

/// What this operator needs and writes (reads clips).
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .columns(COLUMNS)
}

/// Laplacian variance and Tenengrad of one gray frame (16-bit integer derivatives: exact for
/// 8-bit input, and faster than floats).
pub fn measure(gray: &impl opencv::core::ToInputArray) -> opencv::Result<[f64; 2]> {
    let mut lap = Mat::default();
    imgproc::laplacian(gray, &mut lap, CV_16S, 3, 1.0, 0.0, BORDER_DEFAULT)?;
    let (mut mean, mut sd) = (Scalar::default(), Scalar::default());
    mean_std_dev(&lap, &mut mean, &mut sd, &no_array())?;
    let (mut gx, mut gy) = (Mat::default(), Mat::default());
    imgproc::sobel(gray, &mut gx, CV_16S, 1, 0, 3, 1.0, 0.0, BORDER_DEFAULT)?;
    imgproc::sobel(gray, &mut gy, CV_16S, 0, 1, 3, 1.0, 0.0, BORDER_DEFAULT)?;
    let pixels = (gx.rows() * gx.cols()).max(1) as f64;
    let (nx, ny) = (
        norm(&gx, NORM_L2, &no_array())?,
        norm(&gy, NORM_L2, &no_array())?,
    );
    Ok([sd[0] * sd[0], (nx * nx + ny * ny) / pixels])
}

impl Operator for Sharpness {
    fn kind(&self) -> &'static str {
        "sharpness"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest {
            size: FrameSize::ShortSide(self.config.short_side),
            layout: PixelLayout::Gray8,
            sample_fps: Some(self.config.sample_fps),
            // Deblocking changes fine detail: measure what the decoder really outputs.
            exact_pixels: true,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(Some(Box::new(SharpnessSink {
            samples: Samples::new(COLUMNS.len()),
        })))
    }
}

struct SharpnessSink {
    samples: Samples,
}

impl FrameSink for SharpnessSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        let mat = frame_mat(frame).map_err(|e| cv_error("sharpness", e))?;
        let m = measure(&mat).map_err(|e| cv_error("sharpness", e))?;
        self.samples.push(frame.index, &m);
        Ok(())
    }
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        for (m, col) in COLUMNS.iter().enumerate() {
            ctx.set_clip_column(col.name, self.samples.per_clip(ctx, m, Agg::Mean))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cv::gray_mat;

    fn pattern(w: u32, h: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| if (x / 4 + y / 4) % 2 == 0 { 40 } else { 210 }))
            .collect()
    }

    #[test]
    fn a_blurred_copy_is_less_sharp() {
        let (w, h) = (160, 120);
        let sharp = pattern(w, h);
        let src = gray_mat(w, h, &sharp).unwrap();
        let mut blurred = Mat::default();
        imgproc::gaussian_blur_def(&src, &mut blurred, opencv::core::Size::new(7, 7), 2.0).unwrap();
        let s = measure(&src).unwrap();
        let b = measure(&blurred).unwrap();
        assert!(b[0] < s[0] / 4.0, "laplacian variance {} vs {}", b[0], s[0]);
        assert!(b[1] < s[1], "tenengrad {} vs {}", b[1], s[1]);
    }
}
