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
//! 6. **Repair** (after the manifest, by `kelp run --resume` when remote calls failed): a repair
//!    unit rewrites the shards holding failed rows, commits like any unit, and its record names
//!    the shards it replaces; the manifest is derived again with each replacement standing where
//!    the shard it replaces stood, and the replaced objects are deleted after that.
//!
//! Readers list only what the manifest (or, during a run, the commit records) name.

//!
//! Files: [`plan`] (step 1), this module (steps 2–4: records, commit, promotion), [`finalize`]
//! (step 5, the view of an unfinished run, `--overwrite`), [`status`] (failures and `kelp status`).

mod finalize;
mod plan;
mod status;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

pub use finalize::{
    clear, data_manifest, derive_manifest, finalize, is_shard, rewrite_manifest, view,
};
pub use plan::{create_or_join, partition_count, read_plan, split, PartitionPlan, RunPlan};
pub use status::{
    record_failure, status, FailureRecord, PartitionState, PartitionStatus, RunStatus,
};

use super::io::{self, Created};
use super::lease::Owner;
use super::manifest::TableManifest;
use crate::error::{PipelineError, Result};
use crate::store::Location;

pub const KELP_DIR: &str = "_kelp";
pub const RUN_FILE: &str = "_kelp/run.json";
pub(crate) const COMMITS: &str = "_kelp/commits";
pub(crate) const FAILURES: &str = "_kelp/failures";
pub(crate) const STAGING: &str = "_kelp/staging";

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
pub(crate) fn partition_of(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("p-")?;
    digits.strip_suffix(".json").unwrap_or(digits).parse().ok()
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
    /// A repair unit's shards, each taking the place of a committed shard (old path → new
    /// path): the manifest lists the new one where the old one stood (see [`derive_manifest`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replaces: BTreeMap<String, String>,
}

impl CommitRecord {
    /// True when the unit adds rows (a partition or a pass), false when it only replaces shards.
    pub fn adds_rows(&self) -> bool {
        self.replaces.is_empty()
    }
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
pub(crate) fn remove_empty_dirs(out: &Location, rel: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::lease;
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
            replaces: BTreeMap::new(),
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
}
