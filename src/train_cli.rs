//! The command lines of training and its tools: `kelp train vae`, `kelp eval vae`,
//! `kelp encode`. Definitions only; `kelp-video` runs them (the trainer reads clip media).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kelp_trainer::train::backend::DeviceChoice;
use kelp_trainer::train::split::Split;

use crate::cli::StoreArgs;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the causal 3D VAE on a dataset's clip media (its training split).
    Vae {
        /// The curated dataset (a folder, file://, s3://, ...); default: the config's
        /// [[data.datasets]].
        #[arg(long)]
        dataset: Option<String>,
        /// The training config, e.g. trainer/configs/vae-tiny.toml.
        #[arg(long)]
        config: PathBuf,
        /// Where the run keeps its config, metrics and checkpoints (a folder or object-store
        /// prefix).
        #[arg(long, default_value = "runs/vae")]
        run: String,
        /// Continue the run from its latest checkpoint: same weights, optimizer and data order.
        #[arg(long, conflicts_with = "overwrite")]
        resume: bool,
        /// Continue the run when it has a checkpoint, else start it (cluster jobs that are
        /// resubmitted after a preemption).
        #[arg(long, conflicts_with_all = ["resume", "overwrite"])]
        auto_resume: bool,
        /// Delete the run's checkpoints and metrics and start again.
        #[arg(long)]
        overwrite: bool,
        /// Stop after this optimizer step (the schedule still ends at [train] steps).
        #[arg(long)]
        until_step: Option<u64>,
        /// auto, cpu or cuda (default: the config's [train] device).
        #[arg(long)]
        device: Option<DeviceChoice>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which clips and weights a command reads from a checkpoint's dataset.
#[derive(Args)]
pub struct CheckpointData {
    /// A run folder (its latest checkpoint) or one checkpoint folder.
    #[arg(long)]
    pub checkpoint: String,
    /// The dataset (default: the datasets of the checkpoint's config).
    #[arg(long)]
    pub dataset: Option<String>,
    /// heldout, train or all (the held-out share is the config's [eval] holdout).
    #[arg(long)]
    pub split: Option<Split>,
    /// Use the raw weights instead of their moving average.
    #[arg(long)]
    pub raw_weights: bool,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Reconstruction PSNR and SSIM per bucket on held-out clips, beside the clip-mean baseline.
    Vae {
        #[command(flatten)]
        data: CheckpointData,
        /// Stop after this many clips.
        #[arg(long)]
        max_clips: Option<u64>,
        /// Write each clip beside its reconstruction as DIR/<clip_id>.mp4.
        #[arg(long, value_name = "DIR")]
        write_recon: Option<PathBuf>,
    },
}

/// `kelp encode`.
#[derive(Args)]
pub struct EncodeCommand {
    #[command(flatten)]
    pub data: CheckpointData,
    /// Where the `latents` dataset is committed.
    #[arg(long)]
    pub output: String,
    /// Replace a dataset already at the output.
    #[arg(long)]
    pub overwrite: bool,
    /// Rows per Parquet shard.
    #[arg(long, default_value_t = 256)]
    pub shard_rows: usize,
}
