//! Exact copies, found before anything is decoded: when the run plan is made, sources of equal
//! size are hashed (BLAKE3 of the bytes, the same hash that makes a `video_id`), and every copy
//! after the first in the plan's sorted order is marked with the first one's URI. A marked
//! source becomes a rejected `videos` row naming that URI and is never fetched or decoded.
//! Deterministic: the marks are part of the plan every process of a run joins.

use std::collections::BTreeMap;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use tracing::{info, warn};

use crate::error::Result;
use crate::source::SourceEntry;
use crate::store::{self, StoreOptions};

/// BLAKE3 of one source's bytes, read from local disk or streamed from its object store.
async fn content_hash(entry: &SourceEntry, opts: &StoreOptions) -> Result<blake3::Hash> {
    if entry.is_remote() {
        let loc = store::resolve_with(&entry.location, opts)?;
        let mut stream = loc
            .store
            .get(&loc.prefix)
            .await
            .map_err(|e| crate::error::PipelineError::Other(format!("{}: {e}", entry.uri)))?
            .into_stream();
        let mut hasher = blake3::Hasher::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| crate::error::PipelineError::Other(format!("{}: {e}", entry.uri)))?;
            hasher.update(&chunk);
        }
        Ok(hasher.finalize())
    } else {
        let path = entry.local_video().path;
        let uri = entry.uri.clone();
        tokio::task::spawn_blocking(move || -> Result<blake3::Hash> {
            let mut hasher = blake3::Hasher::new();
            let mut file = std::fs::File::open(&path)
                .map_err(|e| crate::error::PipelineError::Other(format!("{uri}: {e}")))?;
            std::io::copy(&mut file, &mut hasher)
                .map_err(|e| crate::error::PipelineError::Other(format!("{uri}: {e}")))?;
            Ok(hasher.finalize())
        })
        .await
        .map_err(|e| crate::error::PipelineError::Other(format!("hashing: {e}")))?
    }
}

/// Marks every exact copy in `entries` (sorted) with `copy_of` = the first copy's URI; returns
/// how many were marked. A source that cannot be read is left alone (its own run reports it).
pub async fn mark_exact_copies(entries: &mut [SourceEntry], opts: &StoreOptions) -> usize {
    let mut by_size: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.size > 0 {
            by_size.entry(e.size).or_default().push(i);
        }
    }
    let mut marked = 0;
    for group in by_size.values().filter(|g| g.len() > 1) {
        let mut first_with: BTreeMap<[u8; 32], usize> = BTreeMap::new();
        for &i in group {
            let hash = match content_hash(&entries[i], opts).await {
                Ok(h) => *h.as_bytes(),
                Err(e) => {
                    warn!("exact-copy check skipped: {e}");
                    continue;
                }
            };
            match first_with.get(&hash) {
                Some(&first) => {
                    entries[i].copy_of = Some(entries[first].uri.clone());
                    marked += 1;
                }
                None => {
                    first_with.insert(hash, i);
                }
            }
        }
    }
    if marked > 0 {
        info!(copies = marked, "exact copies found before decoding");
    }
    marked
}
