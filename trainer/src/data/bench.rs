//! `kelp bench loader`: the loader's throughput on a dataset with clip media — clips, frames and
//! media MB per second with 1 and 2 decode workers, and where the time goes (fetch, decode,
//! resize, batch) — from the local disk (read in place) and from a moto S3 server started for
//! the run (cache cold, then warm); and, with `--peer`, a PyTorch `DataLoader` decoding the same
//! clips with PyAV (one MP4 file per clip on the local disk, the layout such loaders read) in
//! the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use arrow::array::AsArray;
use kelp_pipeline::dataset::Dataset;
use kelp_pipeline::store::{self, StoreOptions};
use kelp_pipeline::testing::MotoServer;

use super::{DatasetSource, Loader, LoaderConfig, LoaderStats};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A dataset with a `media` table (local folder or store URI).
    pub dataset: String,
    pub store: StoreOptions,
    /// Clips per run (the dataset's clips repeated as needed).
    pub clips: usize,
    pub frames: u32,
    pub size: [u32; 2],
    pub batch_size: usize,
    /// Also run from a moto S3 server (cold and warm cache).
    pub s3: bool,
    /// Also run the PyTorch + PyAV peer.
    pub peer: bool,
}

/// One timed run of the loader.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub source: &'static str,
    pub cache: &'static str,
    pub workers: usize,
    /// Wall seconds from `Loader::new` to the last batch, of which opening (index) took `open_s`.
    pub seconds: f64,
    pub open_s: f64,
    /// CPU seconds the process used meanwhile (all threads).
    pub cpu_s: f64,
    pub stats: LoaderStats,
}

/// The peer's run.
#[derive(Debug, Clone)]
pub struct PeerRow {
    pub workers: usize,
    pub clips: u64,
    pub frames: u64,
    pub seconds: f64,
    /// CPU seconds of the peer's process and its workers over the same span.
    pub cpu_s: f64,
    pub media_bytes: u64,
}

/// The peer's program: the DataLoader pattern PyTorch users write for video clips.
const PEER: &str = r#"
import json, resource, sys, time
import av, numpy as np, torch
from torch.utils.data import DataLoader, Dataset

args = json.load(open(sys.argv[1]))
T, W, H = args["frames"], args["width"], args["height"]

class Clips(Dataset):
    def __init__(self, paths):
        self.paths = paths
    def __len__(self):
        return len(self.paths)
    def __getitem__(self, i):
        frames = []
        with av.open(self.paths[i]) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # one decoder thread, as kelp's workers use
            for frame in container.decode(stream):
                frames.append(frame.reformat(width=W, height=H, format="rgb24").to_ndarray())
                if len(frames) == T:
                    break
        # [T, H, W, C] -> [C, T, H, W], as the model takes it
        return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).contiguous()

loader = DataLoader(Clips(args["paths"]), batch_size=args["batch_size"],
                    num_workers=args["workers"], shuffle=False, drop_last=True)
def cpu():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

start, cpu0 = time.perf_counter(), cpu()
clips = 0
for batch in loader:
    assert batch.shape[1:] == (3, T, H, W), batch.shape
    clips += batch.shape[0]
# the workers have exited and been joined: their CPU time is in RUSAGE_CHILDREN
print(json.dumps({"clips": clips, "seconds": time.perf_counter() - start, "cpu": cpu() - cpu0}))
"#;

/// The peer's Python: `infra/install-bench.sh` makes it.
pub fn peer_python() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    let py = base.join("kelp/bench-loader/bin/python");
    py.exists().then_some(py)
}

fn config(datasets: Vec<DatasetSource>, o: &BenchOptions, workers: usize) -> LoaderConfig {
    LoaderConfig {
        datasets,
        batch_size: o.batch_size,
        seed: 1,
        frames: Some(o.frames),
        size: Some(o.size),
        epoch_samples: Some(o.clips as u64),
        epochs: Some(1),
        drop_last: true,
        decode_workers: workers,
        ..Default::default()
    }
}

