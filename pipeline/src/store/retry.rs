//! Retrying object-store requests: transient failures (timeouts, 5xx, resets) are tried again
//! with a short backoff; answers that are final (not found, already exists, precondition) are
//! returned at once.

use std::future::Future;
use std::time::Duration;

use tracing::debug;

/// Attempts per request before an error is returned (transient failures: timeouts, 5xx, resets).
pub const TRIES: u32 = 4;

fn transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
    )
}

/// Runs `op` again (with a short backoff) while it fails transiently.
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> std::result::Result<T, object_store::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, object_store::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < TRIES && transient(&e) => {
                debug!(what, attempt, "retrying after: {e}");
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
