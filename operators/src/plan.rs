//! Runs a DAG's operators over one video with a single decode.
//!
//! Order per video: identify the file, `start` every node in DAG order (probe works here), decode
//! once feeding every frame sink, then `finish` every node in DAG order. A failure or a panic in
//! any step becomes the video's error row; nothing escapes to the caller.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use tracing::info_span;

use crate::clip_stage;
use crate::context::{content_id, text_id, SourceVideo, VideoContext};
use crate::decode::{decode, Deblock, DecodeOptions, Subscription};
use crate::error::{OperatorError, Result};
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, Operator};
use crate::output::Product;

/// One DAG node: its id and the operator built from its parameters.
#[derive(Clone)]
pub struct PlanNode {
    pub id: String,
    pub op: Arc<dyn Operator>,
}

/// The per-video program of a DAG.
#[derive(Clone)]
pub struct VideoPlan {
    nodes: Vec<PlanNode>,
    decode: DecodeOptions,
}

impl VideoPlan {
    /// Checks that every node's inputs come from an earlier node.
    pub fn new(nodes: Vec<PlanNode>, decode: DecodeOptions) -> Result<Self> {
        let mut have: Vec<Product> = Vec::new();
        for node in &nodes {
            let outputs = node.op.outputs();
            for need in &outputs.needs {
                if !have.contains(need) {
                    return Err(OperatorError::MissingInput {
                        op: node.id.clone(),
                        needs: crate::registry::missing_input_hint(*need),
                    });
                }
            }
            have.extend(outputs.produces);
        }
        Ok(VideoPlan { nodes, decode })
    }

    pub fn nodes(&self) -> &[PlanNode] {
        &self.nodes
    }

    /// Runs every node over `source`, then the clip stage. Never fails: problems end up in the
    /// context's error.
    pub fn run(&self, source: SourceVideo) -> VideoContext {
        let mut ctx = self.analyse(source);
        // Rejected clips count too: a preview node may want them (`rejected = true`) even when
        // a video keeps no clip at all.
        if ctx.is_ok() && !(ctx.clips.is_empty() && ctx.rejections.is_empty()) {
            self.clip_stage(&mut ctx, None);
        }
        ctx
    }

    /// Every node's per-video analysis (one decode), without the clip stage.
    pub fn analyse(&self, source: SourceVideo) -> VideoContext {
        let _span = info_span!("video", uri = %source.uri).entered();
        let (video_id, size) = match std::fs::metadata(&source.path) {
            Ok(m) if m.is_file() => match content_id(&source.path) {
                Ok(id) => (Ok(id), m.len()),
                Err(e) => (Err(format!("{}: cannot read: {e}", source.uri)), m.len()),
            },
            Ok(_) => (Err(format!("{}: not a regular file", source.uri)), 0),
            Err(e) => (Err(format!("{}: cannot read: {e}", source.uri)), 0),
        };
        let mut ctx = match video_id {
            Ok(id) => VideoContext::new(source, id, size),
            Err(reason) => {
                let id = text_id(&format!("uri:{}", source.uri));
                let mut ctx = VideoContext::new(source, id, size);
                ctx.fail(reason);
                return ctx;
            }
        };

        let mut sinks: Vec<Option<TimedSink>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            if !ctx.is_ok() {
                sinks.push(None);
                continue;
            }
            let t = Instant::now();
            ctx.node = node.id.clone();
            let started = guarded(&node.id, || node.op.start(&mut ctx));
            ctx.timings
                .push((node.id.clone(), t.elapsed().as_secs_f64()));
            match started {
                Ok(sink) => sinks.push(sink.map(|s| TimedSink {
                    node: node.id.clone(),
                    sink: s,
                    seconds: 0.0,
                })),
                Err(e) => {
                    ctx.fail(e.to_string());
                    sinks.push(None);
                }
            }
        }
        if !ctx.is_ok() {
            return ctx;
        }

