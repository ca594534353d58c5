//! The trainer's benchmarks (`kelp bench vae-step|dit-step|dit-dp|dit-cost|allreduce`): their options
//! and dispatch, shared by `kelp-video` and `kelp-train` (the training commands without the
//! video libraries, for GPU nodes).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// The clips and the timing of a training-step benchmark.
#[derive(Args)]
pub struct StepShape {
    #[arg(long, default_value_t = 17)]
    pub frames: usize,
    /// Width and height of the clips.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: kelp_trainer::train::backend::DeviceChoice,
    /// f32, bf16 or f16 (half precision only on a GPU).
    #[arg(long, default_value = "bf16")]
    pub precision: kelp_trainer::train::config::Precision,
}

#[derive(Subcommand)]
pub enum TrainBenchCommand {
    /// Training-step throughput of a VAE preset on synthetic clips: clips/s, TFLOP/s, MFU, memory.
    VaeStep {
        /// seaweed48x, seaweed64x or tiny.
        #[arg(long, default_value = "seaweed48x")]
        preset: String,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[command(flatten)]
        step: StepShape,
    },
    /// Training-step throughput of a DiT preset on synthetic latents of one clip shape: tokens/s,
    /// TFLOP/s, MFU, memory; with --peer, the same model in PyTorch in the same call.
    DitStep {
        /// tiny, small100m or seaweed.
        #[arg(long, default_value = "small100m")]
        preset: String,
        /// The VAE preset whose latents the DiT denoises (sets the latent shape).
        #[arg(long, default_value = "seaweed48x")]
        vae: String,
        /// Caption tokens per sample.
        #[arg(long, default_value_t = 32)]
        text_len: usize,
        #[arg(long, default_value_t = 4)]
        batch: usize,
        #[command(flatten)]
        step: StepShape,
        /// Also train the same model in PyTorch (bash infra/install-bench.sh, or --peer-python).
        #[arg(long)]
        peer: bool,
        /// The Python the peer runs with (needs torch); default: install-bench.sh's venv.
        #[arg(long)]
        peer_python: Option<std::path::PathBuf>,
    },
    /// The DiT's runtime-balance cost model, measured: a training step of one packed row of
    /// each token count, fitted to fixed + linear·n + quadratic·n² and printed as the
    /// `[data] cost_model` line of a DiT config.
    /// Data-parallel DiT training steps with the gradients all-reduced after the backward pass
    /// and during it (launch like training: `mpirun -np 2 kelp bench dit-dp`)
    DitDp {
        #[arg(long, default_value = "small100m")]
        preset: String,
        /// Override the preset's width, in heads as wide as the preset's (a smaller model for a CPU)
        #[arg(long)]
        hidden: Option<usize>,
        /// Override the preset's depth
        #[arg(long)]
        depth: Option<usize>,
        #[arg(long, default_value = "seaweed48x")]
        vae: String,
        #[arg(long, default_value_t = 32)]
        text_len: usize,
        /// Clips per rank per step
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Runs of each way, alternated
        #[arg(long, default_value_t = 2)]
        reps: usize,
        #[command(flatten)]
        step: StepShape,
    },
    DitCost {
        /// The DiT training config (its [model], [flow] and [train] precision).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Tokens per row to time (3 or more).
        #[arg(long, value_delimiter = ',', default_value = "256,1024,2048,4096")]
        tokens: Vec<usize>,
        /// Timed steps per length (after one warm-up).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// auto, cpu or cuda.
        #[arg(long, default_value = "auto")]
        device: kelp_trainer::train::backend::DeviceChoice,
    },
    /// The gradient all-reduce through the job's collective (MPI on CPUs, NCCL on GPUs; start it
    /// like training, e.g. `mpirun -np 2 kelp bench allreduce`): each size checked on every rank
    /// then timed (algorithm and bus bandwidth), and the step budget of the DiT presets: compute
    /// at a given peak and MFU next to the f32 gradient all-reduce at the measured and given bus
    /// bandwidths.
    Allreduce {
        /// Buffer sizes in MB.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256")]
        sizes_mb: Vec<f64>,
        /// Timed all-reduces per size (after a checked one).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// auto, cpu or cuda.
        #[arg(long, default_value = "auto")]
        device: kelp_trainer::train::backend::DeviceChoice,
        /// DiT presets for the step budget.
        #[arg(long, value_delimiter = ',', default_value = "small100m,seaweed")]
        presets: Vec<String>,
        /// Tokens per rank per step for the step budget.
        #[arg(long, value_delimiter = ',', default_value = "4096,16384,65536")]
        tokens: Vec<usize>,
        /// Dense TFLOP/s the budget's compute runs at (H100/H200 bf16: 989).
        #[arg(long, default_value_t = 989.0)]
        peak_tflops: f64,
        /// Model FLOPs utilisation the budget assumes (the seed reports 38% at scale).
        #[arg(long, default_value_t = 0.38)]
        mfu: f64,
        /// Bus bandwidths to project, NAME=GB/s (nccl-tests' busbw: what the fabric delivers).
        #[arg(long, value_delimiter = ',', value_parser = parse_bandwidth,
              default_value = "nvlink-node=360,ib-400g=45")]
        assume_busbw: Vec<(String, f64)>,
    },
}

