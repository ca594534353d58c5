//! The exactly-once commit protocol of a run.
//!
//! 1. **Plan.** The first process of a run lists the sources, sorts them, chunks them into
//!    partitions and creates `_kelp/run.json` conditionally. Every other process (another
//!    worker, another machine, a resumed run) reads that plan instead of listing again, and
//!    refuses to go on if its DAG's fingerprint differs.
//! 2. **Stage.** A worker holding a partition's lease ([`super::lease`]) writes its shards under
//!    `_kelp/staging/p-PPPPP/<attempt>/`, a prefix no reader looks at and no other attempt uses.
//! 3. **Commit.** It creates `_kelp/commits/p-PPPPP.json` conditionally: the record names the
//!    attempt and its shards. Only one create can succeed, so a partition is committed once
//!    whatever crashes, retries or lease take-overs happened; a loser deletes its staging.
//! 4. **Promote.** The committed attempt's shards are copied to their final names
//!    (`clips/part-PPPPP-SSSSS.parquet`) and the partition's staging is deleted, crashed
//!    attempts' leftovers included. Copies are idempotent, so anyone may redo this from the
//!    record after a crash ([`finalize`] does, for every committed partition still staged).
//! 5. **Manifest.** When every partition is committed, `_manifest.json` is derived from the
//!    records in partition order: identical for a resumed and an uninterrupted run.
//!
//! Readers list only what the manifest (or, during a run, the commit records) name.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::io::{self, Created};
use super::lease::{self, Owner};
use super::manifest::{self, Manifest, TableManifest, MANIFEST_FILE};
use crate::error::{PipelineError, Result};
use crate::source::SourceEntry;
use crate::store::Location;

pub const KELP_DIR: &str = "_kelp";
pub const RUN_FILE: &str = "_kelp/run.json";
const COMMITS: &str = "_kelp/commits";
const FAILURES: &str = "_kelp/failures";
const STAGING: &str = "_kelp/staging";

pub fn commit_rel(partition: u32) -> String {
    format!("{COMMITS}/p-{partition:05}.json")
}

pub fn failure_rel(partition: u32) -> String {
    format!("{FAILURES}/p-{partition:05}.json")
}

pub fn staging_rel(partition: u32, attempt: &str) -> String {
    format!("{STAGING}/p-{partition:05}/{attempt}")
}

/// The partition number of `p-00003.json` or `p-00003`.
fn partition_of(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("p-")?;
    digits.strip_suffix(".json").unwrap_or(digits).parse().ok()
}

/// The sources of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPlan {
    pub videos: Vec<SourceEntry>,
}

/// `_kelp/run.json`: what a run is and how its work is split. Written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    pub format: u32,
    pub run_id: String,
    /// BLAKE3 of the DAG's nodes, their parameters and the shard size: every process of a run
    /// must run the same DAG.
    pub fingerprint: String,
    /// The DAG file that started the run, for messages.
    pub dag: String,
    pub source: String,
    pub created_unix_ms: u64,
    pub partitions: Vec<PartitionPlan>,
    /// Dataset-wide passes of the run, in order; pass `k` is committed as unit
    /// `partitions.len() + k` once every partition is (see [`crate::pass`]).
    #[serde(default)]
    pub passes: Vec<String>,
}

impl RunPlan {
    /// Data partitions (the M of `--partitions M`).
    pub fn count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The commit units of the run's passes.
    pub fn pass_units(&self) -> std::ops::Range<u32> {
        self.count()..self.count() + self.passes.len() as u32
    }

    /// Every unit that must commit before the manifest: partitions, then passes.
    pub fn units(&self) -> std::ops::Range<u32> {
        0..self.pass_units().end
    }

    /// The pass committed as `unit` (one of the run's, or one run on its own by `kelp pass`).
    pub fn pass_at(&self, unit: u32) -> Option<&str> {
        let m = self.count();
        if unit < m {
            return None;
        }
        if let Some(p) = self.passes.get((unit - m) as usize) {
            return Some(p);
        }
        crate::pass::PASSES
            .iter()
            .find(|p| crate::pass::standalone_unit(m, p.name) == Some(unit))
            .map(|p| p.name)
    }

    pub fn videos(&self) -> usize {
        self.partitions.iter().map(|p| p.videos.len()).sum()
    }
}

