//! Runs a compiled DAG: plans the partitions of a run, claims them, processes each and commits
//! it exactly once (see [`crate::dataset::commit`]), then derives the dataset's manifest.
//!
//! Inside a partition: a producer hands videos to a blocking pool, at most `threads` at once (a
//! semaphore), fetching remote ones into the spill cache first; each runs the per-video plan
//! (one decode) and sends the finished video into a bounded channel; the writer reorders
//! results into source order (so shards are deterministic), turns them into Arrow batches and
//! writes Parquet shards under the attempt's staging prefix. A slow writer fills the channel,
//! which blocks the pool, which stops the producer: memory stays bounded.
//!
//! Across partitions ([`worker`]): the same claim loop serves one process, `--workers N`
//! processes on one machine ([`fleet`]), and `--partitions M --partition i` on many machines.

pub mod fleet;
mod progress;
pub mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kelp_operators::{TableRows, VideoContext};
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, warn};

use crate::dag::CompiledDag;
use crate::dataset::commit::{self, CommitRecord, RunPlan};
use crate::dataset::schema::DatasetSchema;
use crate::dataset::{io, manifest, TableManifest, TableWriter, MANIFEST_FILE};
use crate::error::{PipelineError, Result};
use crate::source::{self, SourceEntry};
use crate::store::instrument::{request_counts, RequestCounts};
use crate::store::spill::SpillCache;
use crate::store::{self, Location, StoreOptions};

pub use progress::Progress;

/// Per-run choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace an existing dataset (or unfinished run) at the output.
    pub overwrite: bool,
    /// Continue an unfinished run at the output (a finished one is left as it is).
    pub resume: bool,
    /// Videos processed at once in this process; overrides the DAG's `[engine] workers`.
    pub threads: Option<usize>,
    /// Overrides the DAG's source / output URIs.
    pub source: Option<String>,
    pub output: Option<String>,
    /// S3 endpoint options for both source and output, over the DAG's.
    pub store: StoreOptions,
    /// Number of partitions of a new run (default: from `[engine] partition_videos/bytes`).
    pub partitions: Option<u32>,
    /// Process only this partition (with `partitions`: the same M on every machine).
    pub partition: Option<u32>,
    /// Set in the worker processes of `kelp run --workers N`.
    pub worker_index: Option<usize>,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
}

impl RunOptions {
    /// True when this process joins a run others may be running (a partition of it, or one of
    /// several workers): an existing run plan is joined, not an error.
    fn joins(&self) -> bool {
        self.partition.is_some() || self.worker_index.is_some()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub output: String,
    /// Totals over the committed partitions.
    pub videos: u64,
    pub videos_ok: u64,
    pub videos_error: u64,
    /// Videos a node's thresholds turned away before clipping (see `rejections`).
    pub videos_rejected: u64,
    /// Clips turned away by filters and thresholds.
    pub clips_rejected: u64,
    /// Rows per table over the committed partitions.
    pub rows: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Seconds per node id (and `decode`), summed over the videos this process ran.
    pub node_seconds: Vec<(String, f64)>,
    /// (uri, reason) of every failed video of the committed partitions.
    pub errors: Vec<(String, String)>,
    /// Problems met while listing sources that did not stop the run.
    pub listing_problems: Vec<String>,
    /// Partitions of the run, and how many are committed.
    pub partitions: u32,
    pub partitions_committed: u32,
    /// Partitions this process committed.
    pub partitions_mine: Vec<u32>,
    /// True when every partition is committed and the manifest written.
    pub complete: bool,
    /// Object-store requests this process made.
    pub requests: RequestCounts,
}

impl RunSummary {
    /// Rows committed to `table` (0 when the DAG has no such table).
    pub fn rows_of(&self, table: &str) -> u64 {
        self.rows.get(table).copied().unwrap_or(0)
    }
}

const VIDEOS_PER_BATCH: usize = 256;

/// Everything a worker needs, resolved once.
pub(crate) struct RunContext<'a> {
    pub compiled: &'a CompiledDag,
    pub opts: &'a RunOptions,
    pub out: Location,
    pub source_opts: StoreOptions,
    pub threads: usize,
    pub ttl: Duration,
    pub spill: Option<Arc<SpillCache>>,
}

