//! One commit unit's work: a partition's videos through the per-video plan into staged shards
//! (bounded channel, reordered into source order, Parquet per table), or a pass over the
//! committed partitions; and the commit record that names the result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kelp_operators::{TableRows, VideoContext};
use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

use super::{run_video, Progress, RunContext, RunSummary};
use crate::dataset::commit::{CommitRecord, RunPlan};
use crate::dataset::schema::DatasetSchema;
use crate::dataset::{io, TableManifest, TableWriter};
use crate::error::{PipelineError, Result};
use crate::source::SourceEntry;
use crate::store::spill::SpillCache;
use crate::store::{self, Location, StoreOptions};

const VIDEOS_PER_BATCH: usize = 256;

/// What processing one partition produced, before its commit.
pub(crate) struct PartitionOutput {
    pub tables: BTreeMap<String, TableManifest>,
    pub summary: RunSummary,
}

/// Processes the videos of partition `partition` into shards under `staging`. Stops early
/// (with an error) when `lost` is set: another worker took the partition over.
pub(crate) async fn process_partition(
    ctx: &RunContext<'_>,
    partition: u32,
    videos: &[SourceEntry],
    staging: &Location,
    lost: &AtomicBool,
) -> Result<PartitionOutput> {
    let compiled = ctx.compiled;
    let total = videos.len();
    let (tx, mut rx) = mpsc::channel::<Result<(usize, Finished)>>(compiled.dag.engine.queue);
    let permits = Arc::new(Semaphore::new(ctx.threads));
    let plan = compiled.plan.clone();
    let spill = ctx.spill.clone();
    let source_opts = ctx.source_opts.clone();
    let remote = ctx.remote.clone();
    let videos = videos.to_vec();
    let producer = tokio::spawn(async move {
        let mut stores: BTreeMap<String, Location> = BTreeMap::new();
        for (index, entry) in videos.into_iter().enumerate() {
            if let Some(first) = &entry.copy_of {
                // An exact copy of an earlier source: rejected as it is, never fetched.
                let mut video = VideoContext::exact_copy(entry.local_video(), entry.size, first);
                let rows = video.take_rows();
                if tx
                    .send(Ok((index, Finished { video, rows })))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (video, pinned) = if entry.is_remote() {
                let Some(cache) = &spill else {
                    let _ = tx
                        .send(Err(PipelineError::Other(
                            "no spill cache for a remote source".into(),
                        )))
                        .await;
                    return;
                };
                match fetch(cache, &mut stores, &entry, &source_opts).await {
                    Ok(Some(s)) => (
                        kelp_operators::SourceVideo {
                            uri: entry.uri.clone(),
                            path: s.path.clone(),
                        },
                        Some(s),
                    ),
                    // Gone since the listing: the video becomes an error row naming it.
                    Ok(None) => (
                        kelp_operators::SourceVideo {
                            uri: entry.uri.clone(),
                            path: cache.dir().join("missing-object"),
                        },
                        None,
                    ),
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            } else {
                (entry.local_video(), None)
            };
            let plan = plan.clone();
            let tx = tx.clone();
            let remote = remote.clone();
            tokio::task::spawn_blocking(move || {
                let mut video = run_video(&plan, video);
                drop(pinned);
                // Remote calls wait in the stage's queue, not on this decode thread.
                if let Some(stage) = remote.filter(|_| !video.remote.is_empty()) {
                    let queued = stage.hold_blocking(video.remote.len());
                    drop(permit);
                    tokio::spawn(async move {
                        use futures::FutureExt;
                        let settled = std::panic::AssertUnwindSafe(stage.settle(&mut video))
                            .catch_unwind()
                            .await;
                        if settled.is_err() {
                            let uri = video.source.uri.clone();
                            video.fail(format!(
                                "{uri}: kelp failed on this video's remote calls (panicked)"
                            ));
                        }
                        drop(queued);
                        let rows = video.take_rows();
                        let _ = tx.send(Ok((index, Finished { video, rows }))).await;
                    });
                    return;
                }
                drop(permit);
                let rows = video.take_rows();
                let ctx = Finished { video, rows };
                // The receiver only goes away when the writer failed; that error is reported.
                let _ = tx.blocking_send(Ok((index, ctx)));
            });
        }
    });

    let shard_rows = compiled.dag.output.shard_rows;
    let mut writers: Vec<(String, TableWriter)> = compiled
        .schema
        .tables()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TableWriter::new(
                    staging.clone(),
                    &t.name,
                    t.schema.clone(),
                    shard_rows,
                    partition,
                ),
            )
        })
        .collect();
    let mut summary = RunSummary::default();
    let mut progress = Progress::new(total as u64, ctx.opts.progress);
    let mut reorder: BTreeMap<usize, Finished> = BTreeMap::new();
    let mut next = 0usize;
    let mut ready: Vec<BTreeMap<String, TableRows>> = Vec::new();
    while next < total {
        let Some(msg) = rx.recv().await else { break };
        let (index, vctx) = msg?;
        if lost.load(Ordering::Relaxed) {
            return Err(PipelineError::Other(format!(
                "partition {partition}: another worker took the lease over; stopping this attempt"
            )));
        }
        progress.video_done(&vctx.video);
        reorder.insert(index, vctx);
        while let Some(done) = reorder.remove(&next) {
            next += 1;
            account(&mut summary, &done);
            ready.push(done.rows);
        }
        if ready.len() >= VIDEOS_PER_BATCH {
            write_group(&mut writers, &compiled.schema, &ready).await?;
            ready.clear();
        }
    }
    drop(rx);
    producer
        .await
        .map_err(|e| PipelineError::Other(format!("the scheduler stopped: {e}")))?;
    if next != total {
        return Err(PipelineError::Other(format!(
            "partition {partition}: only {next} of {total} videos came back from the workers"
        )));
    }
    write_group(&mut writers, &compiled.schema, &ready).await?;
    progress.finish();
    let mut tables = BTreeMap::new();
    for (name, w) in writers {
        tables.insert(name, w.finish().await?);
    }
    Ok(PartitionOutput { tables, summary })
}