/// How many partitions `entries` get: at most `max_videos` videos and, roughly, `max_bytes`
/// source bytes each; at least one.
pub fn partition_count(entries: &[SourceEntry], max_videos: usize, max_bytes: u64) -> usize {
    let n = entries.len();
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    let by_count = n.div_ceil(max_videos.max(1));
    let by_bytes = bytes.div_ceil(max_bytes.max(1)) as usize;
    by_count.max(by_bytes).max(1)
}

/// Splits the sorted `entries` into `count` contiguous partitions of similar byte size (every
/// partition gets at least one video while there are enough). Deterministic.
pub fn split(entries: &[SourceEntry], count: usize) -> Vec<PartitionPlan> {
    let count = count.max(1);
    let n = entries.len();
    if n <= count {
        return (0..count)
            .map(|k| PartitionPlan {
                videos: entries.get(k).cloned().into_iter().collect(),
            })
            .collect();
    }
    // Unknown sizes (0) weigh like the average known one, so they still spread out.
    let known: Vec<u64> = entries.iter().map(|e| e.size).filter(|&s| s > 0).collect();
    let avg = if known.is_empty() {
        1
    } else {
        (known.iter().sum::<u64>() / known.len() as u64).max(1)
    };
    let w: Vec<u128> = entries
        .iter()
        .map(|e| u128::from(if e.size > 0 { e.size } else { avg }))
        .collect();
    let total: u128 = w.iter().sum();
    let mut out = Vec::with_capacity(count);
    let mut start = 0usize;
    let mut acc: u128 = 0;
    for k in 0..count {
        if k == count - 1 {
            out.push(PartitionPlan {
                videos: entries[start..].to_vec(),
            });
            break;
        }
        let target = total * (k as u128 + 1) / count as u128;
        let max_end = n - (count - k - 1);
        let mut end = start + 1;
        acc += w[start];
        while end < max_end {
            let with = acc + w[end];
            // Take the next video while that brings the cut closer to the target.
            if with <= target || with - target < target.saturating_sub(acc) {
                acc = with;
                end += 1;
            } else {
                break;
            }
        }
        out.push(PartitionPlan {
            videos: entries[start..end].to_vec(),
        });
        start = end;
    }
    out
}

/// Reads `_kelp/run.json`.
pub async fn read_plan(out: &Location) -> Result<Option<RunPlan>> {
    io::get_json(out, RUN_FILE).await
}

/// Creates the run plan, or returns the one another process created first (`false`).
pub async fn create_or_join(out: &Location, plan: &RunPlan) -> Result<(RunPlan, bool)> {
    let id = plan.run_id.clone();
    match io::create_json(out, RUN_FILE, plan, |p: &RunPlan| p.run_id == id).await? {
        Created::Ours => Ok((plan.clone(), true)),
        Created::Theirs(existing) => Ok((existing, false)),
    }
}

/// A partition's commit record: the attempt whose shards are the partition's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub format: u32,
    pub run_id: String,
    pub partition: u32,
    pub attempt: String,
    pub owner: Owner,
    pub committed_unix_ms: u64,
    /// Shards with their final paths (relative to the dataset root), per table.
    pub tables: BTreeMap<String, TableManifest>,
    pub videos: u64,
    pub videos_ok: u64,
    pub videos_error: u64,
    #[serde(default)]
    pub videos_rejected: u64,
    #[serde(default)]
    pub clips_rejected: u64,
    /// (uri, reason) of the partition's failed videos.
    pub errors: Vec<(String, String)>,
}

/// The result of trying to commit.
pub enum Commit {
    /// Our record is the partition's commit.
    Ours,
    /// Another attempt committed first; ours must be discarded.
    Lost(Box<CommitRecord>),
}

/// Commits `rec` (conditional create). On success the shards are promoted at once.
pub async fn commit(out: &Location, rec: &CommitRecord) -> Result<Commit> {
    let attempt = rec.attempt.clone();
    let rel = commit_rel(rec.partition);
    match io::create_json(out, &rel, rec, |r: &CommitRecord| r.attempt == attempt).await? {
        Created::Ours => {
            info!(partition = rec.partition, attempt = %rec.attempt, "partition committed");
            promote(out, rec).await?;
            Ok(Commit::Ours)
        }
        Created::Theirs(winner) => {
            warn!(
                partition = rec.partition,
                winner = %winner.owner,
                "partition {} was committed by another attempt; discarding ours",
                rec.partition
            );
            discard(out, rec.partition, &rec.attempt).await?;
            Ok(Commit::Lost(Box::new(winner)))
        }
    }
}

