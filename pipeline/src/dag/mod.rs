//! DAG files: what they may say ([`spec`]) and the checks that run before anything else
//! ([`validate`]), so a typo fails in a second with the file, node and key named.

pub mod spec;
pub mod validate;

pub use spec::{Dag, EngineSpec, NodeSpec, OutputSpec, PassSpec, SourceSpec};
pub use validate::{load, parse, parse_with, CompiledDag};
