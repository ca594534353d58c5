//! Partition leases: which worker is processing which partition.
//!
//! A lease is a chain of generations, each a conditionally created object
//! `_kelp/leases/p-00003/g-000000002.json`; the highest generation is the current holder. To
//! claim a free partition, or one whose lease expired (or whose holder process is gone, when it
//! ran on this host), a worker creates the next generation: of two workers trying at once,
//! exactly one create succeeds. The holder renews by creating the next generation itself, so a
//! holder that was taken over learns it when its renewal loses. Only `PutMode::Create` is
//! needed, which every store kelp supports (S3 If-None-Match, local create-new).
//!
//! Leases only avoid duplicated work; exactly-once is the commit record's job (see
//! [`super::commit`]): a slow holder that was taken over can never commit a second time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::io::{self, Created};
use crate::error::Result;
use crate::store::Location;

/// Who holds a lease (or wrote a record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// reused pid is not mistaken for the holder.
    pub pid_start: u64,
    /// Worker index under `kelp run --workers`.
    #[serde(default)]
    pub worker: Option<usize>,
}

impl Owner {
    /// This process. The host name comes from `KELP_HOST` when set (tests pretend to be other
    /// machines with it), else the kernel's host name.
    pub fn current(worker: Option<usize>) -> Owner {
        let pid = std::process::id();
        Owner {
            host: host_name(),
            pid,
            pid_start: process_start(pid).unwrap_or(0),
            worker,
        }
    }

    /// True only when the owner certainly ran on this host and its process is gone.
    pub fn is_dead(&self) -> bool {
        if self.host != host_name() {
            return false;
        }
        if !std::path::Path::new("/proc/self/stat").exists() {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => self.pid_start != 0 && start != self.pid_start,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.pid)?;
        if let Some(w) = self.worker {
            write!(f, " (worker {w})")?;
        }
        Ok(())
    }
}

fn host_name() -> String {
    if let Ok(h) = std::env::var("KELP_HOST") {
        if !h.trim().is_empty() {
            return h.trim().to_string();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Field 22 of `/proc/PID/stat` (start time), `None` when the process does not exist.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// One lease generation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub partition: u32,
    pub generation: u64,
    pub attempt: String,
    pub owner: Owner,
    /// Milliseconds since the Unix epoch, by the holder's clock.
    pub expires_unix_ms: u64,
    /// Given up by its holder (after a failure): free to claim at once.
    #[serde(default)]
    pub released: bool,
}

impl LeaseRecord {
    /// Free to take: released, expired, or its holder's process is gone.
    pub fn is_free(&self, now_ms: u64) -> bool {
        self.released || now_ms >= self.expires_unix_ms || self.owner.is_dead()
    }
}

fn lease_dir(partition: u32) -> String {
    format!("_kelp/leases/p-{partition:05}")
}

fn lease_rel(partition: u32, generation: u64) -> String {
    format!("{}/g-{generation:09}.json", lease_dir(partition))
}

/// The current (highest) lease generation of `partition`, if any.
pub async fn current(out: &Location, partition: u32) -> Result<Option<LeaseRecord>> {
    let objects = io::list(out, &lease_dir(partition)).await?;
    let top = objects
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            name.strip_prefix("g-")?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()
        })
        .max();
    match top {
        None => Ok(None),
        Some(g) => io::get_json(out, &lease_rel(partition, g)).await,
    }
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub record: LeaseRecord,
    pub ttl: Duration,
}

/// The outcome of a claim.
#[derive(Debug)]
pub enum Claim {
    Acquired(Lease),
    /// Someone else holds it: try again after `retry_in` (when it expires, or shortly).
    Busy {
        holder: LeaseRecord,
        retry_in: Duration,
    },
}

/// Tries to claim `partition` for `attempt`.
pub async fn claim(
    out: &Location,
    partition: u32,
    attempt: &str,
    owner: &Owner,
    ttl: Duration,
) -> Result<Claim> {
    let now = io::now_ms();
    let generation = match current(out, partition).await? {
        None => 0,
        Some(cur) if cur.attempt == attempt => cur.generation + 1,
        Some(cur) if cur.is_free(now) => {
            info!(
                partition,
                holder = %cur.owner,
                released = cur.released,
                "taking over the lease of partition {partition} (generation {})",
                cur.generation
            );
            cur.generation + 1
        }
        Some(cur) => {
            let left = cur.expires_unix_ms.saturating_sub(now);
            return Ok(Claim::Busy {
                holder: cur,
                retry_in: Duration::from_millis(left.clamp(50, 1000)),
            });
        }
    };
    let record = LeaseRecord {
        partition,
        generation,
        attempt: attempt.to_string(),
        owner: owner.clone(),
        expires_unix_ms: now + ttl.as_millis() as u64,
        released: false,
    };
    let rel = lease_rel(partition, generation);
    match io::create_json(out, &rel, &record, |r: &LeaseRecord| r.attempt == attempt).await? {
        Created::Ours => {
            debug!(partition, generation, "lease acquired");
            Ok(Claim::Acquired(Lease { record, ttl }))
        }
        Created::Theirs(holder) => Ok(Claim::Busy {
            holder,
            retry_in: Duration::from_millis(50),
        }),
    }
}

