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
        /// Replace an existing dataset at the output.
        #[arg(long)]
        overwrite: bool,
        /// Videos processed at once (default: the DAG's, else the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Check a DAG file completely without running it.
    Validate { dag: PathBuf },
    /// Run SQL over a dataset's tables (videos, boundaries, clips).
    Sql {
        query: String,
        /// Dataset URI (a folder, file://, s3://, gs://, ...).
        #[arg(long)]
        dataset: String,
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
    if let Err(e) = dispatch(cli.command) {
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
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run {
            dag,
            source,
            output,
            overwrite,
            workers,
            quiet,
        } => {
            let compiled = dag::load(&dag)?;
            let opts = engine::RunOptions {
                overwrite,
                workers,
                source,
                output,
                progress: !quiet,
            };
            let summary = runtime()?.block_on(engine::run(&compiled, &opts))?;
            print_summary(&summary);
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
            format,
            out,
        } => {
            let (schema, batches) = runtime()?.block_on(sql::query(&dataset, &query))?;
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
            show_sql,
            format,
            html,
            png,
        } => {
            let sections = runtime()?.block_on(kelp_pipeline::stats::compute(&dataset))?;
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
            let opts = kelp_pipeline::bench::BenchOptions {
                videos,
                labels_dir: labels,
                peer: !no_peer,
                decode: !no_decode,
            };
            let rows = kelp_pipeline::bench::run(&opts)?;
            print!("{}", kelp_pipeline::bench::table(&rows));
            Ok(())
        }
        Command::Operators => {
            for op in kelp_operators::registry::OPERATORS {
                println!("{:<12} {}", op.name, op.summary);
            }
            for (name, summary) in kelp_pipeline::dag::validate::ROW_OPERATORS {
                println!("{name:<12} {summary}");
            }
            Ok(())
        }
        Command::Schema => {
            print!(
                "{}",
                kelp_pipeline::dataset::schema::markdown(&kelp_operators::registry::all_columns())
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
    println!(
        "committed {}: {} videos ({} ok, {} error{rejected}), {} boundaries, {} clips{clips_rejected} in {:.1} s",
        s.output, s.videos, s.videos_ok, s.videos_error, s.boundaries, s.clips, s.seconds
    );
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
        println!("error: {uri}: {reason}");
    }
    for p in &s.listing_problems {
        println!("skipped while listing: {p}");
    }
}
