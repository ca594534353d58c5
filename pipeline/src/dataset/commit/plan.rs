//! Step 1 of the protocol: the run plan, written once; every later process joins it.

use serde::{Deserialize, Serialize};

use super::super::io::{self, Created};
use super::RUN_FILE;
use crate::error::Result;
use crate::source::SourceEntry;
use crate::store::Location;

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
        crate::pass::all()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(sizes: &[u64]) -> Vec<SourceEntry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| SourceEntry {
                uri: format!("v{i:03}.mp4"),
                location: format!("/v{i:03}.mp4"),
                size: s,
                copy_of: None,
            })
            .collect()
    }

    fn lens(plan: &[PartitionPlan]) -> Vec<usize> {
        plan.iter().map(|p| p.videos.len()).collect()
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