impl Lease {
    /// Extends the lease by creating the next generation. `Ok(false)`: someone took it over.
    pub async fn renew(&mut self, out: &Location) -> Result<bool> {
        let mut next = self.record.clone();
        next.generation += 1;
        next.expires_unix_ms = io::now_ms() + self.ttl.as_millis() as u64;
        let rel = lease_rel(next.partition, next.generation);
        let attempt = self.record.attempt.clone();
        match io::create_json(out, &rel, &next, |r: &LeaseRecord| r.attempt == attempt).await? {
            Created::Ours => {
                self.record = next;
                Ok(true)
            }
            Created::Theirs(_) => Ok(false),
        }
    }

    /// Gives the partition up so another worker may claim it at once (after a failure).
    pub async fn release(mut self, out: &Location) -> Result<()> {
        self.record.released = true;
        self.record.expires_unix_ms = io::now_ms();
        self.renew(out).await.map(|_| ())
    }
}

/// Removes every lease object (after the run completed: nobody needs them).
pub async fn clear_all(out: &Location) -> Result<()> {
    for m in io::list(out, "_kelp/leases").await? {
        io::delete(out, &m.location).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;

    fn owner(host: &str) -> Owner {
        Owner {
            host: host.into(),
            pid: 1,
            pid_start: 1,
            worker: None,
        }
    }

    #[tokio::test]
    async fn a_held_lease_is_busy_for_others_until_it_expires() {
        let out = store::resolve("memory://lease-test-a/ds").unwrap();
        let ttl = Duration::from_millis(300);
        let a = match claim(&out, 0, "a", &owner("elsewhere-a"), ttl)
            .await
            .unwrap()
        {
            Claim::Acquired(l) => l,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            claim(&out, 0, "b", &owner("elsewhere-b"), ttl)
                .await
                .unwrap(),
            Claim::Busy { .. }
        ));
        tokio::time::sleep(Duration::from_millis(350)).await;
        let b = match claim(&out, 0, "b", &owner("elsewhere-b"), ttl)
            .await
            .unwrap()
        {
            Claim::Acquired(l) => l,
            other => panic!("{other:?}"),
        };
        assert_eq!(b.record.generation, a.record.generation + 1);
        // The old holder learns it lost when it tries to renew.
        let mut a = a;
        assert!(!a.renew(&out).await.unwrap());
        let mut b = b;
        assert!(b.renew(&out).await.unwrap());
        assert_eq!(current(&out, 0).await.unwrap().unwrap().attempt, "b");
    }

    #[tokio::test]
    async fn a_released_lease_is_free_at_once() {
        let out = store::resolve("memory://lease-test-b/ds").unwrap();
        let ttl = Duration::from_secs(60);
        let Claim::Acquired(a) = claim(&out, 2, "a", &owner("x"), ttl).await.unwrap() else {
            panic!("not acquired")
        };
        a.release(&out).await.unwrap();
        assert!(matches!(
            claim(&out, 2, "b", &owner("y"), ttl).await.unwrap(),
            Claim::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn a_dead_local_holder_is_taken_over_before_expiry() {
        let out = store::resolve("memory://lease-test-c/ds").unwrap();
        let ttl = Duration::from_secs(60);
        let mut gone = Owner::current(None);
        gone.pid = u32::MAX - 7; // no such process
        let Claim::Acquired(_) = claim(&out, 1, "dead", &gone, ttl).await.unwrap() else {
            panic!("not acquired")
        };
        assert!(matches!(
            claim(&out, 1, "alive", &Owner::current(None), ttl)
                .await
                .unwrap(),
            Claim::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn of_many_simultaneous_claims_exactly_one_wins() {
        let out = store::resolve("memory://lease-test-d/ds").unwrap();
        let ttl = Duration::from_secs(60);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let o = owner(&format!("h{i}"));
                matches!(
                    claim(&out, 0, &format!("a{i}"), &o, ttl).await.unwrap(),
                    Claim::Acquired(_)
                )
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += t.await.unwrap() as usize;
        }
        assert_eq!(wins, 1);
    }
}
