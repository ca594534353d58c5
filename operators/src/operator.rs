//! The trait every curation operator implements, and the frame stream it may subscribe to.
//!
//! A DAG node becomes one `Operator`. For each video the plan calls, in DAG order,
//! [`Operator::start`] (cheap per-video work such as probing; an operator that analyses pixels
//! returns a [`FrameSink`] here), then runs the one decoder feeding every sink, then in DAG order
//! hands each sink its [`FrameSink::finish`] and calls [`Operator::finish`].

use crate::context::VideoContext;
use crate::error::Result;

/// What an operator reads from, or adds to, a [`VideoContext`]. Validation uses these to check
/// that every node's inputs are produced by a node before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    /// Container/stream facts (`probe`).
    Probe,
    /// Shot boundaries and shots (`shots`).
    Shots,
    /// Clip rows (`window`).
    Clips,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Probe => "probe results (add a `probe` node first)",
            Product::Shots => "shots (add a `shots` node before it)",
            Product::Clips => "clips (add a `window` node before it)",
        }
    }
}

/// Which table an operator column belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Videos,
    Clips,
}

/// How a column's values (held as `f64` in the context) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Float,
    Int,
    Bool,
}

/// A column an operator adds to the dataset, with its unit and range for the schema docs.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub table: Table,
    pub name: &'static str,
    pub kind: ValueKind,
    /// Unit and range, then meaning.
    pub doc: &'static str,
}

impl ColumnSpec {
    pub const fn clip(name: &'static str, kind: ValueKind, doc: &'static str) -> Self {
        ColumnSpec {
            table: Table::Clips,
            name,
            kind,
            doc,
        }
    }
    pub const fn video(name: &'static str, kind: ValueKind, doc: &'static str) -> Self {
        ColumnSpec {
            table: Table::Videos,
            name,
            kind,
            doc,
        }
    }
}

/// The frames an analysis wants from the shared decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRequest {
    /// Analysis size in pixels (the whole picture is scaled to it, aspect not kept).
    pub width: u32,
    pub height: u32,
    /// Frames per second to deliver; `None` delivers every decoded frame.
    pub sample_fps: Option<f64>,
    /// True when the analysis measures fine detail and needs the decoder's in-loop filtering;
    /// when no subscriber needs it, the decoder skips the loop filter (about 1.5x faster).
    pub exact_pixels: bool,
}

/// One scaled frame handed to a sink: packed RGB24, `width * height * 3` bytes.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisFrame<'a> {
    /// Index among all decoded frames of the video (presentation order).
    pub index: u64,
    pub time_s: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: &'a [u8],
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
    /// What must exist before this operator runs.
    fn needs(&self) -> &'static [Product] {
        &[]
    }
    /// What this operator adds.
    fn produces(&self) -> &'static [Product] {
        &[]
    }
    /// The dataset columns this operator adds.
    fn columns(&self) -> Vec<ColumnSpec> {
        Vec::new()
    }
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
}
