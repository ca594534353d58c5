//! The causal 3D convolutional VAE of the Seaweed report (MAGVIT-style; the first frame has its
//! own latent, so images and videos share one model): architecture ([`config`], [`model`],
//! [`blocks`]), its losses ([`loss`]) and the optional 3D PatchGAN discriminator ([`disc`]).

pub mod blocks;
pub mod config;
pub mod disc;
pub mod loss;
pub mod model;

pub use config::{Cost, VaeConfig, VaeSpec, PRESETS};
pub use model::{Posterior, Vae};
