//! A run's life in one process: resolve the options, find or create the run plan, claim and
//! process partitions (then the passes), finalize, and sum up what was committed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{default_workers, fingerprint, worker, RunOptions, RunSummary};
use crate::dag::CompiledDag;
use crate::dataset::commit::{self, RunPlan};
use crate::dataset::{io, manifest, MANIFEST_FILE};
use crate::error::{PipelineError, Result};
use crate::remote::RemoteStage;
use crate::source::{self, SourceEntry};
use crate::store::instrument::request_counts;
use crate::store::spill::SpillCache;
use crate::store::{self, Location, StoreOptions};

/// Everything a worker needs, resolved once.
pub(crate) struct RunContext<'a> {
    pub compiled: &'a CompiledDag,
    pub opts: &'a RunOptions,
    pub out: Location,
    pub source_opts: StoreOptions,
    pub threads: usize,
    pub ttl: Duration,
    pub spill: Option<Arc<SpillCache>>,
    /// The clients of the nodes that call remote services (built when the run starts).
    pub remote: Option<Arc<RemoteStage>>,
}

impl<'a> RunContext<'a> {
    pub fn new(compiled: &'a CompiledDag, opts: &'a RunOptions) -> Result<RunContext<'a>> {
        let dag = &compiled.dag;
        let output_uri = opts
            .output
            .clone()
            .unwrap_or_else(|| dag.output.uri.clone());
        let out =
            store::resolve_with(&output_uri, &dag.output.store_options().merged(&opts.store))?;
        let threads = opts
            .threads
            .or(dag.engine.threads)
            .unwrap_or_else(default_workers)
            .max(1);
        if let (Some(i), Some(m)) = (opts.partition, opts.partitions) {
            if i >= m {
                return Err(PipelineError::Other(format!(
                    "--partition {i} is out of range: partitions are numbered 0..{}",
                    m.saturating_sub(1)
                )));
            }
        }
        if opts.partition.is_some() && opts.partitions.is_none() {
            return Err(PipelineError::Other(
                "--partition needs --partitions M (the same M on every machine)".into(),
            ));
        }
        if opts.overwrite && opts.joins() {
            return Err(PipelineError::Other(
                "--overwrite cannot be combined with --partition: every machine would wipe the others' work; clear the output once first (kelp run --overwrite without --partition, or delete it)".into(),
            ));
        }
        Ok(RunContext {
            compiled,
            opts,
            out,
            source_opts: dag.source.store_options().merged(&opts.store),
            threads,
            ttl: Duration::from_secs_f64(dag.engine.lease_s),
            spill: None,
            remote: None,
        })
    }

    fn spill_cache(&mut self) -> Result<Arc<SpillCache>> {
        if let Some(c) = &self.spill {
            return Ok(c.clone());
        }
        let engine = &self.compiled.dag.engine;
        let root = engine
            .spill_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let cache = SpillCache::new(&root, engine.spill_bytes)?;
        self.spill = Some(cache.clone());
        Ok(cache)
    }
}

/// How [`prepare`] found the output.
pub(crate) enum Prepared {
    /// A run to work on.
    Run {
        plan: RunPlan,
        listing_problems: Vec<String>,
    },
    /// The dataset there is complete: nothing to do.
    Complete,
}

