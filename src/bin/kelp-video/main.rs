//! `kelp-video`: the commands that decode video or train (`run`, `shots`, `validate`,
//! `operators`, `schema`, `plot`, `bench dag`, `bench shots`, `bench loader`, `bench dedup`,
//! `bench vae-step`, `train`, `eval`, `encode`), and every other command too. `kelp` hands these over to
//! it, so only this binary loads FFmpeg and OpenCV.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use kelp_cli::cli::{init_logging, runtime, BenchCommand, Cli, Command, ShotsFormat};
use kelp_cli::train_run as train;
use kelp_operators::shots::ShotsConfig;
use kelp_operators::SourceVideo;
use kelp_pipeline::{dag, engine};

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // The trainer's dataset-wide passes (`embed`), for DAG runs and `kelp pass`.
    kelp_trainer::semantic::register_passes();
    let result = kelp_cli::data::dispatch(cli.command).and_then(|rest| match rest {
        None => Ok(()),
        Some(command) => dispatch(command, cli.verbose),
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
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
                .or(compiled.dag.engine.threads)
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
        Command::Validate { dag } => {
            let compiled = dag::load(&dag)?;
            let ids: Vec<String> = compiled
                .dag
                .nodes
                .iter()
                .map(|n| format!("{} ({})", n.id, n.op))
                .collect();
            let passes: Vec<&str> = compiled.dag.passes.iter().map(|p| p.op.as_str()).collect();
            let passes = if passes.is_empty() {
                String::new()
            } else {
                format!("; then passes: {}", passes.join(", "))
            };
            println!(
                "{}: ok: {} nodes: {}{passes}",
                dag.display(),
                ids.len(),
                ids.join(" → ")
            );
            Ok(())
        }
        Command::Shots {
            video,
            format,
            threads,
        } => shots(video, format, threads),
        Command::Bench(BenchCommand::Dag { dag, videos }) => {
            if videos.is_empty() {
                bail!("name at least one video: kelp bench dag DAG VIDEO...");
            }
            let compiled = dag::load(&dag)?;
            let rows = kelp_pipeline::bench::run_dag(&compiled, &videos)?;
            print!("{}", kelp_pipeline::bench::dag_table(&rows));
            Ok(())
        }
        Command::Bench(BenchCommand::Transcode { dag, videos }) => bench_transcode(&dag, &videos),
        Command::Bench(BenchCommand::Loader {
            dataset,
            store,
            clips,
            frames,
            size,
            batch_size,
            no_s3,
            peer,
        }) => {
            use kelp_trainer::data::bench;
            let (w, h) = size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .with_context(|| format!("--size {size}: expected WIDTHxHEIGHT, e.g. 256x256"))?;
            let opts = bench::BenchOptions {
                dataset,
                store: store.options(),
                clips: clips.max(1),
                frames: frames.max(1),
                size: [w, h],
                batch_size: batch_size.max(1),
                s3: !no_s3,
                peer,
            };
            let (rows, peer) = bench::run(&opts).map_err(anyhow::Error::msg)?;
            print!("{}", bench::table(&rows, peer.as_ref()));
            Ok(())
        }

        Command::Bench(BenchCommand::Dedup {
            dir,
            no_peer,
            signatures,
        }) => {
            let report = runtime()?
                .block_on(kelp_pipeline::bench::dedup::run(&dir, !no_peer, signatures))?;
            print!("{}", kelp_pipeline::bench::dedup::table(&report));
            Ok(())
        }

        Command::Bench(BenchCommand::Caption {
            latency_ms,
            concurrency,
            frames,
            frame_size,
            video,
        }) => bench_caption(&latency_ms, &concurrency, frames, frame_size, video),

        Command::Bench(BenchCommand::Train(c)) => kelp_cli::train_bench::run(c),
        Command::Train(c) => train::train(c),
        Command::Eval(c) => train::eval(c),
        Command::Encode(c) => train::encode(c),
        Command::Sample(c) => train::sample(c),
        Command::Plot { run, out, store } => {
            let path = kelp_trainer::train::plot::plot_run(&run, &store.options(), out.as_deref())?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
        Command::Bench(BenchCommand::DedupIndex { signatures }) => {
            let rows = kelp_operators::dedup::bench::run_scale(&signatures);
            print!("{}", kelp_operators::dedup::bench::scale_table(&rows));
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
            for p in kelp_pipeline::pass::all() {
                println!("{:<12} {}", p.name, p.summary);
            }
            Ok(())
        }
        Command::Schema => {
            print!(
                "{}",
                kelp_pipeline::dataset::schema::markdown(&{
                    let mut all = kelp_operators::registry::all_outputs();
                    for p in kelp_pipeline::pass::all() {
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
        other => bail!(
            "kelp-video cannot run this command: {}",
            kelp_cli::cli::name_of(&other)
        ),
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

/// `kelp bench transcode`: the DAG's analysis picks the clips, then its `transcode` node is timed
/// against the per-clip ffmpeg CLI.
fn bench_transcode(dag_path: &Path, videos: &[PathBuf]) -> Result<()> {
    if videos.is_empty() {
        bail!("name at least one video: kelp bench transcode [--dag DAG] VIDEO...");
    }
    let compiled = dag::load(dag_path)?;
    let node = compiled
        .dag
        .nodes
        .iter()
        .find(|n| n.op == "transcode")
        .with_context(|| format!("{}: no transcode node to time", dag_path.display()))?;
    let config: kelp_operators::media::transcode::TranscodeConfig =
        kelp_operators::registry::params(&node.params)
            .map_err(|e| anyhow::anyhow!("{}: node {}: {e}", dag_path.display(), node.id))?;
    let scratch = std::env::temp_dir().join(format!("kelp-bench-transcode-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let mut rows = Vec::new();
    for video in videos {
        let row =
            kelp_operators::media::bench::run(&compiled.plan, &node.id, &config, video, &scratch)
                .map_err(|e| anyhow::anyhow!("{}: {e}", video.display()));
        match row {
            Ok(r) => rows.push(r),
            Err(e) => eprintln!("skipped: {e:#}"),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    print!("{}", kelp_operators::media::bench::table(&rows));
    Ok(())
}

/// `kelp bench caption`: the CPU kelp spends per request, then its client's throughput against a
/// local server of fixed latency at each concurrency limit.
fn bench_caption(
    latencies_ms: &[u64],
    levels: &[usize],
    frames: u32,
    frame_size: u32,
    video: Option<PathBuf>,
) -> Result<()> {
    use kelp_operators::caption::bench as frames_bench;
    use kelp_pipeline::remote::bench as client_bench;
    let scratch = std::env::temp_dir().join(format!("kelp-bench-caption-{}", std::process::id()));
    let video = match video {
        Some(v) => v,
        None => {
            std::fs::create_dir_all(&scratch)
                .with_context(|| format!("creating {}", scratch.display()))?;
            let v = scratch.join("synthetic-720p.mp4");
            frames_bench::synthetic_video(&v, 6).map_err(anyhow::Error::msg)?;
            v
        }
    };
    let cost = frames_bench::overhead(&video, frames, frame_size)
        .map_err(|e| anyhow::anyhow!("{}: {e}", video.display()));
    let _ = std::fs::remove_dir_all(&scratch);
    let cost = cost?;
    println!(
        "per request, before sending ({} clips of {}; {} frames at a {} px short side; bodies {:.0} KB):\n  \
         {:.1} ms CPU = {:.1} ms frame extraction (the clip stage's decode of the clip's range, crop, scale) \
         + {:.1} ms JPEG, base64 and JSON",
        cost.clips,
        cost.video,
        cost.frames,
        cost.frame_size,
        cost.mean_body_bytes as f64 / 1024.0,
        cost.ms_per_request(),
        cost.frames_ms_per_request(),
        cost.encode_ms_per_request(),
    );
    let body = cost
        .sample_body
        .clone()
        .context("the video gave no clip to caption")?;
    for &ms in latencies_ms {
        let latency = std::time::Duration::from_millis(ms.max(1));
        let rows = client_bench::throughput(latency, levels, |c| (8 * c).max(16), body.clone())?;
        print!(
            "{}",
            client_bench::throughput_table(&rows, latency, body.len())
        );
    }
    Ok(())
}
