//! kelp-trainer: the training side of kelp (streaming loader, buckets, causal 3D VAE, flow-matching
//! DiT, training loop, collectives).
//!
//! What lives here: [`data`] (the batch type the loader delivers; the loader itself with its
//! issue), [`dist`] (launcher environments and the collectives of data-parallel training),
//! [`models`] (architectures, built on burn's tensors and autodiff), [`train`] (device
//! selection, the training loop, optimizer and schedule, checkpoints, metrics) and [`semantic`]
//! (the `embed` pass: caption embeddings and their clusters, for semantic balance). What must not
//! live here: decoding outside [`data`] (only the loader may call the decoder in
//! `kelp-operators`) or dataset writing outside the pipeline's writer and commit protocol.
//! Datasets are read through [`kelp_pipeline::dataset::Dataset`], the one handle every reader
//! uses.

pub mod data;
pub mod dist;
pub mod models;
pub mod semantic;
pub mod train;

pub use kelp_pipeline::dataset::Dataset;