/// Finds, checks or creates the run plan at the output (see [`RunOptions`] for the rules).
pub(crate) async fn prepare(ctx: &RunContext<'_>) -> Result<Prepared> {
    let out = &ctx.out;
    let opts = ctx.opts;
    if opts.overwrite {
        commit::clear(out).await?;
    } else {
        let existing = manifest::read(out).await?;
        let plan = commit::read_plan(out).await?;
        let complete = match (&existing, &plan) {
            (Some(m), Some(p)) => m.run_id.as_deref() == Some(p.run_id.as_str()),
            (Some(_), None) => true,
            _ => false,
        };
        if complete {
            if opts.resume || opts.joins() {
                return Ok(Prepared::Complete);
            }
            return Err(PipelineError::OutputExists {
                uri: out.uri.clone(),
                manifest: MANIFEST_FILE.into(),
            });
        }
        if let Some(plan) = plan {
            if !(opts.resume || opts.joins()) {
                let done = commit::committed(out).await?.len();
                return Err(PipelineError::Other(format!(
                    "{}: an unfinished run is here ({done} of {} partitions committed); pass --resume to continue it, or --overwrite to start again (kelp status {} shows it)",
                    out.uri,
                    plan.count(),
                    out.uri
                )));
            }
            check_plan(ctx, &plan)?;
            return Ok(Prepared::Run {
                plan,
                listing_problems: Vec::new(),
            });
        }
    }
    let mut spec = ctx.compiled.dag.source.clone();
    if let Some(s) = &opts.source {
        spec.uri = s.clone();
    }
    let (mut videos, listing_problems) = source::list(&spec, &ctx.source_opts).await?;
    crate::copies::mark_exact_copies(&mut videos, &ctx.source_opts).await;
    let engine = &ctx.compiled.dag.engine;
    let count = match opts.partitions {
        Some(m) => m.max(1) as usize,
        None => commit::partition_count(&videos, engine.partition_videos, engine.partition_bytes),
    };
    let plan = RunPlan {
        format: 1,
        run_id: io::random_id(),
        fingerprint: fingerprint(ctx.compiled),
        dag: ctx.compiled.dag.file.clone(),
        source: spec.uri.clone(),
        created_unix_ms: io::now_ms(),
        partitions: commit::split(&videos, count),
        passes: ctx
            .compiled
            .dag
            .passes
            .iter()
            .map(|p| p.op.clone())
            .collect(),
    };
    let (plan, created) = commit::create_or_join(out, &plan).await?;
    if created {
        info!(run = %plan.run_id, partitions = plan.count(), videos = plan.videos(), "run planned");
    } else {
        check_plan(ctx, &plan)?;
    }
    Ok(Prepared::Run {
        plan,
        listing_problems,
    })
}

fn check_plan(ctx: &RunContext<'_>, plan: &RunPlan) -> Result<()> {
    let mine = fingerprint(ctx.compiled);
    if plan.fingerprint != mine {
        return Err(PipelineError::Other(format!(
            "{}: the run there was started by a different DAG ({}, fingerprint {} ≠ {mine}); run the same DAG, or pass --overwrite to start again",
            ctx.out.uri, plan.dag, plan.fingerprint
        )));
    }
    if let Some(m) = ctx.opts.partitions {
        if m != plan.count() {
            return Err(PipelineError::Other(format!(
                "{}: the run there has {} partitions, not --partitions {m}; use the same M everywhere",
                ctx.out.uri,
                plan.count()
            )));
        }
    }
    if let Some(s) = &ctx.opts.source {
        if s != &plan.source {
            warn!(
                "the run at {} lists {}; --source {s} is ignored when joining or resuming it",
                ctx.out.uri, plan.source
            );
        }
    }
    Ok(())
}

/// Runs `compiled` in this process: every partition (claimed one by one), or the one
/// `--partition` names; writes the manifest when the last partition is committed.
pub async fn run(compiled: &CompiledDag, opts: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let requests_before = request_counts();
    let mut ctx = RunContext::new(compiled, opts)?;
    ctx.remote = RemoteStage::for_plan(
        &compiled.plan,
        &ctx.out,
        &compiled.dag.output.store_options().merged(&opts.store),
    )?;
    let (plan, listing_problems) = match prepare(&ctx).await? {
        Prepared::Complete => {
            let repaired = match (opts.resume, commit::read_plan(&ctx.out).await?) {
                (true, Some(plan)) => retry_remote(&ctx, &plan).await?,
                _ => None,
            };
            let mut s = summary_of_dataset(&ctx.out).await?;
            s.seconds = started.elapsed().as_secs_f64();
            s.requests = request_counts().since(&requests_before);
            s.repaired = repaired;
            s.remote = ctx.remote.as_ref().map(|r| r.stats()).unwrap_or_default();
            return Ok(s);
        }
        Prepared::Run {
            plan,
            listing_problems,
        } => (plan, listing_problems),
    };
    if plan
        .partitions
        .iter()
        .flat_map(|p| &p.videos)
        .any(SourceEntry::is_remote)
    {
        ctx.spill_cache()?;
    }
    let targets: Vec<u32> = match opts.partition {
        Some(i) => vec![i],
        None => (0..plan.count()).collect(),
    };
    let mut outcome = worker::work(&ctx, &plan, &targets).await?;
    // Whoever sees every partition committed runs the passes (one at a time through their
    // leases; the others wait for the commit), so they run once after the last partition.
    if !plan.passes.is_empty() && outcome.given_up.is_empty() {
        let done = commit::committed(&ctx.out).await?;
        if (0..plan.count()).all(|p| done.contains(&p)) {
            let passes: Vec<u32> = plan.pass_units().collect();
            let more = worker::work(&ctx, &plan, &passes).await?;
            outcome.committed.extend(more.committed);
            outcome.given_up.extend(more.given_up);
        }
    }
    let finished = commit::finalize(&ctx.out, &plan).await?;
    let repaired = match (&finished, opts.resume && outcome.given_up.is_empty()) {
        (Some(_), true) => retry_remote(&ctx, &plan).await?,
        _ => None,
    };
    let mut summary = summary_of_records(&ctx.out, &plan).await?;
    summary.repaired = repaired;
    summary.remote = ctx.remote.as_ref().map(|r| r.stats()).unwrap_or_default();
    summary.complete = finished.is_some();
    summary.listing_problems = listing_problems;
    summary.node_seconds = outcome.node_seconds;
    summary.partitions_mine = outcome.committed;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.requests = request_counts().since(&requests_before);
    if !outcome.given_up.is_empty() {
        let list: Vec<String> = outcome
            .given_up
            .iter()
            .map(|(p, e)| format!("partition {p}: {e}"))
            .collect();
        return Err(PipelineError::Other(format!(
            "{} partition(s) failed after {} attempts each (kelp status {} shows them; kelp run --resume retries):\n  {}",
            outcome.given_up.len(),
            compiled.dag.engine.partition_attempts,
            ctx.out.uri,
            list.join("\n  ")
        )));
    }
    info!(
        videos = summary.videos,
        clips = summary.rows_of(kelp_operators::output::TABLE_CLIPS),
        partitions = summary.partitions_committed,
        complete = summary.complete,
        seconds = summary.seconds,
        "run done"
    );
    Ok(summary)
}

