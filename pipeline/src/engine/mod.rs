//! Runs a compiled DAG: plans the partitions of a run, claims them, processes each and commits
//! it exactly once (see [`crate::dataset::commit`]), then derives the dataset's manifest.
//!
//! Inside a partition: a producer hands videos to a blocking pool, at most `threads` at once (a
//! semaphore), fetching remote ones into the spill cache first; each runs the per-video plan
//! (one decode) and sends the finished video into a bounded channel; the writer reorders
//! results into source order (so shards are deterministic), turns them into Arrow batches and
//! writes Parquet shards under the attempt's staging prefix. A slow writer fills the channel,
//! which blocks the pool, which stops the producer: memory stays bounded. A video whose nodes
//! left remote calls (captions from a VLM server) leaves the blocking pool when its decode is
//! done; the run's [`crate::remote::RemoteStage`] sends the calls and the video goes on to the
//! writer once they have settled (a full remote queue stops the decoders the same way).
//!
//! Across partitions ([`worker`]): the same claim loop serves one process, `--workers N`
//! processes on one machine ([`fleet`]), and `--partitions M --partition i` on many machines.

//!
//! Files: [`run`] (a run's life: options, plan, claim, finalize), [`partition`] (one partition's
//! videos into staged shards, and a pass unit), [`video`] (one video through the plan),
//! [`worker`] (the claim loop), [`fleet`] (worker processes).

pub mod fleet;
mod partition;
mod progress;
mod run;
mod video;
pub mod worker;

use std::collections::BTreeMap;

use crate::dag::CompiledDag;
use crate::store::instrument::RequestCounts;
use crate::store::StoreOptions;

pub(crate) use partition::{process_partition, process_pass, record_of};
pub use progress::Progress;
pub use run::run;
pub(crate) use run::{prepare, summary_of_dataset, summary_of_records, Prepared, RunContext};
pub use video::run_video;

/// Per-run choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace an existing dataset (or unfinished run) at the output.
    pub overwrite: bool,
    /// Continue an unfinished run at the output (a finished one is left as it is).
    pub resume: bool,
    /// Videos processed at once in this process; overrides the DAG's `[engine] threads`.
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
    /// What the remote calls of each node that calls a service came to in this process.
    pub remote: Vec<crate::remote::RemoteStats>,
    /// What `--resume` did about remote calls that had failed.
    pub repaired: Option<crate::remote::repair::RepairOutcome>,
}

impl RunSummary {
    /// Rows committed to `table` (0 when the DAG has no such table).
    pub fn rows_of(&self, table: &str) -> u64 {
        self.rows.get(table).copied().unwrap_or(0)
    }
}

/// BLAKE3 of what decides a dataset's rows: the nodes, their parameters (those that decide rows:
/// [`kelp_operators::Operator::row_params`]), the shard size.
pub fn fingerprint(compiled: &CompiledDag) -> String {
    let mut h = blake3::Hasher::new();
    for n in &compiled.dag.nodes {
        let built = compiled.plan.nodes().iter().find(|p| p.id == n.id);
        let params = built.map_or_else(|| n.params.clone(), |p| p.op.row_params(&n.params));
        h.update(n.id.as_bytes());
        h.update(b"\0");
        h.update(n.op.as_bytes());
        h.update(b"\0");
        h.update(n.after.join(",").as_bytes());
        h.update(b"\0");
        h.update(params.to_string().as_bytes());
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

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The lines `kelp run` prints when it ends.
impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rejected = if self.videos_rejected > 0 {
            format!(", {} rejected", self.videos_rejected)
        } else {
            String::new()
        };
        let clips_rejected = if self.clips_rejected > 0 {
            format!(" ({} rejected)", self.clips_rejected)
        } else {
            String::new()
        };
        let what = if self.complete {
            format!("committed {}", self.output)
        } else {
            format!(
            "committed partition(s) {:?} of {} ({} of {} partitions committed; the manifest is written with the last)",
            self.partitions_mine, self.output, self.partitions_committed, self.partitions
        )
        };
        writeln!(
            f,
            "{what}: {} videos ({} ok, {} error{rejected}), {} boundaries, {} clips{clips_rejected} in {:.1} s",
            self.videos,
            self.videos_ok,
            self.videos_error,
            self.rows_of("boundaries"),
            self.rows_of("clips"),
            self.seconds
        )?;
        if self.partitions > 1 {
            writeln!(
                f,
                "{} partitions, {} by this process; object store: {}",
                self.partitions,
                self.partitions_mine.len(),
                self.requests
            )?;
        }
        let total: f64 = self.node_seconds.iter().map(|(_, t)| t).sum();
        if total > 0.0 {
            let parts: Vec<String> = self
                .node_seconds
                .iter()
                .map(|(n, t)| format!("{n} {:.0}%", 100.0 * t / total))
                .collect();
            writeln!(f, "time by step: {}", parts.join(", "))?;
        }
        for r in self
            .remote
            .iter()
            .filter(|r| r.calls_ok + r.calls_failed > 0)
        {
            writeln!(f, "remote calls of {r}")?;
        }
        if let Some(r) = self.repaired.as_ref().filter(|r| r.failed_rows > 0) {
            writeln!(f, "{r}")?;
        }
        for (uri, reason) in &self.errors {
            // Reasons already name their input; add the URI only where one does not.
            if reason.contains(uri.as_str()) {
                writeln!(f, "error: {reason}")?;
            } else {
                writeln!(f, "error: {uri}: {reason}")?;
            }
        }
        for p in &self.listing_problems {
            writeln!(f, "skipped while listing: {p}")?;
        }
        Ok(())
    }
}
