//! `exposure`: brightness, clipping, contrast and colourfulness per clip, from sampled frames.
//!
//! Luma is BT.601 on full-range RGB (0–255). Colourfulness is Hasler & Süsstrunk's (2003) metric:
//! ~0 for grey pictures, ~30 "moderately", >100 "extremely" colourful.

use serde::Deserialize;

use crate::context::VideoContext;
use crate::error::Result;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product};
use crate::samples::{Agg, Samples};

/// Parameters of the `exposure` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExposureConfig {
    /// Sampled frames per second.
    pub sample_fps: f64,
    /// Analysis size: the short side scaled to this many pixels.
    pub short_side: u32,
    /// Luma at or under which a pixel counts as crushed black, and at or over which as blown white.
    pub black_level: u8,
    pub white_level: u8,
}

impl Default for ExposureConfig {
    fn default() -> Self {
        ExposureConfig {
            sample_fps: 2.0,
            short_side: 144,
            black_level: 16,
            white_level: 235,
        }
    }
}

pub struct Exposure {
    config: ExposureConfig,
}

impl Exposure {
    pub fn new(config: ExposureConfig) -> Self {
        Exposure { config }
    }
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip(
        "luma_mean",
        ColumnType::Float64,
        "0–255: mean luma over sampled frames",
    ),
    ColumnSpec::clip(
        "luma_p5",
        ColumnType::Float64,
        "0–255: 5th percentile of luma (mean over samples)",
    ),
    ColumnSpec::clip(
        "luma_p95",
        ColumnType::Float64,
        "0–255: 95th percentile of luma",
    ),
    ColumnSpec::clip(
        "black_clip",
        ColumnType::Float64,
        "0–1: share of pixels at or under the black level",
    ),
    ColumnSpec::clip(
        "white_clip",
        ColumnType::Float64,
        "0–1: share of pixels at or over the white level",
    ),
    ColumnSpec::clip(
        "contrast",
        ColumnType::Float64,
        "0–128: standard deviation of luma",
    ),
    ColumnSpec::clip(
        "colorfulness",
        ColumnType::Float64,
        "≥ 0: Hasler–Süsstrunk colourfulness (~0 grey, >100 extreme)",
    ),
];

/// What this operator needs and writes (reads clips).
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .columns(COLUMNS)
}

/// The seven measures of one RGB frame, in [`COLUMNS`] order.
pub fn measure(rgb: &[u8], black: u8, white: u8) -> [f64; 7] {
    let n = (rgb.len() / 3).max(1) as f64;
    let mut hist = [0u32; 256];
    let (mut sum, mut sq) = (0f64, 0f64);
    let (mut rg_s, mut rg_q, mut yb_s, mut yb_q) = (0f64, 0f64, 0f64, 0f64);
    for px in rgb.chunks_exact(3) {
        let (r, g, b) = (px[0] as f64, px[1] as f64, px[2] as f64);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        hist[(y.round() as usize).min(255)] += 1;
        sum += y;
        sq += y * y;
        let rg = r - g;
        let yb = 0.5 * (r + g) - b;
        rg_s += rg;
        rg_q += rg * rg;
        yb_s += yb;
        yb_q += yb * yb;
    }
    let mean = sum / n;
    let sd = (sq / n - mean * mean).max(0.0).sqrt();
    let quantile = |q: f64| {
        let target = (q * n).ceil() as u64;
        let mut acc = 0u64;
        for (v, c) in hist.iter().enumerate() {
            acc += *c as u64;
            if acc >= target.max(1) {
                return v as f64;
            }
        }
        255.0
    };
    let black_share = hist[..=black as usize]
        .iter()
        .map(|c| *c as f64)
        .sum::<f64>()
        / n;
    let white_share = hist[white as usize..]
        .iter()
        .map(|c| *c as f64)
        .sum::<f64>()
        / n;
    let (rg_m, yb_m) = (rg_s / n, yb_s / n);
    let rg_sd = (rg_q / n - rg_m * rg_m).max(0.0).sqrt();
    let yb_sd = (yb_q / n - yb_m * yb_m).max(0.0).sqrt();
    let colorfulness =
        (rg_sd * rg_sd + yb_sd * yb_sd).sqrt() + 0.3 * (rg_m * rg_m + yb_m * yb_m).sqrt();
    [
        mean,
        quantile(0.05),
        quantile(0.95),
        black_share,
        white_share,
        sd,
        colorfulness,
    ]
}

impl Operator for Exposure {
    fn kind(&self) -> &'static str {
        "exposure"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest {
            size: FrameSize::ShortSide(self.config.short_side),
            layout: PixelLayout::Rgb24,
            sample_fps: Some(self.config.sample_fps),
            exact_pixels: false,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(Some(Box::new(ExposureSink {
            samples: Samples::new(COLUMNS.len()),
            config: self.config.clone(),
        })))
    }
}

struct ExposureSink {
    samples: Samples,
    config: ExposureConfig,
}

impl FrameSink for ExposureSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        let m = measure(
            frame.pixels,
            self.config.black_level,
            self.config.white_level,
        );
        self.samples.push(frame.index, &m);
        Ok(())
    }
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        for (m, col) in COLUMNS.iter().enumerate() {
            let values = self.samples.per_clip(ctx, m, Agg::Mean);
            ctx.set_clip_column(col.name, values)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_darker_copy_measures_darker() {
        let bright: Vec<u8> = (0..64 * 36)
            .flat_map(|i| [(i % 200) as u8 + 40, 120, 90])
            .collect();
        let dark: Vec<u8> = bright.iter().map(|v| v / 6).collect();
        let (b, d) = (measure(&bright, 16, 235), measure(&dark, 16, 235));
        assert!(d[0] < b[0] / 2.0, "mean luma {} vs {}", d[0], b[0]);
        assert!(d[3] > b[3], "more crushed blacks when darker");
        assert!(d[5] < b[5], "less contrast when darker");
    }

    #[test]
    fn grey_has_no_colourfulness_and_saturated_colour_has_lots() {
        let grey = vec![128u8; 300];
        assert!(measure(&grey, 16, 235)[6] < 1e-9);
        let colour: Vec<u8> = (0..100)
            .flat_map(|i| if i % 2 == 0 { [255, 0, 0] } else { [0, 0, 255] })
            .collect();
        assert!(measure(&colour, 16, 235)[6] > 100.0);
    }
}
