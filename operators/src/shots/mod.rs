//! `shots`: shot boundary detection (hard cuts, fades, dissolves) on the shared frame stream.
//!
//! [`features`] turns each small frame into a few numbers as it streams past; [`detect`] decides
//! where the boundaries are once the whole video has been seen. `kelp shots <file>` runs this same
//! operator through [`crate::plan::VideoPlan`].

pub mod detect;
pub mod eval;
pub mod features;
pub mod report;

use tracing::debug_span;

pub use detect::{Detection, DetectorConfig as ShotsConfig};
use features::SignalExtractor;

use crate::context::VideoContext;
use crate::error::Result;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, Operator};
use crate::output::{Outputs, Product};

/// The per-video plan of `kelp shots` and the benchmark: probe, then shots, one decode.
pub fn plan(config: ShotsConfig, decode_threads: usize) -> crate::plan::VideoPlan {
    plan_with(
        config,
        crate::decode::DecodeOptions {
            threads: decode_threads,
            ..Default::default()
        },
    )
}

/// Like [`plan`], with explicit decode options (limits).
pub fn plan_with(
    config: ShotsConfig,
    decode: crate::decode::DecodeOptions,
) -> crate::plan::VideoPlan {
    use std::sync::Arc;
    let nodes = vec![
        crate::plan::PlanNode {
            id: "probe".into(),
            op: Arc::new(crate::probe::Probe::new(Default::default())),
        },
        crate::plan::PlanNode {
            id: "shots".into(),
            op: Arc::new(Shots::new(config)),
        },
    ];
    // Probe produces what shots needs, so the plan is always valid.
    match crate::plan::VideoPlan::new(nodes, decode.clone()) {
        Ok(p) => p,
        Err(_) => unreachable!("probe precedes shots"),
    }
}

/// `shots` reads the probe results, makes shots and brings the `boundaries` table.
pub fn outputs() -> Outputs {
    let (table, count) = crate::rows::shots_tables();
    Outputs::default()
        .needs(&[Product::PROBE])
        .produces(&[Product::SHOTS])
        .table(table)
        .columns(&[count])
}

pub struct Shots {
    config: ShotsConfig,
}

impl Shots {
    pub fn new(config: ShotsConfig) -> Self {
        Shots { config }
    }
}

impl Operator for Shots {
    fn kind(&self) -> &'static str {
        "shots"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest {
            exact_pixels: !self.config.fast_decode,
            ..FrameRequest::rgb(self.config.analysis_width, self.config.analysis_height)
        })
    }
    fn start(&self, ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        let fps = ctx
            .probe
            .as_ref()
            .map(|p| p.fps)
            .filter(|f| *f > 0.0)
            .unwrap_or(25.0);
        let k = self.config.half_window_frames(fps);
        Ok(Some(Box::new(ShotsSink {
            extractor: SignalExtractor::new(k, self.config.flash_frames),
            config: self.config.clone(),
        })))
    }
}

struct ShotsSink {
    extractor: SignalExtractor,
    config: ShotsConfig,
}

impl FrameSink for ShotsSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        self.extractor.push(frame.pixels, frame.width as usize);
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        let _span = debug_span!("shots.detect", uri = %ctx.source.uri).entered();
        let k = self.extractor.k();
        let signals = self.extractor.finish();
        let fps = 1.0 / ctx.mean_frame_step();
        let detection = detect::detect(&signals, &ctx.frame_times, fps, k, &self.config);
        ctx.boundaries = detection.boundaries;
        ctx.shots = detection.shots;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
