//! [`LoaderConfig`]: what a loader reads and how it orders it. Deserialised from TOML (a
//! trainer's `[data]` table) with unknown keys refused; its doc comments are the reference and
//! [`LoaderConfig::example`] prints a commented example.
//!
//! Only the fields that decide the data order ([`LoaderConfig::order_spec`]) enter the resume
//! fingerprint: workers, prefetch, cache and ranks can change between a checkpoint and its
//! resume, and `rank`/`world_size` may (elastic resume).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::LoaderError;

/// One dataset a loader reads (several mix like MosaicML Streaming's streams).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSource {
    /// The dataset: a folder, `file://`, `s3://bucket/prefix`, `gs://`, `memory://`.
    pub uri: String,
    /// Share of each epoch's samples drawn from this dataset (normalised over the datasets).
    /// Give every dataset a weight or none: without weights each contributes its clip count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// A SQL predicate over the dataset's `clips` columns (e.g. `sharpness > 100 AND duration_s
    /// >= 2`), evaluated once when the loader builds its index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// S3-compatible endpoint (MinIO, moto) for `s3://` URIs; `AWS_*` variables do the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
}

impl DatasetSource {
    pub fn new(uri: impl Into<String>) -> DatasetSource {
        DatasetSource {
            uri: uri.into(),
            weight: None,
            filter: None,
            endpoint: None,
            allow_http: false,
        }
    }

    pub fn store_options(&self) -> kelp_pipeline::store::StoreOptions {
        kelp_pipeline::store::StoreOptions {
            endpoint: self.endpoint.clone(),
            allow_http: self.allow_http,
        }
    }
}

