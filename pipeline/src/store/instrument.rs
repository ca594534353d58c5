//! A wrapper around every store kelp opens: it counts requests (the cost of the commit protocol
//! is measured with these counters) and, for crash tests only, injects faults.
//!
//! Fault hooks, read once from the environment:
//! - `KELP_FAULT_STORE="rate=0.05,seed=7"`: each request fails with probability `rate`; half of
//!   the failed writes fail *after* the store applied them (the ambiguous case a lost response
//!   produces), the rest before.
//! - `KELP_FAULT_AFTER_PUTS=n`: the process aborts (`std::process::abort`, no clean-up, like a
//!   SIGKILL) right after its n-th successful put.
//! - `KELP_FAULT_WORKER=k`: arm the hooks above only in the worker process whose
//!   `KELP_WORKER_INDEX` is k (see `kelp run --workers`).
//!
//! Nothing here changes what a healthy store does.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Request counts of this process, over every store it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestCounts {
    /// Plain puts (overwrite), multipart uploads counted once.
    pub put: u64,
    /// Conditional creates (`PutMode::Create`).
    pub create: u64,
    pub get: u64,
    pub head: u64,
    /// List calls (a paginated listing counts once).
    pub list: u64,
    pub delete: u64,
    pub copy: u64,
    /// Bytes the gets returned (not a request count; not in `total`).
    #[serde(default)]
    pub get_bytes: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.put + self.create + self.get + self.head + self.list + self.delete + self.copy
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            put: self.put - earlier.put,
            create: self.create - earlier.create,
            get: self.get - earlier.get,
            head: self.head - earlier.head,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
            copy: self.copy - earlier.copy,
            get_bytes: self.get_bytes - earlier.get_bytes,
        }
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests ({} put, {} create, {} get, {} head, {} list, {} delete, {} copy)",
            self.total(),
            self.put,
            self.create,
            self.get,
            self.head,
            self.list,
            self.delete,
            self.copy
        )
    }
}

#[derive(Default)]
struct Counters {
    put: AtomicU64,
    create: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
    get_bytes: AtomicU64,
}

fn counters() -> &'static Counters {
    static C: OnceLock<Counters> = OnceLock::new();
    C.get_or_init(Counters::default)
}

/// This process's request counts so far.
pub fn request_counts() -> RequestCounts {
    let c = counters();
    RequestCounts {
        put: c.put.load(Ordering::Relaxed),
        create: c.create.load(Ordering::Relaxed),
        get: c.get.load(Ordering::Relaxed),
        head: c.head.load(Ordering::Relaxed),
        list: c.list.load(Ordering::Relaxed),
        delete: c.delete.load(Ordering::Relaxed),
        copy: c.copy.load(Ordering::Relaxed),
        get_bytes: c.get_bytes.load(Ordering::Relaxed),
    }
}

/// Requests an object store makes for `ranges`: it merges ranges less than
/// `object_store::OBJECT_STORE_COALESCE_DEFAULT` (1 MiB) apart into one request.
fn merged_requests(ranges: &[Range<u64>]) -> u64 {
    let mut sorted: Vec<&Range<u64>> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.start);
    let mut requests = 0;
    let mut end: Option<u64> = None;
    for r in sorted {
        match end {
            Some(e) if r.start <= e + object_store::OBJECT_STORE_COALESCE_DEFAULT => {
                end = Some(e.max(r.end));
            }
            _ => {
                requests += 1;
                end = Some(r.end);
            }
        }
    }
    requests
}

/// Injected faults (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Probability that a request fails.
    pub rate: f64,
    pub seed: u64,
    /// Abort the process after this many successful puts.
    pub abort_after_puts: Option<u64>,
}

