//! kelp-pipeline: the dataflow engine and the dataset it writes.
//!
//! What lives here: the DAG file format and its validation ([`dag`]), object-store URLs, request
//! counters, fault hooks and the spill cache ([`store`]), source listing ([`source`]), the tokio engine that runs a DAG over many videos
//! with bounded channels and a blocking pool ([`engine`]), the dataset schema, Parquet shard
//! writer, manifest, the exactly-once commit protocol of partitioned runs and the [`dataset::Dataset`]
//! handle every reader opens ([`dataset`]), the `filter` node ([`filter`]), `kelp sql` and
//! `kelp stats` ([`sql`], [`stats`]), the dataset browser of `kelp serve` ([`serve`]), the DAG
//! benchmark ([`bench`]), and the clients, reply cache and repair of nodes that call remote
//! services such as a VLM server ([`remote`]).
//!
//! What must not live here: pixels or video types. Decoding, every analysis of frames and the
//! meaning of each column belong to `kelp-operators`; the engine calls
//! [`kelp_operators::VideoPlan::run`] per video and converts the typed rows it returns by the
//! tables the DAG's nodes declare ([`dataset::schema`]).

pub mod bench;
pub mod copies;
pub mod dag;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod filter;
pub mod pass;
pub mod remote;
pub mod serve;
pub mod source;
pub mod sql;
pub mod stats;
pub mod store;
#[doc(hidden)]
pub mod testing;

pub use error::PipelineError;
