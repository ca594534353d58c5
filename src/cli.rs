//! The command line both binaries parse (`kelp` and `kelp-video`), logging set-up and the async
//! runtime. Definitions only: what each command does lives in the crates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

mod bench;
pub use bench::BenchCommand;

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
