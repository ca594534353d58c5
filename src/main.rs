//! The `kelp` command line: parse, dispatch into the crates, print. No logic lives here.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kelp_operators::shots::ShotsConfig;
use kelp_operators::SourceVideo;
use kelp_pipeline::{dag, engine, sql};

#[derive(Parser)]
#[command(
    name = "kelp",
    version,
    about = "Curate raw video into training-ready datasets (Seaweed-style)."
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
        /// Videos processed at once in each process (default: the DAG's [engine] workers, else
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
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List the operators a DAG can use.
    Operators,
    /// Print the dataset schema (every column with its unit and range) as Markdown.
    Schema,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// A whole DAG's per-video work (every analysis, one decode) vs the bare decode.
    Dag { dag: PathBuf, videos: Vec<PathBuf> },
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
struct StoreArgs {
    /// S3 endpoint URL for s3:// URIs (MinIO, Ceph, moto), e.g. http://127.0.0.1:9000.
    #[arg(long)]
    endpoint: Option<String>,
    /// Allow a plain-http endpoint.
    #[arg(long)]
    allow_http: bool,
}

impl StoreArgs {
    fn options(&self) -> kelp_pipeline::store::StoreOptions {
        kelp_pipeline::store::StoreOptions {
            endpoint: self.endpoint.clone(),
            allow_http: self.allow_http,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatsFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum SqlFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShotsFormat {
    Table,
    Csv,
    Json,
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Err(e) = dispatch(cli.command, cli.verbose) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(verbose: u8) {
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn dispatch(command: Command, verbose: u8) -> Result<()> {
    match command {
        Command::Run {
            dag,
            source,
            output,
            overwrite,
            resume,
            workers,
            threads,
            partitions,
            partition,
            store,
            quiet,
            worker_index,
        } => {
            let compiled = dag::load(&dag)?;
            let workers = workers.max(1);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = threads
                .or(compiled.dag.engine.workers)
                .or((workers > 1).then(|| (cores / workers).max(1)));
            let opts = engine::RunOptions {
                overwrite,
                resume,
                threads,
                source: source.clone(),
                output: output.clone(),
                store: store.options(),
                partitions,
                partition,
                worker_index,
                progress: !quiet && worker_index.is_none(),
            };
            let rt = runtime()?;
            let summary = if workers > 1 && worker_index.is_none() {
                rt.block_on(engine::fleet::run(&compiled, &opts, workers, verbose))?
            } else {
                rt.block_on(engine::run(&compiled, &opts))?
            };
            if worker_index.is_none() {
                print!("{summary}");
                tracing::info!("object store: {}", summary.requests);
            }
            Ok(())
        }
        Command::Status {
            dataset,
            store,
            format,
        } => {
            use kelp_pipeline::dataset::handle::{self, DatasetStatus};
            let st = match runtime()?.block_on(handle::status(&dataset, &store.options()))? {
                DatasetStatus::Run(st) => st,
                DatasetStatus::Legacy => {
                    println!(
                        "{dataset}: complete (written before partitioned runs: no run record)"
                    );
                    return Ok(());
                }
            };
            match format {
                StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                StatusFormat::Table => print!("{st}"),
            }
            Ok(())
        }
        Command::Pass {
            name,
            dataset,
            store,
            shard_rows,
        } => {
            let done = runtime()?.block_on(kelp_pipeline::pass::run_on_dataset(
                &dataset,
                &store.options(),
                &name,
                shard_rows.max(1),
            ))?;
            let rows: Vec<String> = done
                .rows
                .iter()
                .map(|(t, n)| format!("{t} {n} rows"))
                .collect();
            println!(
                "{dataset}: pass {name} {} (unit {}): {}",
                if done.ran {
                    "committed"
                } else {
                    "was already committed"
                },
                done.unit,
                rows.join(", ")
            );
            Ok(())
        }
        Command::Validate { dag } => {
            let compiled = dag::load(&dag)?;
            let ids: Vec<String> = compiled
                .dag
                .nodes
                .iter()
                .map(|n| format!("{} ({})", n.id, n.op))
                .collect();
            println!(
                "{}: ok: {} nodes: {}",
                dag.display(),
                ids.len(),
                ids.join(" → ")
            );
            Ok(())
        }
        Command::Sql {
            query,
            dataset,
            store,
            format,
            out,
        } => {
            let (schema, batches) =
                runtime()?.block_on(sql::query_with(&dataset, &query, &store.options()))?;
            let fmt = match format {
                SqlFormat::Table => sql::Format::Table,
                SqlFormat::Csv => sql::Format::Csv,
                SqlFormat::Json => sql::Format::Json,
                SqlFormat::Parquet => sql::Format::Parquet,
            };
            if matches!(format, SqlFormat::Parquet) && out.is_none() {
                bail!("--format parquet writes a file: add --out result.parquet");
            }
            let bytes = sql::render(&schema, &batches, fmt)?;
            match out {
                Some(path) => std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().write_all(&bytes)?,
            }
            Ok(())
        }
        Command::Shots {
            video,
            format,
            threads,
        } => shots(video, format, threads),
        Command::Stats {
            dataset,
            store,
            show_sql,
            format,
            html,
            png,
        } => {
            let sections = runtime()?.block_on(async {
                let ds = kelp_pipeline::dataset::Dataset::open(&dataset, &store.options()).await?;
                kelp_pipeline::stats::compute(&ds).await
            })?;
            match format {
                StatsFormat::Text => print!(
                    "{}",
                    kelp_pipeline::stats::render_text(&sections, show_sql)?
                ),
                StatsFormat::Json => println!("{}", kelp_pipeline::stats::render_json(&sections)?),
            }
            if let Some(path) = html {
                kelp_pipeline::stats::plots::write_html(&sections, &path)?;
                eprintln!("wrote {}", path.display());
            }
            if let Some(dir) = png {
                for p in kelp_pipeline::stats::plots::write_pngs(&sections, &dir)? {
                    eprintln!("wrote {}", p.display());
                }
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Dag { dag, videos }) => {
            if videos.is_empty() {
                bail!("name at least one video: kelp bench dag DAG VIDEO...");
            }
            let compiled = dag::load(&dag)?;
            let rows = kelp_pipeline::bench::run_dag(&compiled, &videos)?;
            print!("{}", kelp_pipeline::bench::dag_table(&rows));
            Ok(())
        }
        Command::Bench(BenchCommand::Shots {
            videos,
            labels,
            no_peer,
            no_decode,
        }) => {
            if videos.is_empty() {
                bail!("name at least one video: kelp bench shots VIDEO...");
            }
            let opts = kelp_operators::bench::BenchOptions {
                videos,
                labels_dir: labels,
                peer: !no_peer,
                decode: !no_decode,
            };
            let rows = kelp_operators::bench::run(&opts).map_err(anyhow::Error::msg)?;
            print!("{}", kelp_operators::bench::table(&rows));
            Ok(())
        }
        Command::Operators => {
            for op in kelp_operators::registry::OPERATORS {
                println!("{:<12} {}", op.name, op.summary);
            }
            for (name, summary) in kelp_pipeline::dag::validate::ROW_OPERATORS {
                println!("{name:<12} {summary}");
            }
            println!("\ndataset-wide passes ([[pass]] in a DAG, or kelp pass NAME --dataset URI):");
            for p in kelp_pipeline::pass::PASSES {
                println!("{:<12} {}", p.name, p.summary);
            }
            Ok(())
        }
        Command::Schema => {
            print!(
                "{}",
                kelp_pipeline::dataset::schema::markdown(&{
                    let mut all = kelp_operators::registry::all_outputs();
                    for p in kelp_pipeline::pass::PASSES {
                        all.push((
                            p.name,
                            kelp_operators::Outputs {
                                tables: (p.tables)(),
                                ..Default::default()
                            },
                        ));
                    }
                    all
                })
            );
            Ok(())
        }
    }
}

fn shots(video: PathBuf, format: ShotsFormat, threads: usize) -> Result<()> {
    let plan = kelp_operators::shots::plan(ShotsConfig::default(), threads);
    let ctx = plan.run(SourceVideo {
        uri: video.display().to_string(),
        path: video.clone(),
    });
    if let Some(e) = &ctx.error {
        bail!("{e}");
    }
    let format = match format {
        ShotsFormat::Table => kelp_operators::shots::report::Format::Table,
        ShotsFormat::Csv => kelp_operators::shots::report::Format::Csv,
        ShotsFormat::Json => kelp_operators::shots::report::Format::Json,
    };
    print!(
        "{}",
        kelp_operators::shots::report::render(&ctx, format).map_err(anyhow::Error::msg)?
    );
    Ok(())
}
