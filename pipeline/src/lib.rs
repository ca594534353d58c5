//! kelp-pipeline: the dataflow engine and the dataset it writes.
//!
//! What lives here: the DAG file format and its validation ([`dag`]), object-store URLs, request
//! counters, fault hooks and the spill cache ([`store`]), source listing ([`source`]), the tokio engine that runs a DAG over many videos
//! with bounded channels and a blocking pool ([`engine`]), the dataset schema, Parquet shard
//! writer, manifest and the exactly-once commit protocol of partitioned runs ([`dataset`]), SQL over a dataset ([`sql`]) and the shot benchmark
//! harness ([`bench`]).
//!
//! What must not live here: pixels. Decoding and every analysis of frames belong to
//! `kelp-operators`; the engine only calls [`kelp_operators::VideoPlan::run`] per video.

pub mod bench;
pub mod dag;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod filter;
pub mod source;
pub mod sql;
pub mod stats;
pub mod store;
#[doc(hidden)]
pub mod testing;

pub use error::PipelineError;
