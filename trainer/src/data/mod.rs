//! `kelp_trainer::data`: the streaming loader that feeds the trainers.
//!
//! What lives here: the [`Batch`] every trainer consumes; the [`Loader`] (`Loader::new(config)`
//! is an iterator of batches) with its [`LoaderConfig`] and [`ResumeState`]; the index of clips
//! it reads (`index`), the data order — buckets, weights, the deterministic elastic shuffle
//! and rank slices ([`order`]) —, the shard cache (`cache`), clip fetches (`fetch`) and the
//! loader benchmark ([`bench`]); the DiT's latents and their order ([`latents`]); side-by-side reconstruction videos for `kelp eval` and sampled clips ([`recon`]); still images for image-to-video ([`image`]). What must not: model code or training policy. This is the only
//! module of the trainer that may call the decoder in `kelp-operators`
//! (`media::clip_decode`).

mod batch;
pub mod bench;
mod cache;
pub mod config;
mod error;
mod fetch;
pub mod image;
mod index;
pub mod latents;
mod loader;
pub mod order;
pub mod recon;
mod rng;
pub mod state;
mod stats;
#[doc(hidden)]
pub mod testing;

pub use batch::{Batch, BatchError};
pub use config::{BucketWeights, DatasetSource, LoaderConfig};
pub use error::LoaderError;
pub(crate) use index::captions as captions_of;
pub use index::LeftOut;
pub use loader::{IndexSummary, Loader};
pub use state::ResumeState;
pub use stats::LoaderStats;
