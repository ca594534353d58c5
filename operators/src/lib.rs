//! kelp-operators: everything that knows about video.
//!
//! What lives here: the [`Operator`] trait every curation step implements, the one decoder
//! ([`decode`]) that turns a video into the shared low-resolution frame stream all frame-level
//! analyses subscribe to, the operators themselves (one module each: [`probe`], [`shots`],
//! [`window`], the quality scores), what each declares it needs and writes with typed values
//! ([`output`]), the built-in tables and a finished video's rows ([`rows`]), the registry that
//! builds an operator from its DAG parameters, the per-video [`plan`] that runs a list of
//! operators over one source with a single decode, the shots benchmark ([`bench`]), and what a
//! node that calls a remote service (`caption` with a VLM server) leaves for the pipeline to send
//! ([`remote`]: request bodies and the jobs that read the replies).
//!
//! What must not live here: scheduling, threads, Arrow, Parquet, object storage or the network.
//! Those belong to `kelp-pipeline`, which calls [`plan::VideoPlan::run`] once per source video
//! and sends the remote calls it leaves.

pub mod attributes;
pub mod bench;
pub mod bucket;
pub mod caption;
pub mod clip_stage;
pub mod context;
pub mod crop;
pub mod cv;
pub mod decode;
pub mod dedup;
pub mod error;
pub mod exposure;
pub mod media;
pub mod models;
pub mod motion;
pub mod nr_quality;
pub mod operator;
pub mod output;
pub mod pdq;
pub mod plan;
pub mod probe;
pub mod registry;
pub mod remote;
pub mod rows;
pub mod safety;
pub mod samples;
pub mod sharpness;
pub mod shots;
pub mod signature;
pub mod text;
pub mod window;

pub use context::{
    Boundary, BoundaryKind, Clip, ClipColumn, ProbeInfo, Rejection, Shot, SourceVideo,
    VideoContext, VideoStatus,
};
pub use error::OperatorError;
pub use operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
pub use output::{ColumnSpec, ColumnType, Outputs, Product, TableRows, TableSpec, Value};
pub use plan::VideoPlan;
