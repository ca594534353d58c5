//! The trait every curation operator implements, and the frame stream it may subscribe to.
//!
//! A DAG node becomes one `Operator`. For each video the plan calls, in DAG order,
//! [`Operator::start`] (cheap per-video work such as probing; an operator that analyses pixels
//! returns a [`FrameSink`] here), then runs the one decoder feeding every sink, then in DAG order
//! hands each sink its [`FrameSink::finish`] and calls [`Operator::finish`]. Last, operators that
//! work on the kept clips' pictures return a [`ClipSink`] from [`Operator::clip_sink`], fed by the
//! clip stage's one decode of the kept ranges.

use crate::clip_stage::ClipSink;
use crate::context::VideoContext;
use crate::error::Result;
use crate::output::Outputs;
use crate::remote::{RemoteJob, RemoteSpec};

/// The picture size an analysis wants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameSize {
    /// Exactly this size (the whole picture scaled; aspect not kept).
    Fixed { width: u32, height: u32 },
    /// The short side scaled to this many pixels, aspect kept (sizes rounded to even).
    ShortSide(u32),
    /// The coded size of the video.
    Native,
}

impl FrameSize {
    /// The concrete size for a source of `w`×`h`.
    pub fn resolve(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            FrameSize::Fixed { width, height } => (width.max(1), height.max(1)),
            FrameSize::Native => (w.max(1), h.max(1)),
            FrameSize::ShortSide(n) => {
                let (w, h) = (w.max(1) as f64, h.max(1) as f64);
                let scale = n.max(2) as f64 / w.min(h);
                let even = |x: f64| (((x * scale) / 2.0).round() as u32 * 2).max(2);
                (even(w), even(h))
            }
        }
    }
}

/// Pixel layout of analysis frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelLayout {
    /// Packed R, G, B bytes.
    Rgb24,
    /// Luma only, one byte a pixel (full range).
    Gray8,
}

impl PixelLayout {
    pub fn channels(self) -> usize {
        match self {
            PixelLayout::Rgb24 => 3,
            PixelLayout::Gray8 => 1,
        }
    }
}

/// The frames an analysis wants from the shared decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRequest {
    pub size: FrameSize,
    pub layout: PixelLayout,
    /// Frames per second to deliver; `None` delivers every decoded frame.
    pub sample_fps: Option<f64>,
    /// True when the analysis measures fine detail and needs the decoder's in-loop filtering.
    /// A DAG's decode filters only where such a subscription needs it
    /// ([`crate::decode::Deblock::AsNeeded`]): nowhere when none does (about 1.3x faster), and
    /// for a sampled one, the reference frames and the frames it may receive.
    pub exact_pixels: bool,
}

impl FrameRequest {
    /// Every frame, RGB, at a fixed size.
    pub fn rgb(width: u32, height: u32) -> Self {
        FrameRequest {
            size: FrameSize::Fixed { width, height },
            layout: PixelLayout::Rgb24,
            sample_fps: None,
            exact_pixels: false,
        }
    }
}

/// One scaled frame handed to a sink: `width * height * channels` bytes, rows packed.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisFrame<'a> {
    /// Index among all decoded frames of the video (presentation order).
    pub index: u64,
    pub time_s: f64,
    pub width: u32,
    pub height: u32,
    pub layout: PixelLayout,
    pub pixels: &'a [u8],
}

/// Per-video state of an analysis fed by the decoder.
pub trait FrameSink: Send {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()>;
    /// Called once after the last frame, in DAG order, to write results into the context.
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()>;
}

/// A curation step, built from a DAG node's parameters by the registry.
pub trait Operator: Send + Sync {
    /// The registry name (`probe`, `shots`, ...).
    fn kind(&self) -> &'static str;
    /// What this node needs, makes, and writes (the same for every instance of its kind, so the
    /// registry can list it without building one).
    fn outputs(&self) -> Outputs;
    /// The frames this operator analyses, if any.
    fn frame_request(&self) -> Option<FrameRequest> {
        None
    }
    /// Per-video work before decoding; returns a sink when the operator analyses frames.
    fn start(&self, ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>>;
    /// Per-video work after decoding (and after this operator's sink finished).
    fn finish(&self, _ctx: &mut VideoContext) -> Result<()> {
        Ok(())
    }
    /// After every node has finished: a sink for the kept clips' pictures, when this operator
    /// works on them (the clip stage decodes only when some node returns one).
    fn clip_sink(&self, _ctx: &VideoContext) -> Result<Option<Box<dyn ClipSink>>> {
        Ok(None)
    }
    /// The remote service this node calls, when it calls one: the pipeline builds one client for
    /// it per run and sends the [`crate::remote::RemoteCall`]s it leaves in a video's context.
    fn remote(&self) -> Option<RemoteSpec> {
        None
    }
    /// The parameters that decide this node's rows, from those the DAG gives it: a run can be
    /// resumed only with the same ones. A node that calls a service leaves out those that only
    /// say how to reach it (endpoint, key variable, concurrency, timeouts, budgets), so a moved
    /// or restarted server does not stop `kelp run --resume`.
    fn row_params(&self, params: &toml::Table) -> toml::Table {
        params.clone()
    }
    /// Rebuilds a failed call from what [`RemoteJob::saved`] kept, so a later run can retry it.
    fn resume_job(&self, _saved: &[u8]) -> std::result::Result<Box<dyn RemoteJob>, String> {
        Err(format!("a `{}` node makes no remote calls", self.kind()))
    }
}