/// Deletes one attempt's staging (after it lost, or failed).
pub async fn discard(out: &Location, partition: u32, attempt: &str) -> Result<()> {
    for m in io::list(out, &staging_rel(partition, attempt)).await? {
        io::delete(out, &m.location).await?;
    }
    Ok(())
}

/// Copies the committed attempt's shards to their final names, then deletes every staged object
/// of the partition (other attempts' leftovers too). Idempotent.
pub async fn promote(out: &Location, rec: &CommitRecord) -> Result<()> {
    let staging = staging_rel(rec.partition, &rec.attempt);
    for table in rec.tables.values() {
        for shard in &table.shards {
            let from = out.child(&format!("{staging}/{}", shard.path));
            let to = out.child(&shard.path);
            let copied = io::retry(&shard.path, || {
                object_store::ObjectStoreExt::copy(out.store.as_ref(), &from, &to)
            })
            .await;
            match copied {
                Ok(()) => {}
                // Promoted before (the staged copy is gone): the final one must be there.
                Err(object_store::Error::NotFound { .. }) => {
                    let head = io::retry(&shard.path, || {
                        object_store::ObjectStoreExt::head(out.store.as_ref(), &to)
                    })
                    .await;
                    if let Err(e) = head {
                        return Err(PipelineError::Store {
                            uri: out.object_url(&to),
                            message: format!(
                                "partition {} is committed but this shard is neither staged nor in place ({e}); the dataset is damaged: rerun with --overwrite",
                                rec.partition
                            ),
                        });
                    }
                }
                Err(e) => return Err(io::store_err(out, &shard.path, "promoting", e)),
            }
        }
    }
    let all = io::list(out, &format!("{STAGING}/p-{:05}", rec.partition)).await?;
    for m in all {
        io::delete(out, &m.location).await?;
    }
    remove_empty_dirs(out, &format!("{STAGING}/p-{:05}", rec.partition));
    debug!(partition = rec.partition, "promoted");
    Ok(())
}

