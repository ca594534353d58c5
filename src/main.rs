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

    fn to_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(e) = &self.endpoint {
            v.extend(["--endpoint".to_string(), e.clone()]);
        }
        if self.allow_http {
            v.push("--allow-http".into());
        }
        v
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
                let exe = std::env::current_exe().context("locating the kelp binary")?;
                let child = |k: usize| {
                    let mut c = std::process::Command::new(&exe);
                    c.arg("run").arg(&dag).arg("--quiet");
                    c.args(["--worker-index", &k.to_string()]);
                    if let Some(s) = &source {
                        c.args(["--source", s]);
                    }
                    if let Some(o) = &output {
                        c.args(["--output", o]);
                    }
                    if let Some(t) = threads {
                        c.args(["--threads", &t.to_string()]);
                    }
                    c.args(store.to_args());
                    if verbose > 0 {
                        c.arg(format!("-{}", "v".repeat(verbose as usize)));
                    }
                    c
                };
                rt.block_on(engine::fleet::run(&compiled, &opts, workers, &child))?
            } else {
                rt.block_on(engine::run(&compiled, &opts))?
            };
            if worker_index.is_none() {
                print_summary(&summary);
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
                StatusFormat::Table => print_status(&st),
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
    let mut out = std::io::stdout().lock();
    match format {
        ShotsFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &ctx.boundaries)?;
            writeln!(out)?;
        }
        ShotsFormat::Csv => {
            writeln!(out, "frame,time_s,kind,span_start,span_frames,score")?;
            for b in &ctx.boundaries {
                writeln!(
                    out,
                    "{},{:.3},{},{},{},{:.3}",
                    b.frame,
                    b.time_s,
                    b.kind.as_str(),
                    b.span_start,
                    b.span_frames,
                    b.score
                )?;
            }
        }
        ShotsFormat::Table => {
            writeln!(
                out,
                "{:>8}  {:>9}  {:<8}  {:>6}  {:>7}",
                "frame", "time_s", "kind", "span", "score"
            )?;
            for b in &ctx.boundaries {
                writeln!(
                    out,
                    "{:>8}  {:>9.3}  {:<8}  {:>6}  {:>7.2}",
                    b.frame,
                    b.time_s,
                    b.kind.as_str(),
                    b.span_frames,
                    b.score
                )?;
            }
            writeln!(
                out,
                "{} boundaries, {} shots, {} frames decoded",
                ctx.boundaries.len(),
                ctx.shots.len(),
                ctx.frame_times.len()
            )?;
        }
    }
    Ok(())
}

fn print_status(st: &kelp_pipeline::dataset::commit::RunStatus) {
    use kelp_pipeline::dataset::commit::PartitionState as S;
    let passes = st.partitions.iter().filter(|p| p.pass.is_some()).count();
    let units = match passes {
        0 => format!("{} partitions", st.partitions.len()),
        1 => format!("{} partitions and 1 pass", st.partitions.len() - 1),
        n => format!("{} partitions and {n} passes", st.partitions.len() - n),
    };
    println!(
        "{}: run {} ({}), {units}: {} done, {} running, {} failed, {} pending{}",
        st.dataset,
        st.run_id,
        st.dag,
        st.count(S::Done),
        st.count(S::Running),
        st.count(S::Failed),
        st.count(S::Pending),
        if st.complete { "; complete" } else { "" }
    );
    let rows: Vec<String> = st.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!("rows committed: {}", rows.join(", "));
    println!(
        "{:>9}  {:<8}  {:>6}  {:>6}  detail",
        "partition", "state", "videos", "clips"
    );
    for p in &st.partitions {
        let state = match p.state {
            S::Done => "done",
            S::Running => "running",
            S::Failed => "failed",
            S::Pending => "pending",
        };
        let clips = p.clips.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let mut detail = Vec::new();
        if let Some(pass) = &p.pass {
            detail.push(format!("pass {pass}"));
        }
        if let Some(o) = &p.owner {
            detail.push(match p.state {
                S::Done => format!("committed by {o}"),
                _ => format!("leased by {o}"),
            });
        }
        if let Some(e) = &p.error {
            if p.state != S::Done {
                detail.push(format!("{} failed attempt(s), last: {e}", p.failures));
            }
        }
        println!(
            "{:>9}  {:<8}  {:>6}  {:>6}  {}",
            p.partition,
            state,
            p.videos,
            clips,
            detail.join("; ")
        );
    }
}

fn print_summary(s: &engine::RunSummary) {
    let rejected = if s.videos_rejected > 0 {
        format!(", {} rejected", s.videos_rejected)
    } else {
        String::new()
    };
    let clips_rejected = if s.clips_rejected > 0 {
        format!(" ({} rejected)", s.clips_rejected)
    } else {
        String::new()
    };
    let what = if s.complete {
        format!("committed {}", s.output)
    } else {
        format!(
            "committed partition(s) {:?} of {} ({} of {} partitions committed; the manifest is written with the last)",
            s.partitions_mine, s.output, s.partitions_committed, s.partitions
        )
    };
    println!(
        "{what}: {} videos ({} ok, {} error{rejected}), {} boundaries, {} clips{clips_rejected} in {:.1} s",
        s.videos, s.videos_ok, s.videos_error, s.rows_of("boundaries"), s.rows_of("clips"), s.seconds
    );
    if s.partitions > 1 {
        println!(
            "{} partitions, {} by this process; object store: {}",
            s.partitions,
            s.partitions_mine.len(),
            s.requests
        );
    } else {
        tracing::info!("object store: {}", s.requests);
    }
    let total: f64 = s.node_seconds.iter().map(|(_, t)| t).sum();
    if total > 0.0 {
        let parts: Vec<String> = s
            .node_seconds
            .iter()
            .map(|(n, t)| format!("{n} {:.0}%", 100.0 * t / total))
            .collect();
        println!("time by step: {}", parts.join(", "));
    }
    for (uri, reason) in &s.errors {
        // Reasons already name their input; add the URI only where one does not.
        if reason.contains(uri.as_str()) {
            println!("error: {reason}");
        } else {
            println!("error: {uri}: {reason}");
        }
    }
    for p in &s.listing_problems {
        println!("skipped while listing: {p}");
    }
}
