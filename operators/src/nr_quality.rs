//! `nr_quality`: BRISQUE no-reference image quality (OpenCV's `quality` module with its LIVE
//! model, from Debian's opencv-doc), a complement to sharpness that also sees noise, blocking and
//! ringing. Frames are scaled to a fixed short side so scores compare across resolutions.

use std::path::PathBuf;

use opencv::core::Ptr;

use opencv::quality::QualityBRISQUE;
use serde::Deserialize;

use crate::context::VideoContext;
use crate::cv::{cv_error, frame_mat};
use crate::error::Result;
use crate::models::model_file;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product};
use crate::samples::{Agg, Samples};

/// Parameters of the `nr_quality` node.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NrQualityConfig {
    pub sample_fps: Option<f64>,
    pub short_side: Option<u32>,
    /// Paths of `brisque_model_live.yml` and `brisque_range_live.yml` (default: the models folder).
    pub model: Option<String>,
    pub range: Option<String>,
}

const COLUMNS: &[ColumnSpec] = &[ColumnSpec::clip(
    "brisque",
    ColumnType::Float64,
    "0–100, lower is better: mean BRISQUE score over sampled frames (360-px short side)",
)];

/// What this operator needs and writes (reads clips).
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .columns(COLUMNS)
}

pub struct NrQuality {
    sample_fps: f64,
    short_side: u32,
    model: PathBuf,
    range: PathBuf,
}

impl NrQuality {
    /// Fails, naming the file, when the model is not installed.
    pub fn new(config: NrQualityConfig) -> std::result::Result<Self, String> {
        Ok(NrQuality {
            sample_fps: config.sample_fps.unwrap_or(1.0),
            short_side: config.short_side.unwrap_or(360),
            model: model_file(
                config.model.as_deref(),
                "brisque_model_live.yml",
                "nr_quality",
            )?,
            range: model_file(
                config.range.as_deref(),
                "brisque_range_live.yml",
                "nr_quality",
            )?,
        })
    }
}

impl Operator for NrQuality {
    fn kind(&self) -> &'static str {
        "nr_quality"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        // BRISQUE measures compression artifacts: it needs the decoder's real output.
        Some(FrameRequest {
            size: FrameSize::ShortSide(self.short_side),
            layout: PixelLayout::Gray8,
            sample_fps: Some(self.sample_fps),
            exact_pixels: true,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        let model = QualityBRISQUE::create(
            self.model.to_string_lossy().as_ref(),
            self.range.to_string_lossy().as_ref(),
        )
        .map_err(|e| cv_error("nr_quality", e))?;
        Ok(Some(Box::new(NrSink {
            model,
            samples: Samples::new(1),
        })))
    }
}

struct NrSink {
    model: Ptr<QualityBRISQUE>,
    samples: Samples,
}

impl FrameSink for NrSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        let mat = frame_mat(frame).map_err(|e| cv_error("nr_quality", e))?;
        let score = opencv::prelude::QualityBRISQUETrait::compute(&mut self.model, &mat)
            .map_err(|e| cv_error("nr_quality", e))?;
        self.samples.push(frame.index, &[score[0]]);
        Ok(())
    }
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        ctx.set_clip_column("brisque", self.samples.per_clip(ctx, 0, Agg::Mean))?;
        Ok(())
    }
}
