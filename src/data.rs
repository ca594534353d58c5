//! The commands that read datasets (`sql`, `stats`, `status`, `pass`, `serve`, `bench sql`): they link
//! no video library, so the `kelp` binary that runs them starts in milliseconds.

use std::io::Write;

use anyhow::{bail, Context, Result};
use kelp_pipeline::sql;

use crate::cli::{runtime, BenchCommand, Command, SqlFormat, StatsFormat, StatusFormat};

/// Runs `command` when it is a dataset command; gives it back otherwise.
pub fn dispatch(command: Command) -> Result<Option<Command>> {
    match command {
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
                    return Ok(None);
                }
            };
            match format {
                StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                StatusFormat::Table => print!("{st}"),
            }
            Ok(None)
        }
        // A pass this binary does not have (the trainer's `embed`) runs in kelp-video.
        Command::Pass { ref name, .. } if kelp_pipeline::pass::lookup(name).is_none() => {
            Ok(Some(command))
        }
        Command::Pass {
            name,
            dataset,
            set,
            store,
            shard_rows,
        } => {
            let params = pass_params(&set)?;
            let done = runtime()?.block_on(kelp_pipeline::pass::run_on_dataset_with(
                &dataset,
                &store.options(),
                &name,
                &params,
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
            Ok(None)
        }
        Command::Dedup {
            dataset,
            against,
            store,
            shard_rows,
        } => {
            let done = runtime()?.block_on(kelp_pipeline::pass::near_dedup::run_standalone(
                &dataset,
                &store.options(),
                &against,
                shard_rows.max(1),
            ))?;
            println!("{dataset}: {done}");
            Ok(None)
        }
        Command::Sql {
            query,
            dataset,
            store,
            format,
            out,
        } => {
            crate::heap::tune_for_query();
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
            Ok(None)
        }
        Command::Stats {
            dataset,
            store,
            show_sql,
            format,
            html,
            png,
        } => {
            crate::heap::tune_for_query();
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
            Ok(None)
        }
        Command::Serve {
            dataset,
            store,
            port,
            bind,
            timeout_s,
            max_rows,
        } => {
            use kelp_pipeline::serve;
            if !(timeout_s > 0.0 && timeout_s.is_finite()) {
                bail!("--timeout-s must be a positive number of seconds, not {timeout_s}");
            }
            let opts = serve::ServeOptions {
                dataset,
                store: store.options(),
                bind,
                port,
                limits: serve::Limits {
                    timeout: std::time::Duration::from_secs_f64(timeout_s),
                    max_rows: max_rows.max(1),
                    ..serve::Limits::default()
                },
            };
            runtime()?.block_on(async {
                let bound = serve::bind(&opts).await?;
                if let Some(warning) = serve::exposure_warning(bind) {
                    eprintln!("{warning}");
                }
                println!("kelp serve: {} on {}", opts.dataset, bound.url());
                bound.run().await
            })?;
            Ok(None)
        }
        Command::Bench(BenchCommand::Sql {
            rows,
            dir,
            runs,
            no_peer,
        }) => {
            use kelp_pipeline::bench::sql;
            if !dir.join("_manifest.json").exists() {
                eprintln!("writing {rows} synthetic clip rows to {}", dir.display());
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                runtime()?.block_on(sql::make_dataset(&dir, rows))?;
            }
            let exe = std::env::current_exe().context("locating the kelp binary")?;
            let start = sql::startup(&exe, runs.max(1))?;
            let table = sql::run(&exe, &dir, runs.max(1), !no_peer)?;
            print!("{}", sql::table(&table, start));
            Ok(None)
        }
        Command::Bench(BenchCommand::MediaLayout {
            dataset,
            clips,
            seed,
        }) => {
            use kelp_pipeline::bench::media;
            let rows =
                runtime()?.block_on(media::run_media_layout(&dataset, clips.max(1), seed))?;
            print!("{}", media::media_layout_table(&rows));
            Ok(None)
        }
        other => Ok(Some(other)),
    }
}

/// `--set KEY=VALUE` pairs as a pass's parameter table: each value is read as TOML (`512`,
/// `true`, `"text"`, `[1, 2]`), and as a plain string when it is not TOML.
fn pass_params(set: &[String]) -> Result<toml::Table> {
    let mut out = toml::Table::new();
    for pair in set {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--set {pair}: write KEY=VALUE");
        };
        let key = key.trim();
        let value = value.trim();
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        out.insert(key.to_string(), parsed);
    }
    Ok(out)
}