impl FaultConfig {
    /// The hooks from the environment, `None` when none is set (or not for this worker).
    pub fn from_env() -> Option<FaultConfig> {
        if let Ok(only) = std::env::var("KELP_FAULT_WORKER") {
            if std::env::var("KELP_WORKER_INDEX").ok().as_deref() != Some(only.trim()) {
                return None;
            }
        }
        let mut cfg = FaultConfig::default();
        let mut any = false;
        if let Ok(spec) = std::env::var("KELP_FAULT_STORE") {
            for part in spec.split(',') {
                match part.trim().split_once('=') {
                    Some(("rate", v)) => cfg.rate = v.trim().parse().unwrap_or(0.0),
                    Some(("seed", v)) => cfg.seed = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            any = cfg.rate > 0.0;
        }
        if let Some(n) = std::env::var("KELP_FAULT_AFTER_PUTS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            cfg.abort_after_puts = Some(n);
            any = true;
        }
        any.then_some(cfg)
    }
}

fn env_faults() -> Option<&'static Faults> {
    static F: OnceLock<Option<Faults>> = OnceLock::new();
    F.get_or_init(|| FaultConfig::from_env().map(Faults::new))
        .as_ref()
}

/// Shared fault state: a seeded generator and the put count.
#[derive(Debug)]
pub struct Faults {
    cfg: FaultConfig,
    draws: AtomicU64,
    puts: AtomicU64,
}

impl Faults {
    pub fn new(cfg: FaultConfig) -> Faults {
        Faults {
            cfg,
            draws: AtomicU64::new(0),
            puts: AtomicU64::new(0),
        }
    }

    /// splitmix64 over (seed, draw number): reproducible per seed up to thread interleaving.
    fn draw(&self) -> f64 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .cfg
            .seed
            .wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `Some(after)` when this request should fail: before the store sees it, or after.
    fn fail(&self) -> Option<bool> {
        if self.cfg.rate <= 0.0 {
            return None;
        }
        let d = self.draw();
        (d < self.cfg.rate).then(|| d < self.cfg.rate / 2.0)
    }

    fn put_done(&self) {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.cfg.abort_after_puts == Some(n) {
            eprintln!("kelp: KELP_FAULT_AFTER_PUTS={n}: aborting now (injected crash)");
            std::process::abort();
        }
    }
}

fn injected(op: &str, path: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "fault injection",
        source: format!("injected {op} failure on {path}").into(),
    }
}

/// Counts every request; injects faults when configured.
#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    faults: Option<Arc<Faults>>,
    env_faults: bool,
}

