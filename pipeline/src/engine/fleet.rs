//! `kelp run --workers N`: N worker processes on this machine, each running the same claim loop
//! a Kubernetes pod or a Slurm task runs ([`super::worker`]). This process plans the run,
//! starts the workers, waits, and finalizes. Workers die with it (`PR_SET_PDEATHSIG`), and a
//! worker that dies mid-partition has its lease taken over by the others.

use std::process::Stdio;
use std::time::Instant;

use tracing::{info, warn};

use super::{
    prepare, summary_of_dataset, summary_of_records, Prepared, RunContext, RunOptions, RunSummary,
};
use crate::dag::CompiledDag;
use crate::dataset::commit;
use crate::error::{PipelineError, Result};
use crate::store::instrument::request_counts;

/// The command line of worker `k`: this same binary, `kelp run <dag> --worker-index k`, with the
/// options that decide what it works on.
pub fn worker_command(
    exe: &std::path::Path,
    dag: &std::path::Path,
    opts: &RunOptions,
    verbose: u8,
    k: usize,
) -> std::process::Command {
    let mut c = std::process::Command::new(exe);
    c.arg("run").arg(dag).arg("--quiet");
    c.args(["--worker-index", &k.to_string()]);
    if let Some(s) = &opts.source {
        c.args(["--source", s]);
    }
    if let Some(o) = &opts.output {
        c.args(["--output", o]);
    }
    if let Some(t) = opts.threads {
        c.args(["--threads", &t.to_string()]);
    }
    if let Some(e) = &opts.store.endpoint {
        c.args(["--endpoint", e]);
    }
    if opts.store.allow_http {
        c.arg("--allow-http");
    }
    if verbose > 0 {
        c.arg(format!("-{}", "v".repeat(verbose as usize)));
    }
    c
}

/// Plans the run, runs `workers` processes of this binary ([`worker_command`]), then writes the
/// manifest.
pub async fn run(
    compiled: &CompiledDag,
    opts: &RunOptions,
    workers: usize,
    verbose: u8,
) -> Result<RunSummary> {
    let exe = std::env::current_exe()
        .map_err(|e| PipelineError::Other(format!("locating the kelp binary: {e}")))?;
    let dag = std::path::PathBuf::from(&compiled.dag.file);
    let command = |k: usize| worker_command(&exe, &dag, opts, verbose, k);
    let started = Instant::now();
    let before = request_counts();
    let ctx = RunContext::new(compiled, opts)?;
    let (plan, listing_problems) = match prepare(&ctx).await? {
        Prepared::Complete => {
            let mut s = summary_of_dataset(&ctx.out).await?;
            s.seconds = started.elapsed().as_secs_f64();
            return Ok(s);
        }
        Prepared::Run {
            plan,
            listing_problems,
        } => (plan, listing_problems),
    };
    info!(
        workers,
        partitions = plan.count(),
        "starting worker processes"
    );
    let mut children = Vec::with_capacity(workers);
    for k in 0..workers {
        let mut cmd = command(k);
        cmd.env("KELP_WORKER_INDEX", k.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        die_with_parent(&mut cmd);
        let child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PipelineError::Other(format!("starting worker {k}: {e}")))?;
        children.push(child);
    }
    let mut failed = Vec::new();
    for (k, mut child) in children.into_iter().enumerate() {
        match child.wait().await {
            Ok(st) if st.success() => {}
            Ok(st) => {
                warn!(worker = k, "worker exited with {st}");
                failed.push(format!("worker {k}: {st}"));
            }
            Err(e) => failed.push(format!("worker {k}: {e}")),
        }
    }
    let finished = commit::finalize(&ctx.out, &plan).await?;
    let mut summary = summary_of_records(&ctx.out, &plan).await?;
    summary.complete = finished.is_some();
    summary.listing_problems = listing_problems;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.requests = request_counts().since(&before);
    if !summary.complete {
        return Err(PipelineError::Other(format!(
            "{} of {} partitions committed; {} (kelp status {} shows why; kelp run --resume continues)",
            summary.partitions_committed,
            summary.partitions,
            if failed.is_empty() {
                "the workers stopped early".to_string()
            } else {
                failed.join(", ")
            },
            ctx.out.uri
        )));
    }
    if !failed.is_empty() {
        warn!("the run completed although {}", failed.join(", "));
    }
    Ok(summary)
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut std::process::Command) {}