impl<'a> RunContext<'a> {
    pub fn new(compiled: &'a CompiledDag, opts: &'a RunOptions) -> Result<RunContext<'a>> {
        let dag = &compiled.dag;
        let output_uri = opts
            .output
            .clone()
            .unwrap_or_else(|| dag.output.uri.clone());
        let out =
            store::resolve_with(&output_uri, &dag.output.store_options().merged(&opts.store))?;
        let threads = opts
            .threads
            .or(dag.engine.workers)
            .unwrap_or_else(default_workers)
            .max(1);
        if let (Some(i), Some(m)) = (opts.partition, opts.partitions) {
            if i >= m {
                return Err(PipelineError::Other(format!(
                    "--partition {i} is out of range: partitions are numbered 0..{}",
                    m.saturating_sub(1)
                )));
            }
        }
        if opts.partition.is_some() && opts.partitions.is_none() {
            return Err(PipelineError::Other(
                "--partition needs --partitions M (the same M on every machine)".into(),
            ));
        }
        if opts.overwrite && opts.joins() {
            return Err(PipelineError::Other(
                "--overwrite cannot be combined with --partition: every machine would wipe the others' work; clear the output once first (kelp run --overwrite without --partition, or delete it)".into(),
            ));
        }
        Ok(RunContext {
            compiled,
            opts,
            out,
            source_opts: dag.source.store_options().merged(&opts.store),
            threads,
            ttl: Duration::from_secs_f64(dag.engine.lease_s),
            spill: None,
        })
    }

    fn spill_cache(&mut self) -> Result<Arc<SpillCache>> {
        if let Some(c) = &self.spill {
            return Ok(c.clone());
        }
        let engine = &self.compiled.dag.engine;
        let root = engine
            .spill_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let cache = SpillCache::new(&root, engine.spill_bytes)?;
        self.spill = Some(cache.clone());
        Ok(cache)
    }
}

/// BLAKE3 of what decides a dataset's rows: the nodes, their parameters, the shard size.
pub fn fingerprint(compiled: &CompiledDag) -> String {
    let mut h = blake3::Hasher::new();
    for n in &compiled.dag.nodes {
        h.update(n.id.as_bytes());
        h.update(b"\0");
        h.update(n.op.as_bytes());
        h.update(b"\0");
        h.update(n.after.join(",").as_bytes());
        h.update(b"\0");
        h.update(n.params.to_string().as_bytes());
        h.update(b"\n");
    }
    for p in &compiled.dag.passes {
        h.update(b"pass\0");
        h.update(p.op.as_bytes());
        h.update(b"\0");
        h.update(p.params.to_string().as_bytes());
        h.update(b"\n");
    }
    h.update(&(compiled.dag.output.shard_rows as u64).to_le_bytes());
    h.finalize().to_hex().as_str()[..32].to_string()
}

/// How [`prepare`] found the output.
pub(crate) enum Prepared {
    /// A run to work on.
    Run {
        plan: RunPlan,
        listing_problems: Vec<String>,
    },
    /// The dataset there is complete: nothing to do.
    Complete,
}

/// Finds, checks or creates the run plan at the output (see [`RunOptions`] for the rules).
pub(crate) async fn prepare(ctx: &RunContext<'_>) -> Result<Prepared> {
    let out = &ctx.out;
    let opts = ctx.opts;
    if opts.overwrite {
        commit::clear(out).await?;
    } else {
        let existing = manifest::read(out).await?;
        let plan = commit::read_plan(out).await?;
        let complete = match (&existing, &plan) {
            (Some(m), Some(p)) => m.run_id.as_deref() == Some(p.run_id.as_str()),
            (Some(_), None) => true,
            _ => false,
        };
        if complete {
            if opts.resume || opts.joins() {
                return Ok(Prepared::Complete);
            }
            return Err(PipelineError::OutputExists {
                uri: out.uri.clone(),
                manifest: MANIFEST_FILE.into(),
            });
        }
        if let Some(plan) = plan {
            if !(opts.resume || opts.joins()) {
                let done = commit::committed(out).await?.len();
                return Err(PipelineError::Other(format!(
                    "{}: an unfinished run is here ({done} of {} partitions committed); pass --resume to continue it, or --overwrite to start again (kelp status {} shows it)",
                    out.uri,
                    plan.count(),
                    out.uri
                )));
            }
            check_plan(ctx, &plan)?;
            return Ok(Prepared::Run {
                plan,
                listing_problems: Vec::new(),
            });
        }
    }
    let mut spec = ctx.compiled.dag.source.clone();
    if let Some(s) = &opts.source {
        spec.uri = s.clone();
    }
    let (videos, listing_problems) = source::list(&spec, &ctx.source_opts).await?;
    let engine = &ctx.compiled.dag.engine;
    let count = match opts.partitions {
        Some(m) => m.max(1) as usize,
        None => commit::partition_count(&videos, engine.partition_videos, engine.partition_bytes),
    };
    let plan = RunPlan {
        format: 1,
        run_id: io::random_id(),
        fingerprint: fingerprint(ctx.compiled),
        dag: ctx.compiled.dag.file.clone(),
        source: spec.uri.clone(),
        created_unix_ms: io::now_ms(),
        partitions: commit::split(&videos, count),
        passes: ctx
            .compiled
            .dag
            .passes
            .iter()
            .map(|p| p.op.clone())
            .collect(),
    };
    let (plan, created) = commit::create_or_join(out, &plan).await?;
    if created {
        info!(run = %plan.run_id, partitions = plan.count(), videos = plan.videos(), "run planned");
    } else {
        check_plan(ctx, &plan)?;
    }
    Ok(Prepared::Run {
        plan,
        listing_problems,
    })
}

