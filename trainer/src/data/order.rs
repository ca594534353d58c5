//! The data order: which clips an epoch holds, how they form batches of one shape, and which
//! batches each rank takes. Pure functions of the index, the order config, the seed and the
//! epoch: no I/O, no clock, no thread count.
//!
//! An epoch, step by step:
//! 1. Quotas. Each clip weighs 1, or with cluster balance its cluster's weight (a capped
//!    cluster's clips less than 1). The epoch has `epoch_samples` samples (default: the sum of
//!    the weights, every indexed clip without cluster balance). Each (dataset, shape, cluster)
//!    cell gets `epoch_samples × dataset share × bucket share × cluster share` of them, rounded
//!    by largest remainder so they sum exactly. Shares are natural (summed weights) unless
//!    dataset or bucket weights say otherwise.
//! 2. Draws. A cell draws its quota from seeded permutations of its clips: whole permutations
//!    while the quota exceeds the cell (upsampling), then the head of one more. With natural
//!    weights every clip is drawn exactly once; a capped cluster draws other clips each epoch.
//! 3. Blocks. With `shuffle_shards = N` the `media` shards are permuted and cut into blocks of
//!    N; an epoch visits the blocks in turn, so a cache of N shards reads each shard once.
//!    Without, one block holds every shard.
//! 4. Batches. In each block, each shape's samples (plus the previous block's leftovers of that
//!    shape) are shuffled and cut into batches of `batch_size`; the block's batches are shuffled
//!    together. After the last block, leftovers become one partial batch per shape, or are
//!    dropped (`drop_last`).
//! 5. Ranks. The global batch list is the epoch. From a starting batch `g0` (0, or where a
//!    resume state says), rank r of W takes batches g0 + r, g0 + r + W, ...: disjoint, together
//!    the rest of the epoch. With `drop_last` every rank takes the same number (the last
//!    `(total − g0) mod W` batches are dropped); the global order never depends on W.

use std::collections::BTreeMap;

use super::config::{BucketWeights, ClusterBalance};
use super::error::LoaderError;
use super::rng::SplitMix;

/// What the order needs to know of one indexed sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleKey {
    pub dataset: u16,
    pub shard: u32,
    pub shape: u32,
    /// Its semantic cluster when cluster balance is on, else [`NO_GROUP`].
    pub group: u32,
}

/// The group of a sample that belongs to no cluster (or when cluster balance is off).
pub const NO_GROUP: u32 = u32::MAX;

/// A cell of the order: (dataset, shape, group).
type Cell = (u16, u32, u32);

/// One batch of the global order: sample indices (into the index) of one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub shape: u32,
    pub samples: Vec<u32>,
}

/// The batches of one epoch in global order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochPlan {
    pub epoch: u64,
    pub batches: Vec<PlannedBatch>,
    /// `prefix[g]` = samples in batches `0..g`.
    pub prefix: Vec<u64>,
}

/// Everything the order depends on.
#[derive(Debug, Clone)]
pub struct Planner {
    seed: u64,
    batch_size: usize,
    drop_last: bool,
    shuffle_shards: usize,
    shards: u32,
    /// Sample indices per cell, in index order.
    cells: BTreeMap<Cell, Vec<u32>>,
    /// Each cell's quota of an epoch.
    quotas: BTreeMap<Cell, u64>,
    shard_of: Vec<u32>,
    shape_of: Vec<u32>,
}

/// The order's settings (from the loader config).
#[derive(Debug, Clone)]
pub struct OrderSettings<'a> {
    pub seed: u64,
    pub batch_size: usize,
    pub drop_last: bool,
    pub shuffle_shards: usize,
    pub epoch_samples: Option<u64>,
    /// One per dataset; all `None` for natural shares.
    pub dataset_weights: Vec<Option<f64>>,
    /// Dataset names for messages.
    pub dataset_names: Vec<String>,
    pub bucket_weights: &'a BucketWeights,
    /// Bucket name of each shape id.
    pub shape_buckets: Vec<String>,
    /// Per-cluster weights over the samples' groups; `None` weighs every sample 1.
    pub cluster_balance: Option<&'a ClusterBalance>,
}

