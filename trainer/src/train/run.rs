//! How a training run starts, the same for every model: `--overwrite` clears the run, a run with
//! checkpoints needs `--resume` (and a config that can resume them), `--resume` needs a
//! checkpoint; rank 0 writes `config.toml`, every rank waits for it, and the metrics of a run
//! on object storage are copied to a local folder the loop appends to. Also what every
//! `kelp train` shares around that: joining the job's world on the chosen device, the
//! compute precision, and the summary printed at the end.

use std::path::PathBuf;

use burn::tensor::FloatDType;
use kelp_pipeline::store::StoreOptions;

use super::backend::{self, DeviceChoice, Selected};
use super::config::Precision;
use super::store::RunStore;
use super::{checkpoint, metrics, TrainError};
use crate::dist::{self, Collective};
use crate::models::init::fnv1a;
use crate::models::nn::Compute;

/// What the command line says about an existing run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFlags {
    pub resume: bool,
    /// Resume when the run has a checkpoint, else start it.
    pub auto_resume: bool,
    /// Delete the run's checkpoints and metrics first.
    pub overwrite: bool,
}

/// A run ready for the loop.
pub struct RunStart {
    pub run: RunStore,
    /// Whether the loop continues the latest checkpoint.
    pub resume: bool,
    /// Where the loop appends the metrics (the run folder itself when it is local).
    pub metrics_dir: PathBuf,
}

/// The local folder holding a run's metrics while it trains.
pub fn metrics_dir(run: &RunStore) -> PathBuf {
    match &run.loc.local_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kelp-run-{:016x}", fnv1a(run.uri()))),
    }
}

/// Says why a resumed run's config cannot take over a checkpoint's (`old_config`, `what`), or
/// `None` when it can.
pub type ConfigConflict<'a> = dyn Fn(&str, &str) -> Result<Option<String>, TrainError> + 'a;

/// Opens the run at `uri` and settles how it starts. `conflict(old_config, what)` says why the
/// checkpoint's config (`old_config`, TOML; `what` names it) cannot be resumed with this run's
/// `config_toml`, or `None` when it can.
pub fn start(
    uri: &str,
    store: &StoreOptions,
    flags: RunFlags,
    config_toml: &str,
    conflict: &ConfigConflict<'_>,
    coll: &mut dyn Collective,
) -> Result<RunStart, TrainError> {
    let rank = coll.world().rank;
    let run = RunStore::open(uri, store)?;
    let existing = checkpoint::latest(&run)?;
    let resume = flags.resume || (flags.auto_resume && existing.is_some());
    if flags.overwrite && rank == 0 {
        run.delete_all("checkpoints")?;
        for f in [metrics::JSONL, metrics::CSV, "config.toml"] {
            run.delete_all(f)?;
        }
    } else if let (false, Some(l)) = (flags.overwrite, &existing) {
        if !resume {
            return Err(TrainError::Checkpoint(format!(
                "{} already has checkpoints (latest: step {}): add --resume to continue it or --overwrite to start again",
                run.uri(),
                l.step
            )));
        }
        let ck = checkpoint::load_dir(&run, &l.dir)?;
        let what = format!("{}/{}/state.json", run.uri(), l.dir);
        if let Some(diff) = conflict(&ck.state.config, &what)? {
            return Err(TrainError::Config(format!(
                "--resume: the config differs from the checkpoint's in {diff}; resume with the run's own config ({}/config.toml)",
                run.uri()
            )));
        }
    } else if resume {
        return Err(TrainError::Checkpoint(format!(
            "--resume: {} has no checkpoint yet",
            run.uri()
        )));
    }
    if rank == 0 {
        run.put("config.toml", config_toml.as_bytes().to_vec())?;
    }
    // Every rank starts once rank 0 has cleared (--overwrite) and described the run.
    coll.barrier()
        .map_err(|e| TrainError::Other(format!("waiting for rank 0: {e}")))?;
    let mdir = metrics_dir(&run);
    if resume && run.loc.local_dir.is_none() {
        std::fs::create_dir_all(&mdir)
            .map_err(|e| TrainError::Io(format!("{}: {e}", mdir.display())))?;
        for f in [metrics::JSONL, metrics::CSV] {
            if let Some(b) = run.get(f)? {
                std::fs::write(mdir.join(f), &b)
                    .map_err(|e| TrainError::Io(format!("{}: {e}", mdir.display())))?;
            }
        }
    }
    Ok(RunStart {
        run,
        resume,
        metrics_dir: mdir,
    })
}

/// Picks the device and joins the world the launcher (torchrun, Slurm, mpirun) describes, or
/// a world of one: GPU ranks join through NCCL (its id handed out through the run's store),
/// CPU ranks through MPI.
pub fn join_job(
    device: DeviceChoice,
    run_uri: &str,
    store: &StoreOptions,
) -> Result<(Selected, Box<dyn Collective>), TrainError> {
    let joining = |e: dist::DistError| TrainError::Other(format!("joining the job: {e}"));
    let launcher_world = dist::from_env().map_err(|e| joining(e.into()))?;
    let selected = backend::select(device)?;
    let gpu = selected.is_gpu().then_some(launcher_world.local_rank);
    let board = match (gpu, launcher_world.size > 1) {
        (Some(_), true) => Some(RunStore::open(run_uri, store)?),
        _ => None,
    };
    let coll = dist::join_with(&dist::JoinOptions {
        gpu,
        board: board.as_ref().map(|b| b as &dyn dist::IdBoard),
    })
    .map_err(joining)?;
    let world = coll.world();
    if world.size > 1 {
        tracing::info!(
            "rank {} of {} ({}, collectives: {})",
            world.rank,
            world.size,
            world.launcher,
            coll.name()
        );
    }
    Ok((selected, coll))
}

/// What `kelp train vae` / `kelp train dit` print at the end.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub run: String,
    pub device: String,
    pub step: u64,
    pub samples: u64,
    pub params: u64,
    pub last: Vec<(String, f64)>,
    /// Further lines for the user (the DiT's packing report).
    pub notes: Vec<String>,
}

impl std::fmt::Display for TrainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: step {} ({} clips) on {}, {:.2} M parameters",
            self.run,
            self.step,
            self.samples,
            self.device,
            self.params as f64 / 1e6
        )?;
        let vals: Vec<String> = self
            .last
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        writeln!(f, "last: {}", vals.join("  "))?;
        for n in &self.notes {
            writeln!(f, "{n}")?;
        }
        Ok(())
    }
}

/// The precision of the heavy operations: half precision only on a GPU.
pub fn compute_for(precision: Precision, selected: &Selected) -> Compute {
    match (precision, selected.is_gpu()) {
        (Precision::F32, _) => Compute::F32,
        (p, false) => {
            tracing::warn!("precision {p:?} is for GPUs: the CPU trains in f32");
            Compute::F32
        }
        (Precision::Bf16, true) => Compute {
            half: Some(FloatDType::BF16),
        },
        (Precision::F16, true) => Compute {
            half: Some(FloatDType::F16),
        },
    }
}
