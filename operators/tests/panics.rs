//! A panic inside an operator on one input becomes that input's error row, naming the operator;
//! the next video is processed normally.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

mod common;

use common::ffmpeg;
use kelp_operators::decode::DecodeOptions;
use kelp_operators::operator::{AnalysisFrame, FrameRequest, FrameSink, Operator};
use kelp_operators::plan::{PlanNode, VideoPlan};
use kelp_operators::probe::{Probe, ProbeConfig};
use kelp_operators::{Outputs, Product};
use kelp_operators::{SourceVideo, VideoContext, VideoStatus};

/// Panics on frame 10 of any video whose file name contains "boom".
struct Boom;

struct BoomSink {
    armed: bool,
}

impl FrameSink for BoomSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> kelp_operators::error::Result<()> {
        if self.armed && frame.index == 10 {
            panic!("injected failure at frame {}", frame.index);
        }
        Ok(())
    }
    fn finish(self: Box<Self>, _ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        Ok(())
    }
}

impl Operator for Boom {
    fn kind(&self) -> &'static str {
        "boom"
    }
    fn outputs(&self) -> Outputs {
        Outputs::default().needs(&[Product::PROBE])
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest::rgb(32, 18))
    }
    fn start(
        &self,
        ctx: &mut VideoContext,
    ) -> kelp_operators::error::Result<Option<Box<dyn FrameSink>>> {
        Ok(Some(Box::new(BoomSink {
            armed: ctx.source.uri.contains("boom"),
        })))
    }
}

/// Panics in `finish` (after the decode) for "late" videos.
struct LateBoom;

impl Operator for LateBoom {
    fn kind(&self) -> &'static str {
        "late"
    }
    fn outputs(&self) -> Outputs {
        Outputs::default()
    }
    fn start(
        &self,
        _ctx: &mut VideoContext,
    ) -> kelp_operators::error::Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn finish(&self, ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        if ctx.source.uri.contains("late") {
            let empty: Vec<u8> = Vec::new();
            let _ = empty[3]; // an index out of bounds, as a bug would
        }
        Ok(())
    }
}

fn video(dir: &std::path::Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=25:duration=1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        p.to_str().unwrap(),
    ]);
    p
}

#[test]
fn panics_become_error_rows_naming_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let plan = VideoPlan::new(
        vec![
            PlanNode {
                id: "probe".into(),
                op: Arc::new(Probe::new(ProbeConfig::default())),
            },
            PlanNode {
                id: "kaboom".into(),
                op: Arc::new(Boom),
            },
            PlanNode {
                id: "later".into(),
                op: Arc::new(LateBoom),
            },
        ],
        DecodeOptions::default(),
    )
    .unwrap();
    let run = |name: &str| {
        let p = video(dir.path(), name);
        plan.run(SourceVideo {
            uri: p.display().to_string(),
            path: p,
        })
    };
    let boom = run("boom.mp4");
    assert_eq!(boom.status, VideoStatus::Error);
    let e = boom.error.unwrap();
    assert!(
        e.contains("operator \"kaboom\"") && e.contains("panicked: injected failure at frame 10"),
        "{e}"
    );

    let late = run("late.mp4");
    let e = late.error.unwrap();
    assert!(
        e.contains("operator \"later\"") && e.contains("index out of bounds"),
        "{e}"
    );

    let fine = run("fine.mp4");
    assert_eq!(fine.status, VideoStatus::Ok, "{:?}", fine.error);
    assert_eq!(fine.frame_times.len(), 25);
}
