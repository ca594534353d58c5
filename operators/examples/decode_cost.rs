//! Developer tool: splits shot detection's cost into decode, scaling and analysis.
//! `cargo run -p kelp-operators --example decode_cost -- VIDEO...`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kelp_operators::decode::{decode, Deblock, DecodeOptions, Subscription};
use kelp_operators::operator::{AnalysisFrame, FrameRequest, FrameSink};
use kelp_operators::shots::features::SignalExtractor;
use kelp_operators::VideoContext;

struct Nothing;
impl FrameSink for Nothing {
    fn frame(&mut self, _f: &AnalysisFrame<'_>) -> kelp_operators::error::Result<()> {
        Ok(())
    }
    fn finish(self: Box<Self>, _ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        Ok(())
    }
}

struct Extract(SignalExtractor);
impl FrameSink for Extract {
    fn frame(&mut self, f: &AnalysisFrame<'_>) -> kelp_operators::error::Result<()> {
        self.0.push(f.pixels, f.width as usize);
        Ok(())
    }
    fn finish(self: Box<Self>, _ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        Ok(())
    }
}

fn time(label: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    println!("  {label:<36} {:.3} s", t.elapsed().as_secs_f64());
}

fn main() {
    let req = FrameRequest::rgb(64, 36);
    for path in std::env::args().skip(1) {
        let p = std::path::Path::new(&path);
        println!("{path}");
        for deblock in [Deblock::Always, Deblock::Never] {
            let opts = DecodeOptions {
                deblock,
                ..Default::default()
            };
            time(&format!("decode only (deblock {deblock:?})"), || {
                decode(p, &mut [], &opts).expect("decode");
            });
        }
        let opts = DecodeOptions {
            deblock: Deblock::Never,
            ..Default::default()
        };
        time("decode + scale 64x36", || {
            let mut sink = Nothing;
            decode(
                p,
                &mut [Subscription {
                    request: req,
                    sink: &mut sink,
                }],
                &opts,
            )
            .expect("decode");
        });
        time("decode + scale + shot signals", || {
            let mut sink = Extract(SignalExtractor::new(9, 3));
            decode(
                p,
                &mut [Subscription {
                    request: req,
                    sink: &mut sink,
                }],
                &opts,
            )
            .expect("decode");
        });
    }
}
