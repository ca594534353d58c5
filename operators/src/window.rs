//! `window`: turns shots into training clips of bounded length.
//!
//! Too-short shots are dropped, long ones split evenly (never across a boundary), and a few
//! frames are trimmed at each hard-cut edge so no clip starts or ends on a frame that may carry
//! the neighbouring shot (encoders smear cuts across a frame).

use serde::Deserialize;
use tracing::debug_span;

use crate::context::{text_id, BoundaryKind, Clip, VideoContext};
use crate::error::{OperatorError, Result};
use crate::operator::{FrameSink, Operator};
use crate::output::{Outputs, Product};

/// Parameters of the `window` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Shortest clip kept, seconds.
    pub min_s: f64,
    /// Longest clip, seconds; longer shots are split into equal parts no longer than this.
    pub max_s: f64,
    /// Frames dropped at a shot edge that is a hard cut.
    pub trim_cut_frames: u64,
    /// Frames dropped at a shot edge that is a fade or dissolve (beyond the transition itself).
    pub trim_gradual_frames: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            min_s: 3.0,
            max_s: 12.0,
            trim_cut_frames: 2,
            trim_gradual_frames: 0,
        }
    }
}

/// `window` turns shots into clips and brings the `clips` and `rejected_clips` tables.
pub fn outputs() -> Outputs {
    let (tables, columns) = crate::rows::window_tables();
    let mut o = Outputs::default()
        .needs(&[Product::SHOTS])
        .produces(&[Product::CLIPS])
        .columns(&columns);
    o.tables = tables;
    o
}

pub struct Window {
    config: WindowConfig,
}

impl Window {
    pub fn new(config: WindowConfig) -> std::result::Result<Self, OperatorError> {
        let c = &config;
        if !(c.min_s >= 0.0 && c.max_s > 0.0 && c.min_s <= c.max_s) {
            return Err(OperatorError::Config {
                op: "window".into(),
                message: format!(
                    "need 0 <= min_s <= max_s and max_s > 0 (got min_s = {}, max_s = {})",
                    c.min_s, c.max_s
                ),
            });
        }
        Ok(Window { config })
    }
}

impl Operator for Window {
    fn kind(&self) -> &'static str {
        "window"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn finish(&self, ctx: &mut VideoContext) -> Result<()> {
        let _span = debug_span!("window", uri = %ctx.source.uri).entered();
        ctx.clips = clips_of(ctx, &self.config);
        Ok(())
    }
}

fn trim_for(kind: Option<BoundaryKind>, cfg: &WindowConfig) -> u64 {
    match kind {
        None => 0,
        Some(BoundaryKind::Cut) => cfg.trim_cut_frames,
        Some(_) => cfg.trim_gradual_frames,
    }
}

/// The clips of every shot in `ctx`.
pub fn clips_of(ctx: &VideoContext, cfg: &WindowConfig) -> Vec<Clip> {
    let mut clips = Vec::new();
    for shot in &ctx.shots {
        let start = shot.start_frame + trim_for(shot.boundary_in, cfg);
        let end = shot
            .end_frame
            .saturating_sub(trim_for(shot.boundary_out, cfg));
        if end <= start {
            continue;
        }
        let duration = ctx.time_of(end) - ctx.time_of(start);
        if duration < cfg.min_s || duration <= 0.0 {
            continue;
        }
        let parts = (duration / cfg.max_s).ceil().max(1.0) as u64;
        let frames = end - start;
        let parts = parts.min(frames);
        for p in 0..parts {
            let a = start + frames * p / parts;
            let b = start + frames * (p + 1) / parts;
            let (start_s, end_s) = (ctx.time_of(a), ctx.time_of(b));
            if end_s - start_s < cfg.min_s {
                continue;
            }
            clips.push(Clip {
                clip_id: text_id(&format!("{}:{}:{}", ctx.video_id, a, b)),
                shot_index: shot.index,
                start_frame: a,
                end_frame: b,
                start_s,
                end_s,
                boundary_in: if p == 0 { shot.boundary_in } else { None },
                boundary_out: if p + 1 == parts {
                    shot.boundary_out
                } else {
                    None
                },
            });
        }
    }
    clips
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Shot, SourceVideo};

    fn ctx_with(shots: Vec<Shot>, frames: usize, fps: f64) -> VideoContext {
        let mut ctx = VideoContext::new(
            SourceVideo {
                uri: "t.mp4".into(),
                path: "t.mp4".into(),
            },
            "vid".into(),
            1,
        );
        ctx.frame_times = (0..frames).map(|i| i as f64 / fps).collect();
        ctx.shots = shots;
        ctx
    }

    fn shot(index: u32, a: u64, b: u64, i: Option<BoundaryKind>, o: Option<BoundaryKind>) -> Shot {
        Shot {
            index,
            start_frame: a,
            end_frame: b,
            boundary_in: i,
            boundary_out: o,
        }
    }

    #[test]
    fn short_shots_are_dropped_and_long_ones_split_evenly() {
        let cut = Some(BoundaryKind::Cut);
        // 25 fps: shot 0 is 2 s (dropped at min 3 s), shot 1 is 30 s (split into 3 of 10 s).
        let ctx = ctx_with(
            vec![shot(0, 0, 50, None, cut), shot(1, 50, 800, cut, None)],
            800,
            25.0,
        );
        let cfg = WindowConfig {
            min_s: 3.0,
            max_s: 12.0,
            trim_cut_frames: 0,
            trim_gradual_frames: 0,
        };
        let clips = clips_of(&ctx, &cfg);
        assert_eq!(clips.len(), 3);
        assert!(clips.iter().all(|c| c.shot_index == 1));
        assert_eq!(clips[0].start_frame, 50);
        assert_eq!(clips[2].end_frame, 800);
        for c in &clips {
            assert!(
                c.duration_s() <= 12.0 + 1e-9 && c.duration_s() >= 9.9,
                "{c:?}"
            );
        }
    }

    #[test]
    fn cut_edges_are_trimmed() {
        let cut = Some(BoundaryKind::Cut);
        let ctx = ctx_with(vec![shot(0, 100, 300, cut, cut)], 400, 25.0);
        let cfg = WindowConfig {
            min_s: 1.0,
            max_s: 12.0,
            trim_cut_frames: 3,
            trim_gradual_frames: 0,
        };
        let clips = clips_of(&ctx, &cfg);
        assert_eq!((clips[0].start_frame, clips[0].end_frame), (103, 297));
    }

    #[test]
    fn clips_never_cross_shot_ends() {
        let cut = Some(BoundaryKind::Cut);
        let ctx = ctx_with(
            vec![shot(0, 0, 333, None, cut), shot(1, 333, 1000, cut, None)],
            1000,
            25.0,
        );
        let clips = clips_of(&ctx, &WindowConfig::default());
        for c in &clips {
            let s = &ctx.shots[c.shot_index as usize];
            assert!(c.start_frame >= s.start_frame && c.end_frame <= s.end_frame);
        }
    }
}
