//! The command lines of training and its tools: `kelp train vae`, `kelp eval vae`,
//! `kelp encode`, `kelp train dit`, `kelp sample`. Definitions only; `kelp-video` runs them (the trainer reads clip media).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kelp_trainer::train::backend::DeviceChoice;
use kelp_trainer::train::dit::sample::Solver;
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
        #[command(flatten)]
        how: RunArgs,
    },
    /// Train the diffusion transformer on a `latents` dataset (`kelp encode`) and its captions.
    Dit {
        /// The latents (a folder, file://, s3://, ...); default: the config's [data] latents.
        #[arg(long)]
        latents: Option<String>,
        /// The training config, e.g. trainer/configs/dit-tiny.toml.
        #[arg(long)]
        config: PathBuf,
        /// Where the run keeps its config, metrics and checkpoints.
        #[arg(long, default_value = "runs/dit")]
        run: String,
        #[command(flatten)]
        how: RunArgs,
    },
}

/// How a `kelp train` command treats its run, where it trains and what it prints.
#[derive(Args)]
pub struct RunArgs {
    /// Continue the run from its latest checkpoint: same weights, optimizer and data order.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Continue the run when it has a checkpoint, else start it (cluster jobs that are
    /// resubmitted after a preemption).
    #[arg(long, conflicts_with_all = ["resume", "overwrite"])]
    pub auto_resume: bool,
    /// Delete the run's checkpoints and metrics and start again.
    #[arg(long)]
    pub overwrite: bool,
    /// Stop after this optimizer step (the schedule still ends at [train] steps).
    #[arg(long)]
    pub until_step: Option<u64>,
    /// auto, cpu or cuda (default: the config's [train] device).
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `kelp sample`.
#[derive(Args)]
pub struct SampleCommand {
    /// The DiT: a run folder (its latest checkpoint) or one checkpoint folder.
    #[arg(long)]
    pub checkpoint: String,
    /// The VAE run or checkpoint that encoded the DiT's training latents.
    #[arg(long)]
    pub vae: String,
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub clip: ClipArgs,
    /// The MP4 to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the sampled latents (f32 little-endian, [C, T, H, W]).
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Image-to-video: the first frame (PNG or JPEG, scaled to --size); the DiT must have been
    /// trained with [model] image_condition.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Use the raw weights instead of their moving average.
    #[arg(long)]
    pub raw_weights: bool,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let bad = || format!("{s:?}: give WIDTHxHEIGHT, e.g. 256x144");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok([
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ])
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
    /// The DiT's flow-matching loss on held-out latents at fixed timesteps (t = 0.1 … 0.9);
    /// --dataset is the latents dataset (default: the one it trained on).
    Dit {
        #[command(flatten)]
        data: CheckpointData,
        /// Also sample each --prompt with the run's VAE (--vae) and write their frames as one
        /// PNG contact sheet, a row per prompt.
        #[arg(long, value_name = "PNG", requires = "vae")]
        sheet: Option<PathBuf>,
        /// The VAE run or checkpoint that encoded the DiT's training latents.
        #[arg(long)]
        vae: Option<String>,
        /// A prompt of the contact sheet (repeat for more rows).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        #[command(flatten)]
        clip: ClipArgs,
    },
}

/// The clip a sampler makes.
#[derive(Args)]
pub struct ClipArgs {
    /// Frames of the clip (1 + dt·k for the VAE's temporal compression dt).
    #[arg(long, default_value_t = 17)]
    pub frames: usize,
    /// WIDTHxHEIGHT in pixels (multiples of the VAE's spatial compression).
    #[arg(long, default_value = "256x256", value_parser = parse_size)]
    pub size: [usize; 2],
    /// Euler steps.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 4.0)]
    pub cfg: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// euler or heun (second order: two model passes per step).
    #[arg(long, default_value = "euler")]
    pub solver: Solver,
    /// Frames per second: the frame rate a DiT trained with [model] fps_condition is asked for,
    /// and the MP4's rate.
    #[arg(long, default_value_t = 24)]
    pub fps: u32,
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
