//! The `kelp` command line, shared by its binaries: `kelp` (dataset commands, no video
//! libraries, so it starts fast), `kelp-video` (commands that decode, and training) and
//! `kelp-train` (training without video libraries, for GPU nodes). Parsing and dispatch only;
//! what a command does lives in `kelp-pipeline`, `kelp-operators` and `kelp-trainer`.

pub mod cli;
pub mod data;
pub mod heap;
pub mod train_bench;
pub mod train_cli;
pub mod train_run;
