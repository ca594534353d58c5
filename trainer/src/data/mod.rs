//! `kelp_trainer::data`: what the streaming loader hands the trainer.
//!
//! What lives here: the [`Batch`] type every trainer consumes (and, with the loader issue, the
//! loader itself: shard reading, buckets, sampler, resume state). What must not: model code or
//! training policy. This is the only module of the trainer that may call the decoder in
//! `kelp-operators`.

mod batch;

pub use batch::{Batch, BatchError};