const STREAM_DRAW: u64 = 1;
const STREAM_BLOCKS: u64 = 2;
const STREAM_POOL: u64 = 3;
const STREAM_BATCHES: u64 = 4;

impl Planner {
    pub fn new(samples: &[SampleKey], s: &OrderSettings<'_>) -> Result<Planner, LoaderError> {
        if s.batch_size == 0 {
            return Err(LoaderError::Config("batch_size must be at least 1".into()));
        }
        let mut cells: BTreeMap<Cell, Vec<u32>> = BTreeMap::new();
        for (i, k) in samples.iter().enumerate() {
            let group = if s.cluster_balance.is_some() {
                k.group
            } else {
                NO_GROUP
            };
            cells
                .entry((k.dataset, k.shape, group))
                .or_default()
                .push(i as u32);
        }
        if samples.is_empty() {
            return Err(LoaderError::Empty(
                "no clips in the index (see the counts of clips left out)".into(),
            ));
        }
        let weights = group_weights(&cells, s.cluster_balance);
        let effective: BTreeMap<Cell, f64> = cells
            .iter()
            .map(|(c, m)| {
                (
                    *c,
                    m.len() as f64 * weights.get(&(c.0, c.2)).unwrap_or(&1.0),
                )
            })
            .collect();
        let natural = effective.values().sum::<f64>().round().max(1.0) as u64;
        let n = s.epoch_samples.unwrap_or(natural);
        let quotas = quotas(&effective, n, s)?;
        Ok(Planner {
            seed: s.seed,
            batch_size: s.batch_size,
            drop_last: s.drop_last,
            shuffle_shards: s.shuffle_shards,
            shards: samples.iter().map(|k| k.shard + 1).max().unwrap_or(0),
            cells,
            quotas,
            shard_of: samples.iter().map(|k| k.shard).collect(),
            shape_of: samples.iter().map(|k| k.shape).collect(),
        })
    }

    /// Samples each shape receives per epoch (before batching), summed over datasets.
    pub fn shape_quotas(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for (&(_, shape, _), &q) in &self.quotas {
            *out.entry(shape).or_insert(0) += q;
        }
        out
    }

    /// Samples each (dataset, group) receives per epoch, summed over shapes.
    pub fn group_quotas(&self) -> BTreeMap<(u16, u32), u64> {
        let mut out = BTreeMap::new();
        for (&(d, _, group), &q) in &self.quotas {
            *out.entry((d, group)).or_insert(0) += q;
        }
        out
    }

    /// The global batch order of `epoch`.
    pub fn epoch(&self, epoch: u64) -> EpochPlan {
        let seed = self.seed;
        // 2. Draws.
        let mut drawn: Vec<u32> = Vec::new();
        for (&(d, shape, group), members) in &self.cells {
            let quota = self.quotas.get(&(d, shape, group)).copied().unwrap_or(0) as usize;
            let mut round = 0u64;
            let mut left = quota;
            while left > 0 && !members.is_empty() {
                let mut perm = members.clone();
                let key = [
                    epoch,
                    STREAM_DRAW,
                    d as u64,
                    shape as u64,
                    round,
                    group as u64,
                ];
                // Without groups the key is the one orders were drawn with before clusters.
                let key = if group == NO_GROUP {
                    &key[..5]
                } else {
                    &key[..]
                };
                SplitMix::keyed(seed, key).shuffle(&mut perm);
                let take = left.min(perm.len());
                drawn.extend_from_slice(&perm[..take]);
                left -= take;
                round += 1;
            }
        }
        // 3. Blocks of shards.
        let blocks = self.blocks(epoch);
        let mut by_block: Vec<BTreeMap<u32, Vec<u32>>> = vec![BTreeMap::new(); blocks.count];
        for &i in &drawn {
            let b = blocks.of_shard[self.shard_of[i as usize] as usize];
            by_block[b]
                .entry(self.shape_of[i as usize])
                .or_default()
                .push(i);
        }
        // 4. Batches.
        let mut carry: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut batches = Vec::new();
        for (b, shapes) in by_block.into_iter().enumerate() {
            let mut block_batches = Vec::new();
            let mut keys: Vec<u32> = shapes.keys().copied().collect();
            keys.extend(carry.keys().copied());
            keys.sort_unstable();
            keys.dedup();
            let mut shapes = shapes;
            for shape in keys {
                let mut pool = carry.remove(&shape).unwrap_or_default();
                pool.extend(shapes.remove(&shape).unwrap_or_default());
                SplitMix::keyed(seed, &[epoch, STREAM_POOL, b as u64, shape as u64])
                    .shuffle(&mut pool);
                let full = pool.len() / self.batch_size * self.batch_size;
                for chunk in pool[..full].chunks(self.batch_size) {
                    block_batches.push(PlannedBatch {
                        shape,
                        samples: chunk.to_vec(),
                    });
                }
                if full < pool.len() {
                    carry.insert(shape, pool[full..].to_vec());
                }
            }
            SplitMix::keyed(seed, &[epoch, STREAM_BATCHES, b as u64]).shuffle(&mut block_batches);
            batches.extend(block_batches);
        }
        if !self.drop_last {
            for (shape, samples) in carry {
                batches.push(PlannedBatch { shape, samples });
            }
        }
        let mut prefix = Vec::with_capacity(batches.len() + 1);
        let mut sum = 0u64;
        prefix.push(0);
        for b in &batches {
            sum += b.samples.len() as u64;
            prefix.push(sum);
        }
        EpochPlan {
            epoch,
            batches,
            prefix,
        }
    }