/// Local disks keep empty folders after deletes; tidy them (best effort).
fn remove_empty_dirs(out: &Location, rel: &str) {
    let Some(dir) = &out.local_dir else { return };
    let root = dir.join(rel);
    let mut dirs: Vec<_> = walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Committed partition numbers (one listing).
pub async fn committed(out: &Location) -> Result<BTreeSet<u32>> {
    Ok(io::list(out, COMMITS)
        .await?
        .iter()
        .filter_map(|m| partition_of(m.location.filename()?))
        .collect())
}

/// Every commit record, by partition.
pub async fn records(out: &Location) -> Result<BTreeMap<u32, CommitRecord>> {
    let mut map = BTreeMap::new();
    for p in committed(out).await? {
        if let Some(r) = io::get_json::<CommitRecord>(out, &commit_rel(p)).await? {
            map.insert(p, r);
        }
    }
    Ok(map)
}

/// The manifest the records of `plan`'s run describe, shards in partition order.
pub fn derive_manifest(plan: &RunPlan, records: &BTreeMap<u32, CommitRecord>) -> Manifest {
    let mut tables: BTreeMap<String, TableManifest> = BTreeMap::new();
    let mut latest = 0;
    let mut n = 0;
    for rec in records.values().filter(|r| r.run_id == plan.run_id) {
        if rec.partition < plan.count() {
            n += 1;
        }
        latest = latest.max(rec.committed_unix_ms);
        for (name, t) in &rec.tables {
            let entry = tables.entry(name.clone()).or_default();
            entry.rows += t.rows;
            entry.shards.extend(t.shards.iter().cloned());
        }
    }
    Manifest {
        format: 1,
        kelp_version: env!("CARGO_PKG_VERSION").into(),
        committed_unix: latest / 1000,
        dag: plan.dag.clone(),
        tables,
        run_id: Some(plan.run_id.clone()),
        partitions: Some(plan.count()),
        committed_partitions: Some(n),
    }
}

/// What readers see of an unfinished run: its committed partitions.
pub async fn view(out: &Location) -> Result<Option<Manifest>> {
    let Some(plan) = read_plan(out).await? else {
        return Ok(None);
    };
    let recs = records(out).await?;
    let m = derive_manifest(&plan, &recs);
    warn!(
        dataset = %out.uri,
        "the run is unfinished: showing {} of {} partitions (see kelp status)",
        recs.len(),
        plan.count()
    );
    Ok(Some(m))
}

/// When every partition of `plan` is committed: finishes any interrupted promotion, writes the
/// manifest, removes the leases. Returns the manifest, or `None` while partitions are missing.
/// Safe to run from several processes at once: they write the same manifest.
pub async fn finalize(out: &Location, plan: &RunPlan) -> Result<Option<Manifest>> {
    if let Some(m) = manifest::read(out).await? {
        if m.run_id.as_deref() == Some(plan.run_id.as_str()) {
            return Ok(Some(m));
        }
    }
    let recs = records(out).await?;
    if plan.units().any(|p| !recs.contains_key(&p)) {
        return Ok(None);
    }
    if let Some(r) = recs.values().find(|r| r.run_id != plan.run_id) {
        return Err(PipelineError::Other(format!(
            "{}: partition {} was committed by run {}, not this run ({}); rerun with --overwrite",
            out.uri, r.partition, r.run_id, plan.run_id
        )));
    }
    promote_staged(out, &recs).await?;
    // Leases and failure records are moot once every partition is committed; they go before
    // the manifest so that a finished dataset never keeps them.
    lease::clear_all(out).await?;
    for f in io::list(out, FAILURES).await? {
        io::delete(out, &f.location).await?;
    }
    remove_empty_dirs(out, KELP_DIR);
    let m = derive_manifest(plan, &recs);
    manifest::write(out, &m).await?;
    info!(dataset = %out.uri, partitions = plan.count(), "manifest written");
    Ok(Some(m))
}

/// Finishes the promotion of every committed unit whose staging is still there (its committer
/// crashed between commit and promotion). Idempotent.
pub async fn promote_staged(out: &Location, recs: &BTreeMap<u32, CommitRecord>) -> Result<()> {
    let staged: BTreeSet<u32> = io::list(out, STAGING)
        .await?
        .iter()
        .filter_map(|m| {
            let rel = out.relative(&m.location)?;
            let part = rel.strip_prefix(STAGING)?.trim_start_matches('/');
            partition_of(part.split('/').next()?)
        })
        .collect();
    for p in staged {
        if let Some(rec) = recs.get(&p) {
            promote(out, rec).await?;
        }
    }
    Ok(())
}

/// The data partitions' committed tables as a manifest: what a pass reads.
pub fn data_manifest(plan: &RunPlan, records: &BTreeMap<u32, CommitRecord>) -> Manifest {
    let data: BTreeMap<u32, CommitRecord> = records
        .iter()
        .filter(|(p, _)| **p < plan.count())
        .map(|(p, r)| (*p, r.clone()))
        .collect();
    derive_manifest(plan, &data)
}

/// Writes the manifest again from every record of the run (after `kelp pass` added a unit).
pub async fn rewrite_manifest(out: &Location, plan: &RunPlan) -> Result<Manifest> {
    let recs = records(out).await?;
    let m = derive_manifest(plan, &recs);
    manifest::write(out, &m).await?;
    Ok(m)
}

/// The last failure of a partition, for `kelp status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub partition: u32,
    pub attempt: String,
    pub owner: Owner,
    pub at_unix_ms: u64,
    pub error: String,
    /// Failed attempts recorded so far (by any worker).
    pub failures: u32,
}

/// Records (best effort) that an attempt at `partition` failed.
pub async fn record_failure(
    out: &Location,
    partition: u32,
    attempt: &str,
    owner: &Owner,
    error: &str,
) {
    let rel = failure_rel(partition);
    let before = io::get_json::<FailureRecord>(out, &rel)
        .await
        .ok()
        .flatten()
        .map(|f| f.failures)
        .unwrap_or(0);
    let rec = FailureRecord {
        partition,
        attempt: attempt.into(),
        owner: owner.clone(),
        at_unix_ms: io::now_ms(),
        error: error.into(),
        failures: before + 1,
    };
    if let Err(e) = io::put_json(out, &rel, &rec).await {
        warn!(partition, "could not record the failure: {e}");
    }
}