/// Runs the pass committed as `unit` over the run's committed partitions, staging its tables.
pub(crate) async fn process_pass(
    ctx: &RunContext<'_>,
    plan: &RunPlan,
    unit: u32,
    staging: &Location,
) -> Result<PartitionOutput> {
    let name = plan
        .pass_at(unit)
        .ok_or_else(|| PipelineError::Other(format!("unit {unit} is no pass of the run plan")))?;
    let info = crate::pass::lookup(name).ok_or_else(|| {
        PipelineError::Other(format!("the run plan names an unknown pass {name}"))
    })?;
    let params = ctx
        .compiled
        .dag
        .passes
        .iter()
        .find(|p| p.op == name)
        .map(|p| p.params.clone())
        .unwrap_or_default();
    let shard_rows = ctx.compiled.dag.output.shard_rows;
    let tables =
        crate::pass::execute(&ctx.out, plan, info, &params, staging, unit, shard_rows).await?;
    Ok(PartitionOutput {
        tables,
        summary: RunSummary::default(),
    })
}

/// Fetches a remote video into the spill cache, retrying transient failures; `None` when the
/// object no longer exists.
async fn fetch(
    cache: &Arc<SpillCache>,
    stores: &mut BTreeMap<String, Location>,
    entry: &SourceEntry,
    opts: &StoreOptions,
) -> Result<Option<store::spill::Spilled>> {
    let loc = match stores.get(&entry.location) {
        Some(l) => l.clone(),
        None => {
            let l = store::resolve_with(&entry.location, opts)?;
            stores.insert(entry.location.clone(), l.clone());
            l
        }
    };
    let mut tries = 0;
    loop {
        tries += 1;
        match cache.fetch(&loc, &loc.prefix).await {
            Ok(s) => return Ok(Some(s)),
            Err(PipelineError::Missing { .. }) => return Ok(None),
            Err(e) => {
                if tries >= 4 {
                    return Err(e);
                }
                warn!(uri = %entry.uri, "fetch failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(50 << tries)).await;
            }
        }
    }
}

/// The commit record of a processed partition.
pub(crate) fn record_of(
    plan: &RunPlan,
    partition: u32,
    attempt: &str,
    owner: &crate::dataset::lease::Owner,
    output: &PartitionOutput,
) -> CommitRecord {
    let s = &output.summary;
    CommitRecord {
        format: 1,
        run_id: plan.run_id.clone(),
        partition,
        attempt: attempt.to_string(),
        owner: owner.clone(),
        committed_unix_ms: io::now_ms(),
        tables: output.tables.clone(),
        videos: s.videos,
        videos_ok: s.videos_ok,
        videos_error: s.videos_error,
        videos_rejected: s.videos_rejected,
        clips_rejected: s.clips_rejected,
        errors: s.errors.clone(),
        replaces: BTreeMap::new(),
    }
}

/// A video the plan finished, with its rows for every table.
struct Finished {
    video: VideoContext,
    rows: BTreeMap<String, TableRows>,
}

fn account(summary: &mut RunSummary, done: &Finished) {
    let ctx = &done.video;
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
    for (name, rows) in &done.rows {
        *summary.rows.entry(name.clone()).or_default() += rows.len as u64;
    }
    summary.clips_rejected += done
        .rows
        .get(kelp_operators::output::TABLE_REJECTIONS)
        .and_then(|r| r.column("clip_id"))
        .map_or(0, |ids| ids.iter().filter(|v| !v.is_null()).count() as u64);
    for (id, secs) in &ctx.timings {
        match summary.node_seconds.iter_mut().find(|(n, _)| n == id) {
            Some(e) => e.1 += secs,
            None => summary.node_seconds.push((id.clone(), *secs)),
        }
    }
}

async fn write_group(
    writers: &mut [(String, TableWriter)],
    schema: &DatasetSchema,
    group: &[BTreeMap<String, TableRows>],
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
