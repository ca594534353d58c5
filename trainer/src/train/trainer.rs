//! The training loop every model shares. A [`Task`] says how a batch becomes a loss (and what
//! else it keeps, such as a discriminator); the loop does the rest: micro-batches and gradient
//! accumulation, the global gradient-norm clip, AdamW with warm-up + cosine, the weights' EMA,
//! metrics with throughput (samples/s, TFLOP/s, MFU on a GPU) and checkpoints with the source's
//! resume state, so `--resume` continues the same batches from the same weights. Across ranks
//! ([`train_with`] and a [`Collective`]) it is data parallel: rank 0's weights to every rank,
//! gradients averaged over ranks before the clip, the logged loss averaged too, and rank 0 alone
//! writing metrics and checkpoints.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::checkpoint::{self, CheckpointState, Loaded};
use super::config::{CheckpointSpec, LogSpec, TrainSpec};
use super::data_parallel::{agree, broadcast_weights, rank_imbalance};
use super::metrics::MetricsLog;
use super::optim::{adamw, clip_global_norm, Ema};
use super::overlap::Ready;
use super::source::BatchSource;
use super::step_grads::{overlaps, step_gradients};
use super::store::RunStore;
use super::weights;
use super::TrainError;
use crate::dist::{Collective, Local};

/// Running sums of the total loss and of each loss term over a logging interval.
type LossSums<B> = (Tensor<B, 1>, Vec<Tensor<B, 1>>);

/// Where in the run a loss is computed.
#[derive(Debug, Clone, Copy)]
pub struct StepAt {
    /// Optimizer step (0-based) this micro-batch belongs to.
    pub step: u64,
    /// Micro-batch within the step.
    pub micro: u64,
    /// The run's seed (`[train] seed`).
    pub seed: u64,
}

/// A micro-batch's loss: the total to differentiate and the parts to log (detached).
pub struct StepLoss<B: AutodiffBackend> {
    pub total: Tensor<B, 1>,
    pub parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> StepLoss<B> {
    /// The backward pass: the loss (detached) and its gradients for `model`'s parameters.
    pub fn into_gradients<M: AutodiffModule<B>>(self, model: &M) -> StepGradients<B> {
        let total = self.total.clone().detach().inner();
        let grads = GradientsParams::from_grads(self.total.backward(), model);
        StepGradients {
            total,
            parts: self.parts,
            grads,
        }
    }
}

/// A micro-batch's loss (detached, for the log) and its gradients.
pub struct StepGradients<B: AutodiffBackend> {
    pub total: Tensor<B::InnerBackend, 1>,
    pub parts: Vec<Tensor<B::InnerBackend, 1>>,
    pub grads: GradientsParams,
}

/// What is trained and how a batch becomes a loss.
pub trait Task<B: AutodiffBackend> {
    type Model: AutodiffModule<B>;
    type Batch;

    /// Checkpoint kind (`vae`, `dit`): a checkpoint of another kind is refused.
    fn kind(&self) -> &'static str;
    /// Names of [`StepLoss::parts`], in order: the metrics columns.
    fn part_names(&self) -> Vec<String>;
    fn loss(
        &mut self,
        model: &Self::Model,
        batch: &Self::Batch,
        at: StepAt,
    ) -> Result<StepLoss<B>, TrainError>;
    /// A micro-batch's loss (detached) and the gradients of its total: by default the backward
    /// pass of [`Task::loss`]; a task that recomputes activations computes them its own way.
    fn gradients(
        &mut self,
        model: &Self::Model,
        batch: &Self::Batch,
        at: StepAt,
    ) -> Result<StepGradients<B>, TrainError> {
        Ok(self.loss(model, batch, at)?.into_gradients(model))
    }
    /// [`Task::gradients`] handing each part of the gradients to `ready` as soon as the
    /// backward pass has made it final, so its all-reduce overlaps the rest of the backward
    /// pass ([`super::overlap`]); the parts cover disjoint parameters and every rank hands over
    /// the same parts in the same order. Returns the loss, with no gradients left. By default
    /// the whole backward pass runs first and its gradients go as one part.
    fn gradients_streamed(
        &mut self,
        model: &Self::Model,
        batch: &Self::Batch,
        at: StepAt,
        ready: &mut Ready<'_>,
    ) -> Result<StepGradients<B>, TrainError> {
        let mut g = self.gradients(model, batch, at)?;
        ready(std::mem::take(&mut g.grads))?;
        Ok(g)
    }
    /// Samples (clips) in a batch.
    fn samples(&self, batch: &Self::Batch) -> usize;
    /// FLOPs of one training step on the batch (forward + backward).
    fn flops(&self, batch: &Self::Batch) -> f64;
    /// Files of state beyond the model and its optimizer (a discriminator), for checkpoints.
    fn save_extra(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        Ok(Vec::new())
    }
    fn load_extra(&mut self, _checkpoint: &Loaded) -> Result<(), TrainError> {
        Ok(())
    }
}

/// How this invocation runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue from the run's latest checkpoint.
    pub resume: bool,
    /// Stop after this step (a checkpoint is written there) though the schedule runs to
    /// `[train] steps`.
    pub until_step: Option<u64>,
    pub progress: bool,
    /// The run's config as TOML, saved in each checkpoint.
    pub config_toml: String,
    /// Local folder for the metrics files (the run folder when it is local).
    pub metrics_dir: PathBuf,
    /// Peak TFLOP/s of the device for MFU (GPU only).
    pub peak_tflops: Option<f64>,
    pub checkpoint: CheckpointSpec,
    pub log: LogSpec,
}

