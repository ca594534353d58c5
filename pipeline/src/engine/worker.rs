//! The claim loop one worker process runs: list what is committed, claim an uncommitted
//! partition's lease, process it while a heartbeat renews the lease, commit it, repeat until
//! every target partition is committed (by anyone) or given up after repeated failures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, info_span, warn, Instrument};

use super::{process_partition, process_pass, record_of, RunContext};
use crate::dataset::commit::{self, Commit, RunPlan};
use crate::dataset::io;
use crate::dataset::lease::{self, Claim, Lease, Owner};
use crate::error::{PipelineError, Result};

/// What one worker did.
#[derive(Debug, Default)]
pub struct WorkOutcome {
    /// Partitions this worker committed.
    pub committed: Vec<u32>,
    /// Partitions it gave up on, with the last error.
    pub given_up: Vec<(u32, String)>,
    /// Seconds per node over the videos it processed.
    pub node_seconds: Vec<(String, f64)>,
}

/// Works on `targets` until each is committed or given up.
pub(crate) async fn work(
    ctx: &RunContext<'_>,
    plan: &RunPlan,
    targets: &[u32],
) -> Result<WorkOutcome> {
    let out = &ctx.out;
    let owner = Owner::current(ctx.opts.worker_index);
    let max_attempts = ctx.compiled.dag.engine.partition_attempts;
    let mut outcome = WorkOutcome::default();
    let mut failures: BTreeMap<u32, (u32, String)> = BTreeMap::new();
    let mut given_up: BTreeSet<u32> = BTreeSet::new();
    // Spread workers over the partitions so they do not all queue for the first one.
    let offset = match (ctx.opts.worker_index, targets.len()) {
        (Some(w), n) if n > 0 => (w * 7919) % n,
        _ => 0,
    };
    let mut listing_errors = 0;
    // Idle polls back off from 100 ms to 2 s: quick to notice the last commits of a run, cheap
    // for many idle workers waiting on long partitions.
    let mut idle = Duration::from_millis(100);
    loop {
        let committed = match commit::committed(out).await {
            Ok(c) => {
                listing_errors = 0;
                c
            }
            Err(e) if listing_errors < 5 => {
                listing_errors += 1;
                warn!("listing commit records failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let todo: Vec<u32> = targets
            .iter()
            .copied()
            .filter(|p| !committed.contains(p) && !given_up.contains(p))
            .collect();
        if todo.is_empty() {
            break;
        }
        // A pass waits for every data partition.
        let data_done = (0..plan.count()).all(|p| committed.contains(&p));
        let todo: Vec<u32> = todo
            .into_iter()
            .filter(|p| *p < plan.count() || data_done)
            .collect();
        if todo.is_empty() {
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_secs(2));
            continue;
        }
        let start = offset % todo.len();
        let mut wait = idle;
        let mut worked = false;
        for &p in todo[start..].iter().chain(&todo[..start]) {
            let attempt = io::random_id();
            let claim = match lease::claim(out, p, &attempt, &owner, ctx.ttl).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(partition = p, "claiming failed: {e}");
                    wait = wait.min(Duration::from_millis(200));
                    continue;
                }
            };
            let lease = match claim {
                Claim::Acquired(l) => l,
                Claim::Busy { holder, retry_in } => {
                    tracing::debug!(partition = p, holder = %holder.owner, "busy");
                    wait = wait.min(retry_in);
                    continue;
                }
            };
            worked = true;
            let span = info_span!("partition", partition = p, attempt = %attempt);
            match attempt_partition(ctx, plan, p, lease, &owner)
                .instrument(span)
                .await
            {
                Ok(Done::Committed(secs)) => {
                    outcome.committed.push(p);
                    merge(&mut outcome.node_seconds, secs);
                }
                Ok(Done::AlreadyCommitted) => {}
                Err(e) => {
                    let msg = e.to_string();
                    warn!(partition = p, "attempt failed: {msg}");
                    commit::record_failure(out, p, &attempt, &owner, &msg).await;
                    let entry = failures.entry(p).or_insert((0, String::new()));
                    entry.0 += 1;
                    entry.1 = msg;
                    if entry.0 >= max_attempts {
                        given_up.insert(p);
                        outcome.given_up.push((p, entry.1.clone()));
                    }
                }
            }
            break;
        }
        if worked {
            idle = Duration::from_millis(100);
        } else {
            tokio::time::sleep(wait).await;
            idle = (idle * 2).min(Duration::from_secs(2));
        }
    }
    Ok(outcome)
}

