//! Errors raised by operators and the decoder. Each names the input it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{path}: cannot open as a video: {reason}")]
    Open { path: PathBuf, reason: String },

    #[error("{path}: no video stream (streams found: {found})")]
    NoVideoStream { path: PathBuf, found: String },

    #[error("{path}: decoding failed at frame {frame}: {reason}")]
    Decode {
        path: PathBuf,
        frame: u64,
        reason: String,
    },

    /// A resource limit (see `decode::Limits`): the video is rejected, not failed.
    #[error("{path}: {limit}")]
    Limit { path: PathBuf, limit: String },

    #[error("{path}: the video stream decoded to zero frames")]
    NoFrames { path: PathBuf },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("operator \"{op}\": {message}")]
    Config { op: String, message: String },

    #[error("operator \"{op}\" needs {needs}, which no earlier node produces")]
    MissingInput { op: String, needs: String },

    #[error("operator \"{op}\" failed on {path}: {reason}")]
    Failed {
        op: String,
        path: PathBuf,
        reason: String,
    },
}

pub type Result<T, E = OperatorError> = std::result::Result<T, E>;