        if sinks.iter().any(Option::is_some) {
            let requests: Vec<Option<FrameRequest>> =
                self.nodes.iter().map(|n| n.op.frame_request()).collect();
            let opts = DecodeOptions {
                deblock: Deblock::AsNeeded,
                ..self.decode.clone()
            };
            let mut subs: Vec<Subscription<'_>> = Vec::new();
            for (sink, request) in sinks.iter_mut().zip(&requests) {
                if let (Some(sink), Some(request)) = (sink.as_mut(), request) {
                    subs.push(Subscription {
                        request: *request,
                        sink,
                    });
                }
            }
            let t = Instant::now();
            let decoded = guarded("decode", || decode(&ctx.source.path, &mut subs, &opts));
            let total = t.elapsed().as_secs_f64();
            drop(subs);
            let analysis: f64 = sinks.iter().flatten().map(|s| s.seconds).sum();
            ctx.timings
                .push(("decode".into(), (total - analysis).max(0.0)));
            match decoded {
                Ok(report) => {
                    ctx.frame_times = report.frame_times;
                    ctx.frame_pts = report.frame_pts;
                    ctx.key_frames = report.key_frames;
                }
                Err(OperatorError::Limit { limit, .. }) => {
                    ctx.node = "decode".into();
                    ctx.reject(limit);
                    return ctx;
                }
                Err(e) => {
                    ctx.fail(e.to_string());
                    return ctx;
                }
            }
        }

        for (node, sink) in self.nodes.iter().zip(sinks) {
            if !ctx.is_ok() {
                break;
            }
            let t = Instant::now();
            ctx.node = node.id.clone();
            let mut analysis = 0.0;
            let finished = guarded(&node.id, || {
                if let Some(sink) = sink {
                    analysis = sink.seconds;
                    sink.sink.finish(&mut ctx)?;
                }
                node.op.finish(&mut ctx)
            });
            let secs = t.elapsed().as_secs_f64() + analysis;
            match ctx.timings.iter_mut().find(|(id, _)| id == &node.id) {
                Some(entry) => entry.1 += secs,
                None => ctx.timings.push((node.id.clone(), secs)),
            }
            if let Err(e) = finished {
                ctx.fail(e.to_string());
            }
        }
        ctx
    }

    /// The clip stage: one decode of the kept clips' ranges for the nodes that asked for it
    /// (only those named in `only`, when given: benchmarks time one operator).
    pub fn clip_stage(&self, ctx: &mut VideoContext, only: Option<&[&str]>) {
        let mut sinks = Vec::new();
        for node in &self.nodes {
            if only.is_some_and(|ids| !ids.contains(&node.id.as_str())) {
                continue;
            }
            ctx.node = node.id.clone();
            match guarded(&node.id, || node.op.clip_sink(ctx)) {
                Ok(Some(sink)) => sinks.push((node.id.clone(), sink)),
                Ok(None) => {}
                Err(e) => {
                    ctx.fail(e.to_string());
                    return;
                }
            }
        }
        if sinks.is_empty() {
            return;
        }
        let t = Instant::now();
        let opts = DecodeOptions {
            deblock: Deblock::Always,
            ..self.decode.clone()
        };
        if let Err(e) = guarded("clip_stage", || clip_stage::run(ctx, sinks, &opts)) {
            ctx.fail(e.to_string());
        }
        ctx.timings
            .push(("clip_stage".into(), t.elapsed().as_secs_f64()));
    }
}

/// Times the analysis work done inside the decode loop, per node, and turns a panic in it into
/// an error naming the node.
struct TimedSink {
    node: String,
    sink: Box<dyn FrameSink>,
    seconds: f64,
}

impl FrameSink for TimedSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        let t = Instant::now();
        let r = guarded(&self.node, || self.sink.frame(frame));
        self.seconds += t.elapsed().as_secs_f64();
        r
    }
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        self.sink.finish(ctx)
    }
}

/// Runs `f`, turning a panic into an error that names the step.
fn guarded<T>(step: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(OperatorError::Failed {
            op: step.to_string(),
            path: Default::default(),
            reason: format!("panicked: {}", panic_message(payload.as_ref())),
        }),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
