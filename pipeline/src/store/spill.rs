//! The spill cache: remote source videos are streamed into local files (the decoder needs a
//! seekable input) under a size cap, evicting the least recently used files no video is using.
//!
//! One cache per process (its own folder under the spill root), so worker processes never
//! fight over files; the cap is per process. A video larger than the whole cap is still fetched
//! (it must be), after everything unpinned was evicted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use std::io::Write;
use tracing::{debug, warn};

use crate::error::{PipelineError, Result};
use crate::store::Location;

struct Entry {
    path: PathBuf,
    size: u64,
    last_used: u64,
    pins: usize,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    total: u64,
    tick: u64,
    next_tmp: u64,
}

/// A size-capped LRU cache of fetched objects in a local folder.
pub struct SpillCache {
    dir: PathBuf,
    cap: u64,
    state: Mutex<State>,
}

/// A fetched file, pinned (never evicted) until dropped.
pub struct Spilled {
    cache: Arc<SpillCache>,
    key: String,
    pub path: PathBuf,
}

impl Drop for Spilled {
    fn drop(&mut self) {
        if let Ok(mut st) = self.cache.state.lock() {
            if let Some(e) = st.entries.get_mut(&self.key) {
                e.pins = e.pins.saturating_sub(1);
            }
        }
    }
}

impl SpillCache {
    /// A cache in `root/kelp-spill-<pid>` holding at most `cap` bytes of unpinned files.
    pub fn new(root: &Path, cap: u64) -> Result<Arc<SpillCache>> {
        let dir = root.join(format!("kelp-spill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            PipelineError::Other(format!(
                "spill cache {}: cannot create: {e}; set [engine] spill_dir to a writable folder",
                dir.display()
            ))
        })?;
        Ok(Arc::new(SpillCache {
            dir,
            cap,
            state: Mutex::new(State::default()),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held now (pinned or not).
    pub fn bytes(&self) -> u64 {
        self.state.lock().map(|s| s.total).unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| PipelineError::Other("spill cache state poisoned".into()))
    }

    /// The local copy of `path` in `loc`'s store, fetched (streamed to disk) when not cached.
    pub async fn fetch(self: &Arc<Self>, loc: &Location, path: &ObjectPath) -> Result<Spilled> {
        let key = loc.object_url(path);
        {
            let mut st = self.lock()?;
            st.tick += 1;
            let tick = st.tick;
            if let Some(e) = st.entries.get_mut(&key) {
                e.pins += 1;
                e.last_used = tick;
                return Ok(Spilled {
                    cache: self.clone(),
                    key,
                    path: e.path.clone(),
                });
            }
        }
        let tmp = {
            let mut st = self.lock()?;
            st.next_tmp += 1;
            self.dir.join(format!("fetch-{}.part", st.next_tmp))
        };
        let size = match self.download(loc, path, &tmp).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let ext = Path::new(path.as_ref())
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let hash = blake3::hash(key.as_bytes()).to_hex();
        let dest = self.dir.join(format!("{}{ext}", &hash.as_str()[..24]));
        let mut doomed = Vec::new();
        let pinned = {
            let mut st = self.lock()?;
            // Evict least recently used unpinned files until the new one fits.
            while st.total + size > self.cap {
                let victim = st
                    .entries
                    .iter()
                    .filter(|(_, e)| e.pins == 0)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                let Some(victim) = victim else { break };
                if let Some(e) = st.entries.remove(&victim) {
                    st.total -= e.size;
                    doomed.push(e.path);
                }
            }
            if st.total + size > self.cap {
                warn!(
                    object = %key,
                    size,
                    cap = self.cap,
                    "spill cache over its cap: every cached video is in use"
                );
            }
            std::fs::rename(&tmp, &dest).map_err(|e| {
                PipelineError::Other(format!(
                    "spill cache: moving {} into place: {e}",
                    tmp.display()
                ))
            })?;
            st.tick += 1;
            let tick = st.tick;
            st.total += size;
            st.entries.insert(
                key.clone(),
                Entry {
                    path: dest.clone(),
                    size,
                    last_used: tick,
                    pins: 1,
                },
            );
            Spilled {
                cache: self.clone(),
                key,
                path: dest,
            }
        };
        for p in doomed {
            debug!(file = %p.display(), "spill cache: evicted");
            let _ = std::fs::remove_file(p);
        }
        Ok(pinned)
    }

    async fn download(&self, loc: &Location, path: &ObjectPath, tmp: &Path) -> Result<u64> {
        let url = loc.object_url(path);
        let got = match loc.store.get(path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(PipelineError::Missing { uri: url });
            }
            Err(e) => return Err(store_err(&url, e)),
        };
        // Plain blocking writes: local-disk appends of network-sized chunks are short, and the
        // workspace's tokio has no io-util feature.
        let mut file = std::fs::File::create(tmp).map_err(|e| {
            PipelineError::Other(format!("spill cache: creating {}: {e}", tmp.display()))
        })?;
        let mut stream = got.into_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_err(&url, e))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).map_err(|e| {
                PipelineError::Other(format!("spill cache: writing {}: {e}", tmp.display()))
            })?;
        }
        file.flush().map_err(|e| {
            PipelineError::Other(format!("spill cache: writing {}: {e}", tmp.display()))
        })?;
        Ok(size)
    }
}

