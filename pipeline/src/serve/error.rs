//! What a request can fail with, and the HTTP status each failure answers with. Every error is
//! sent as `{"error": "<message>"}` so the page can show it as it is.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The query does not parse or plan, or fails on its own terms (400).
    #[error("{0}")]
    BadQuery(String),
    /// A statement that would write or change the session (403).
    #[error("{0}")]
    ReadOnly(String),
    /// A malformed request: a bad clip id, a bad parameter (400).
    #[error("{0}")]
    BadRequest(String),
    /// A path or URI outside the dataset (403).
    #[error("{0}")]
    Outside(String),
    #[error("{0}")]
    NotFound(String),
    /// The query ran past the per-query timeout (504).
    #[error("{0}")]
    Timeout(String),
    /// The dataset could not be read (500).
    #[error("{0}")]
    Internal(String),
}

impl ServeError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadQuery(_) | ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::ReadOnly(_) | ServeError::Outside(_) => StatusCode::FORBIDDEN,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A DataFusion error met while planning or running a user's query: the query's fault (400,
    /// DataFusion's message as it is) unless storage failed underneath it (500).
    pub fn from_query(e: DataFusionError) -> ServeError {
        let storage = matches!(
            e.find_root(),
            DataFusionError::ObjectStore(_)
                | DataFusionError::IoError(_)
                | DataFusionError::ParquetError(_)
                | DataFusionError::ExecutionJoin(_)
                | DataFusionError::Internal(_)
        );
        if storage {
            ServeError::Internal(e.to_string())
        } else {
            ServeError::BadQuery(e.to_string())
        }
    }
}

impl From<crate::PipelineError> for ServeError {
    fn from(e: crate::PipelineError) -> Self {
        ServeError::Internal(e.to_string())
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        (
            self.status(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
