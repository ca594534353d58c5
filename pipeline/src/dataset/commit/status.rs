//! Failure records and `kelp status`: the state of every unit of a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::super::io;
use super::super::lease::{self, Owner};
use super::super::manifest;
use super::{failure_rel, partition_of, read_plan, records, FAILURES};
use crate::error::Result;
use crate::store::Location;

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
    for r in recs
        .values()
        .filter(|r| r.run_id == plan.run_id && r.adds_rows())
    {
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

/// The `kelp status` table.
impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use PartitionState as S;
        let passes = self.partitions.iter().filter(|p| p.pass.is_some()).count();
        let data = self.partitions.len() - passes;
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let units = match passes {
            0 => plural(data, "partition", "partitions"),
            n => format!(
                "{} and {}",
                plural(data, "partition", "partitions"),
                plural(n, "pass", "passes")
            ),
        };
        writeln!(
            f,
            "{}: run {} ({}), {units}: {} done, {} running, {} failed, {} pending{}",
            self.dataset,
            self.run_id,
            self.dag,
            self.count(S::Done),
            self.count(S::Running),
            self.count(S::Failed),
            self.count(S::Pending),
            if self.complete { "; complete" } else { "" }
        )?;
        let rows: Vec<String> = self
            .tables
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        writeln!(f, "rows committed: {}", rows.join(", "))?;
        writeln!(
            f,
            "{:>9}  {:<8}  {:>6}  {:>6}  detail",
            "partition", "state", "videos", "clips"
        )?;
        for p in &self.partitions {
            let state = match p.state {
                S::Done => "done",
                S::Running => "running",
                S::Failed => "failed",
                S::Pending => "pending",
            };
            let clips = p.clips.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            let mut detail = Vec::new();
            if let Some(pass) = &p.pass {
                detail.push(format!("pass {pass}"));
            }
            if let Some(o) = &p.owner {
                detail.push(match p.state {
                    S::Done => format!("committed by {o}"),
                    _ => format!("leased by {o}"),
                });
            }
            if let Some(e) = &p.error {
                if p.state != S::Done {
                    detail.push(format!("{} failed attempt(s), last: {e}", p.failures));
                }
            }
            writeln!(
                f,
                "{:>9}  {:<8}  {:>6}  {:>6}  {}",
                p.partition,
                state,
                p.videos,
                clips,
                detail.join("; ")
            )?;
        }
        Ok(())
    }
}
