//! Small JSON-object helpers for the commit protocol: retried reads and writes, and the
//! conditional create that decides every race (`PutMode::Create`: If-None-Match on S3,
//! create-new on a local disk).

use object_store::{ObjectStoreExt, PutMode, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::store::Location;

pub use crate::store::retry::{retry, TRIES};

pub fn store_err(
    loc: &Location,
    rel: &str,
    what: &str,
    e: impl std::fmt::Display,
) -> PipelineError {
    PipelineError::Store {
        uri: loc.object_url(&loc.child(rel)),
        message: format!("{what}: {e}"),
    }
}

/// The object `rel` under `loc` parsed as JSON, `None` when absent.
pub async fn get_json<T: DeserializeOwned>(loc: &Location, rel: &str) -> Result<Option<T>> {
    let path = loc.child(rel);
    let got = retry(rel, || async {
        match loc.store.get(&path).await {
            Ok(g) => g.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| store_err(loc, rel, "reading", e))?;
    match got {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| store_err(loc, rel, "corrupt record", e)),
    }
}

fn to_json<T: Serialize>(loc: &Location, rel: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| store_err(loc, rel, "encoding", e))
}

/// Writes `value` at `rel`, replacing what is there.
pub async fn put_json<T: Serialize>(loc: &Location, rel: &str, value: &T) -> Result<()> {
    let bytes = bytes::Bytes::from(to_json(loc, rel, value)?);
    let path = loc.child(rel);
    retry(rel, || {
        loc.store.put(&path, PutPayload::from(bytes.clone()))
    })
    .await
    .map_err(|e| store_err(loc, rel, "writing", e))?;
    Ok(())
}

/// What a conditional create found.
pub enum Created<T> {
    /// Our object is there (written now, or by an earlier try whose answer was lost).
    Ours,
    /// Someone else's object was there first.
    Theirs(T),
}

/// Creates `rel` with `value` only if nothing is there. When something is, it is read back:
/// `is_ours` recognises our own earlier write (a retried create whose first answer was lost).
pub async fn create_json<T, F>(
    loc: &Location,
    rel: &str,
    value: &T,
    is_ours: F,
) -> Result<Created<T>>
where
    T: Serialize + DeserializeOwned,
    F: Fn(&T) -> bool,
{
    let bytes = bytes::Bytes::from(to_json(loc, rel, value)?);
    let path = loc.child(rel);
    for _ in 0..TRIES {
        let put = retry(rel, || {
            loc.store.put_opts(
                &path,
                PutPayload::from(bytes.clone()),
                PutMode::Create.into(),
            )
        })
        .await;
        match put {
            Ok(_) => return Ok(Created::Ours),
            Err(object_store::Error::AlreadyExists { .. }) => {
                match get_json::<T>(loc, rel).await? {
                    Some(existing) if is_ours(&existing) => return Ok(Created::Ours),
                    Some(existing) => return Ok(Created::Theirs(existing)),
                    // Deleted between our create and our read (a clean-up): try again.
                    None => continue,
                }
            }
            Err(e) => return Err(store_err(loc, rel, "conditional create", e)),
        }
    }
    Err(store_err(
        loc,
        rel,
        "conditional create",
        "the object kept appearing and vanishing",
    ))
}

/// Deletes `rel`; absent is fine.
pub async fn delete(loc: &Location, path: &object_store::path::Path) -> Result<()> {
    let r = retry(path.as_ref(), || async {
        match loc.store.delete(path).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            r => r,
        }
    })
    .await;
    r.map_err(|e| PipelineError::Store {
        uri: loc.object_url(path),
        message: format!("deleting: {e}"),
    })
}

/// Lists `rel` (recursively) under `loc`, retried.
pub async fn list(loc: &Location, rel: &str) -> Result<Vec<object_store::ObjectMeta>> {
    use futures::TryStreamExt;
    let prefix = loc.child(rel);
    retry(rel, || {
        loc.store.list(Some(&prefix)).try_collect::<Vec<_>>()
    })
    .await
    .map_err(|e| store_err(loc, rel, "listing", e))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh random id (16 hex digits) for a run or an attempt.
pub fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.write_u32(std::process::id());
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}
