//! `kelp bench dit-dp`: data-parallel DiT training steps, launched like training (`mpirun -np N
//! kelp bench dit-dp`; one process per GPU with `--device cuda`), through the shared training
//! loop on one synthetic batch per rank, with the gradients all-reduced after the backward pass
//! and during it ([`crate::train::overlap`]), alternating the two `--reps` times. Rank 0 prints,
//! for each way, the median step time and the median time a step waits for the all-reduce beyond
//! the backward pass (the loop's `step_s` and `allreduce_wait_s` metrics, warm-up steps left out).

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;

use super::step_bench::{bench_input, DitBenchShape, WARMUP_STEPS};
use super::task::DitTask;
use super::FlowConfig;
use crate::models::dit::Dit;
use crate::train::allreduce_bench::join;
use crate::train::backend::{self, Selected};
use crate::train::config::{parse_toml, CheckpointSpec, LogSpec, TrainSpec};
use crate::train::device::{run_training, TrainingJob};
use crate::train::run::compute_for;
use crate::train::source::FixedBatches;
use crate::train::store::RunStore;
use crate::train::trainer::{train_with, RunOptions};
use crate::train::TrainError;

#[derive(Debug, Clone)]
pub struct DitDpArgs {
    /// The model, batch (clips per rank) and timed steps per run.
    pub shape: DitBenchShape,
    /// Override the preset's width (heads as wide as the preset's) and depth (a smaller model
    /// for a CPU).
    pub hidden: Option<usize>,
    pub depth: Option<usize>,
    /// Runs of each way, alternated.
    pub reps: usize,
}

/// One way of all-reducing: medians over its runs' timed steps.
#[derive(Debug, Clone)]
pub struct DpRow {
    pub way: &'static str,
    pub step_s: f64,
    pub wait_s: f64,
}

#[derive(Debug, Clone)]
pub struct DitDpReport {
    pub preset: String,
    pub collective: String,
    pub device: String,
    pub world: usize,
    pub params: u64,
    /// Tokens a rank trains on per step.
    pub tokens: usize,
    pub rows: Vec<DpRow>,
}

impl std::fmt::Display for DitDpReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "DiT {} ({:.1} M parameters, {:.0} MB of f32 gradients) · {} ranks over {} on {} · {} tokens per rank per step",
            self.preset,
            self.params as f64 / 1e6,
            self.params as f64 * 4.0 / 1e6,
            self.world,
            self.collective,
            self.device,
            self.tokens
        )?;
        writeln!(
            f,
            "| gradients all-reduced | step s | waiting for the all-reduce, s |"
        )?;
        writeln!(f, "|---|---:|---:|")?;
        for r in &self.rows {
            writeln!(f, "| {} | {:.4} | {:.4} |", r.way, r.step_s, r.wait_s)?;
        }
        if let [after, during] = self.rows.as_slice() {
            writeln!(
                f,
                "overlap: step time {:.2}× (wait {:.4} s → {:.4} s)",
                during.step_s / after.step_s,
                after.wait_s,
                during.wait_s
            )?;
        }
        Ok(())
    }
}

/// Runs the bench on this rank; rank 0 gets the report.
pub fn run(args: &DitDpArgs) -> Result<Option<DitDpReport>, TrainError> {
    if args.shape.steps == 0 || args.reps == 0 {
        return Err(TrainError::Config(
            "--steps and --reps must be at least 1".into(),
        ));
    }
    struct Bench<'a>(&'a DitDpArgs);
    impl TrainingJob for Bench<'_> {
        type Output = Option<DitDpReport>;
        fn run<B: AutodiffBackend>(
            self,
            device: &B::Device,
            selected: &Selected,
        ) -> Result<Self::Output, TrainError> {
            bench::<B>(self.0, device, selected)
        }
    }
    let selected = backend::select(args.shape.device)?;
    let local_rank = crate::dist::from_env()
        .map_err(|e| TrainError::Device(e.to_string()))?
        .local_rank;
    run_training(&selected, false, Some(local_rank), Bench(args))
}

