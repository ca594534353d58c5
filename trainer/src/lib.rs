//! kelp-trainer: the training side of kelp (streaming loader, buckets, causal 3D VAE, flow-matching
//! DiT, training loop, collectives).
//!
//! What lives here: [`data`] (the batch type the loader delivers; the loader itself with its
//! issue), [`dist`] (launcher environments and the collectives of data-parallel training), and
//! with their issues the models and the training loop. What must not
//! live here: decoding outside [`data`] (only the loader may call the decoder in
//! `kelp-operators`) or dataset writing.
//! Datasets are read through [`kelp_pipeline::dataset::Dataset`], the one handle every reader
//! uses.

pub mod data;
pub mod dist;

pub use kelp_pipeline::dataset::Dataset;
