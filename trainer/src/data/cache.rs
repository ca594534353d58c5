//! The local cache of remote `media` shards: whole shards on disk, at most `cache_limit` bytes,
//! least recently used first out.
//!
//! 1. A clip read asks for its shard. A cached shard is pinned for the read and unpinned after.
//! 2. A shard not cached is reserved (its full size counts against the limit before a byte is
//!    written), then downloaded once — concurrent readers of it wait on the same download — in
//!    ranges of [`PART_BYTES`], at most `fetch_concurrency` requests in flight, into a `.part`
//!    file renamed when complete.
//! 3. Room is made by deleting unpinned shards, least recently used first. When every cached
//!    shard is pinned and no room is left, the read does not wait: it fetches the clip's own
//!    range from the store (a bypass), so the cache never deadlocks.
//! 4. On start the cache folder (one per rank) is scanned: complete shards of these datasets
//!    are reused (a warm cache across runs), anything else is deleted.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use kelp_pipeline::store::Location;
use object_store::ObjectStoreExt;
use tokio::sync::Semaphore;

use super::error::LoaderError;
use super::stats::Counters;

/// Bytes per range request of a shard download.
pub const PART_BYTES: u64 = 8 << 20;

type Download = Shared<BoxFuture<'static, Result<(), String>>>;

enum Entry {
    Downloading(Download),
    Ready { pins: usize, last_used: u64 },
}

struct State {
    entries: HashMap<u32, Entry>,
    used: u64,
    clock: u64,
}

/// A shard the cache can hold: where it is remotely and its size.
#[derive(Clone)]
pub struct CachedShard {
    pub location: Location,
    pub path: String,
    pub bytes: u64,
    /// File name in the cache folder.
    pub file: String,
}

pub struct ShardCache {
    dir: PathBuf,
    limit: u64,
    shards: HashMap<u32, CachedShard>,
    state: Arc<Mutex<State>>,
    requests: Arc<Semaphore>,
    counters: Arc<Counters>,
}

/// What [`ShardCache::acquire`] gives: the local file while pinned, or a bypass.
pub enum Acquired {
    Local(Pin),
    Bypass,
}

/// A pinned cached shard; unpinned on drop.
pub struct Pin {
    pub path: PathBuf,
    shard: u32,
    state: Arc<Mutex<State>>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(Entry::Ready { pins, .. }) = st.entries.get_mut(&self.shard) {
                *pins = pins.saturating_sub(1);
            }
        }
    }
}