/// Deletes everything kelp wrote at `out`: the manifest first (readers stop seeing the
/// dataset), then the run plan and commit records, then shards and the rest.
pub async fn clear(out: &Location) -> Result<()> {
    let all = io::list(out, "").await?;
    let mut doomed: Vec<_> = all
        .into_iter()
        .filter_map(|m| {
            let rel = out.relative(&m.location)?.to_string();
            let ours = rel == MANIFEST_FILE || rel.starts_with("_kelp/") || is_shard(&rel);
            ours.then_some((rel, m.location))
        })
        .collect();
    let rank = |rel: &str| -> u8 {
        if rel == MANIFEST_FILE {
            0
        } else if rel == RUN_FILE {
            1
        } else if rel.starts_with(COMMITS) {
            2
        } else {
            3
        }
    };
    doomed.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
    for (_, p) in doomed {
        io::delete(out, &p).await?;
    }
    remove_empty_dirs(out, KELP_DIR);
    Ok(())
}

/// True for `<table>/part-PPPPP-SSSSS.parquet`, a shard of any table (whichever node brought it).
pub fn is_shard(rel: &str) -> bool {
    let Some((table, file)) = rel.split_once('/') else {
        return false;
    };
    let valid_table = !table.is_empty()
        && !table.starts_with('_')
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let shard = file
        .strip_prefix("part-")
        .and_then(|f| f.strip_suffix(".parquet"))
        .and_then(|f| f.split_once('-'))
        .is_some_and(|(p, s)| digits(p, 5) && digits(s, 5));
    valid_table && shard
}

/// A partition's state for `kelp status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionState {
    Done,
    Running,
    Failed,
    Pending,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: u32,
    pub state: PartitionState,
    pub videos: usize,
    /// Who committed it, or holds its lease.
    pub owner: Option<String>,
    pub clips: Option<u64>,
    pub error: Option<String>,
    pub failures: u32,
    /// The pass this unit runs (`None` for a data partition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub dataset: String,
    pub run_id: String,
    pub dag: String,
    pub complete: bool,
    /// Rows per table over the committed partitions (every table any node brought).
    pub tables: BTreeMap<String, u64>,
    pub partitions: Vec<PartitionStatus>,
}

impl RunStatus {
    pub fn count(&self, state: PartitionState) -> usize {
        self.partitions.iter().filter(|p| p.state == state).count()
    }
}

/// The state of every partition of the run at `out`; `None` when no partitioned run is there.
pub async fn status(out: &Location) -> Result<Option<RunStatus>> {
    let Some(plan) = read_plan(out).await? else {
        return Ok(None);
    };
    let recs = records(out).await?;
    let mut tables: BTreeMap<String, u64> = BTreeMap::new();
    for r in recs.values().filter(|r| r.run_id == plan.run_id) {
        for (name, t) in &r.tables {
            *tables.entry(name.clone()).or_default() += t.rows;
        }
    }
    let mut failures: BTreeMap<u32, FailureRecord> = BTreeMap::new();
    for m in io::list(out, FAILURES).await? {
        if let Some(p) = m.location.filename().and_then(partition_of) {
            if let Some(f) = io::get_json::<FailureRecord>(out, &failure_rel(p)).await? {
                failures.insert(p, f);
            }
        }
    }
    let now = io::now_ms();
    let mut parts = Vec::with_capacity(plan.partitions.len());
    let mut units: Vec<u32> = plan.units().collect();
    units.extend(recs.keys().filter(|p| **p >= plan.units().end));
    for p in units {
        let videos = plan
            .partitions
            .get(p as usize)
            .map_or(0, |pp| pp.videos.len());
        let pass = plan.pass_at(p).map(str::to_string);
        let fail = failures.get(&p);
        let st = if let Some(r) = recs.get(&p) {
            PartitionStatus {
                partition: p,
                state: PartitionState::Done,
                videos,
                pass,
                owner: Some(r.owner.to_string()),
                clips: r.tables.get("clips").map(|t| t.rows),
                error: None,
                failures: fail.map(|f| f.failures).unwrap_or(0),
            }
        } else {
            let holder = lease::current(out, p).await?.filter(|l| !l.is_free(now));
            let state = match (&holder, fail) {
                (Some(_), _) => PartitionState::Running,
                (None, Some(_)) => PartitionState::Failed,
                (None, None) => PartitionState::Pending,
            };
            PartitionStatus {
                partition: p,
                state,
                videos,
                pass,
                owner: holder.map(|h| h.owner.to_string()),
                clips: None,
                error: fail.map(|f| f.error.clone()),
                failures: fail.map(|f| f.failures).unwrap_or(0),
            }
        };
        parts.push(st);
    }
    let complete = manifest::read(out)
        .await?
        .is_some_and(|m| m.run_id.as_deref() == Some(plan.run_id.as_str()));
    Ok(Some(RunStatus {
        dataset: out.uri.clone(),
        run_id: plan.run_id,
        dag: plan.dag,
        complete,
        tables,
        partitions: parts,
    }))
}

