//! The command line both binaries parse (`kelp` and `kelp-video`), logging set-up and the async
//! runtime. Definitions only: what each command does lives in the crates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "kelp",
    version,
    about = "Curate raw video into training-ready datasets (Seaweed-style)."
)]
pub struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a curation DAG and commit its dataset.
    Run {
        /// The DAG file, e.g. dags/quickstart.toml.
        dag: PathBuf,
        /// Replace the source URI the DAG names.
        #[arg(long)]
        source: Option<String>,
        /// Replace the output URI the DAG names.
        #[arg(long)]
        output: Option<String>,
        /// Replace an existing dataset (or unfinished run) at the output.
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Continue the unfinished run at the output (after a crash, or to retry failed partitions).
        #[arg(long)]
        resume: bool,
        /// Worker processes on this machine, claiming partitions (default 1: this process).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Videos processed at once in each process (default: the DAG's [engine] threads, else
        /// the cores divided among the worker processes).
        #[arg(long)]
        threads: Option<usize>,
        /// Split a new run into M partitions (default: from [engine] partition_videos/bytes).
        #[arg(long, value_name = "M")]
        partitions: Option<u32>,
        /// Process only partition i (0-based) of M, e.g. from JOB_COMPLETION_INDEX or
        /// SLURM_ARRAY_TASK_ID; the last one to commit writes the manifest.
        #[arg(
            long,
            value_name = "i",
            requires = "partitions",
            conflicts_with = "workers"
        )]
        partition: Option<u32>,
        #[command(flatten)]
        store: StoreArgs,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Internal: this process is worker k of `--workers N`.
        #[arg(long, hide = true)]
        worker_index: Option<usize>,
    },
    /// Show a run's partitions: done, running, failed (with errors) and pending.
    Status {
        /// Dataset URI (a folder, file://, s3://, ...).
        dataset: String,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
    },
    /// Run a dataset-wide pass over a finished dataset and commit its tables (exactly once).
    Pass {
        /// The pass, e.g. clip_index (`kelp operators` lists them).
        name: String,
        /// Dataset URI.
        #[arg(long)]
        dataset: String,
        /// A parameter of the pass, as a DAG's `[[pass]]` table would give it (repeatable):
        /// `--set clusters=512`, `--set model="models/my-encoder"`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
        /// Rows per output shard.
        #[arg(long, default_value_t = kelp_pipeline::dag::spec::default_shard_rows())]
        shard_rows: usize,
    },
    /// Near-duplicate groups over a finished dataset (the near_dedup pass on its own), also
    /// against older datasets: this dataset's copies of their clips are rejected.
    Dedup {
        /// Dataset URI.
        #[arg(long)]
        dataset: String,
        /// An older dataset whose clips are kept and never rewritten (repeatable).
        #[arg(long, value_name = "URI")]
        against: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
        /// Rows per output shard.
        #[arg(long, default_value_t = kelp_pipeline::dag::spec::default_shard_rows())]
        shard_rows: usize,
    },
    /// Check a DAG file completely without running it.
    Validate { dag: PathBuf },
    /// Run SQL over a dataset's tables (videos, boundaries, clips).
    Sql {
        query: String,
        /// Dataset URI (a folder, file://, s3://, gs://, ...).
        #[arg(long)]
        dataset: String,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
        /// Write the result here instead of stdout (required for parquet).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the shot boundaries of one video (the `shots` operator, no DAG needed).
    Shots {
        video: PathBuf,
        #[arg(long, value_enum, default_value_t = ShotsFormat::Table)]
        format: ShotsFormat,
        /// Decoder threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Print the distributions to check before training (and plot them).
    Stats {
        /// Dataset URI.
        #[arg(long)]
        dataset: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print each statistic's SQL (every number is one `kelp sql` query away).
        #[arg(long)]
        show_sql: bool,
        #[arg(long, value_enum, default_value_t = StatsFormat::Text)]
        format: StatsFormat,
        /// Write an HTML page with tables and plots.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Write one PNG plot per histogram into this folder.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Browse a dataset in a web browser: SQL, clip previews, why clips were kept or dropped,
    /// near-duplicate groups, stats.
    Serve {
        /// Dataset URI (a folder, file://, s3://, ...).
        #[arg(long)]
        dataset: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Port to listen on (0: any free port; the address is printed).
        #[arg(long, default_value_t = 8765)]
        port: u16,
        /// Address to listen on. There is no authentication: anything but loopback lets anyone who
        /// can reach it read the dataset.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// A query stops after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout_s: f64,
        /// Most rows one request returns (results are paged).
        #[arg(long, default_value_t = 1000)]
        max_rows: usize,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Train a model: the VAE on a dataset's clip media, the DiT on its latents.
    #[command(subcommand)]
    Train(crate::train_cli::TrainCommand),
    /// Evaluate a trained model on held-out clips.
    #[command(subcommand)]
    Eval(crate::train_cli::EvalCommand),
    /// Latents of a dataset's clips from a trained VAE, committed as a dataset of their own.
    Encode(crate::train_cli::EncodeCommand),
    /// Sample a clip for a prompt from a trained DiT, decoded by its VAE, as an MP4.
    Sample(crate::train_cli::SampleCommand),
    /// Plot a training run's metrics (loss terms, learning rate, throughput) to one PNG.
    Plot {
        /// The run: its folder or object-store prefix (`kelp train --run`).
        run: String,
        /// The PNG to write (default: metrics.png in the run folder, or here for remote runs).
        #[arg(short, long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the operators a DAG can use.
    Operators,
    /// Print the dataset schema (every column with its unit and range) as Markdown.
    Schema,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// `kelp sql` (whole command) vs the DuckDB CLI on the same synthetic Parquet shards.
    Sql {
        /// Synthetic clip rows.
        #[arg(long, default_value_t = 2_000_000)]
        rows: usize,
        /// Where the synthetic dataset goes (kept and reused when it is there).
        #[arg(long, default_value = "out/bench-sql")]
        dir: PathBuf,
        /// Runs per query (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Skip DuckDB.
        #[arg(long)]
        no_peer: bool,
    },
    /// A whole DAG's per-video work (every analysis, one decode) vs the bare decode.
    Dag { dag: PathBuf, videos: Vec<PathBuf> },
    /// Near-duplicate search on the transformed set (copies and hard negatives of the videos in
    /// DIR): pairwise precision/recall and wall time next to PyPI videohash, then the matching
    /// throughput at 1M synthetic signatures.
    Dedup {
        /// Folder of real videos laid out as /work/shared/data (generated bases when none is
        /// there).
        #[arg(default_value = "/work/shared/data")]
        dir: PathBuf,
        /// Skip videohash.
        #[arg(long)]
        no_peer: bool,
        /// Synthetic signatures for the throughput line (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        signatures: usize,
    },
    /// The near-duplicate index and matching on synthetic signatures: time and peak memory.
    DedupIndex {
        /// Signature counts to run, smallest first.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        signatures: Vec<usize>,
    },
    /// Training-step throughput of a VAE preset on synthetic clips: clips/s, TFLOP/s, MFU, memory.
    VaeStep {
        /// seaweed48x, seaweed64x or tiny.
        #[arg(long, default_value = "seaweed48x")]
        preset: String,
        #[arg(long, default_value_t = 17)]
        frames: usize,
        /// Width and height of the clips.
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed steps (after two warm-up steps).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// auto, cpu or cuda.
        #[arg(long, default_value = "auto")]
        device: kelp_trainer::train::backend::DeviceChoice,
        /// f32, bf16 or f16 (half precision only on a GPU).
        #[arg(long, default_value = "bf16")]
        precision: kelp_trainer::train::config::Precision,
    },
    /// The DiT's runtime-balance cost model, measured: a training step of one packed row of
    /// each token count, fitted to fixed + linear·n + quadratic·n² and printed as the
    /// `[data] cost_model` line of a DiT config.
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
    /// Clip media storage: clips packed in the `media` table's Parquet shards vs one object per
    /// clip, read in random order from a moto S3 server (requests and bytes per 1,000 clips).
    MediaLayout {
        /// A dataset with a `media` table (its clips are repeated up to --clips).
        #[arg(long, default_value = "out/quickstart")]
        dataset: String,
        #[arg(long, default_value_t = 1000)]
        clips: usize,
        /// Seed of the random read order.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The training loader: clips/s, frames/s and MB/s with 1 and 2 decode workers and the time
    /// per stage, from the local disk and from a moto S3 server (cache cold and warm); with
    /// --peer, a PyTorch DataLoader decoding the same clips with PyAV.
    Loader {
        /// A dataset with clip media (a `transcode` node).
        #[arg(long, default_value = "out/quickstart")]
        dataset: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Clips per run (the dataset's clips repeated as needed).
        #[arg(long, default_value_t = 400)]
        clips: usize,
        /// Frames per clip.
        #[arg(long, default_value_t = 17)]
        frames: u32,
        /// Output size, WIDTHxHEIGHT.
        #[arg(long, default_value = "256x256")]
        size: String,
        #[arg(long, default_value_t = 4)]
        batch_size: usize,
        /// Skip the moto S3 runs.
        #[arg(long)]
        no_s3: bool,
        /// Also run the PyTorch DataLoader + PyAV peer (bash infra/install-bench.sh).
        #[arg(long)]
        peer: bool,
    },
    /// Clip media: the clip stage with the DAG's `transcode` over each video's kept clips vs the
    /// ffmpeg CLI once per clip (same filters and encoder settings), and its decode vs a bare
    /// decode of the same ranges.
    Transcode {
        /// The DAG whose analysis picks the clips and whose `transcode` node sets the encoder.
        #[arg(long, default_value = "dags/quickstart.toml")]
        dag: PathBuf,
        videos: Vec<PathBuf>,
    },
    /// Captioning: kelp's CPU per caption request (frame extraction, JPEG, request body) and
    /// requests/s through its client at several concurrency limits against a local
    /// chat-completions server with a fixed latency (the bound: concurrency ÷ latency).
    Caption {
        /// The server's latency per request, milliseconds (one table each).
        #[arg(long, value_delimiter = ',', default_value = "250,1000")]
        latency_ms: Vec<u64>,
        /// Concurrency limits to run.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
        concurrency: Vec<usize>,
        /// Frames per request and their short side (the `caption` node's defaults).
        #[arg(long, default_value_t = 8)]
        frames: u32,
        #[arg(long, default_value_t = 448)]
        frame_size: u32,
        /// A video to build the requests from (default: a generated 1280x720 one).
        video: Option<PathBuf>,
    },
    /// Shot detection vs the bare decode (ffmpeg CLI, 1 thread) and PySceneDetect, with F1 where
    /// `<file>.labels.csv` sits beside a video (or in --labels).
    Shots {
        videos: Vec<PathBuf>,
        /// Folder holding `<file name>.labels.csv` files.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Skip PySceneDetect.
        #[arg(long)]
        no_peer: bool,
        /// Skip the ffmpeg bare-decode timing.
        #[arg(long)]
        no_decode: bool,
    },
}

/// S3-compatible endpoint options (AWS_* environment variables configure the rest).
#[derive(clap::Args, Clone, Default)]
pub struct StoreArgs {
    /// S3 endpoint URL for s3:// URIs (MinIO, Ceph, moto), e.g. http://127.0.0.1:9000.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Allow a plain-http endpoint.
    #[arg(long)]
    pub allow_http: bool,
}

impl StoreArgs {
    pub fn options(&self) -> kelp_pipeline::store::StoreOptions {
        kelp_pipeline::store::StoreOptions {
            endpoint: self.endpoint.clone(),
            allow_http: self.allow_http,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StatsFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ShotsFormat {
    Table,
    Csv,
    Json,
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The subcommand's name, for messages.
pub fn name_of(command: &Command) -> &'static str {
    match command {
        Command::Run { .. } => "run",
        Command::Status { .. } => "status",
        Command::Pass { .. } => "pass",
        Command::Dedup { .. } => "dedup",
        Command::Validate { .. } => "validate",
        Command::Sql { .. } => "sql",
        Command::Shots { .. } => "shots",
        Command::Stats { .. } => "stats",
        Command::Serve { .. } => "serve",
        Command::Bench(_) => "bench",
        Command::Plot { .. } => "plot",
        Command::Train(_) => "train",
        Command::Eval(_) => "eval",
        Command::Encode(_) => "encode",
        Command::Sample(_) => "sample",
        Command::Operators => "operators",
        Command::Schema => "schema",
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
    if !(gbs > 0.0) {
        return Err(format!("{s}: bandwidth must be positive"));
    }
    Ok((name.to_string(), gbs))
}
