//! `_manifest.json`: the list of committed shards. Readers trust only what it lists. It is
//! derived from the partitions' commit records ([`super::commit`]) once every partition is
//! committed; while a run is unfinished, [`super::Dataset`] reads the same structure derived from
//! the commit records there are, so readers see committed partitions and nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::Location;

pub const MANIFEST_FILE: &str = "_manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    /// Path relative to the dataset root, e.g. `clips/part-00000-00000.parquet`.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TableManifest {
    pub rows: u64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    pub kelp_version: String,
    /// Seconds since the Unix epoch when the dataset was committed.
    pub committed_unix: u64,
    /// The DAG file that produced it.
    pub dag: String,
    pub tables: BTreeMap<String, TableManifest>,
    /// The run that produced it (absent in datasets older than partitioned runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Partitions of that run; shards are listed in partition order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// Partitions committed: less than `partitions` only in a view of an unfinished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_partitions: Option<u32>,
}

impl Manifest {
    pub fn table(&self, name: &str) -> Option<&TableManifest> {
        self.tables.get(name)
    }
}

/// Reads the manifest at `loc`, `None` when there is none (transient failures retried).
pub async fn read(loc: &Location) -> Result<Option<Manifest>> {
    super::io::get_json(loc, MANIFEST_FILE).await
}

/// Writes the manifest (one atomic put, retried).
pub async fn write(loc: &Location, manifest: &Manifest) -> Result<()> {
    super::io::put_json(loc, MANIFEST_FILE, manifest).await
}
