//! Training: device selection ([`backend`]), the collective's bandwidth and step budget ([`allreduce_bench`]), runtime balance across ranks ([`balance`]), gradients all-reduced during the backward pass ([`overlap`]), the shared config sections ([`config`]), the loop
//! every model uses ([`trainer`], a step's gradients: [`step_grads`]) with its optimizer pieces ([`optim`]), batch sources
//! ([`source`], [`synthetic`], the loader as one: [`loader_source`], with the held-out [`split`]), a run's location ([`store`]) and start ([`run`]), checkpoints ([`checkpoint`],
//! [`weights`]) and metrics ([`metrics`], [`plot`]); the VAE's task and commands ([`vae`]); the
//! DiT's flow-matching task, sampler and synthetic batches ([`dit`]).
//!
//! What lives here: what trainers share, and each model's training task. What must not:
//! architectures (they are [`crate::models`]') or data reading (the loader's, [`crate::data`]).

pub mod allreduce_bench;
pub mod backend;
pub mod balance;
pub mod checkpoint;
pub mod config;
pub mod data_parallel;
pub mod device;
pub mod dit;
pub mod loader_source;
pub mod metrics;
pub mod optim;
pub mod overlap;
pub mod plot;
pub mod run;
pub mod source;
pub mod split;
pub mod step_grads;
pub mod store;
pub mod synthetic;
pub mod trainer;
pub mod vae;
pub mod weights;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("config: {0}")]
    Config(String),
    #[error("device: {0}")]
    Device(String),
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    #[error("data: {0}")]
    Data(String),
    #[error("store: {0}")]
    Store(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Io(String),
    #[error("training diverged: {0}")]
    Diverged(String),
    #[error("{0}")]
    Other(String),
}
