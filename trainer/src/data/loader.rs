//! [`Loader`]: the streaming loader a trainer iterates. It builds the index, plans each epoch
//! ([`super::order`]), and runs a small tokio runtime of its own in the background: this rank's
//! batches in order, `prefetch_batches` ahead, each clip fetched ([`super::fetch`], through the
//! cache) and decoded on the blocking pool (at most `decode_workers` at once), then assembled
//! into one [`Batch`]. The iterator hands them over in order; dropping the loader stops it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kelp_operators::media::clip_decode::{decode_clip, ClipDecodeRequest};
use tokio::sync::{mpsc, Semaphore};

use super::batch::Batch;
use super::cache::{file_name, CachedShard, ShardCache};
use super::config::{LoaderConfig, OrderSpec};
use super::error::LoaderError;
use super::fetch::Fetcher;
use super::index::{Index, LeftOut, Sample};
use super::order::{rank_batches, EpochPlan, OrderSettings, Planner, SampleKey, NO_GROUP};
use super::state::{fingerprint, ResumeState};
use super::stats::{add_s, Counters, LoaderStats};

/// What the index holds, for logs and benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSummary {
    pub clips: u64,
    /// (bucket, [frames, height, width], clips).
    pub shapes: Vec<(String, [u32; 3], u64)>,
    pub media_shards: usize,
    pub left_out: LeftOut,
    /// Where remote shards are cached (none when every dataset is read in place).
    pub cache_dir: Option<PathBuf>,
}

enum Msg {
    Epoch { plan: Arc<EpochPlan>, start: usize },
    Batch(Result<Batch, LoaderError>),
}

/// Where the consumer is: the epoch's plan, where this rank started in it, batches taken.
struct Cursor {
    plan: Arc<EpochPlan>,
    start: usize,
    taken: usize,
}

struct Shared {
    config: LoaderConfig,
    index: Arc<Index>,
    planner: Planner,
    fetcher: Fetcher,
    decodes: Semaphore,
    counters: Arc<Counters>,
    /// Set when the loader is dropped: work cancelled then is not a skipped clip.
    stopping: std::sync::atomic::AtomicBool,
}

/// The streaming loader: an iterator of [`Batch`]es for this rank, across epochs.
pub struct Loader {
    shared: Arc<Shared>,
    spec: OrderSpec,
    fingerprint: String,
    runtime: Option<tokio::runtime::Runtime>,
    rx: mpsc::Receiver<Msg>,
    cursor: Option<Cursor>,
    /// The state before the first batch.
    start: (u64, u64),
}

impl Loader {
    /// Opens the datasets, builds the index and starts loading epoch 0 from its beginning.
    pub fn new(config: LoaderConfig) -> Result<Loader, LoaderError> {
        Loader::start(config, None)
    }

    /// Continues where `state` was saved: the same batches, per rank, that would have followed
    /// (with any `world_size`). Refused, naming what differs, when the order config or the data
    /// changed.
    pub fn resume(config: LoaderConfig, state: &ResumeState) -> Result<Loader, LoaderError> {
        Loader::start(config, Some(state))
    }

