//! Pipeline errors. Each says what failed, where, and when possible what to do.

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A DAG file problem: `file: node "id": message`.
    #[error("{file}: {message}")]
    Dag { file: String, message: String },

    #[error("{uri}: {message}")]
    Source { uri: String, message: String },

    #[error("{uri}: {message}")]
    Store { uri: String, message: String },

    /// An object that should be there is not (a source deleted after it was listed).
    #[error("{uri}: no such object")]
    Missing { uri: String },

    #[error("{uri}: a dataset already exists here (manifest {manifest}); pass --overwrite to replace it")]
    OutputExists { uri: String, manifest: String },

    #[error("{uri}: no kelp dataset here (no _manifest.json); run a DAG with this output first")]
    NoDataset { uri: String },

    #[error("writing {what}: {message}")]
    Write { what: String, message: String },

    #[error("SQL: {0}")]
    Sql(String),

    #[error("{0}")]
    Other(String),
}

impl From<object_store::Error> for PipelineError {
    fn from(e: object_store::Error) -> Self {
        PipelineError::Store {
            uri: String::from("object store"),
            message: e.to_string(),
        }
    }
}

impl From<datafusion::error::DataFusionError> for PipelineError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        PipelineError::Sql(e.to_string())
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
