use std::collections::{BTreeMap, HashMap};

use super::*;

/// `n[k]` samples of shape k in dataset 0, `per_shard` samples per shard in index order.
fn keys(counts: &[usize], per_shard: usize) -> Vec<SampleKey> {
    let mut out = Vec::new();
    for (shape, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            let i = out.len();
            out.push(SampleKey {
                dataset: 0,
                shard: (i / per_shard) as u32,
                shape: shape as u32,
                group: NO_GROUP,
            });
        }
    }
    out
}

fn settings(weights: &BucketWeights, shapes: usize) -> OrderSettings<'_> {
    OrderSettings {
        seed: 42,
        batch_size: 4,
        drop_last: false,
        shuffle_shards: 0,
        epoch_samples: None,
        dataset_weights: vec![None],
        dataset_names: vec!["d0".into()],
        bucket_weights: weights,
        shape_buckets: (0..shapes).map(|k| format!("b{k}")).collect(),
        cluster_balance: None,
    }
}

fn flat(plan: &EpochPlan, batches: &[usize]) -> Vec<u32> {
    batches
        .iter()
        .flat_map(|&g| plan.batches[g].samples.iter().copied())
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_order_and_the_next_epoch_another() {
    let w = BucketWeights::Natural;
    let k = keys(&[50, 30, 21], 10);
    let a = Planner::new(&k, &settings(&w, 3)).unwrap();
    let b = Planner::new(&k, &settings(&w, 3)).unwrap();
    assert_eq!(a.epoch(0), b.epoch(0));
    assert_ne!(a.epoch(0).batches, a.epoch(1).batches);
    let mut other = settings(&w, 3);
    other.seed = 43;
    assert_ne!(
        Planner::new(&k, &other).unwrap().epoch(0).batches,
        a.epoch(0).batches
    );
}

#[test]
fn every_batch_has_one_shape() {
    let w = BucketWeights::Natural;
    let k = keys(&[50, 30, 21], 10);
    let p = Planner::new(&k, &settings(&w, 3)).unwrap();
    for b in &p.epoch(3).batches {
        assert!(b.samples.iter().all(|&i| k[i as usize].shape == b.shape));
        assert!(!b.samples.is_empty() && b.samples.len() <= 4);
    }
}

#[test]
fn ranks_split_the_epoch_without_repeats_for_any_world_size() {
    let w = BucketWeights::Natural;
    let k = keys(&[50, 30, 21], 10);
    for drop_last in [false, true] {
        let mut s = settings(&w, 3);
        s.drop_last = drop_last;
        let p = Planner::new(&k, &s).unwrap();
        let plan = p.epoch(1);
        let total = plan.batches.len();
        for world in [1, 2, 3, 8] {
            let mut seen: HashMap<u32, usize> = HashMap::new();
            let mut counts = Vec::new();
            for rank in 0..world {
                let mine = rank_batches(total, 0, rank, world, drop_last);
                counts.push(mine.len());
                for i in flat(&plan, &mine) {
                    *seen.entry(i).or_default() += 1;
                }
            }
            assert!(
                seen.values().all(|&n| n == 1),
                "a sample twice (W = {world})"
            );
            if drop_last {
                assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
                let kept: usize =
                    flat(&plan, &(0..total / world * world).collect::<Vec<_>>()).len();
                assert_eq!(seen.len(), kept, "W = {world}");
                // Dropped: the partial batches (< 4 per shape) and the last round's tail.
                assert!(
                    101 - seen.len() < 3 * 4 + world * 4,
                    "W = {world}: {}",
                    seen.len()
                );
            } else {
                assert_eq!(seen.len(), 101, "W = {world}: every sample once");
                assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
            }
        }
    }
}

#[test]
fn a_new_world_size_after_a_checkpoint_keeps_the_global_order() {
    let w = BucketWeights::Natural;
    let k = keys(&[60, 40, 33], 10);
    let p = Planner::new(&k, &settings(&w, 3)).unwrap();
    let plan = p.epoch(2);
    let total = plan.batches.len();
    // Two ranks take 5 batches each, then three ranks continue from global batch 10.
    let steps = 5;
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    for rank in 0..2 {
        for g in rank_batches(total, 0, rank, 2, false)
            .into_iter()
            .take(steps)
        {
            *taken.entry(g).or_default() += 1;
        }
    }
    let start = 2 * steps;
    assert_eq!(
        taken.keys().copied().collect::<Vec<_>>(),
        (0..start).collect::<Vec<_>>()
    );
    for rank in 0..3 {
        for g in rank_batches(total, start, rank, 3, false) {
            *taken.entry(g).or_default() += 1;
        }
    }
    assert_eq!(taken.len(), total);
    assert!(taken.values().all(|&n| n == 1));
    // Rank r of 3 takes start + r, start + r + 3, ...: the round-robin of the same order.
    assert_eq!(
        rank_batches(total, start, 1, 3, false)[..2],
        [start + 1, start + 4]
    );
}

#[test]
fn bucket_frequencies_follow_explicit_weights() {
    let w = BucketWeights::Explicit([("b0".to_string(), 3.0), ("b1".to_string(), 1.0)].into());
    // b0 is rarer in the data than b1; the weights ask for 3:1.
    let k = keys(&[40, 200], 16);
    let mut s = settings(&w, 2);
    s.drop_last = true;
    let p = Planner::new(&k, &s).unwrap();
    let mut per_shape = [0usize; 2];
    for e in 0..20 {
        for b in &p.epoch(e).batches {
            per_shape[b.shape as usize] += 1;
        }
    }
    let share = per_shape[0] as f64 / (per_shape[0] + per_shape[1]) as f64;
    assert!(
        (share - 0.75).abs() < 0.02,
        "b0 share {share} ({per_shape:?})"
    );
}

#[test]
fn inverse_frequency_flattens_buckets() {
    let w = BucketWeights::InverseFrequency;
    let k = keys(&[10, 90, 300], 16);
    let p = Planner::new(&k, &settings(&w, 3)).unwrap();
    let q = p.shape_quotas();
    let n: u64 = q.values().sum();
    assert_eq!(n, 400, "epoch size stays the clip count");
    for shape in 0..3 {
        assert!((q[&shape] as i64 - 133).abs() <= 1, "{q:?}");
    }
    // The rare bucket is upsampled: its clips repeat, each at most ceil(133 / 10) times.
    let plan = p.epoch(0);
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for b in &plan.batches {
        for &i in &b.samples {
            *seen.entry(i).or_default() += 1;
        }
    }
    assert!((0..10).all(|i| (13..=14).contains(&seen[&i])), "{seen:?}");
}

#[test]
fn datasets_mix_by_weight() {
    let w = BucketWeights::Natural;
    let mut k = keys(&[100], 10);
    k.extend((0..100).map(|i| SampleKey {
        dataset: 1,
        shard: 10 + i / 10,
        shape: 0,
        group: NO_GROUP,
    }));
    let mut s = settings(&w, 1);
    s.dataset_weights = vec![Some(1.0), Some(3.0)];
    s.dataset_names = vec!["a".into(), "b".into()];
    s.epoch_samples = Some(400);
    let p = Planner::new(&k, &s).unwrap();
    let plan = p.epoch(0);
    let from_b = plan
        .batches
        .iter()
        .flat_map(|b| b.samples.iter())
        .filter(|&&i| k[i as usize].dataset == 1)
        .count();
    assert_eq!(from_b, 300);
}

#[test]
fn shard_blocks_keep_reads_within_a_few_shards() {
    let w = BucketWeights::Natural;
    let k = keys(&[160], 16); // 10 shards of 16
    let mut s = settings(&w, 1);
    s.shuffle_shards = 2;
    let p = Planner::new(&k, &s).unwrap();
    let plan = p.epoch(0);
    let all = flat(&plan, &(0..plan.batches.len()).collect::<Vec<_>>());
    assert_eq!(all.len(), 160);
    // Consecutive windows of 32 samples (one block) touch 2 shards, 3 where blocks meet.
    for window in all.chunks(32) {
        let mut shards: Vec<u32> = window.iter().map(|&i| k[i as usize].shard).collect();
        shards.sort_unstable();
        shards.dedup();
        assert!(shards.len() <= 3, "{shards:?}");
    }
    // Without blocks, a window touches most shards.
    let global = Planner::new(&k, &settings(&w, 1)).unwrap().epoch(0);
    let first: Vec<u32> = flat(&global, &(0..8).collect::<Vec<_>>());
    let mut shards: Vec<u32> = first.iter().map(|&i| k[i as usize].shard).collect();
    shards.sort_unstable();
    shards.dedup();
    assert!(shards.len() > 5, "{shards:?}");
}

#[test]
fn explicit_weights_must_name_every_bucket_and_only_real_ones() {
    let k = keys(&[10, 10], 16);
    let w = BucketWeights::Explicit([("b0".to_string(), 1.0)].into());
    let e = Planner::new(&k, &settings(&w, 2)).unwrap_err().to_string();
    assert!(e.contains("no weight for bucket \"b1\""), "{e}");
    let w = BucketWeights::Explicit(
        [
            ("b0".to_string(), 1.0),
            ("b1".to_string(), 1.0),
            ("b9".to_string(), 1.0),
        ]
        .into(),
    );
    let e = Planner::new(&k, &settings(&w, 2)).unwrap_err().to_string();
    assert!(e.contains("\"b9\", which no dataset has"), "{e}");
}

/// 60 clips of one shape: 40 in cluster 0 (one caption repeated), 5 each in clusters 1–4.
fn clustered() -> Vec<SampleKey> {
    let mut k = keys(&[60], 10);
    for (i, key) in k.iter_mut().enumerate() {
        key.group = if i < 40 { 0 } else { 1 + (i as u32 - 40) / 5 };
    }
    k
}

fn drawn_per_group(k: &[SampleKey], plan: &EpochPlan) -> BTreeMap<u32, usize> {
    let mut out = BTreeMap::new();
    for b in &plan.batches {
        for &i in &b.samples {
            *out.entry(k[i as usize].group).or_default() += 1;
        }
    }
    out
}

#[test]
fn a_capped_cluster_gives_at_most_its_cap_each_epoch() {
    let w = BucketWeights::Natural;
    let k = clustered();
    let cap = ClusterBalance::Cap { cap: 5 };
    let mut s = settings(&w, 1);
    s.cluster_balance = Some(&cap);
    let p = Planner::new(&k, &s).unwrap();
    // 5 from the big cluster + 4 × 5: the epoch shrinks to 25.
    assert_eq!(p.group_quotas().values().sum::<u64>(), 25);
    let mut big_members = std::collections::BTreeSet::new();
    for epoch in 0..4 {
        let plan = p.epoch(epoch);
        let per = drawn_per_group(&k, &plan);
        assert_eq!(per[&0], 5, "epoch {epoch}: {per:?}");
        assert!((1..=4).all(|g| per[&g] == 5), "epoch {epoch}: {per:?}");
        let mut ids: Vec<u32> = plan
            .batches
            .iter()
            .flat_map(|b| b.samples.clone())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "no clip twice in an epoch");
        big_members.extend(ids.into_iter().filter(|&i| i < 40));
    }
    // Other members of the capped cluster each epoch.
    assert!(big_members.len() > 10, "{}", big_members.len());
    // Deterministic for a seed; another seed draws others.
    assert_eq!(p.epoch(3), Planner::new(&k, &s).unwrap().epoch(3));
    let mut other = s.clone();
    other.seed = 43;
    assert_ne!(p.epoch(3), Planner::new(&k, &other).unwrap().epoch(3));
}