/// How often each bucket appears in an epoch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawWeights", into = "RawWeights")]
pub enum BucketWeights {
    /// `"natural"`: as often as the data has it (every clip once per epoch).
    #[default]
    Natural,
    /// `"inverse_frequency"`: every bucket of a dataset equally often (rare buckets repeated,
    /// common ones subsampled), flattening the distribution.
    InverseFrequency,
    /// A table `{ "256p-16:9-33f" = 2.0, ... }`: each bucket's share of a dataset's samples is
    /// its weight over the sum; every bucket present needs a weight (0 leaves it out).
    Explicit(BTreeMap<String, f64>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawWeights {
    Name(String),
    Table(BTreeMap<String, f64>),
}

impl TryFrom<RawWeights> for BucketWeights {
    type Error = String;
    fn try_from(raw: RawWeights) -> Result<Self, String> {
        match raw {
            RawWeights::Name(n) if n == "natural" => Ok(BucketWeights::Natural),
            RawWeights::Name(n) if n == "inverse_frequency" => Ok(BucketWeights::InverseFrequency),
            RawWeights::Name(n) => Err(format!(
                "bucket_weights = \"{n}\": use \"natural\", \"inverse_frequency\" or a table of bucket = weight"
            )),
            RawWeights::Table(t) => Ok(BucketWeights::Explicit(t)),
        }
    }
}

impl From<BucketWeights> for RawWeights {
    fn from(w: BucketWeights) -> RawWeights {
        match w {
            BucketWeights::Natural => RawWeights::Name("natural".into()),
            BucketWeights::InverseFrequency => RawWeights::Name("inverse_frequency".into()),
            BucketWeights::Explicit(t) => RawWeights::Table(t),
        }
    }
}

/// How an epoch evens out semantic clusters: each dataset's `clusters` table (written by the
/// `embed` pass) puts its clips in clusters by caption; clips of large clusters are down-sampled
/// so content the data over-represents does not dominate an epoch (the seed's balance over its
/// clusters). Which clips of a capped cluster an epoch draws changes from epoch to epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "mode", rename_all = "snake_case")]
pub enum ClusterBalance {
    /// `{ mode = "cap", cap = 100 }`: a cluster gives at most `cap` samples an epoch; smaller
    /// clusters give every clip they have.
    Cap { cap: u64 },
    /// `{ mode = "inverse_frequency" }`: every cluster of a dataset gives the same number of
    /// samples, its mean cluster size (large clusters subsampled, small ones repeated).
    InverseFrequency,
}

impl ClusterBalance {
    /// The weight of each clip of a cluster of `size` clips, in a dataset whose clustered clips
    /// average `mean` per cluster: how many times it is drawn per epoch, on average.
    pub fn weight(&self, size: u64, mean: f64) -> f64 {
        let size = size.max(1) as f64;
        match self {
            ClusterBalance::Cap { cap } => (*cap as f64 / size).min(1.0),
            ClusterBalance::InverseFrequency => mean / size,
        }
    }
}

/// The loader's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// The datasets to read (`[[datasets]]`), each with an optional weight and filter.
    pub datasets: Vec<DatasetSource>,
    /// Clips per batch (the last batch of a bucket may be smaller when `drop_last = false`).
    pub batch_size: usize,
    /// Seed of the shuffle: an epoch's order is a function of (seed, epoch) alone.
    pub seed: u64,
    /// Frames per clip: each clip's first `frames` (default: all of its media's, i.e. its
    /// bucket's). Clips with fewer frames are left out of the index (counted).
    pub frames: Option<u32>,
    /// Resize every clip to `[width, height]` (default: the media's size, its bucket's).
    pub size: Option<[u32; 2]>,
    /// Per-bucket sampling weights: `"natural"`, `"inverse_frequency"` or a table.
    pub bucket_weights: BucketWeights,
    /// Per-cluster weights from each dataset's `clusters` table (the `embed` pass); none by
    /// default. Every dataset must have the table; clips without a cluster (no caption) keep
    /// weight 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_balance: Option<ClusterBalance>,
    /// Samples per epoch (default: every clip in the index once, before bucket weighting; with
    /// `cluster_balance`, the sum of the clips' cluster weights).
    pub epoch_samples: Option<u64>,
    /// Shard-aware shuffle: the epoch visits blocks of this many `media` shards, shuffling
    /// within each block, so a cache of that many shards is read once per epoch (0 = one
    /// global shuffle over every shard).
    pub shuffle_shards: usize,
    /// Drop each bucket's last partial batch and the last batches that do not fill a round of
    /// `world_size` ranks, so every rank gets the same number of batches (what data-parallel
    /// training needs). With `false` every sample is delivered and ranks may differ by one batch.
    pub drop_last: bool,
    /// Epochs the iterator runs before it ends (default: endless).
    pub epochs: Option<u64>,
    /// This process's rank and the number of ranks.
    pub rank: usize,
    pub world_size: usize,
    /// Clips decoded at once (threads of the blocking pool).
    pub decode_workers: usize,
    /// Object-store requests in flight at once (shard parts and clip ranges).
    pub fetch_concurrency: usize,
    /// Batches prepared ahead of the one the trainer is using.
    pub prefetch_batches: usize,
    /// Local cache of remote `media` shards (a per-rank folder is made inside). Default: none
    /// for local datasets (read in place), `<temp>/kelp-loader` for remote ones.
    pub cache_dir: Option<PathBuf>,
    /// Bytes the cache may hold on disk; at least the largest `media` shard.
    pub cache_limit: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            datasets: Vec::new(),
            batch_size: 4,
            seed: 0,
            frames: None,
            size: None,
            bucket_weights: BucketWeights::Natural,
            cluster_balance: None,
            epoch_samples: None,
            shuffle_shards: 0,
            drop_last: true,
            epochs: None,
            rank: 0,
            world_size: 1,
            decode_workers: 2,
            fetch_concurrency: 8,
            prefetch_batches: 4,
            cache_dir: None,
            cache_limit: 16 << 30,
        }
    }
}

/// The fields of a [`LoaderConfig`] that decide the data order, with each dataset's identity:
/// what a resume state is checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSpec {
    pub datasets: Vec<DatasetIdentity>,
    pub batch_size: usize,
    pub frames: Option<u32>,
    pub size: Option<[u32; 2]>,
    pub bucket_weights: BucketWeights,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_balance: Option<ClusterBalance>,
    pub epoch_samples: Option<u64>,
    pub shuffle_shards: usize,
    pub drop_last: bool,
}

/// A dataset as the order depends on it: its run, clips in the index, weight and filter (not
/// its URI: a dataset copied to another store orders the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    /// The run that wrote it (`_manifest.json` `run_id`), or its URI for older datasets.
    pub run: String,
    pub clips: u64,
    pub weight: Option<f64>,
    pub filter: Option<String>,
}

impl LoaderConfig {
    /// A config reading one dataset with every default.
    pub fn for_dataset(uri: impl Into<String>) -> LoaderConfig {
        LoaderConfig {
            datasets: vec![DatasetSource::new(uri)],
            ..Default::default()
        }
    }

