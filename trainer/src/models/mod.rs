//! The models kelp trains: the causal 3D VAE ([`vae`]) and the diffusion transformer over its
//! latents ([`dit`]); and the frozen pretrained text encoder that conditions the DiT ([`text`]).
//! Shared pieces: deterministic parameter construction ([`init`]) and the layers video models
//! share ([`nn`]).
//!
//! What lives here: architectures, their configs, losses that belong to a model. What must not:
//! the training loop, optimizers, checkpoints or devices (those are [`crate::train`]'s), or any
//! data reading.

pub mod dit;
pub mod init;
pub mod nn;
pub mod text;
pub mod vae;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ModelError {
    /// An architecture that cannot be built.
    #[error("model config: {0}")]
    Config(String),
    /// An input the model cannot take.
    #[error("input shape: {0}")]
    Shape(String),
}