impl Instrumented {
    /// Wraps `inner`, with the environment's fault hooks if any are set.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Instrumented {
            inner,
            faults: None,
            env_faults: true,
        })
    }

    /// Wraps `inner` with explicit faults (tests).
    pub fn with_faults(inner: Arc<dyn ObjectStore>, faults: Arc<Faults>) -> Arc<dyn ObjectStore> {
        Arc::new(Instrumented {
            inner,
            faults: Some(faults),
            env_faults: false,
        })
    }

    fn faults(&self) -> Option<&Faults> {
        match &self.faults {
            Some(f) => Some(f.as_ref()),
            None if self.env_faults => env_faults(),
            None => None,
        }
    }
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        let c = counters();
        if create { &c.create } else { &c.put }.fetch_add(1, Ordering::Relaxed);
        let fail = self.faults().and_then(Faults::fail);
        if fail == Some(false) {
            return Err(injected("put", location.as_ref()));
        }
        let r = self.inner.put_opts(location, payload, opts).await;
        if r.is_ok() {
            if let Some(f) = self.faults() {
                f.put_done();
            }
            if fail == Some(true) {
                return Err(injected("put (after it was applied)", location.as_ref()));
            }
        }
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        counters().put.fetch_add(1, Ordering::Relaxed);
        if self.faults().and_then(Faults::fail).is_some() {
            return Err(injected("multipart put", location.as_ref()));
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let c = counters();
        if options.head { &c.head } else { &c.get }.fetch_add(1, Ordering::Relaxed);
        if self.faults().and_then(Faults::fail).is_some() {
            return Err(injected("get", location.as_ref()));
        }
        let result = self.inner.get_opts(location, options).await?;
        c.get_bytes
            .fetch_add(result.range.end - result.range.start, Ordering::Relaxed);
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // The inner store merges nearby ranges and sends one request per merged range.
        let c = counters();
        c.get.fetch_add(merged_requests(ranges), Ordering::Relaxed);
        if self.faults().and_then(Faults::fail).is_some() {
            return Err(injected("get", location.as_ref()));
        }
        let parts = self.inner.get_ranges(location, ranges).await?;
        let bytes: usize = parts.iter().map(Bytes::len).sum();
        c.get_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let faults = self.faults.clone();
        let env = self.env_faults;
        let counted = locations
            .map(move |p| {
                counters().delete.fetch_add(1, Ordering::Relaxed);
                let f = faults.as_deref().or(if env { env_faults() } else { None });
                match (p, f.and_then(Faults::fail)) {
                    (Ok(p), Some(_)) => Err(injected("delete", p.as_ref())),
                    (p, _) => p,
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        counters().list.fetch_add(1, Ordering::Relaxed);
        if self.faults().and_then(Faults::fail).is_some() {
            let e = injected("list", prefix.map(|p| p.as_ref()).unwrap_or(""));
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        counters().list.fetch_add(1, Ordering::Relaxed);
        if self.faults().and_then(Faults::fail).is_some() {
            let e = injected("list", prefix.map(|p| p.as_ref()).unwrap_or(""));
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        counters().list.fetch_add(1, Ordering::Relaxed);
        if self.faults().and_then(Faults::fail).is_some() {
            return Err(injected("list", prefix.map(|p| p.as_ref()).unwrap_or("")));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        counters().copy.fetch_add(1, Ordering::Relaxed);
        let fail = self.faults().and_then(Faults::fail);
        if fail == Some(false) {
            return Err(injected("copy", to.as_ref()));
        }
        let r = self.inner.copy_opts(from, to, options).await;
        if r.is_ok() && fail == Some(true) {
            return Err(injected("copy (after it was applied)", to.as_ref()));
        }
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        counters().copy.fetch_add(1, Ordering::Relaxed);
        if self.faults().and_then(Faults::fail).is_some() {
            return Err(injected("rename", to.as_ref()));
        }
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn requests_are_counted_by_kind() {
        let store = Instrumented::wrap(Arc::new(InMemory::new()));
        let before = request_counts();
        let p = Path::from("a/b");
        store.put(&p, PutPayload::from_static(b"x")).await.unwrap();
        store
            .put_opts(
                &Path::from("a/c"),
                PutPayload::from_static(b"y"),
                PutMode::Create.into(),
            )
            .await
            .unwrap();
        store.get(&p).await.unwrap();
        store.head(&p).await.unwrap();
        store.delete(&p).await.unwrap();
        let d = request_counts().since(&before);
        // Other tests run in parallel in this process: at least ours are there.
        assert!(
            d.put >= 1 && d.create >= 1 && d.get >= 1 && d.head >= 1 && d.delete >= 1,
            "{d}"
        );
    }

    #[tokio::test]
    async fn a_fault_rate_of_one_fails_everything_and_half_the_writes_land_anyway() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faults = Arc::new(Faults::new(FaultConfig {
            rate: 1.0,
            seed: 3,
            abort_after_puts: None,
        }));
        let store = Instrumented::with_faults(inner.clone(), faults);
        let mut landed = 0;
        for i in 0..40 {
            let p = Path::from(format!("k{i}"));
            assert!(store.put(&p, PutPayload::from_static(b"x")).await.is_err());
            if inner.head(&p).await.is_ok() {
                landed += 1;
            }
        }
        assert!(
            (8..=32).contains(&landed),
            "{landed} of 40 failed puts landed"
        );
        assert!(store.get(&Path::from("k0")).await.is_err());
    }
}
