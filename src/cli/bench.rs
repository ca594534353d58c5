//! `kelp bench`'s subcommands: each benchmark with its options.

use std::path::PathBuf;

use clap::Subcommand;

use super::StoreArgs;

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
    /// Training-step throughput of a DiT preset on synthetic latents of one clip shape: tokens/s,
    /// TFLOP/s, MFU, memory; with --peer, the same model in PyTorch in the same call.
    DitStep {
        /// tiny, small100m or seaweed.
        #[arg(long, default_value = "small100m")]
        preset: String,
        /// The VAE preset whose latents the DiT denoises (sets the latent shape).
        #[arg(long, default_value = "seaweed48x")]
        vae: String,
        #[arg(long, default_value_t = 17)]
        frames: usize,
        /// Width and height of the clips.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Caption tokens per sample.
        #[arg(long, default_value_t = 32)]
        text_len: usize,
        #[arg(long, default_value_t = 4)]
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
