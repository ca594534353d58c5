//! What can stop a loader. A clip that cannot be fetched or decoded is not an error: it is
//! skipped, counted ([`super::LoaderStats`]) and logged with its id.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoaderError {
    /// The configuration is wrong; the message names the key.
    #[error("loader config: {0}")]
    Config(String),
    /// A dataset could not be opened or read.
    #[error("{uri}: {message}")]
    Dataset { uri: String, message: String },
    /// The dataset has no clip media to train on.
    #[error("{uri}: no clip media to load: {why}; add a `transcode` node (after `bucket`) to the DAG that writes it and run it again (see dags/quickstart.toml)")]
    NoMedia { uri: String, why: String },
    /// Nothing is left to load after filters, frame counts and weights.
    #[error("nothing to load: {0}")]
    Empty(String),
    /// The cache cannot hold the largest shard.
    #[error("cache_limit = {limit} bytes is smaller than the largest media shard ({shard}, {bytes} bytes): raise cache_limit to at least {bytes}")]
    CacheTooSmall {
        limit: u64,
        shard: String,
        bytes: u64,
    },
    /// The cache folder cannot be used.
    #[error("loader cache {path}: {message}")]
    Cache { path: String, message: String },
    /// A resume state that does not belong to this configuration or data.
    #[error("resume state does not match this loader: {0}")]
    Resume(String),
    /// The loader's background work ended unexpectedly.
    #[error("loader stopped: {0}")]
    Stopped(String),
}

impl LoaderError {
    pub(crate) fn dataset(uri: &str, e: impl std::fmt::Display) -> LoaderError {
        LoaderError::Dataset {
            uri: uri.to_string(),
            message: e.to_string(),
        }
    }
}