    /// Parses TOML; errors name the key.
    pub fn from_toml(text: &str) -> Result<LoaderConfig, LoaderError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| LoaderError::Config(e.to_string()))?;
        let config: LoaderConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                LoaderError::Config(if path == "." || path.is_empty() {
                    inner
                } else {
                    format!("{path}: {inner}")
                })
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values a type cannot: sizes, ranks, weights.
    pub fn validate(&self) -> Result<(), LoaderError> {
        let bad = |m: String| Err(LoaderError::Config(m));
        if self.datasets.is_empty() {
            return bad("no datasets: add [[datasets]] with a uri".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if self.world_size == 0 || self.rank >= self.world_size {
            return bad(format!(
                "rank {} of world_size {}: need 0 <= rank < world_size",
                self.rank, self.world_size
            ));
        }
        if self.frames == Some(0) {
            return bad("frames must be at least 1".into());
        }
        if let Some([w, h]) = self.size {
            if w == 0 || h == 0 {
                return bad(format!("size [{w}, {h}]: both sides must be > 0"));
            }
        }
        let weighted = self.datasets.iter().filter(|d| d.weight.is_some()).count();
        if weighted != 0 && weighted != self.datasets.len() {
            return bad(format!(
                "{weighted} of {} datasets have a weight: give every dataset a weight or none",
                self.datasets.len()
            ));
        }
        for d in &self.datasets {
            if let Some(w) = d.weight {
                if !w.is_finite() || w < 0.0 {
                    return bad(format!("dataset {}: weight {w} must be >= 0", d.uri));
                }
            }
        }
        if weighted > 0 && self.datasets.iter().all(|d| d.weight == Some(0.0)) {
            return bad("every dataset has weight 0".into());
        }
        if let BucketWeights::Explicit(t) = &self.bucket_weights {
            if let Some((b, w)) = t.iter().find(|(_, w)| !w.is_finite() || **w < 0.0) {
                return bad(format!("bucket_weights: {b} = {w} must be >= 0"));
            }
        }
        if let Some(ClusterBalance::Cap { cap: 0 }) = self.cluster_balance {
            return bad("cluster_balance: cap must be at least 1".into());
        }
        if self.decode_workers == 0 || self.fetch_concurrency == 0 {
            return bad("decode_workers and fetch_concurrency must be at least 1".into());
        }
        Ok(())
    }

    /// A commented example (`kelp_trainer::data::LoaderConfig::example()`).
    pub fn example() -> &'static str {
        r#"# The training loader (a trainer config's [data] table).
batch_size = 4
seed = 0
frames = 17                      # each clip's first 17 frames (default: its bucket's frames)
size = [256, 256]                # resize to width x height (default: the bucket's size)
bucket_weights = "natural"       # or "inverse_frequency", or { "256p-16:9-33f" = 2.0, "480p-16:9-33f" = 1.0 }
cluster_balance = { mode = "cap", cap = 100 }  # or { mode = "inverse_frequency" }; needs the embed pass's clusters table
drop_last = true                 # equal batches on every rank (what data-parallel training needs)
shuffle_shards = 0               # 0: one global shuffle; N: blocks of N media shards (cache N shards)
decode_workers = 2
fetch_concurrency = 8
prefetch_batches = 4
cache_limit = 17179869184        # bytes on disk for remote shards (at least the largest shard)

[[datasets]]
uri = "s3://bucket/curated"
weight = 3.0
filter = "sharpness > 100 AND duration_s >= 2"
endpoint = "http://127.0.0.1:9000"
allow_http = true

[[datasets]]
uri = "out/quickstart"
weight = 1.0
"#
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let c = LoaderConfig::from_toml(LoaderConfig::example()).unwrap();
        assert_eq!(c.datasets.len(), 2);
        assert_eq!(c.size, Some([256, 256]));
        assert_eq!(c.bucket_weights, BucketWeights::Natural);
    }

    #[test]
    fn bucket_weights_take_a_name_or_a_table() {
        let c = LoaderConfig::from_toml(
            "bucket_weights = { a = 2.0, b = 1.0 }\n[[datasets]]\nuri = \"x\"\n",
        )
        .unwrap();
        assert!(matches!(c.bucket_weights, BucketWeights::Explicit(t) if t["a"] == 2.0));
        let e = LoaderConfig::from_toml("bucket_weights = \"flat\"\n[[datasets]]\nuri = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inverse_frequency"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_ranks_are_named() {
        let e = LoaderConfig::from_toml("batchsize = 4\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("batchsize"), "{e}");
        let e = LoaderConfig::from_toml("rank = 2\nworld_size = 2\n[[datasets]]\nuri = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 2 of world_size 2"), "{e}");
    }
}