    fn blocks(&self, epoch: u64) -> Blocks {
        let n = self.shards as usize;
        if self.shuffle_shards == 0 || self.shuffle_shards >= n {
            return Blocks {
                count: 1,
                of_shard: vec![0; n],
            };
        }
        let mut order: Vec<u32> = (0..self.shards).collect();
        SplitMix::keyed(self.seed, &[epoch, STREAM_BLOCKS]).shuffle(&mut order);
        let mut of_shard = vec![0; n];
        for (pos, &s) in order.iter().enumerate() {
            of_shard[s as usize] = pos / self.shuffle_shards;
        }
        Blocks {
            count: n.div_ceil(self.shuffle_shards),
            of_shard,
        }
    }

    pub fn drop_last(&self) -> bool {
        self.drop_last
    }
}

struct Blocks {
    count: usize,
    of_shard: Vec<usize>,
}

/// The weight of each clip of each (dataset, group): 1 without cluster balance and for
/// [`NO_GROUP`], else the balance's weight for the group's size.
fn group_weights(
    cells: &BTreeMap<Cell, Vec<u32>>,
    balance: Option<&ClusterBalance>,
) -> BTreeMap<(u16, u32), f64> {
    let Some(balance) = balance else {
        return BTreeMap::new();
    };
    let mut size: BTreeMap<(u16, u32), u64> = BTreeMap::new();
    for (&(d, _, g), m) in cells {
        if g != NO_GROUP {
            *size.entry((d, g)).or_insert(0) += m.len() as u64;
        }
    }
    // The mean cluster size per dataset, for inverse frequency.
    let mut per_dataset: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for (&(d, _), &n) in &size {
        let e = per_dataset.entry(d).or_insert((0, 0));
        e.0 += n;
        e.1 += 1;
    }
    size.iter()
        .map(|(&(d, g), &n)| {
            let (clips, groups) = per_dataset.get(&d).copied().unwrap_or((n, 1));
            let mean = clips as f64 / groups.max(1) as f64;
            ((d, g), balance.weight(n, mean))
        })
        .collect()
}

