//! Benchmarks printed as Markdown tables with the peer's numbers from the same run: a whole DAG
//! against the bare decode ([`dag`]), and `kelp sql` against DuckDB on a synthetic dataset
//! ([`sql`]). The shots benchmark lives with the detector (`kelp_operators::bench`).

pub mod dag;
pub mod sql;

pub use dag::{dag_table, run_dag, DagRow};
