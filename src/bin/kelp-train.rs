//! `kelp-train`: the training commands that need no video library — `train dit` (on a `latents`
//! dataset) and the trainer's benchmarks — for GPU nodes and containers that have the NVIDIA
//! driver and PyTorch but not Debian's FFmpeg, OpenCV or Open MPI. Same arguments as the `kelp`
//! commands of the same names. With the default features it joins CPU jobs through MPI like
//! `kelp-video`; built `--no-default-features --features cuda` it links neither MPI nor any
//! video library (`infra/gpu/bundle.sh`), and ranks join through NCCL alone.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use kelp_cli::cli::init_logging;
use kelp_cli::train_bench::TrainBenchCommand;
use kelp_cli::train_cli::TrainCommand;

#[derive(Parser)]
#[command(
    name = "kelp-train",
    version,
    about = "kelp's training commands without video libraries"
)]
struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (`dit` only here: the VAE reads clip media, which `kelp-video` decodes).
    #[command(subcommand)]
    Train(TrainCommand),
    /// The trainer's benchmarks.
    #[command(subcommand)]
    Bench(TrainBenchCommand),
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(TrainCommand::Dit {
            latents,
            config,
            run,
            how,
        }) => kelp_cli::train_run::train_dit(latents, &config, run, how),
        Command::Train(TrainCommand::Vae { .. }) => {
            bail!(
                "kelp train vae decodes clip media: run it with kelp (kelp-video), not kelp-train"
            )
        }
        Command::Bench(b) => kelp_cli::train_bench::run(b),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Err(e) = run(cli.command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
