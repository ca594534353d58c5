//! The `kelp` command line, shared by its two binaries: `kelp` (dataset commands, no video
//! libraries, so it starts fast) and `kelp-video` (commands that decode). Parsing and dispatch
//! only; what a command does lives in `kelp-pipeline`, `kelp-operators` and `kelp-trainer`.

pub mod cli;
pub mod data;
pub mod train_cli;
