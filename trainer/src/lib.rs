//! kelp-trainer: the training side of kelp (streaming loader, buckets, causal 3D VAE, flow-matching
//! DiT, training loop, collectives).
//!
//! Nothing is implemented here yet: the curation issues come first, and this crate exists so the
//! workspace has its final shape (operators ← pipeline ← trainer ← kelp). What must not live
//! here: decoding (only the loader may call the decoder in `kelp-operators`) or dataset writing.
//! Datasets are read through [`kelp_pipeline::dataset::Dataset`], the one handle every reader
//! uses.

pub use kelp_pipeline::dataset::Dataset;