/// A shard of a table as it will be named once promoted.
pub fn final_shard(table: &str, partition: u32, seq: usize) -> String {
    format!("{table}/part-{partition:05}-{seq:05}.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;
    use object_store::{ObjectStoreExt, PutPayload};

    fn record(attempt: &str) -> CommitRecord {
        let shard = crate::dataset::ShardInfo {
            path: "clips/part-00000-00000.parquet".into(),
            rows: 1,
            bytes: attempt.len() as u64,
        };
        CommitRecord {
            format: 1,
            run_id: "run".into(),
            partition: 0,
            attempt: attempt.into(),
            owner: Owner::current(None),
            committed_unix_ms: 1,
            tables: BTreeMap::from([(
                "clips".to_string(),
                TableManifest {
                    rows: 1,
                    shards: vec![shard],
                },
            )]),
            videos: 1,
            videos_ok: 1,
            videos_error: 0,
            videos_rejected: 0,
            clips_rejected: 0,
            errors: vec![],
        }
    }

    /// Eight attempts stage different bytes and commit at once: one wins, its shard is the one
    /// in place, every staged object is gone.
    async fn exactly_one_of_racing_commits_wins(out: Location) {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let attempt = format!("attempt-{i}");
                let staged = out.child(&format!(
                    "{}/clips/part-00000-00000.parquet",
                    staging_rel(0, &attempt)
                ));
                out.store
                    .put(&staged, PutPayload::from(attempt.clone().into_bytes()))
                    .await
                    .unwrap();
                let won = matches!(commit(&out, &record(&attempt)).await.unwrap(), Commit::Ours);
                (attempt, won)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (attempt, won) = t.await.unwrap();
            if won {
                winners.push(attempt);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let rec: CommitRecord = io::get_json(&out, &commit_rel(0)).await.unwrap().unwrap();
        assert_eq!(rec.attempt, winners[0]);
        let fin = out
            .store
            .get(&out.child("clips/part-00000-00000.parquet"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            &fin[..],
            winners[0].as_bytes(),
            "the winner's shard is in place"
        );
        assert!(
            io::list(&out, STAGING).await.unwrap().is_empty(),
            "staging cleaned"
        );
    }

    #[tokio::test]
    async fn racing_commits_on_memory_and_local_stores_commit_once() {
        exactly_one_of_racing_commits_wins(store::resolve("memory://commit-race/ds").unwrap())
            .await;
        let dir = tempfile::tempdir().unwrap();
        exactly_one_of_racing_commits_wins(store::resolve(dir.path().to_str().unwrap()).unwrap())
            .await;
    }

    #[test]
    fn racing_commits_on_s3_commit_once() {
        let moto = crate::testing::MotoServer::start();
        moto.bucket("kelp-race");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap()
            .block_on(exactly_one_of_racing_commits_wins(
                moto.location("kelp-race", "ds"),
            ));
    }

    /// Lease throughput against the S3 test server: W workers claim and commit M empty
    /// partitions. Run: `cargo test -p kelp-pipeline --lib lease_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn lease_throughput_on_s3() {
        let moto = crate::testing::MotoServer::start();
        moto.bucket("kelp-leases");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        for (workers, contended) in [
            (1usize, false),
            (4, false),
            (16, false),
            (4, true),
            (16, true),
        ] {
            let out = moto.location("kelp-leases", &format!("w{workers}-{contended}"));
            let m = 200u32;
            let before = crate::store::instrument::request_counts();
            let t = std::time::Instant::now();
            rt.block_on(async {
                let mut tasks = Vec::new();
                for w in 0..workers {
                    let out = out.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut owner = Owner::current(Some(w));
                        owner.host = format!("bench-{w}");
                        // Disjoint: worker w takes partitions w, w+W, ...; contended: every
                        // worker tries every partition, starting at its own offset.
                        let mine: Vec<u32> = if contended {
                            (0..m)
                                .map(|k| (k + w as u32 * m / workers as u32) % m)
                                .collect()
                        } else {
                            (w as u32..m).step_by(workers).collect()
                        };
                        let mut done = 0;
                        for p in mine {
                            let attempt = io::random_id();
                            let ttl = std::time::Duration::from_secs(60);
                            if let lease::Claim::Acquired(_) =
                                lease::claim(&out, p, &attempt, &owner, ttl).await.unwrap()
                            {
                                let mut r = record(&attempt);
                                r.partition = p;
                                r.tables.clear();
                                if matches!(commit(&out, &r).await.unwrap(), Commit::Ours) {
                                    done += 1;
                                }
                            }
                        }
                        done
                    }));
                }
                let mut total = 0;
                for t in tasks {
                    total += t.await.unwrap();
                }
                assert_eq!(total, m, "every partition committed exactly once");
            });
            let secs = t.elapsed().as_secs_f64();
            let req = crate::store::instrument::request_counts().since(&before);
            println!(
                "lease+commit on moto: {workers:>2} workers ({}), {m} partitions in {secs:.2} s = {:.0} partitions/s; {:.1} requests/partition ({req})",
                if contended { "contended" } else { "disjoint" },
                m as f64 / secs,
                req.total() as f64 / m as f64
            );
        }
    }

    fn entries(sizes: &[u64]) -> Vec<SourceEntry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| SourceEntry {
                uri: format!("v{i:03}.mp4"),
                location: format!("/v{i:03}.mp4"),
                size: s,
            })
            .collect()
    }

    fn lens(plan: &[PartitionPlan]) -> Vec<usize> {
        plan.iter().map(|p| p.videos.len()).collect()
    }

    #[test]
    fn shards_of_any_table_are_recognised_and_nothing_else() {
        assert!(is_shard("signatures/part-00003-00012.parquet"));
        assert!(is_shard("clips/part-00000-00000.parquet"));
        assert!(!is_shard("clips/part-0-0.parquet"));
        assert!(!is_shard("raw/video.mp4"));
        assert!(!is_shard("a/b/part-00000-00000.parquet"));
        assert!(!is_shard("_kelp/part-00000-00000.parquet"));
    }

    #[test]
    fn equal_sizes_split_into_equal_counts() {
        assert_eq!(lens(&split(&entries(&[10; 9]), 3)), [3, 3, 3]);
    }

    #[test]
    fn splits_balance_bytes_not_counts() {
        // One huge video and many small ones: the huge one gets a partition of its own.
        let p = split(&entries(&[100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]), 2);
        assert_eq!(lens(&p), [1, 10]);
    }

    #[test]
    fn every_video_lands_in_exactly_one_partition_in_order() {
        let e = entries(&[5, 1, 9, 2, 7, 3, 3, 8, 1, 1, 6]);
        for m in 1..=13 {
            let p = split(&e, m);
            assert_eq!(p.len(), m);
            let flat: Vec<_> = p.iter().flat_map(|p| p.videos.iter().cloned()).collect();
            assert_eq!(flat, e, "m = {m}");
            if m <= e.len() {
                assert!(
                    p.iter().all(|p| !p.videos.is_empty()),
                    "m = {m}: {:?}",
                    lens(&p)
                );
            }
        }
    }

    #[test]
    fn partition_count_respects_both_limits() {
        let e = entries(&[10; 10]);
        assert_eq!(partition_count(&e, 4, u64::MAX), 3);
        assert_eq!(partition_count(&e, 100, 25), 4);
        assert_eq!(partition_count(&[], 4, 25), 1);
    }
}