    fn start(config: LoaderConfig, state: Option<&ResumeState>) -> Result<Loader, LoaderError> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(config.decode_workers + 4)
            .thread_name("kelp-loader")
            .enable_all()
            .build()
            .map_err(|e| LoaderError::Stopped(format!("starting the loader runtime: {e}")))?;
        let index = Arc::new(block_on(&runtime, Index::build(&config))?);
        let keys: Vec<SampleKey> = index
            .samples
            .iter()
            .map(|s| SampleKey {
                dataset: s.dataset,
                shard: s.shard,
                shape: s.shape,
                group: s.cluster.unwrap_or(NO_GROUP),
            })
            .collect();
        let settings = OrderSettings {
            seed: config.seed,
            batch_size: config.batch_size,
            drop_last: config.drop_last,
            shuffle_shards: config.shuffle_shards,
            epoch_samples: config.epoch_samples,
            dataset_weights: config.datasets.iter().map(|d| d.weight).collect(),
            dataset_names: config.datasets.iter().map(|d| d.uri.clone()).collect(),
            bucket_weights: &config.bucket_weights,
            shape_buckets: index.shapes.iter().map(|s| s.bucket.clone()).collect(),
            cluster_balance: config.cluster_balance.as_ref(),
        };
        let planner = Planner::new(&keys, &settings)?;
        let spec = OrderSpec {
            datasets: index.sources.iter().map(|s| s.identity.clone()).collect(),
            batch_size: config.batch_size,
            frames: config.frames,
            size: config.size,
            bucket_weights: config.bucket_weights.clone(),
            cluster_balance: config.cluster_balance.clone(),
            epoch_samples: config.epoch_samples,
            shuffle_shards: config.shuffle_shards,
            drop_last: config.drop_last,
        };
        let fingerprint = fingerprint(&spec);
        let (epoch, g0, samples) = match state {
            None => (0, 0, 0),
            Some(st) => {
                st.check(config.seed, &spec)?;
                let plan = planner.epoch(st.epoch);
                let g0 = plan
                    .prefix
                    .binary_search(&st.samples_consumed)
                    .map_err(|_| {
                        LoaderError::Resume(format!(
                            "samples_consumed = {} is not a batch boundary of epoch {}",
                            st.samples_consumed, st.epoch
                        ))
                    })?;
                (st.epoch, g0, st.samples_consumed)
            }
        };