#[test]
fn inverse_frequency_gives_every_cluster_the_mean_size() {
    let w = BucketWeights::Natural;
    let k = clustered();
    let flat = ClusterBalance::InverseFrequency;
    let mut s = settings(&w, 1);
    s.cluster_balance = Some(&flat);
    let p = Planner::new(&k, &s).unwrap();
    let per = drawn_per_group(&k, &p.epoch(0));
    // 60 clips in 5 clusters: 12 each (small clusters repeated, the big one subsampled).
    assert!(per.values().all(|&n| n == 12), "{per:?}");
}

#[test]
fn cluster_balance_off_ignores_groups_and_keeps_the_order() {
    let w = BucketWeights::Natural;
    let k = clustered();
    let plain = keys(&[60], 10);
    let s = settings(&w, 1);
    assert_eq!(
        Planner::new(&k, &s).unwrap().epoch(2),
        Planner::new(&plain, &s).unwrap().epoch(2)
    );
}

#[test]
fn unclustered_clips_keep_weight_one() {
    let w = BucketWeights::Natural;
    let mut k = clustered();
    for key in k.iter_mut().skip(40) {
        key.group = NO_GROUP;
    }
    let cap = ClusterBalance::Cap { cap: 4 };
    let mut s = settings(&w, 1);
    s.cluster_balance = Some(&cap);
    let per = drawn_per_group(&k, &Planner::new(&k, &s).unwrap().epoch(0));
    assert_eq!(per[&0], 4);
    assert_eq!(per[&NO_GROUP], 20);
}