fn check_plan(ctx: &RunContext<'_>, plan: &RunPlan) -> Result<()> {
    let mine = fingerprint(ctx.compiled);
    if plan.fingerprint != mine {
        return Err(PipelineError::Other(format!(
            "{}: the run there was started by a different DAG ({}, fingerprint {} ≠ {mine}); run the same DAG, or pass --overwrite to start again",
            ctx.out.uri, plan.dag, plan.fingerprint
        )));
    }
    if let Some(m) = ctx.opts.partitions {
        if m != plan.count() {
            return Err(PipelineError::Other(format!(
                "{}: the run there has {} partitions, not --partitions {m}; use the same M everywhere",
                ctx.out.uri,
                plan.count()
            )));
        }
    }
    if let Some(s) = &ctx.opts.source {
        if s != &plan.source {
            warn!(
                "the run at {} lists {}; --source {s} is ignored when joining or resuming it",
                ctx.out.uri, plan.source
            );
        }
    }
    Ok(())
}

/// Runs `compiled` in this process: every partition (claimed one by one), or the one
/// `--partition` names; writes the manifest when the last partition is committed.
pub async fn run(compiled: &CompiledDag, opts: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let requests_before = request_counts();
    let mut ctx = RunContext::new(compiled, opts)?;
    let (plan, listing_problems) = match prepare(&ctx).await? {
        Prepared::Complete => {
            let mut s = summary_of_dataset(&ctx.out).await?;
            s.seconds = started.elapsed().as_secs_f64();
            s.requests = request_counts().since(&requests_before);
            return Ok(s);
        }
        Prepared::Run {
            plan,
            listing_problems,
        } => (plan, listing_problems),
    };
    if plan
        .partitions
        .iter()
        .flat_map(|p| &p.videos)
        .any(SourceEntry::is_remote)
    {
        ctx.spill_cache()?;
    }
    let targets: Vec<u32> = match opts.partition {
        Some(i) => vec![i],
        None => (0..plan.count()).collect(),
    };
    let mut outcome = worker::work(&ctx, &plan, &targets).await?;
    // Whoever sees every partition committed runs the passes (one at a time through their
    // leases; the others wait for the commit), so they run once after the last partition.
    if !plan.passes.is_empty() && outcome.given_up.is_empty() {
        let done = commit::committed(&ctx.out).await?;
        if (0..plan.count()).all(|p| done.contains(&p)) {
            let passes: Vec<u32> = plan.pass_units().collect();
            let more = worker::work(&ctx, &plan, &passes).await?;
            outcome.committed.extend(more.committed);
            outcome.given_up.extend(more.given_up);
        }
    }
    let finished = commit::finalize(&ctx.out, &plan).await?;
    let mut summary = summary_of_records(&ctx.out, &plan).await?;
    summary.complete = finished.is_some();
    summary.listing_problems = listing_problems;
    summary.node_seconds = outcome.node_seconds;
    summary.partitions_mine = outcome.committed;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.requests = request_counts().since(&requests_before);
    if !outcome.given_up.is_empty() {
        let list: Vec<String> = outcome
            .given_up
            .iter()
            .map(|(p, e)| format!("partition {p}: {e}"))
            .collect();
        return Err(PipelineError::Other(format!(
            "{} partition(s) failed after {} attempts each (kelp status {} shows them; kelp run --resume retries):\n  {}",
            outcome.given_up.len(),
            compiled.dag.engine.partition_attempts,
            ctx.out.uri,
            list.join("\n  ")
        )));
    }
    info!(
        videos = summary.videos,
        clips = summary.rows_of(kelp_operators::output::TABLE_CLIPS),
        partitions = summary.partitions_committed,
        complete = summary.complete,
        seconds = summary.seconds,
        "run done"
    );
    Ok(summary)
}