fn time_run(
    config: LoaderConfig,
    source: &'static str,
    cache: &'static str,
) -> Result<BenchRow, String> {
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let mut loader = Loader::new(config).map_err(|e| e.to_string())?;
    let open_s = started.elapsed().as_secs_f64();
    for b in &mut loader {
        b.map_err(|e| e.to_string())?;
    }
    Ok(BenchRow {
        source,
        cache,
        workers: loader.config().decode_workers,
        seconds: started.elapsed().as_secs_f64(),
        open_s,
        cpu_s: cpu_seconds() - cpu0,
        stats: loader.stats(),
    })
}

/// Runs every configuration, then the peer.
pub fn run(o: &BenchOptions) -> Result<(Vec<BenchRow>, Option<PeerRow>), String> {
    let moto = if o.s3 {
        let m = MotoServer::start();
        m.bucket("kelp-bench-loader");
        // Before any loader thread runs: the S3 clients read their credentials from here.
        for (k, v) in m.env() {
            std::env::set_var(k, v);
        }
        Some(m)
    } else {
        None
    };
    let mut local = DatasetSource::new(&o.dataset);
    local.endpoint = o.store.endpoint.clone();
    local.allow_http = o.store.allow_http;
    let mut rows = Vec::new();
    for workers in [1, 2] {
        rows.push(time_run(
            config(vec![local.clone()], o, workers),
            "local disk",
            "none (read in place)",
        )?);
    }
    let scratch = std::env::temp_dir().join(format!("kelp-bench-loader-{}", std::process::id()));
    if let Some(m) = &moto {
        copy_dataset(&o.dataset, &o.store, &m.location("kelp-bench-loader", "ds"))?;
        let mut remote = DatasetSource::new("s3://kelp-bench-loader/ds");
        remote.endpoint = Some(m.endpoint());
        remote.allow_http = true;
        for workers in [1, 2] {
            let cache = scratch.join(format!("cache-{workers}"));
            let mut c = config(vec![remote.clone()], o, workers);
            c.cache_dir = Some(cache);
            rows.push(time_run(c.clone(), "moto S3", "cold")?);
            rows.push(time_run(c, "moto S3", "warm")?);
        }
    }
    let peer = if o.peer {
        let py = peer_python().ok_or(
            "the peer needs PyTorch and PyAV: run `bash infra/install-bench.sh` (or leave out --peer)",
        )?;
        Some(run_peer(&py, o, &scratch, config(vec![local], o, 2))?)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&scratch);
    Ok((rows, peer))
}

/// CPU seconds (user + system) of this process so far, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one plain struct we own; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return f64::NAN;
        }
        u
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(usage.ru_utime) + s(usage.ru_stime)
}