enum Done {
    Committed(Vec<(String, f64)>),
    AlreadyCommitted,
}

fn merge(into: &mut Vec<(String, f64)>, from: Vec<(String, f64)>) {
    for (id, secs) in from {
        match into.iter_mut().find(|(n, _)| *n == id) {
            Some(e) => e.1 += secs,
            None => into.push((id, secs)),
        }
    }
}

/// One attempt at partition `p` under `lease`: process, commit, promote. On failure the
/// attempt's staging is discarded and the lease released, so another try can start at once.
async fn attempt_partition(
    ctx: &RunContext<'_>,
    plan: &RunPlan,
    p: u32,
    lease: Lease,
    owner: &Owner,
) -> Result<Done> {
    let out = &ctx.out;
    // Committed between our listing and our claim (its holder's lease had run out)?
    if io::get_json::<commit::CommitRecord>(out, &commit::commit_rel(p))
        .await?
        .is_some()
    {
        return Ok(Done::AlreadyCommitted);
    }
    let attempt = lease.record.attempt.clone();
    let lost = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let heartbeat = tokio::spawn(heartbeat(out.clone(), lease, lost.clone(), stop_rx));
    let staging = out.at(&commit::staging_rel(p, &attempt));
    let processed = match plan.partitions.get(p as usize) {
        Some(pp) => {
            info!(videos = pp.videos.len(), "processing partition {p}");
            process_partition(ctx, p, &pp.videos, &staging, &lost).await
        }
        None => process_pass(ctx, plan, p, &staging).await,
    };
    let _ = stop_tx.send(());
    let lease = heartbeat
        .await
        .map_err(|e| PipelineError::Other(format!("lease heartbeat: {e}")))?;
    let result = match processed {
        Ok(output) if !lost.load(Ordering::Relaxed) => {
            let rec = record_of(plan, p, &attempt, owner, &output);
            match commit::commit(out, &rec).await {
                Ok(Commit::Ours) => return Ok(Done::Committed(output.summary.node_seconds)),
                Ok(Commit::Lost(_)) => return Ok(Done::AlreadyCommitted),
                Err(e) => Err(e),
            }
        }
        Ok(_) => Err(PipelineError::Other(format!(
            "partition {p}: another worker took the lease over; this attempt is discarded"
        ))),
        Err(e) => Err(e),
    };
    // Failed before committing. If the commit's answer was lost but it landed, the record is
    // ours and the partition is done; only an uncommitted attempt is discarded.
    if let Ok(Some(rec)) = io::get_json::<commit::CommitRecord>(out, &commit::commit_rel(p)).await {
        if rec.attempt == attempt {
            // Committed: a failed promotion is finished by whoever finalizes the run.
            if let Err(e) = commit::promote(out, &rec).await {
                warn!(
                    partition = p,
                    "committed; promotion left for the finalizer: {e}"
                );
            }
            return Ok(Done::Committed(Vec::new()));
        }
        let _ = commit::discard(out, p, &attempt).await;
        return Ok(Done::AlreadyCommitted);
    }
    let _ = commit::discard(out, p, &attempt).await;
    if let Some(lease) = lease {
        if let Err(e) = lease.release(out).await {
            warn!(
                partition = p,
                "releasing the lease failed (it will expire): {e}"
            );
        }
    }
    result
}

/// Renews `lease` every third of its lifetime until stopped; sets `lost` if another worker took
/// it over. Returns the lease (for release) unless it was lost.
async fn heartbeat(
    out: crate::store::Location,
    mut lease: Lease,
    lost: Arc<AtomicBool>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Option<Lease> {
    let period = (lease.ttl / 3).max(Duration::from_millis(30));
    loop {
        tokio::select! {
            _ = &mut stop => return Some(lease),
            _ = tokio::time::sleep(period) => {}
        }
        match lease.renew(&out).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(
                    partition = lease.record.partition,
                    "lease lost to another worker"
                );
                lost.store(true, Ordering::Relaxed);
                return None;
            }
            // A transient failure: the next beat tries again; the commit stays exactly-once.
            Err(e) => warn!(
                partition = lease.record.partition,
                "renewing the lease failed: {e}"
            ),
        }
    }
}