fn bench<B: AutodiffBackend>(
    args: &DitDpArgs,
    device: &B::Device,
    selected: &Selected,
) -> Result<Option<DitDpReport>, TrainError> {
    let mut coll = join(selected).map_err(|e| TrainError::Device(e.to_string()))?;
    let (mut config, input, _, video) = bench_input(&args.shape)?;
    if let Some(hidden) = args.hidden {
        // Heads as wide as the preset's, so its rotary split still fits them.
        let head = config.head_dim();
        if hidden == 0 || !hidden.is_multiple_of(head) {
            return Err(TrainError::Config(format!(
                "--hidden {hidden}: must be a multiple of the {} preset's head width {head}",
                args.shape.preset
            )));
        }
        config.hidden = hidden;
        config.heads = hidden / head;
    }
    config.depth = args.depth.unwrap_or(config.depth);
    config.dual_layers = config.dual_layers.min(config.depth);
    config.validate()?;
    let compute = compute_for(args.shape.precision, selected);
    let scratch = std::env::temp_dir().join(format!(
        "kelp-dit-dp-{}-{}",
        std::process::id(),
        coll.world().rank
    ));
    let mut steps = (Vec::new(), Vec::new());
    for rep in 0..args.reps {
        for overlap in [false, true] {
            let dir = scratch.join(format!("{rep}-{overlap}"));
            let spec: TrainSpec = parse_toml(
                &format!(
                    "steps = {}\nlr = 1e-4\nwarmup_steps = 1\noverlap_allreduce = {overlap}",
                    WARMUP_STEPS + args.shape.steps
                ),
                "bench",
            )?;
            let mut task =
                DitTask::<B>::new(config.clone(), FlowConfig::default(), compute, device);
            let mut source = FixedBatches::new(vec![input.clone()], 0)?;
            let store = RunStore::open(&dir.display().to_string(), &Default::default())?;
            train_with(
                &mut task,
                Dit::<B>::new(&config, device, 0),
                &mut source,
                &spec,
                &store,
                &options(dir.clone()),
                device,
                coll.as_mut(),
            )?;
            if coll.world().rank == 0 {
                let rows = timed_rows(&dir.join("metrics.csv"))?;
                let into = if overlap { &mut steps.1 } else { &mut steps.0 };
                into.extend(rows);
            }
        }
    }
    coll.barrier()
        .map_err(|e| TrainError::Device(e.to_string()))?;
    // Each rank's scratch runs (metrics and the last checkpoint) go.
    let _ = std::fs::remove_dir_all(&scratch);
    if coll.world().rank != 0 {
        return Ok(None);
    }
    let row = |way, rows: &[(f64, f64)]| DpRow {
        way,
        step_s: median(rows.iter().map(|r| r.0).collect()),
        wait_s: median(rows.iter().map(|r| r.1).collect()),
    };
    Ok(Some(DitDpReport {
        preset: args.shape.preset.clone(),
        collective: coll.name().into(),
        device: selected.describe(),
        world: coll.world().size,
        params: config.params() as u64,
        tokens: args.shape.batch * (video + args.shape.text_len),
        rows: vec![
            row("after the backward pass", &steps.0),
            row("during the backward pass", &steps.1),
        ],
    }))
}

fn options(dir: PathBuf) -> RunOptions {
    RunOptions {
        resume: false,
        until_step: None,
        progress: false,
        config_toml: String::new(),
        metrics_dir: dir,
        peak_tflops: None,
        checkpoint: CheckpointSpec { every: 0, keep: 1 },
        log: LogSpec { every: 1 },
    }
}

/// (step_s, allreduce_wait_s) of each metrics row after the warm-up steps.
fn timed_rows(path: &std::path::Path) -> Result<Vec<(f64, f64)>, TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| TrainError::Other(format!("{}: no {name} column", path.display())))
    };
    let (step, wait) = (col("step_s")?, col("allreduce_wait_s")?);
    let value = |row: &str, i: usize| -> Result<f64, TrainError> {
        row.split(',')
            .nth(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| TrainError::Other(format!("{}: bad row {row}", path.display())))
    };
    lines
        .skip(WARMUP_STEPS)
        .map(|row| Ok((value(row, step)?, value(row, wait)?)))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
