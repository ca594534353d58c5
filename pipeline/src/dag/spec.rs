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
}

fn default_shard_rows() -> usize {
    50_000
}

/// How the engine runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSpec {
    /// Videos processed at once (default: the number of cores).
    pub workers: Option<usize>,
    /// Decoder threads per video.
    pub decode_threads: usize,
    /// Finished videos buffered before the writer (backpressure bound).
    pub queue: usize,
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            workers: None,
            decode_threads: 1,
            queue: 64,
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
}