/// What a run ends with.
pub struct Trained<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub model: M,
    pub ema: Option<M::InnerModule>,
    pub step: u64,
    pub samples: u64,
    /// The last metrics row.
    pub last: Vec<(String, f64)>,
}

pub const MODEL_FILE: &str = "model.safetensors";
pub const EMA_FILE: &str = "ema.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.mpk";

/// Trains `model` on `source` to `[train] steps` (or `until_step`), checkpointing into `run`,
/// in this process alone.
#[allow(clippy::too_many_arguments)]
pub fn train<B, T, S>(
    task: &mut T,
    model: T::Model,
    source: &mut S,
    spec: &TrainSpec,
    run: &RunStore,
    opts: &RunOptions,
    device: &B::Device,
) -> Result<Trained<B, T::Model>, TrainError>
where
    B: AutodiffBackend,
    T: Task<B>,
    S: BatchSource<Item = T::Batch> + ?Sized,
{
    let mut alone = Local::default();
    train_with(task, model, source, spec, run, opts, device, &mut alone)
}

/// [`train`] as one rank of `coll`'s world: every rank calls it with its own slice of the data
/// (the loader's `rank`/`world_size`) and the same config.
#[allow(clippy::too_many_arguments)]
pub fn train_with<B, T, S>(
    task: &mut T,
    mut model: T::Model,
    source: &mut S,
    spec: &TrainSpec,
    run: &RunStore,
    opts: &RunOptions,
    device: &B::Device,
    coll: &mut dyn Collective,
) -> Result<Trained<B, T::Model>, TrainError>
where
    B: AutodiffBackend,
    T: Task<B>,
    S: BatchSource<Item = T::Batch> + ?Sized,
{
    let (rank, world) = (coll.world().rank, coll.world().size);
    spec.validate()?;
    let mut optim = adamw::<B, T::Model>(spec);
    let mut ema = (spec.ema_decay > 0.0).then(|| Ema::new(model.valid(), spec.ema_decay, 0));
    let mut step = 0u64;
    let mut samples = 0u64;

    if opts.resume {
        let latest = checkpoint::latest(run)?.ok_or_else(|| {
            TrainError::Checkpoint(format!("--resume: {} has no checkpoint yet", run.uri()))
        })?;
        let ck = checkpoint::load_dir(run, &latest.dir)?;
        if ck.state.kind != task.kind() {
            return Err(TrainError::Checkpoint(format!(
                "{}/{}: a {} checkpoint, this trains a {}",
                run.uri(),
                ck.dir,
                ck.state.kind,
                task.kind()
            )));
        }
        let what = |f: &str| format!("{}/{}/{f}", run.uri(), ck.dir);
        model = weights::from_safetensors(model, ck.file(MODEL_FILE)?, &what(MODEL_FILE))?;
        optim = weights::optimizer_from_bytes::<B, T::Model, _>(
            optim,
            ck.file(OPTIMIZER_FILE)?,
            device,
            &what(OPTIMIZER_FILE),
        )?;
        if let Some(e) = ema.as_mut() {
            e.model =
                weights::from_safetensors(model.valid(), ck.file(EMA_FILE)?, &what(EMA_FILE))?;
            e.updates = ck.state.ema_updates;
        }
        task.load_extra(&ck)?;
        source.restore(&ck.state.source)?;
        step = ck.state.step;
        samples = ck.state.samples;
        tracing::info!(step, "resumed from {}/{}", run.uri(), ck.dir);
    }
    agree(
        coll,
        step,
        "the step to start from (the latest checkpoint each rank sees)",
    )?;
    model = broadcast_weights::<B, _>(model, coll, 0)?;

    let until = opts.until_step.unwrap_or(spec.steps).min(spec.steps);
    let parts = task.part_names();
    let mut columns: Vec<String> = vec!["lr".into(), "loss".into()];
    columns.extend(parts.iter().cloned());
    columns.extend(
        [
            "grad_norm",
            "samples_per_s",
            "step_s",
            "tflops",
            "mfu",
            "rank_compute_max_over_mean",
            "allreduce_wait_s",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    // Rank 0 keeps the metrics (of the whole job: losses are averaged over ranks).
    let mut log = match rank {
        0 => Some(MetricsLog::open(
            &opts.metrics_dir,
            columns,
            step,
            spec.steps,
            opts.progress,
        )?),
        _ => None,
    };

    let mut sums: Option<LossSums<B::InnerBackend>> = None;
    let mut norm_sum: Option<Tensor<B::InnerBackend, 1>> = None;
    let (mut micro_n, mut steps_n, mut interval_samples, mut interval_flops) =
        (0u64, 0u64, 0u64, 0.0f64);
    let mut t0 = Instant::now();
    // Sum over the interval's steps of the slowest rank's compute time over the mean rank's.
    let mut imbalance_sum = 0.0f64;
    // Sum over the interval's steps of the time spent waiting for the gradients' all-reduce
    // beyond the backward pass (all of it when it runs after the backward pass).
    let mut wait_sum = 0.0f64;
    let mut last = Vec::new();
    let mut saved_at = step;

    // Gradients all-reduced during the last micro-batch's backward pass (`train::overlap`).
    let overlap = overlaps(spec, coll, model.num_params());
    if (world > 1 || overlap) && rank == 0 {
        tracing::info!(
            collective = coll.name(),
            overlap,
            "gradients are all-reduced {} the backward pass",
            if overlap { "during" } else { "after" }
        );
    }
    while step < until {
        let lr = spec.lr_at(step);
        let s = step_gradients::<B, T, S>(task, &model, source, spec, step, overlap, coll, device)?;
        // Samples of the whole job (every rank takes a batch); FLOPs of this device.
        interval_samples += (s.samples * world) as u64;
        samples += (s.samples * world) as u64;
        interval_flops += s.flops;
        wait_sum += s.wait_s;
        for (total, parts) in s.losses {
            sums = Some(match sums.take() {
                None => (total, parts),
                Some((t, ps)) => (
                    t + total,
                    ps.into_iter().zip(parts).map(|(a, b)| a + b).collect(),
                ),
            });
            micro_n += 1;
        }
        if world > 1 {
            imbalance_sum += rank_imbalance(coll, s.compute_s)?;
        }
        let mut grads = s.grads;
        let norm = clip_global_norm::<B, _>(&model, &mut grads, spec.grad_clip, device);
        norm_sum = Some(match norm_sum.take() {
            Some(s) => s + norm,
            None => norm,
        });
        model = optim.step(lr, model, grads);
        if let Some(e) = ema.as_mut() {
            e.update::<B::InnerBackend>(&model.valid());
        }
        step += 1;
        steps_n += 1;

        if step.is_multiple_of(opts.log.every.max(1)) || step == until {
            let (total, ps) = sums
                .take()
                .ok_or_else(|| TrainError::Other("no loss".into()))?;
            let n = micro_n.max(1) as f64;
            let mut values: Vec<f32> = std::iter::once(total)
                .chain(ps)
                .map(|t| (t.into_scalar_f64() / n) as f32)
                .collect();
            coll.all_reduce_mean(&mut values)
                .map_err(|e| TrainError::Other(format!("averaging the loss over ranks: {e}")))?;
            let loss = f64::from(values[0]);
            if !loss.is_finite() {
                return Err(TrainError::Diverged(format!(
                    "the loss is {loss} at step {step}: lower [train] lr or raise warmup_steps"
                )));
            }
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            let tflops = interval_flops / secs / 1e12;
            let mut row = vec![("lr".to_string(), lr), ("loss".to_string(), loss)];
            for (name, p) in parts.iter().zip(&values[1..]) {
                row.push((name.clone(), f64::from(*p)));
            }
            let gn = norm_sum
                .take()
                .map(|s| s.into_scalar_f64() / steps_n.max(1) as f64)
                .unwrap_or(f64::NAN);
            row.push(("grad_norm".into(), gn));
            row.push(("samples_per_s".into(), interval_samples as f64 / secs));
            row.push(("step_s".into(), secs / steps_n.max(1) as f64));
            row.push(("tflops".into(), tflops));
            row.push((
                "mfu".into(),
                opts.peak_tflops.map_or(f64::NAN, |p| tflops / p),
            ));
            row.push((
                "rank_compute_max_over_mean".into(),
                if world > 1 {
                    imbalance_sum / steps_n.max(1) as f64
                } else {
                    f64::NAN
                },
            ));
            row.push(("allreduce_wait_s".into(), wait_sum / steps_n.max(1) as f64));
            if let Some(log) = log.as_mut() {
                log.row(step, &row)?;
            }
            last = row;
            micro_n = 0;
            steps_n = 0;
            interval_samples = 0;
            interval_flops = 0.0;
            imbalance_sum = 0.0;
            wait_sum = 0.0;
            t0 = Instant::now();
        }

        let every = opts.checkpoint.every;
        if rank == 0 && ((every > 0 && step.is_multiple_of(every)) || step == until) {
            save(
                task,
                &model,
                &optim,
                ema.as_ref(),
                source,
                run,
                opts,
                step,
                samples,
            )?;
            saved_at = step;
            t0 = Instant::now();
        }
    }
    if rank == 0 && saved_at != step {
        save(
            task,
            &model,
            &optim,
            ema.as_ref(),
            source,
            run,
            opts,
            step,
            samples,
        )?;
    }
    if let Some(log) = log {
        log.finish();
    }
    // No rank returns before rank 0's last checkpoint is written (a resume reads it).
    coll.barrier()
        .map_err(|e| TrainError::Other(format!("the ranks' last barrier: {e}")))?;
    Ok(Trained {
        model,
        ema: ema.map(|e| e.model),
        step,
        samples,
        last,
    })
}

#[allow(clippy::too_many_arguments)]
fn save<B, T, S, O>(
    task: &T,
    model: &T::Model,
    optim: &O,
    ema: Option<&Ema<<T::Model as AutodiffModule<B>>::InnerModule>>,
    source: &S,
    run: &RunStore,
    opts: &RunOptions,
    step: u64,
    samples: u64,
) -> Result<(), TrainError>
where
    B: AutodiffBackend,
    T: Task<B>,
    S: BatchSource<Item = T::Batch> + ?Sized,
    O: Optimizer<T::Model, B>,
{
    let mut files = vec![
        (MODEL_FILE.to_string(), weights::to_safetensors(model)?),
        (
            OPTIMIZER_FILE.to_string(),
            weights::optimizer_to_bytes::<B, T::Model, O>(optim)?,
        ),
    ];
    if let Some(e) = ema {
        files.push((EMA_FILE.to_string(), weights::to_safetensors(&e.model)?));
    }
    files.extend(task.save_extra()?);
    let state = CheckpointState {
        format: 1,
        kind: task.kind().to_string(),
        step,
        samples,
        source: source.state(),
        ema_updates: ema.map_or(0, |e| e.updates),
        config: opts.config_toml.clone(),
        kelp_version: env!("CARGO_PKG_VERSION").to_string(),
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        files: Default::default(),
    };
    checkpoint::save(run, state, files, opts.checkpoint.keep)?;
    // Metrics beside the checkpoints, for `kelp plot` on runs kept on object storage.
    if run.loc.local_dir.as_deref() != Some(opts.metrics_dir.as_path()) {
        for f in [super::metrics::JSONL, super::metrics::CSV] {
            if let Ok(bytes) = std::fs::read(opts.metrics_dir.join(f)) {
                run.put(f, bytes)?;
            }
        }
    }
    Ok(())
}

/// One value of a one-element tensor as f64.
pub trait ScalarF64 {
    fn into_scalar_f64(self) -> f64;
}

impl<B: burn::tensor::backend::Backend> ScalarF64 for Tensor<B, 1> {
    fn into_scalar_f64(self) -> f64 {
        use burn::tensor::ElementConversion;
        self.into_scalar().elem::<f64>()
    }
}
