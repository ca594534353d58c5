//! What a loader has done so far: clips, bytes, skips and the time each stage took (summed over
//! workers, so stage seconds can exceed wall seconds).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counters shared by the loader's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub clips: AtomicU64,
    pub frames: AtomicU64,
    pub batches: AtomicU64,
    pub skipped: AtomicU64,
    pub media_bytes: AtomicU64,
    pub remote_bytes: AtomicU64,
    pub remote_requests: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_bypass: AtomicU64,
    pub evictions: AtomicU64,
    pub fetch_ns: AtomicU64,
    pub decode_ns: AtomicU64,
    pub resize_ns: AtomicU64,
    pub batch_ns: AtomicU64,
    pub skipped_ids: Mutex<Vec<(String, String)>>,
}

pub(crate) fn add_s(counter: &AtomicU64, seconds: f64) {
    counter.fetch_add((seconds * 1e9) as u64, Relaxed);
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoaderStats {
    /// Clips delivered in batches.
    pub clips: u64,
    pub frames: u64,
    pub batches: u64,
    /// Clips that could not be fetched or decoded (each logged with its id).
    pub skipped: u64,
    /// Media bytes of delivered and skipped clips (the encoded values).
    pub media_bytes: u64,
    /// Bytes and requests sent to the dataset's store (shard downloads, footers, clip ranges).
    pub remote_bytes: u64,
    pub remote_requests: u64,
    /// Clip reads served from the local cache, needing a shard download first, or read
    /// straight from the store because the cache was full of shards in use.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bypass: u64,
    pub evictions: u64,
    /// Seconds per stage, summed over concurrent work.
    pub fetch_s: f64,
    pub decode_s: f64,
    pub resize_s: f64,
    pub batch_s: f64,
    /// The last skipped clips: (clip id, reason).
    pub skipped_clips: Vec<(String, String)>,
}

impl Counters {
    pub fn snapshot(&self) -> LoaderStats {
        let s = |c: &AtomicU64| c.load(Relaxed) as f64 / 1e9;
        LoaderStats {
            clips: self.clips.load(Relaxed),
            frames: self.frames.load(Relaxed),
            batches: self.batches.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            media_bytes: self.media_bytes.load(Relaxed),
            remote_bytes: self.remote_bytes.load(Relaxed),
            remote_requests: self.remote_requests.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_bypass: self.cache_bypass.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            fetch_s: s(&self.fetch_ns),
            decode_s: s(&self.decode_ns),
            resize_s: s(&self.resize_ns),
            batch_s: s(&self.batch_ns),
            skipped_clips: self
                .skipped_ids
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default(),
        }
    }

    /// Records a skipped clip (the last 1,000 are kept for [`LoaderStats::skipped_clips`]).
    pub fn skip(&self, clip_id: &str, reason: &str) {
        self.skipped.fetch_add(1, Relaxed);
        tracing::warn!(clip_id, reason, "loader: clip skipped");
        if let Ok(mut v) = self.skipped_ids.lock() {
            if v.len() >= 1000 {
                v.remove(0);
            }
            v.push((clip_id.to_string(), reason.to_string()));
        }
    }
}
