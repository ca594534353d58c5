//! The DAG file format (TOML).
//!
//! ```toml
//! description = "what this DAG is for"
//! [source]
//! uri = "samples/"             # folder, file, file://, s3://..., or a .txt manifest of URIs
//! [output]
//! uri = "out/quickstart"       # dataset location
//! [[node]]
//! op = "probe"
//! [[node]]
//! id = "shots"                 # defaults to the operator name
//! op = "shots"
//! cut_ratio = 3.0              # every other key is an operator parameter
//! [[node]]
//! op = "window"
//! after = ["shots"]            # defaults to the node above
//! min_s = 3.0
//! [[pass]]
//! op = "clip_index"            # a dataset-wide pass, run once after every partition commits
//! ```

use serde::Deserialize;

/// Where the source videos are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A folder (searched recursively), one video file, a `file://`/`s3://`/`gs://` prefix, or a
    /// manifest: a `.txt` file with one URI per line.
    pub uri: String,
    /// File extensions (lower case, without dot) that count as videos when listing a folder.
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// S3-compatible endpoint for an `s3://` source (MinIO, Ceph, moto), e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allow a plain-http `endpoint`.
    #[serde(default)]
    pub allow_http: bool,
}

impl SourceSpec {
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            endpoint: self.endpoint.clone(),
            allow_http: self.allow_http,
        }
    }
}

pub fn default_extensions() -> Vec<String> {
    [
        "mp4", "mkv", "webm", "mov", "avi", "m4v", "mpg", "mpeg", "ts", "flv", "wmv", "3gp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Where the dataset goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub uri: String,
    /// Rows per Parquet shard.
    #[serde(default = "default_shard_rows")]
    pub shard_rows: usize,
    /// S3-compatible endpoint for an `s3://` output, e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allow a plain-http `endpoint`.
    #[serde(default)]
    pub allow_http: bool,
}

impl OutputSpec {
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            endpoint: self.endpoint.clone(),
            allow_http: self.allow_http,
        }
    }
}

pub fn default_shard_rows() -> usize {
    50_000
}

/// How the engine runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSpec {
    /// Videos processed at once inside one process (default: the number of cores; under
    /// `kelp run --workers N`, cores / N). `kelp run --threads` overrides it. "Workers" are
    /// processes (`--workers`); the old key `workers` is still read as this one.
    #[serde(alias = "workers")]
    pub threads: Option<usize>,
    /// Decoder threads per video.
    pub decode_threads: usize,
    /// Finished videos buffered before the writer (backpressure bound).
    pub queue: usize,
    /// At most this many videos per partition (unless `kelp run --partitions M` fixes M).
    pub partition_videos: usize,
    /// Roughly at most this many source bytes per partition.
    pub partition_bytes: u64,
    /// Seconds a partition lease lasts unless renewed (renewed every third of it); a crashed
    /// worker's partition is taken over after this long (at once when it ran on this host).
    pub lease_s: f64,
    /// Failed attempts at one partition before a worker gives up on it (the run then exits 1
    /// and `kelp status` shows the error; `kelp run --resume` tries again).
    pub partition_attempts: u32,
    /// Folder of the spill cache for remote sources (default: the system temp folder).
    pub spill_dir: Option<String>,
    /// Bytes the spill cache keeps per process before evicting (least recently used first).
    pub spill_bytes: u64,
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            threads: None,
            decode_threads: 1,
            queue: 64,
            partition_videos: 64,
            partition_bytes: 16 << 30,
            lease_s: 60.0,
            partition_attempts: 3,
            spill_dir: None,
            spill_bytes: 8 << 30,
        }
    }
}

/// One operator node as written.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    pub op: String,
    pub after: Vec<String>,
    pub params: toml::Table,
}

/// A parsed DAG file (nodes in execution order once validated).
#[derive(Debug, Clone)]
pub struct Dag {
    /// The file it came from, for messages.
    pub file: String,
    pub description: Option<String>,
    pub source: SourceSpec,
    pub output: OutputSpec,
    pub engine: EngineSpec,
    pub nodes: Vec<NodeSpec>,
    /// Dataset-wide passes run after every partition commits (`[[pass]]`), in file order.
    pub passes: Vec<PassSpec>,
}

/// One `[[pass]]` entry: the pass's name and its parameters.
#[derive(Debug, Clone)]
pub struct PassSpec {
    pub op: String,
    pub params: toml::Table,
}