/// Runs one of the trainer's benchmarks and prints its report (rank 0 of a multi-process
/// bench), saying so under it when the timed binary is a debug build.
pub fn run(command: TrainBenchCommand) -> Result<()> {
    if report(command)? && cfg!(debug_assertions) {
        println!(
            "kelp-train: a debug build (the workspace unoptimised); times to compare come from \
             `cargo build --release` (infra/gpu/bundle.sh builds one)"
        );
    }
    Ok(())
}

/// Runs the bench; whether this process printed its report.
fn report(command: TrainBenchCommand) -> Result<bool> {
    match command {
        TrainBenchCommand::VaeStep {
            preset,
            batch,
            step,
        } => {
            use kelp_trainer::train::vae::bench;
            let report = bench::bench_step(&bench::BenchArgs {
                preset,
                frames: step.frames,
                size: step.size,
                batch,
                steps: step.steps,
                device: step.device,
                precision: step.precision,
            })?;
            print!("{report}");
            Ok(true)
        }
        TrainBenchCommand::DitStep {
            preset,
            vae,
            text_len,
            batch,
            step,
            peer,
            peer_python,
        } => {
            use kelp_trainer::train::dit::step_bench;
            let peer_python = match (peer, peer_python) {
                (_, Some(p)) => Some(p),
                (true, None) => Some(kelp_trainer::data::bench::peer_python().context(
                    "--peer: no PyTorch venv (bash infra/install-bench.sh, or --peer-python)",
                )?),
                (false, None) => None,
            };
            let report = step_bench::bench_step(&step_bench::DitStepArgs {
                shape: dit_shape(preset, vae, text_len, batch, step),
                peer_python,
            })?;
            print!("{report}");
            Ok(true)
        }
        TrainBenchCommand::DitDp {
            preset,
            hidden,
            depth,
            vae,
            text_len,
            batch,
            reps,
            step,
        } => {
            use kelp_trainer::train::dit::dp_bench;
            let report = dp_bench::run(&dp_bench::DitDpArgs {
                shape: dit_shape(preset, vae, text_len, batch, step),
                hidden,
                depth,
                reps,
            })?;
            let printed = report.is_some();
            if let Some(report) = report {
                print!("{report}");
            }
            Ok(printed)
        }
        TrainBenchCommand::DitCost {
            config,
            tokens,
            reps,
            device,
        } => {
            use kelp_trainer::train::dit::cost;
            let report = cost::measure(&cost::CostArgs {
                config,
                tokens,
                reps,
                device,
            })?;
            print!("{report}");
            Ok(true)
        }
        TrainBenchCommand::Allreduce {
            sizes_mb,
            reps,
            device,
            presets,
            tokens,
            peak_tflops,
            mfu,
            assume_busbw,
        } => {
            use kelp_trainer::train::allreduce_bench as bench;
            let report = bench::run(&bench::AllReduceArgs {
                sizes_mb,
                reps,
                device,
                presets,
                tokens,
                peak_tflops,
                mfu,
                assume_busbw,
            })?;
            let printed = report.is_some();
            if let Some(report) = report {
                print!("{report}");
            }
            Ok(printed)
        }
    }
}

/// `NAME=GB/s` of `--assume-busbw`.
fn parse_bandwidth(s: &str) -> Result<(String, f64), String> {
    let (name, gbs) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: expected NAME=GB/s"))?;
    let gbs: f64 = gbs
        .parse()
        .map_err(|_| format!("{s}: {gbs} is not a number of GB/s"))?;
    if gbs.is_nan() || gbs <= 0.0 {
        return Err(format!("{s}: bandwidth must be positive"));
    }
    Ok((name.to_string(), gbs))
}

/// The shape both DiT benches train, from their shared flags.
fn dit_shape(
    preset: String,
    vae: String,
    text_len: usize,
    batch: usize,
    step: StepShape,
) -> kelp_trainer::train::dit::step_bench::DitBenchShape {
    kelp_trainer::train::dit::step_bench::DitBenchShape {
        preset,
        vae,
        frames: step.frames,
        size: step.size,
        text_len,
        batch,
        steps: step.steps,
        device: step.device,
        precision: step.precision,
    }
}