fn rt() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Copies every listed shard and the manifest of a dataset to `to`.
fn copy_dataset(uri: &str, opts: &StoreOptions, to: &store::Location) -> Result<(), String> {
    rt()?.block_on(async {
        let ds = Dataset::open(uri, opts).await.map_err(|e| e.to_string())?;
        let from = &ds.location;
        let mut paths: Vec<String> = ds
            .tables()
            .flat_map(|(_, t)| t.shards.iter().map(|s| s.path.clone()))
            .collect();
        paths.push(kelp_pipeline::dataset::MANIFEST_FILE.into());
        for p in paths {
            let bytes = object_store::ObjectStoreExt::get(from.store.as_ref(), &from.child(&p))
                .await
                .map_err(|e| format!("{p}: {e}"))?
                .bytes()
                .await
                .map_err(|e| format!("{p}: {e}"))?;
            store::put_object(to, &to.child(&p), bytes, store::MULTIPART_THRESHOLD)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// Writes the clips of the loader's epoch as MP4 files (in its order) and runs the peer on them.
fn run_peer(
    py: &Path,
    o: &BenchOptions,
    scratch: &Path,
    c: LoaderConfig,
) -> Result<PeerRow, String> {
    let order: Vec<String> = Loader::new(c)
        .map_err(|e| e.to_string())?
        .epoch_order(0)
        .into_iter()
        .flatten()
        .collect();
    let files = scratch.join("clips");
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    rt()?.block_on(async {
        let ds = Dataset::open(&o.dataset, &o.store)
            .await
            .map_err(|e| e.to_string())?;
        for shard in ds.shards("media").to_vec() {
            for b in ds
                .read_shard(&shard, &["clip_id", "data"])
                .await
                .map_err(|e| e.to_string())?
            {
                let ids = b.column(0).as_string::<i32>();
                let data = b.column(1).as_binary::<i64>();
                for i in 0..b.num_rows() {
                    std::fs::write(files.join(format!("{}.mp4", ids.value(i))), data.value(i))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok::<(), String>(())
    })?;
    let paths: Vec<String> = order
        .iter()
        .map(|id| files.join(format!("{id}.mp4")).display().to_string())
        .collect();
    let media_bytes = paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let args = serde_json::json!({
        "paths": paths, "frames": o.frames, "width": o.size[0], "height": o.size[1],
        "batch_size": o.batch_size, "workers": 2,
    });
    let args_file = scratch.join("peer.json");
    let script = scratch.join("peer.py");
    std::fs::write(&args_file, args.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(&script, PEER).map_err(|e| e.to_string())?;
    let out = Command::new(py)
        .arg(&script)
        .arg(&args_file)
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the peer failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "the peer's output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let clips = v["clips"].as_u64().unwrap_or(0);
    Ok(PeerRow {
        workers: 2,
        clips,
        frames: clips * o.frames as u64,
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        cpu_s: v["cpu"].as_f64().unwrap_or(f64::NAN),
        media_bytes,
    })
}

/// The results as Markdown.
pub fn table(rows: &[BenchRow], peer: Option<&PeerRow>) -> String {
    let mut out = String::from(
        "| loader | source | cache | decode workers | clips | clips/s | frames/s | media MB/s | clips per CPU-s | open s | fetch ms/clip | decode ms/clip | resize ms/clip | batch ms/clip | remote MB |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let s = &r.stats;
        let n = s.clips.max(1) as f64;
        out.push_str(&format!(
            "| kelp | {} | {} | {} | {} | {:.1} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |\n",
            r.source,
            r.cache,
            r.workers,
            s.clips,
            s.clips as f64 / r.seconds,
            s.frames as f64 / r.seconds,
            s.media_bytes as f64 / r.seconds / 1e6,
            s.clips as f64 / r.cpu_s,
            r.open_s,
            s.fetch_s * 1e3 / n,
            s.decode_s * 1e3 / n,
            s.resize_s * 1e3 / n,
            s.batch_s * 1e3 / n,
            s.remote_bytes as f64 / 1e6,
        ));
    }
    if let Some(p) = peer {
        out.push_str(&format!(
            "| PyTorch DataLoader + PyAV | local disk (one MP4 per clip) | none | {} | {} | {:.1} | {:.0} | {:.2} | {:.1} | | | | | | |\n",
            p.workers,
            p.clips,
            p.clips as f64 / p.seconds,
            p.frames as f64 / p.seconds,
            p.media_bytes as f64 / p.seconds / 1e6,
            p.clips as f64 / p.cpu_s,
        ));
        if let Some(k) = rows
            .iter()
            .find(|r| r.source == "local disk" && r.workers == p.workers)
        {
            let kelp = k.stats.clips as f64 / k.seconds;
            let theirs = p.clips as f64 / p.seconds;
            let kelp_cpu = k.stats.clips as f64 / k.cpu_s;
            let theirs_cpu = p.clips as f64 / p.cpu_s;
            out.push_str(&format!(
                "\nkelp ÷ peer with {} workers from the local disk: {:.2}x the clips/s, {:.2}x the clips per CPU-second\n",
                p.workers,
                kelp / theirs,
                kelp_cpu / theirs_cpu
            ));
        }
    }
    out
}
