//! The dataset on object storage: its tables' schema ([`schema`]), the Parquet shard writer
//! ([`writer`]), the manifest that lists committed shards ([`manifest`]), and the exactly-once
//! commit protocol of partitioned runs ([`commit`], [`lease`], with JSON helpers in [`io`]).
//!
//! Layout under the dataset URI:
//! ```text
//! _manifest.json                         derived from the commit records when all partitions are in
//! videos/part-PPPPP-SSSSS.parquet        one row per source video (partition P, shard S)
//! boundaries/part-PPPPP-SSSSS.parquet    one row per detected shot boundary
//! clips/part-PPPPP-SSSSS.parquet         one row per clip
//! _kelp/run.json                         the run: its DAG fingerprint and partition plan
//! _kelp/commits/p-PPPPP.json             a partition's commit record (conditional create)
//! _kelp/leases/p-PPPPP/g-GGGGGGGGG.json  who is processing a partition (generations)
//! _kelp/failures/p-PPPPP.json            the last failure of a partition, for `kelp status`
//! _kelp/staging/p-PPPPP/<attempt>/...    shards of an attempt, before its commit
//! ```

pub mod commit;
pub mod handle;
pub mod io;
pub mod lease;
pub mod manifest;
pub mod ranged;
pub mod schema;
pub mod writer;

pub use handle::Dataset;
pub use manifest::{Manifest, ShardInfo, TableManifest, MANIFEST_FILE};
pub use writer::TableWriter;
