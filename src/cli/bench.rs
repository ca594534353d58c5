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
    #[command(flatten)]
    Train(crate::train_bench::TrainBenchCommand),
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
