//! Semantic balance: the `embed` pass (MiniLM sentence embeddings, mini-batch k-means) over a
//! dataset whose captions repeat one sentence many times, then the loader's cluster cap.

use std::collections::{BTreeMap, HashMap, HashSet};

use kelp_trainer::data::config::ClusterBalance;
use kelp_trainer::semantic::embed::{self, Embed, EmbedConfig};

use super::*;

const REPEATED: &str = "a red sports car drives down a wet city street at night";

/// 24 clips with one caption, then three topics of 4 clips each with captions of their own.
fn captions() -> Vec<String> {
    let mut out = vec![REPEATED.to_string(); 24];
    out.extend(
        [
            "a chef chops onions in a busy restaurant kitchen",
            "a cook slices tomatoes on a wooden cutting board",
            "a woman stirs soup in a large pot on the stove",
            "a baker kneads bread dough on a floured table",
            "waves crash against dark rocks on the coast",
            "the ocean surf rolls onto a sandy beach at sunset",
            "sea spray rises as a big wave breaks near the shore",
            "calm blue water laps at a pebble beach",
            "snow falls on pine trees in the mountains",
            "a skier glides down a snowy mountain slope",
            "fresh snow covers a quiet alpine village",
            "icy peaks rise above a frozen valley in winter",
        ]
        .map(String::from),
    );
    out
}

fn embed_config() -> EmbedConfig {
    EmbedConfig {
        clusters: 4,
        batch_size: 8,
        seed: 5,
        model: Some(super::common::text_model_dir()),
        ..EmbedConfig::default()
    }
}

fn pairs(ids: &[String]) -> Vec<(String, String)> {
    ids.iter().cloned().zip(captions()).collect()
}

/// Each clip's cluster, by clip id.
fn clusters_of(ids: &[String]) -> HashMap<String, usize> {
    let s = embed::compute(&pairs(ids), &embed_config()).unwrap();
    let of = s.cluster_of_clips();
    s.clips.iter().map(|(id, _)| id.clone()).zip(of).collect()
}

#[test]
fn the_embed_pass_clusters_distinct_captions_by_meaning() {
    let ids: Vec<String> = (0..36).map(testing::clip_id).collect();
    let s = embed::compute(&pairs(&ids), &embed_config()).unwrap();
    assert_eq!(
        s.embeddings.dim(),
        (13, 384),
        "one embedding per distinct caption"
    );
    let by_id = clusters_of(&ids);
    let cluster = |k: usize| by_id[&ids[k]];
    let repeated = cluster(0);
    assert!((0..24).all(|k| cluster(k) == repeated));
    assert_eq!(s.clusters.centroids.nrows(), 4);
    // Cooking and snow each form a cluster of their own, apart from the night drive. (The
    // sea's captions are nearer the wet night street: k-means may put some of them with it.)
    for topic in [0, 2] {
        let first = 24 + topic * 4;
        let c = cluster(first);
        assert!((first..first + 4).all(|k| cluster(k) == c), "topic {topic}");
        assert_ne!(c, repeated, "topic {topic}");
    }
    let sizes = s.cluster_clips();
    assert!(sizes[repeated] >= 24, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), 36);
    // Deterministic for a seed: the same clusters and embeddings, bit for bit.
    let again = embed::compute(&pairs(&ids), &embed_config()).unwrap();
    assert_eq!(again.clusters.assignment, s.clusters.assignment);
    assert_eq!(again.embeddings, s.embeddings);
}

#[test]
fn the_loader_caps_the_repeated_captions_cluster_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = TestDataset::buckets(&[("small", 32, 32, 5, 36)]);
    for (clip, caption) in spec.clips.iter_mut().zip(captions()) {
        clip.caption = Some(caption);
    }
    spec.shard_rows = 12;
    let (uri, clip_ids) = dataset(&dir, &spec);
    let pass = Embed {
        config: embed_config(),
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(testing::run_pass(&uri, &pass, &embed::tables()));
    let cluster_of = clusters_of(&clip_ids);
    let mut size: BTreeMap<usize, usize> = BTreeMap::new();
    for c in cluster_of.values() {
        *size.entry(*c).or_default() += 1;
    }

    let cap = 6;
    let balanced = |epochs| LoaderConfig {
        batch_size: 4,
        seed: 3,
        epochs: Some(epochs),
        drop_last: false,
        cluster_balance: Some(ClusterBalance::Cap { cap }),
        ..LoaderConfig::for_dataset(&uri)
    };
    let repeated = cluster_of[&clip_ids[0]];
    let batches = all(Loader::new(balanced(3)).unwrap());
    let mut per_epoch: BTreeMap<u64, BTreeMap<usize, usize>> = BTreeMap::new();
    let mut drawn: HashSet<String> = HashSet::new();
    for b in &batches {
        let e = per_epoch.entry(b.epoch).or_default();
        for id in &b.clip_ids {
            let c = cluster_of[id];
            *e.entry(c).or_default() += 1;
            if c == repeated {
                drawn.insert(id.clone());
            }
        }
    }
    // Each epoch: the repeated caption's cluster (24 clips or more) gives `cap`, every smaller
    // cluster all of its clips.
    assert_eq!(per_epoch.len(), 3, "{per_epoch:?}");
    for (epoch, counts) in &per_epoch {
        for (c, &n) in &size {
            let want = n.min(cap as usize);
            assert_eq!(
                counts.get(c).copied().unwrap_or(0),
                want,
                "epoch {epoch}, cluster {c} of {n}: {counts:?}"
            );
        }
    }
    // Other members of the capped cluster each epoch.
    assert!(drawn.len() > cap as usize, "{}", drawn.len());
    // Deterministic for a seed.
    let again = all(Loader::new(balanced(3)).unwrap());
    assert_eq!(ids(&again), ids(&batches));
}

#[test]
fn cluster_balance_without_a_clusters_table_names_the_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (uri, _) = dataset(&dir, &two_buckets());
    let config = LoaderConfig {
        cluster_balance: Some(ClusterBalance::InverseFrequency),
        ..config(&uri)
    };
    let e = Loader::new(config).err().expect("refused");
    let m = e.to_string();
    assert!(m.contains("clusters") && m.contains("embed"), "{m}");
}
