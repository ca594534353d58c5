//! Runs a compiled DAG over every source video.
//!
//! Shape: a producer hands videos to a blocking pool, at most `workers` at once (a semaphore);
//! each worker runs the per-video plan (one decode) and sends the finished video into a bounded
//! channel; the writer reorders results into source order (so shards are deterministic), turns
//! them into Arrow batches and writes Parquet shards, then commits the manifest. A slow writer
//! fills the channel, which blocks workers, which stops the producer: memory stays bounded.

mod progress;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kelp_operators::VideoContext;
use object_store::ObjectStoreExt;
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, warn};

use crate::dag::CompiledDag;
use crate::dataset::schema::{self, DatasetSchema};
use crate::dataset::{manifest, Manifest, TableWriter, MANIFEST_FILE};
use crate::error::{PipelineError, Result};
use crate::filter::SqlFilter;
use crate::source;
use crate::store::{self, Location};

pub use progress::Progress;

/// Per-run choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace an existing dataset at the output.
    pub overwrite: bool,
    /// Overrides the DAG's `[engine] workers`.
    pub workers: Option<usize>,
    /// Overrides the DAG's source / output URIs.
    pub source: Option<String>,
    pub output: Option<String>,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub output: String,
    pub videos: u64,
    pub videos_ok: u64,
    pub videos_error: u64,
    /// Videos a node's thresholds turned away before clipping (see `rejections`).
    pub videos_rejected: u64,
    /// Clips turned away by filters and thresholds.
    pub clips_rejected: u64,
    pub boundaries: u64,
    pub clips: u64,
    pub seconds: f64,
    /// Seconds per node id (and `decode`), summed over videos.
    pub node_seconds: Vec<(String, f64)>,
    /// (uri, reason) of every failed video.
    pub errors: Vec<(String, String)>,
    /// Problems met while listing sources that did not stop the run.
    pub listing_problems: Vec<String>,
}

const VIDEOS_PER_BATCH: usize = 256;

/// Runs `compiled` to completion and commits the dataset.
pub async fn run(compiled: &CompiledDag, opts: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let mut source_spec = compiled.dag.source.clone();
    if let Some(s) = &opts.source {
        source_spec.uri = s.clone();
    }
    let output_uri = opts
        .output
        .clone()
        .unwrap_or_else(|| compiled.dag.output.uri.clone());
    let out = store::resolve(&output_uri)?;
    prepare_output(&out, opts.overwrite).await?;

    let (videos, listing_problems) = source::list(&source_spec)?;
    let total = videos.len();
    let workers = opts
        .workers
        .or(compiled.dag.engine.workers)
        .unwrap_or_else(default_workers)
        .max(1);
    info!(videos = total, workers, output = %output_uri, "run started");

    let (tx, mut rx) = mpsc::channel::<(usize, VideoContext)>(compiled.dag.engine.queue);
    let permits = Arc::new(Semaphore::new(workers));
    let plan = compiled.plan.clone();
    let filters = compiled.filters.clone();
    let schema = compiled.schema.clone();
    let producer = tokio::spawn(async move {
        for (index, video) in videos.into_iter().enumerate() {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let plan = plan.clone();
            let filters = filters.clone();
            let schema = schema.clone();
            let tx = tx.clone();
            tokio::task::spawn_blocking(move || {
                let mut ctx = plan.run(video);
                apply_filters(&mut ctx, &filters, &schema);
                drop(permit);
                // The receiver only goes away when the writer failed; that error is reported.
                let _ = tx.blocking_send((index, ctx));
            });
        }
    });

    let shard_rows = compiled.dag.output.shard_rows;
    let mut writers: Vec<(&str, TableWriter)> = compiled
        .schema
        .tables()
        .into_iter()
        .map(|(name, table_schema)| {
            (
                name,
                TableWriter::new(out.clone(), name, table_schema, shard_rows, 0),
            )
        })
        .collect();
    let mut summary = RunSummary {
        output: output_uri.clone(),
        listing_problems,
        ..Default::default()
    };
    let mut progress = Progress::new(total as u64, opts.progress);
    let mut reorder: BTreeMap<usize, VideoContext> = BTreeMap::new();
    let mut next = 0usize;
    let mut ready: Vec<VideoContext> = Vec::new();
    while let Some((index, ctx)) = rx.recv().await {
        progress.video_done(&ctx);
        reorder.insert(index, ctx);
        while let Some(ctx) = reorder.remove(&next) {
            next += 1;
            account(&mut summary, &ctx);
            ready.push(ctx);
        }
        if ready.len() >= VIDEOS_PER_BATCH {
            write_group(&mut writers, &compiled.schema, &ready).await?;
            ready.clear();
        }
        if next == total {
            break;
        }
    }
    producer
        .await
        .map_err(|e| PipelineError::Other(format!("the scheduler stopped: {e}")))?;
    if next != total {
        return Err(PipelineError::Other(format!(
            "only {next} of {total} videos came back from the workers"
        )));
    }
    write_group(&mut writers, &compiled.schema, &ready).await?;
    progress.finish();

    let mut tables = BTreeMap::new();
    for (name, w) in writers {
        tables.insert(name.to_string(), w.finish().await?);
    }
    let m = Manifest {
        format: 1,
        kelp_version: env!("CARGO_PKG_VERSION").into(),
        committed_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        dag: compiled.dag.file.clone(),
        tables,
    };
    manifest::write(&out, &m).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    info!(
        videos = summary.videos,
        ok = summary.videos_ok,
        errors = summary.videos_error,
        clips = summary.clips,
        seconds = summary.seconds,
        "run committed"
    );
    Ok(summary)
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn account(summary: &mut RunSummary, ctx: &VideoContext) {
    summary.videos += 1;
    if ctx.is_ok() {
        summary.videos_ok += 1;
    } else if ctx.status == kelp_operators::VideoStatus::Rejected {
        summary.videos_rejected += 1;
    } else {
        summary.videos_error += 1;
        let reason = ctx.error.clone().unwrap_or_default();
        warn!(uri = %ctx.source.uri, "{reason}");
        summary.errors.push((ctx.source.uri.clone(), reason));
    }
    summary.boundaries += ctx.boundaries.len() as u64;
    summary.clips += ctx.clips.len() as u64;
    summary.clips_rejected += ctx.rejections.iter().filter(|r| r.clip.is_some()).count() as u64;
    for (id, secs) in &ctx.timings {
        match summary.node_seconds.iter_mut().find(|(n, _)| n == id) {
            Some(e) => e.1 += secs,
            None => summary.node_seconds.push((id.clone(), *secs)),
        }
    }
}

async fn write_group(
    writers: &mut [(&str, TableWriter)],
    schema: &DatasetSchema,
    group: &[VideoContext],
) -> Result<()> {
    if group.is_empty() {
        return Ok(());
    }
    for (name, batch) in schema.batches(group)? {
        match writers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, writer)) => writer.push(batch).await?,
            None => return Err(PipelineError::Other(format!("no writer for table {name}"))),
        }
    }
    Ok(())
}

