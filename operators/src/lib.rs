//! kelp-operators: everything that knows about video.
//!
//! What lives here: the [`Operator`] trait every curation step implements, the one decoder
//! ([`decode`]) that turns a video into the shared low-resolution frame stream all frame-level
//! analyses subscribe to, the operators themselves (one module each: [`probe`], [`shots`],
//! [`window`]), the registry that builds an operator from its DAG parameters, and the per-video
//! [`plan`] that runs a list of operators over one source with a single decode.
//!
//! What must not live here: scheduling, threads, Arrow, Parquet or object storage. Those belong
//! to `kelp-pipeline`, which calls [`plan::VideoPlan::run`] once per source video.

pub mod attributes;
pub mod context;
pub mod crop;
pub mod cv;
pub mod decode;
pub mod error;
pub mod exposure;
pub mod models;
pub mod motion;
pub mod nr_quality;
pub mod operator;
pub mod plan;
pub mod probe;
pub mod registry;
pub mod safety;
pub mod samples;
pub mod sharpness;
pub mod shots;
pub mod text;
pub mod window;

pub use context::{
    Boundary, BoundaryKind, Clip, ClipColumn, ProbeInfo, Rejection, Shot, SourceVideo,
    VideoContext, VideoStatus,
};
pub use error::OperatorError;
pub use operator::{
    AnalysisFrame, ColumnSpec, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout, Product,
    Table, ValueKind,
};
pub use plan::VideoPlan;