/// 1. Quotas per (dataset, shape, group) cell, summing to `n` exactly, from each cell's
///    effective size (clips × their weight).
fn quotas(
    effective: &BTreeMap<Cell, f64>,
    n: u64,
    s: &OrderSettings<'_>,
) -> Result<BTreeMap<Cell, u64>, LoaderError> {
    let datasets = s.dataset_weights.len();
    let mut size = vec![0f64; datasets];
    for (&(d, _, _), &e) in effective {
        if let Some(x) = size.get_mut(d as usize) {
            *x += e;
        }
    }
    let total: f64 = size.iter().sum();
    let name = |d: usize| s.dataset_names.get(d).cloned().unwrap_or_default();
    let weighted = s.dataset_weights.iter().all(Option::is_some);
    let mut dataset_share = vec![0.0; datasets];
    if weighted {
        let sum: f64 = s.dataset_weights.iter().flatten().sum();
        for d in 0..datasets {
            let w = s.dataset_weights[d].unwrap_or(0.0);
            if w > 0.0 && size[d] == 0.0 {
                return Err(LoaderError::Empty(format!(
                    "dataset {} has weight {w} but no clips in the index",
                    name(d)
                )));
            }
            dataset_share[d] = w / sum;
        }
    } else {
        for d in 0..datasets {
            dataset_share[d] = size[d] / total;
        }
    }
    if let BucketWeights::Explicit(table) = s.bucket_weights {
        let present: std::collections::BTreeSet<&str> =
            s.shape_buckets.iter().map(String::as_str).collect();
        for b in table.keys() {
            if !present.contains(b.as_str()) {
                return Err(LoaderError::Config(format!(
                    "bucket_weights names \"{b}\", which no dataset has (buckets: {})",
                    present.iter().copied().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        for b in &present {
            if !table.contains_key(*b) {
                return Err(LoaderError::Config(format!(
                    "bucket_weights gives no weight for bucket \"{b}\" (0 leaves it out)"
                )));
            }
        }
    }
    let mut exact: Vec<(Cell, f64)> = Vec::new();
    for (d, &share_d) in dataset_share.iter().enumerate() {
        // The dataset's shapes with their effective sizes, then each shape's weight.
        let mut shapes: BTreeMap<u32, f64> = BTreeMap::new();
        for (&(cd, shape, _), &e) in effective {
            if cd as usize == d {
                *shapes.entry(shape).or_insert(0.0) += e;
            }
        }
        let weights: BTreeMap<u32, f64> = shapes
            .iter()
            .map(|(&shape, &e)| {
                let w = match s.bucket_weights {
                    BucketWeights::Natural => e,
                    BucketWeights::InverseFrequency => 1.0,
                    BucketWeights::Explicit(t) => s
                        .shape_buckets
                        .get(shape as usize)
                        .and_then(|b| t.get(b))
                        .copied()
                        .unwrap_or(0.0),
                };
                (shape, w)
            })
            .collect();
        let sum: f64 = weights.values().sum();
        if share_d > 0.0 && sum <= 0.0 {
            return Err(LoaderError::Empty(format!(
                "dataset {}: every bucket it has weighs 0",
                name(d)
            )));
        }
        for (&(cd, shape, group), &e) in effective {
            if cd as usize != d {
                continue;
            }
            let shape_share = if sum > 0.0 {
                weights.get(&shape).copied().unwrap_or(0.0) / sum
            } else {
                0.0
            };
            let shape_size = shapes.get(&shape).copied().unwrap_or(0.0);
            let group_share = if shape_size > 0.0 {
                e / shape_size
            } else {
                0.0
            };
            exact.push((
                (cd, shape, group),
                n as f64 * share_d * shape_share * group_share,
            ));
        }
    }
    // Largest remainder: floors first, then one more to the largest fractions (ties in key
    // order) until the quotas sum to n.
    let mut out: BTreeMap<Cell, u64> = exact.iter().map(|(k, q)| (*k, q.floor() as u64)).collect();
    let given: u64 = out.values().sum();
    let mut order: Vec<&(Cell, f64)> = exact.iter().filter(|(_, q)| *q > 0.0).collect();
    order.sort_by(|a, b| {
        let fa = a.1 - a.1.floor();
        let fb = b.1 - b.1.floor();
        fb.total_cmp(&fa).then(a.0.cmp(&b.0))
    });
    for (k, _) in order.iter().cycle().take(n.saturating_sub(given) as usize) {
        if let Some(q) = out.get_mut(k) {
            *q += 1;
        }
    }
    Ok(out)
}

/// The batches of the global order rank `rank` of `world` takes, from global batch `start` of
/// an epoch with `total` batches.
pub fn rank_batches(
    total: usize,
    start: usize,
    rank: usize,
    world: usize,
    drop_last: bool,
) -> Vec<usize> {
    let world = world.max(1);
    let left = total.saturating_sub(start);
    let count = if drop_last {
        left / world
    } else if left > rank {
        (left - rank).div_ceil(world)
    } else {
        0
    };
    (0..count).map(|j| start + rank + j * world).collect()
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