/// Runs the `filter` nodes over a finished video; a filter that cannot be evaluated fails the
/// video (validation already type-checked it, so this is rare).
fn apply_filters(ctx: &mut VideoContext, filters: &[SqlFilter], schema: &DatasetSchema) {
    for f in filters {
        if !ctx.is_ok() {
            return;
        }
        let _span = tracing::debug_span!("filter", node = %f.node, uri = %ctx.source.uri).entered();
        let t = Instant::now();
        if let Err(e) = f.apply(ctx, schema) {
            ctx.fail(format!("{}: {e}", ctx.source.uri));
        }
        ctx.timings
            .push((f.node.clone(), t.elapsed().as_secs_f64()));
    }
}

/// Refuses to overwrite a committed dataset unless asked; clears kelp's own files when asked
/// (and stale shards of an uncommitted earlier run).
async fn prepare_output(out: &Location, overwrite: bool) -> Result<()> {
    if manifest::read(out).await?.is_some() && !overwrite {
        return Err(PipelineError::OutputExists {
            uri: out.uri.clone(),
            manifest: MANIFEST_FILE.into(),
        });
    }
    let mut listing = out.store.list(Some(&out.prefix));
    let mut doomed = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| PipelineError::Store {
            uri: out.uri.clone(),
            message: e.to_string(),
        })?;
        let rel = meta
            .location
            .as_ref()
            .strip_prefix(out.prefix.as_ref())
            .unwrap_or(meta.location.as_ref())
            .trim_start_matches('/');
        let ours = rel == MANIFEST_FILE
            || schema::TABLES
                .iter()
                .any(|(t, _)| rel.starts_with(&format!("{t}/part-")) && rel.ends_with(".parquet"));
        if ours {
            doomed.push(meta.location);
        }
    }
    // The manifest goes first so a crash mid-clean never leaves a manifest naming missing shards.
    doomed.sort_by_key(|p| !p.as_ref().ends_with(MANIFEST_FILE));
    for p in doomed {
        out.store
            .delete(&p)
            .await
            .map_err(|e| PipelineError::Store {
                uri: out.uri.clone(),
                message: format!("removing {p}: {e}"),
            })?;
    }
    Ok(())
}