/// Totals of a run from its commit records.
pub(crate) async fn summary_of_records(out: &Location, plan: &RunPlan) -> Result<RunSummary> {
    let recs = commit::records(out).await?;
    let mut s = RunSummary {
        output: out.uri.clone(),
        partitions: plan.count(),
        ..Default::default()
    };
    for r in recs.values().filter(|r| r.run_id == plan.run_id) {
        if r.partition < plan.count() {
            s.partitions_committed += 1;
        }
        s.videos += r.videos;
        s.videos_ok += r.videos_ok;
        s.videos_error += r.videos_error;
        s.videos_rejected += r.videos_rejected;
        s.clips_rejected += r.clips_rejected;
        for (name, t) in &r.tables {
            *s.rows.entry(name.clone()).or_default() += t.rows;
        }
        s.errors.extend(r.errors.iter().cloned());
    }
    s.complete = plan
        .units()
        .all(|p| recs.get(&p).is_some_and(|r| r.run_id == plan.run_id));
    Ok(s)
}

/// Totals of a complete dataset (its run's records, or the manifest of an older dataset).
async fn summary_of_dataset(out: &Location) -> Result<RunSummary> {
    if let Some(plan) = commit::read_plan(out).await? {
        let mut s = summary_of_records(out, &plan).await?;
        s.complete = true;
        return Ok(s);
    }
    let m = manifest::read(out)
        .await?
        .unwrap_or_else(|| crate::dataset::Manifest {
            format: 1,
            kelp_version: String::new(),
            committed_unix: 0,
            dag: String::new(),
            tables: BTreeMap::new(),
            run_id: None,
            partitions: None,
            committed_partitions: None,
        });
    Ok(RunSummary {
        output: out.uri.clone(),
        videos: m.table("videos").map_or(0, |t| t.rows),
        rows: m.tables.iter().map(|(n, t)| (n.clone(), t.rows)).collect(),
        partitions: 1,
        partitions_committed: 1,
        complete: true,
        ..Default::default()
    })
}

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
    let videos = videos.to_vec();
    let producer = tokio::spawn(async move {
        let mut stores: BTreeMap<String, Location> = BTreeMap::new();
        for (index, entry) in videos.into_iter().enumerate() {
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
            tokio::task::spawn_blocking(move || {
                let video = run_video(&plan, video);
                drop(pinned);
                drop(permit);
                let rows = video.rows();
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
    let pass =
        (info.build)(&params).map_err(|e| PipelineError::Other(format!("pass {name}: {e}")))?;
    let records = commit::records(&ctx.out).await?;
    // A partition committed by a worker that crashed before promoting is still staged.
    commit::promote_staged(&ctx.out, &records).await?;
    let input = crate::dataset::Dataset {
        location: ctx.out.clone(),
        manifest: commit::data_manifest(plan, &records),
    };
    let shard_rows = ctx.compiled.dag.output.shard_rows;
    let tables =
        crate::pass::execute(info, pass.as_ref(), &input, staging, unit, shard_rows).await?;
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
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
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

/// One video through the plan (filters included). The plan already turns operator panics into
/// error rows; this is the last line of defence, so a bug anywhere costs one video, never the run.
pub fn run_video(
    plan: &kelp_operators::VideoPlan,
    video: kelp_operators::SourceVideo,
) -> VideoContext {
    let source = video.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(video)));
    outcome.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let id = kelp_operators::context::text_id(&format!("uri:{}", source.uri));
        let uri = source.uri.clone();
        let mut ctx = VideoContext::new(source, id, 0);
        ctx.fail(format!(
            "{uri}: kelp failed on this video (panicked: {what})"
        ));
        ctx
    })
}
