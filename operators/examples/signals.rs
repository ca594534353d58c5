//! Developer tool: prints the shot detector's per-frame signals of one video as CSV, to tune
//! thresholds against footage. `cargo run -p kelp-operators --example signals -- VIDEO > s.csv`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kelp_operators::decode::{decode, Deblock, DecodeOptions, Subscription};
use kelp_operators::operator::{AnalysisFrame, FrameRequest, FrameSink};
use kelp_operators::shots::features::SignalExtractor;
use kelp_operators::shots::ShotsConfig;
use kelp_operators::VideoContext;

struct Collect(Option<SignalExtractor>);

impl FrameSink for Collect {
    fn frame(&mut self, f: &AnalysisFrame<'_>) -> kelp_operators::error::Result<()> {
        if let Some(x) = self.0.as_mut() {
            x.push(f.pixels, f.width as usize);
        }
        Ok(())
    }
    fn finish(self: Box<Self>, _ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        Ok(())
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: signals VIDEO");
    let fps: f64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(25.0);
    let cfg = ShotsConfig::default();
    let k = cfg.half_window_frames(fps);
    let mut sink = Collect(Some(SignalExtractor::new(k, cfg.flash_frames)));
    let req = FrameRequest::rgb(cfg.analysis_width, cfg.analysis_height);
    let mut subs = [Subscription {
        request: req,
        sink: &mut sink,
    }];
    let opts = DecodeOptions {
        deblock: Deblock::Never,
        ..Default::default()
    };
    let report = decode(std::path::Path::new(&path), &mut subs, &opts).expect("decode");
    let signals = sink.0.take().expect("extractor").finish();
    println!(
        "frame,time,content,hist,luma,luma_sd,recover,revisit,long_diff,blend_residual,long_hist"
    );
    for (i, s) in signals.iter().enumerate() {
        println!(
            "{i},{:.3},{:.2},{:.3},{:.1},{:.1},{:.2},{:.2},{:.2},{:.2},{:.3}",
            report.frame_times[i],
            s.content,
            s.hist,
            s.luma,
            s.luma_sd,
            s.recover,
            s.revisit,
            s.long_diff,
            s.blend_residual,
            s.long_hist
        );
    }
}
