//! The diffusion transformer over VAE latents: a hybrid-stream MMDiT as the Seaweed report
//! describes (dual-stream blocks first, then single-stream blocks sharing part of the FFN),
//! SwiGLU, AdaLN-Zero timestep modulation, QK-norm, MM-RoPE (3D for video, 1D for text).
//!
//! - [`config`]: architecture, presets, FLOPs;
//! - [`patch`]: latents ↔ tokens; [`rope`]: positions and rotary tables;
//! - [`layers`], [`attention`], [`time`], [`block`]: the pieces; [`model`]: the whole;
//! - [`condition`]: image-to-video input (the first frame's latent and a mask);
//! - [`packing`]: several samples in one sequence with a block-diagonal mask, and the padding
//!   report;
//! - [`recompute`]: activation checkpointing per block (blocks recomputed in the backward pass).
//!
//! Text arrives as token embeddings with a mask; the frozen text encoder that makes them
//! (MiniLM) is [`crate::models::text`].
//! What must not live here: the noise schedule, losses over timesteps or sampling (flow
//! matching and the sampler are [`crate::train::dit`]'s), or any data reading.

pub mod attention;
pub mod block;
pub mod condition;
pub mod config;
pub mod layers;
pub mod model;
pub mod packing;
pub mod patch;
pub mod recompute;
pub mod rope;
pub mod time;

pub use config::{DitConfig, DitSpec, PRESETS};
pub use model::{Dit, TokenInput};
