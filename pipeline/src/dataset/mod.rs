//! The dataset on object storage: its tables' schema ([`schema`]), the Parquet shard writer
//! ([`writer`]) and the manifest that lists committed shards ([`manifest`]).
//!
//! Layout under the dataset URI:
//! ```text
//! _manifest.json                         written last: the commit point
//! videos/part-00000-00000.parquet        one row per source video
//! boundaries/part-00000-00000.parquet    one row per detected shot boundary
//! clips/part-00000-00000.parquet         one row per clip
//! ```

pub mod manifest;
pub mod schema;
pub mod writer;

pub use manifest::{Manifest, ShardInfo, TableManifest, MANIFEST_FILE};
pub use writer::TableWriter;