        let counters = Arc::new(Counters::default());
        let requests = Arc::new(Semaphore::new(config.fetch_concurrency));
        let cache = {
            let _guard = runtime.enter();
            open_cache(&config, &index, requests.clone(), counters.clone())?
        };
        let fetcher = Fetcher::new(index.clone(), cache, requests, counters.clone());
        let shared = Arc::new(Shared {
            decodes: Semaphore::new(config.decode_workers),
            stopping: std::sync::atomic::AtomicBool::new(false),
            config,
            index,
            planner,
            fetcher,
            counters,
        });
        let (tx, rx) = mpsc::channel(2);
        runtime.spawn(produce(shared.clone(), tx, epoch, g0));
        Ok(Loader {
            shared,
            spec,
            fingerprint,
            runtime: Some(runtime),
            rx,
            cursor: None,
            start: (epoch, samples),
        })
    }

    /// Where the loader is: save it with a checkpoint, give it to [`Loader::resume`]. The same
    /// value on every rank after the same number of batches.
    pub fn state(&self) -> ResumeState {
        let (epoch, samples_consumed) = match &self.cursor {
            None => self.start,
            Some(c) => {
                let world = self.shared.config.world_size;
                let total = c.plan.batches.len();
                let done = (c.start + c.taken * world).min(total);
                let drop_tail = self.shared.config.drop_last && total - done < world;
                if c.taken > 0 && (done == total || drop_tail) {
                    (c.plan.epoch + 1, 0)
                } else {
                    (c.plan.epoch, c.plan.prefix[done])
                }
            }
        };
        ResumeState {
            seed: self.shared.config.seed,
            epoch,
            samples_consumed,
            fingerprint: self.fingerprint.clone(),
            spec: self.spec.clone(),
        }
    }

    pub fn stats(&self) -> LoaderStats {
        self.shared.counters.snapshot()
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// Batches this rank gets in `epoch` from its start.
    pub fn epoch_len(&self, epoch: u64) -> usize {
        let c = &self.shared.config;
        let plan = self.shared.planner.epoch(epoch);
        rank_batches(plan.batches.len(), 0, c.rank, c.world_size, c.drop_last).len()
    }

    /// The global batch order of `epoch`, as clip ids (for tests and inspection).
    pub fn epoch_order(&self, epoch: u64) -> Vec<Vec<String>> {
        let index = &self.shared.index;
        self.shared
            .planner
            .epoch(epoch)
            .batches
            .iter()
            .map(|b| {
                b.samples
                    .iter()
                    .map(|&i| index.samples[i as usize].clip_id.clone())
                    .collect()
            })
            .collect()
    }

    pub fn summary(&self) -> IndexSummary {
        let index = &self.shared.index;
        let mut counts = vec![0u64; index.shapes.len()];
        for s in &index.samples {
            counts[s.shape as usize] += 1;
        }
        IndexSummary {
            clips: index.samples.len() as u64,
            shapes: index
                .shapes
                .iter()
                .zip(counts)
                .map(|(s, n)| (s.bucket.clone(), [s.frames, s.height, s.width], n))
                .collect(),
            media_shards: index.shards.len(),
            left_out: index.left_out.clone(),
            cache_dir: self
                .shared
                .fetcher
                .cache
                .as_ref()
                .map(|c| c.dir().to_path_buf()),
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match futures::executor::block_on(self.rx.recv())? {
                Msg::Epoch { plan, start } => {
                    self.cursor = Some(Cursor {
                        plan,
                        start,
                        taken: 0,
                    })
                }
                Msg::Batch(Ok(b)) => {
                    if let Some(c) = self.cursor.as_mut() {
                        c.taken += 1;
                    }
                    return Some(Ok(b));
                }
                Msg::Batch(Err(e)) => return Some(Err(e)),
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.rx.close();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` to completion on `rt` (from a thread of its own when the caller is already inside
/// an async runtime, where blocking on another would panic).
fn block_on<F>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return rt.block_on(fut);
    }
    std::thread::scope(|s| match s.spawn(|| rt.block_on(fut)).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    })
}

fn open_cache(
    config: &LoaderConfig,
    index: &Index,
    requests: Arc<Semaphore>,
    counters: Arc<Counters>,
) -> Result<Option<ShardCache>, LoaderError> {
    let cached: Vec<bool> = index
        .sources
        .iter()
        .map(|s| config.cache_dir.is_some() || s.dataset.location.local_dir.is_none())
        .collect();
    let mut shards = HashMap::new();
    for (id, s) in index.shards.iter().enumerate() {
        if !cached[s.dataset as usize] {
            continue;
        }
        let src = &index.sources[s.dataset as usize];
        shards.insert(
            id as u32,
            CachedShard {
                location: src.dataset.location.clone(),
                path: s.info.path.clone(),
                bytes: s.info.bytes,
                file: file_name(&src.identity.run, &s.info.path, s.info.bytes),
            },
        );
    }
    if shards.is_empty() {
        return Ok(None);
    }
    let base = config.cache_dir.clone().unwrap_or_else(|| {
        let runs: Vec<&str> = index
            .sources
            .iter()
            .map(|s| s.identity.run.as_str())
            .collect();
        let key = blake3::hash(runs.join("\n").as_bytes()).to_hex();
        std::env::temp_dir()
            .join("kelp-loader")
            .join(&key.as_str()[..16])
    });
    let dir = base.join(format!("rank-{}", config.rank));
    ShardCache::open(dir, config.cache_limit, shards, requests, counters).map(Some)
}

/// The background producer: this rank's batches of each epoch, in order, `prefetch_batches`
/// ahead of the consumer.
async fn produce(shared: Arc<Shared>, tx: mpsc::Sender<Msg>, first_epoch: u64, first_start: usize) {
    let c = &shared.config;
    let mut epoch = first_epoch;
    let mut start = first_start;
    loop {
        if c.epochs.is_some_and(|n| epoch >= n) {
            return;
        }
        let plan = Arc::new(shared.planner.epoch(epoch));
        let mine = rank_batches(plan.batches.len(), start, c.rank, c.world_size, c.drop_last);
        if mine.is_empty() && start == 0 {
            let e = LoaderError::Empty(format!(
                "epoch {epoch} has {} batches of {} clips, fewer than the {} ranks",
                plan.batches.len(),
                c.batch_size,
                c.world_size
            ));
            let _ = tx.send(Msg::Batch(Err(e))).await;
            return;
        }
        if tx
            .send(Msg::Epoch {
                plan: plan.clone(),
                start,
            })
            .await
            .is_err()
        {
            return;
        }
        let mut batches = futures::stream::iter(mine)
            .map(|g| load_batch(shared.clone(), plan.clone(), g))
            .buffered(c.prefetch_batches.max(1));
        while let Some(b) = batches.next().await {
            if tx.send(Msg::Batch(Ok(b))).await.is_err() {
                return;
            }
        }
        epoch += 1;
        start = 0;
    }
}

/// Fetches and decodes one planned batch's clips and lays them out `[B, C, T, H, W]`.
async fn load_batch(shared: Arc<Shared>, plan: Arc<EpochPlan>, g: usize) -> Batch {
    let planned = &plan.batches[g];
    let index = &shared.index;
    let shape = &index.shapes[planned.shape as usize];
    let req = ClipDecodeRequest {
        frames: shape.frames,
        width: shape.width,
        height: shape.height,
    };
    let clips = futures::future::join_all(planned.samples.iter().map(|&i| {
        let shared = shared.clone();
        async move {
            let sample = &shared.index.samples[i as usize];
            load_clip(&shared, sample, req).await
        }
    }))
    .await;
    let started = Instant::now();
    let per = 3 * (shape.frames * shape.height * shape.width) as usize;
    let good = clips.iter().filter(|c| c.is_ok()).count();
    let mut pixels = Vec::with_capacity(good * per);
    let mut clip_ids = Vec::with_capacity(good);
    let mut captions = Vec::with_capacity(good);
    let mut fps = Vec::with_capacity(good);
    let mut skipped = Vec::new();
    for (&i, clip) in planned.samples.iter().zip(clips) {
        let sample = &index.samples[i as usize];
        match clip {
            Ok(p) => {
                pixels.extend_from_slice(&p);
                clip_ids.push(sample.clip_id.clone());
                captions.push(sample.caption.clone());
                fps.push(sample.fps);
            }
            Err(_) if shared.stopping.load(std::sync::atomic::Ordering::SeqCst) => {}
            Err(reason) => {
                shared.counters.skip(&sample.clip_id, &reason);
                skipped.push(sample.clip_id.clone());
            }
        }
    }
    let counters = &shared.counters;
    counters
        .clips
        .fetch_add(good as u64, std::sync::atomic::Ordering::Relaxed);
    counters.frames.fetch_add(
        good as u64 * shape.frames as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    counters
        .batches
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    add_s(&counters.batch_ns, started.elapsed().as_secs_f64());
    Batch {
        bucket: shape.bucket.clone(),
        clip_ids,
        captions,
        fps,
        shape: [
            good,
            3,
            shape.frames as usize,
            shape.height as usize,
            shape.width as usize,
        ],
        pixels,
        epoch: plan.epoch,
        index: g as u64,
        skipped,
    }
}

/// One clip's pixels `[C, T, H, W]`, or why it is skipped.
async fn load_clip(
    shared: &Shared,
    sample: &Sample,
    req: ClipDecodeRequest,
) -> Result<Vec<u8>, String> {
    let bytes = shared
        .fetcher
        .fetch(sample)
        .await
        .map_err(|e| format!("fetching: {e}"))?;
    let _permit = shared.decodes.acquire().await.map_err(|e| e.to_string())?;
    let decoded = tokio::task::spawn_blocking(move || decode_clip(bytes, &req))
        .await
        .map_err(|e| format!("decoder stopped: {e}"))?
        .map_err(|e| format!("decoding: {e}"))?;
    add_s(&shared.counters.decode_ns, decoded.decode_s);
    add_s(&shared.counters.resize_ns, decoded.resize_s);
    Ok(decoded.pixels)
}