impl ShardCache {
    /// Opens (and cleans) the cache folder. `shards` are the shards it may hold, by id.
    pub fn open(
        dir: PathBuf,
        limit: u64,
        shards: HashMap<u32, CachedShard>,
        requests: Arc<Semaphore>,
        counters: Arc<Counters>,
    ) -> Result<ShardCache, LoaderError> {
        let fail = |e: std::io::Error| LoaderError::Cache {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        if let Some(s) = shards.values().max_by_key(|s| s.bytes) {
            if s.bytes > limit {
                return Err(LoaderError::CacheTooSmall {
                    limit,
                    shard: format!("{}/{}", s.location.uri.trim_end_matches('/'), s.path),
                    bytes: s.bytes,
                });
            }
        }
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let by_file: HashMap<&str, (u32, u64)> = shards
            .iter()
            .map(|(id, s)| (s.file.as_str(), (*id, s.bytes)))
            .collect();
        let mut entries = HashMap::new();
        let mut used = 0u64;
        let mut found: Vec<(std::time::SystemTime, u32, u64, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(fail)? {
            let e = e.map_err(fail)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().map_err(fail)?;
            match by_file.get(name.as_str()) {
                Some(&(id, bytes)) if meta.is_file() && meta.len() == bytes => {
                    let t = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    found.push((t, id, bytes, e.path()));
                }
                _ if meta.is_dir() => {}
                _ => std::fs::remove_file(e.path()).map_err(fail)?,
            }
        }
        // Oldest first, so the most recently used of a previous run are the last evicted.
        found.sort();
        let mut clock = 0;
        for (_, id, bytes, path) in found {
            if used + bytes > limit {
                std::fs::remove_file(path).map_err(fail)?;
                continue;
            }
            used += bytes;
            clock += 1;
            entries.insert(
                id,
                Entry::Ready {
                    pins: 0,
                    last_used: clock,
                },
            );
        }
        Ok(ShardCache {
            dir,
            limit,
            shards,
            state: Arc::new(Mutex::new(State {
                entries,
                used,
                clock,
            })),
            requests,
            counters,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shard's local file, pinned, downloading it first when needed; a bypass when the cache
    /// is full of shards in use.
    pub async fn acquire(&self, shard: u32) -> Result<Acquired, String> {
        let Some(info) = self.shards.get(&shard) else {
            return Ok(Acquired::Bypass);
        };
        let mut counted = false;
        loop {
            let wait = {
                let mut st = self
                    .state
                    .lock()
                    .map_err(|_| "cache state poisoned".to_string())?;
                st.clock += 1;
                let now = st.clock;
                match st.entries.get_mut(&shard) {
                    Some(Entry::Ready { pins, last_used }) => {
                        *pins += 1;
                        *last_used = now;
                        if !counted {
                            self.counters.cache_hits.fetch_add(1, Relaxed);
                        }
                        return Ok(Acquired::Local(Pin {
                            path: self.dir.join(&info.file),
                            shard,
                            state: self.state.clone(),
                        }));
                    }
                    Some(Entry::Downloading(d)) => d.clone(),
                    None => {
                        if !self.make_room(&mut st, info.bytes) {
                            self.counters.cache_bypass.fetch_add(1, Relaxed);
                            return Ok(Acquired::Bypass);
                        }
                        st.used += info.bytes;
                        let d = self.download(shard, info.clone());
                        st.entries.insert(shard, Entry::Downloading(d.clone()));
                        d
                    }
                }
            };
            if !counted {
                self.counters.cache_misses.fetch_add(1, Relaxed);
                counted = true;
            }
            wait.await?;
        }
    }

    /// Evicts unpinned shards, least recently used first, until `bytes` more fit.
    fn make_room(&self, st: &mut State, bytes: u64) -> bool {
        while st.used + bytes > self.limit {
            let victim = st
                .entries
                .iter()
                .filter_map(|(id, e)| match e {
                    Entry::Ready { pins: 0, last_used } => Some((*last_used, *id)),
                    _ => None,
                })
                .min();
            let Some((_, id)) = victim else {
                return false;
            };
            st.entries.remove(&id);
            if let Some(s) = self.shards.get(&id) {
                st.used = st.used.saturating_sub(s.bytes);
                // Deleting an open file is fine on Unix: no reader holds it (unpinned).
                let _ = std::fs::remove_file(self.dir.join(&s.file));
            }
            self.counters.evictions.fetch_add(1, Relaxed);
        }
        true
    }

    /// Starts downloading a shard; the future resolves when it is cached (or failed, and its
    /// reservation released).
    fn download(&self, shard: u32, info: CachedShard) -> Download {
        let state = self.state.clone();
        let requests = self.requests.clone();
        let counters = self.counters.clone();
        let dir = self.dir.clone();
        let task = tokio::spawn(async move {
            let result = fetch_shard(&info, &dir, &requests, &counters).await;
            if let Ok(mut st) = state.lock() {
                match &result {
                    Ok(()) => {
                        st.clock += 1;
                        let now = st.clock;
                        st.entries.insert(
                            shard,
                            Entry::Ready {
                                pins: 0,
                                last_used: now,
                            },
                        );
                    }
                    Err(_) => {
                        st.entries.remove(&shard);
                        st.used = st.used.saturating_sub(info.bytes);
                    }
                }
            }
            result
        });
        async move {
            match task.await {
                Ok(r) => r,
                Err(e) => Err(format!("shard download stopped: {e}")),
            }
        }
        .boxed()
        .shared()
    }
}

/// Downloads one shard in parallel ranges into `<file>.part`, then renames it.
async fn fetch_shard(
    info: &CachedShard,
    dir: &Path,
    requests: &Semaphore,
    counters: &Counters,
) -> Result<(), String> {
    let what = format!("{}/{}", info.location.uri.trim_end_matches('/'), info.path);
    let part = dir.join(format!("{}.part", info.file));
    let file = std::fs::File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
    file.set_len(info.bytes)
        .map_err(|e| format!("{}: {e}", part.display()))?;
    let file = Arc::new(file);
    let path = info.location.child(&info.path);
    let ranges: Vec<std::ops::Range<u64>> = (0..info.bytes.div_ceil(PART_BYTES))
        .map(|i| i * PART_BYTES..((i + 1) * PART_BYTES).min(info.bytes))
        .collect();
    let results: Vec<Result<(), String>> = futures::stream::iter(ranges)
        .map(|r| {
            let file = file.clone();
            let path = path.clone();
            let what = what.as_str();
            async move {
                let bytes = {
                    let _permit = requests.acquire().await.map_err(|e| e.to_string())?;
                    counters.remote_requests.fetch_add(1, Relaxed);
                    info.location
                        .store
                        .get_range(&path, r.clone())
                        .await
                        .map_err(|e| format!("{what}: downloading bytes {r:?}: {e}"))?
                };
                counters.remote_bytes.fetch_add(bytes.len() as u64, Relaxed);
                let at = r.start;
                tokio::task::spawn_blocking(move || file.write_all_at(&bytes, at))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("writing the cache: {e}"))
            }
        })
        .buffer_unordered(PART_CONCURRENCY)
        .collect()
        .await;
    let done = results.into_iter().collect::<Result<Vec<()>, String>>();
    if let Err(e) = done {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, dir.join(&info.file)).map_err(|e| {
        let _ = std::fs::remove_file(&part);
        format!("{}: {e}", part.display())
    })
}

/// Ranges of one shard requested at once (the request semaphore bounds the total).
const PART_CONCURRENCY: usize = 8;

/// The cache file name of a shard: its dataset's run and path, hashed, so shards of different
/// datasets never collide and a rerun finds its files again.
pub fn file_name(run: &str, path: &str, bytes: u64) -> String {
    let key = format!("{run}\n{path}\n{bytes}");
    let hash = blake3::hash(key.as_bytes()).to_hex();
    let base = path.rsplit('/').next().unwrap_or("shard.parquet");
    format!("{}-{base}", &hash[..16])
}
