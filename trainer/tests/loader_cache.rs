//! The loader's shard cache: bytes on disk stay under `cache_limit` while shards are fetched in
//! random order, a limit below one shard is refused, a full cache of pinned shards never stalls
//! a read, and a second run finds the shards again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kelp_trainer::data::testing::{self, TestDataset};
use kelp_trainer::data::{Loader, LoaderConfig, LoaderError};

fn bytes_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// 24 clips, 2 per shard: 12 media shards.
fn many_shards(dir: &tempfile::TempDir) -> (String, u64) {
    let uri = dir.path().join("ds").display().to_string();
    let mut spec = TestDataset::buckets(&[("small", 32, 32, 5, 24)]);
    spec.shard_rows = 2;
    testing::write_blocking(&uri, &spec);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("ds/_manifest.json")).unwrap(),
    )
    .unwrap();
    let largest = manifest["tables"]["media"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap())
        .max()
        .unwrap();
    (uri, largest)
}

fn config(uri: &str, cache: &Path, limit: u64) -> LoaderConfig {
    LoaderConfig {
        batch_size: 2,
        seed: 5,
        epochs: Some(2),
        drop_last: false,
        cache_dir: Some(cache.to_path_buf()),
        cache_limit: limit,
        prefetch_batches: 3,
        ..LoaderConfig::for_dataset(uri)
    }
}

#[test]
fn random_reads_with_a_two_shard_cache_finish_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (uri, largest) = many_shards(&dir);
    let cache = dir.path().join("cache");
    let limit = 2 * largest;
    let loader = Loader::new(config(&uri, &cache, limit)).unwrap();
    let folder = loader.summary().cache_dir.unwrap();
    assert!(folder.starts_with(&cache));

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, peak, folder) = (stop.clone(), peak.clone(), folder.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(bytes_on_disk(&folder), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let mut clips = 0;
    let mut l = loader;
    for b in &mut l {
        clips += b.unwrap().len();
        peak.fetch_max(bytes_on_disk(&folder), Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert_eq!(clips, 48, "two epochs of 24 clips");
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= limit,
        "{peak} bytes on disk over the {limit}-byte limit"
    );
    assert!(peak > 0, "the cache was used");
    let stats = l.stats();
    assert!(stats.evictions > 0, "{stats:?}");
    assert_eq!(stats.skipped, 0);
}

#[test]
fn a_limit_below_the_largest_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (uri, largest) = many_shards(&dir);
    let e = Loader::new(config(&uri, &dir.path().join("cache"), largest - 1))
        .err()
        .unwrap();
    assert!(matches!(e, LoaderError::CacheTooSmall { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("media/part-00000-") && e.contains(&format!("at least {largest}")),
        "{e}"
    );
}

#[test]
fn a_cache_of_one_shard_never_stalls_even_when_its_shard_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let (uri, largest) = many_shards(&dir);
    let cache = dir.path().join("cache");
    let l = Loader::new(LoaderConfig {
        prefetch_batches: 6,
        fetch_concurrency: 8,
        ..config(&uri, &cache, largest)
    })
    .unwrap();
    let clips: usize = l.map(|b| b.unwrap().len()).sum();
    assert_eq!(clips, 48);
}

#[test]
fn a_second_run_reads_the_cached_shards_again() {
    let dir = tempfile::tempdir().unwrap();
    let (uri, largest) = many_shards(&dir);
    let cache = dir.path().join("cache");
    let cold = Loader::new(config(&uri, &cache, 100 * largest)).unwrap();
    let mut cold = cold;
    let n: usize = (&mut cold).map(|b| b.unwrap().len()).sum();
    assert_eq!(n, 48);
    let cold_stats = cold.stats();
    assert!(cold_stats.cache_misses >= 12, "{cold_stats:?}");
    drop(cold);
    let mut warm = Loader::new(config(&uri, &cache, 100 * largest)).unwrap();
    let n: usize = (&mut warm).map(|b| b.unwrap().len()).sum();
    assert_eq!(n, 48);
    let s = warm.stats();
    assert_eq!((s.cache_misses, s.cache_hits), (0, 48), "{s:?}");
}
