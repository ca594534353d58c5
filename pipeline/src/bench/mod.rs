//! Benchmarks printed as Markdown tables with the peer's numbers from the same run: a whole DAG
//! against the bare decode ([`dag`]), and `kelp sql` against DuckDB on a synthetic dataset
//! ([`sql`]), the two ways to store clip media on object storage ([`media`]), and near-duplicate
//! search against videohash ([`dedup`]). The shots and
//! transcode benchmarks live with the video code (`kelp_operators::bench`,
//! `kelp_operators::media::bench`).

pub mod dag;
pub mod dedup;
pub mod media;
pub mod sql;

pub use dag::{dag_table, run_dag, DagRow};
