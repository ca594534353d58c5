//! Training the diffusion transformer with flow matching: the config file
//! ([`DitTrainConfig`]), the timestep convention and schedule ([`flow`]), the task the shared loop
//! runs ([`task`]), the Euler sampler with classifier-free guidance ([`sample`]) and synthetic
//! batches ([`synthetic`]) until the loader delivers latents with caption embeddings.
//!
//! Not here yet: `kelp train dit` / `kelp sample` commands, captions through the text encoder
//! ([`crate::models::text`], ready) in the loop, the multi-stage schedule, image-to-video
//! conditioning and packing inside the training loop.

pub mod flow;
pub mod sample;
pub mod synthetic;
pub mod task;

use serde::{Deserialize, Serialize};

use crate::models::dit::{DitConfig, DitSpec};
use crate::train::config::{parse_toml, CheckpointSpec, LogSpec, TrainSpec};
use crate::train::TrainError;
pub use flow::FlowConfig;
pub use task::{DitBatch, DitTask};

/// A DiT training config (`trainer/configs/dit-tiny.toml` is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitTrainConfig {
    /// The architecture: a preset and overrides.
    #[serde(default)]
    pub model: DitSpec,
    #[serde(default)]
    pub flow: FlowConfig,
    pub train: TrainSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    #[serde(default)]
    pub log: LogSpec,
}

impl DitTrainConfig {
    /// Parses and checks a config; `what` names it in errors.
    pub fn from_toml(text: &str, what: &str) -> Result<Self, TrainError> {
        let c: DitTrainConfig = parse_toml(text, what)?;
        c.architecture(what)?;
        c.flow
            .validate()
            .map_err(|e| TrainError::Config(format!("{what}: {e}")))?;
        c.train
            .validate()
            .map_err(|e| TrainError::Config(format!("{what}: {e}")))?;
        Ok(c)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, TrainError> {
        super::config::load_config(path, Self::from_toml)
    }

    /// The resolved `[model]`.
    pub fn architecture(&self, what: &str) -> Result<DitConfig, TrainError> {
        self.model
            .resolve()
            .map_err(|e| TrainError::Config(format!("{what}: [model]: {e}")))
    }
}