/// `--resume` over a complete run: the remote calls that failed are asked again (only those; see
/// [`crate::remote::repair`]). `None` when the DAG calls no service.
async fn retry_remote(
    ctx: &RunContext<'_>,
    plan: &RunPlan,
) -> Result<Option<crate::remote::repair::RepairOutcome>> {
    let Some(stage) = &ctx.remote else {
        return Ok(None);
    };
    let outcome = crate::remote::repair::retry_failed(
        &ctx.out,
        plan,
        &ctx.compiled.plan,
        stage,
        ctx.compiled.dag.engine.lease_s,
    )
    .await?;
    Ok(Some(outcome))
}

/// Totals of a run from its commit records.
pub(crate) async fn summary_of_records(out: &Location, plan: &RunPlan) -> Result<RunSummary> {
    let recs = commit::records(out).await?;
    let mut s = RunSummary {
        output: out.uri.clone(),
        partitions: plan.count(),
        ..Default::default()
    };
    for r in recs.values().filter(|r| r.run_id == plan.run_id) {
        if r.partition < plan.count() {
            s.partitions_committed += 1;
        }
        s.videos += r.videos;
        s.videos_ok += r.videos_ok;
        s.videos_error += r.videos_error;
        s.videos_rejected += r.videos_rejected;
        s.clips_rejected += r.clips_rejected;
        if !r.adds_rows() {
            continue;
        }
        for (name, t) in &r.tables {
            *s.rows.entry(name.clone()).or_default() += t.rows;
        }
        s.errors.extend(r.errors.iter().cloned());
    }
    s.complete = plan
        .units()
        .all(|p| recs.get(&p).is_some_and(|r| r.run_id == plan.run_id));
    Ok(s)
}

/// Totals of a complete dataset (its run's records, or the manifest of an older dataset).
pub(crate) async fn summary_of_dataset(out: &Location) -> Result<RunSummary> {
    if let Some(plan) = commit::read_plan(out).await? {
        let mut s = summary_of_records(out, &plan).await?;
        s.complete = true;
        return Ok(s);
    }
    let m = manifest::read(out)
        .await?
        .unwrap_or_else(|| crate::dataset::Manifest {
            format: 1,
            kelp_version: String::new(),
            committed_unix: 0,
            dag: String::new(),
            tables: BTreeMap::new(),
            run_id: None,
            partitions: None,
            committed_partitions: None,
        });
    Ok(RunSummary {
        output: out.uri.clone(),
        videos: m.table("videos").map_or(0, |t| t.rows),
        rows: m.tables.iter().map(|(n, t)| (n.clone(), t.rows)).collect(),
        partitions: 1,
        partitions_committed: 1,
        complete: true,
        ..Default::default()
    })
}