impl Drop for SpillCache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn store_err(url: &str, e: object_store::Error) -> PipelineError {
    PipelineError::Source {
        uri: url.to_string(),
        message: format!("fetching into the spill cache: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;
    use object_store::PutPayload;

    async fn put(loc: &Location, name: &str, len: usize) -> ObjectPath {
        let p = loc.child(name);
        loc.store
            .put(&p, PutPayload::from(vec![7u8; len]))
            .await
            .unwrap();
        p
    }

    #[tokio::test]
    async fn fetched_files_are_local_copies_and_cached() {
        let loc = store::resolve("memory://spill-test-a/videos").unwrap();
        let p = put(&loc, "a.mp4", 1000).await;
        let root = tempfile::tempdir().unwrap();
        let cache = SpillCache::new(root.path(), 10_000).unwrap();
        let a = cache.fetch(&loc, &p).await.unwrap();
        assert_eq!(std::fs::read(&a.path).unwrap(), vec![7u8; 1000]);
        assert!(a.path.extension().is_some_and(|e| e == "mp4"));
        let again = cache.fetch(&loc, &p).await.unwrap();
        assert_eq!(a.path, again.path);
        assert_eq!(cache.bytes(), 1000);
    }

    #[tokio::test]
    async fn the_least_recently_used_unpinned_file_is_evicted_at_the_cap() {
        let loc = store::resolve("memory://spill-test-b/videos").unwrap();
        let (a, b, c) = (
            put(&loc, "a.mp4", 400).await,
            put(&loc, "b.mp4", 400).await,
            put(&loc, "c.mp4", 400).await,
        );
        let root = tempfile::tempdir().unwrap();
        let cache = SpillCache::new(root.path(), 1000).unwrap();
        let fa = cache.fetch(&loc, &a).await.unwrap();
        let pa = fa.path.clone();
        drop(fa);
        let fb = cache.fetch(&loc, &b).await.unwrap();
        let pb = fb.path.clone();
        drop(fb);
        // a was used before b: touching a makes b the least recently used.
        drop(cache.fetch(&loc, &a).await.unwrap());
        let fc = cache.fetch(&loc, &c).await.unwrap();
        assert!(pa.exists(), "a was used more recently than b");
        assert!(!pb.exists(), "b is the LRU victim");
        assert!(fc.path.exists());
        assert_eq!(cache.bytes(), 800);
    }

    #[tokio::test]
    async fn pinned_files_are_never_evicted() {
        let loc = store::resolve("memory://spill-test-c/videos").unwrap();
        let (a, b) = (put(&loc, "a.mp4", 600).await, put(&loc, "b.mp4", 600).await);
        let root = tempfile::tempdir().unwrap();
        let cache = SpillCache::new(root.path(), 1000).unwrap();
        let fa = cache.fetch(&loc, &a).await.unwrap();
        let fb = cache.fetch(&loc, &b).await.unwrap();
        assert!(fa.path.exists() && fb.path.exists());
        assert_eq!(cache.bytes(), 1200);
    }

    #[tokio::test]
    async fn a_missing_object_is_an_error_naming_it() {
        let loc = store::resolve("memory://spill-test-d/videos").unwrap();
        let root = tempfile::tempdir().unwrap();
        let cache = SpillCache::new(root.path(), 1000).unwrap();
        let e = match cache.fetch(&loc, &loc.child("nope.mp4")).await {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("nope.mp4"), "{e}");
    }
}
