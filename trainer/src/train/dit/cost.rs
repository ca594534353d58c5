//! `kelp bench dit-cost`: the runtime balance's cost model, measured. It times a training step
//! (forward + backward) of one packed row of `n` tokens for a few `n` on the device, fits
//! `fixed + linear·n + quadratic·n²` by least squares ([`CostModel::fit`]) and prints it as the
//! `[data] cost_model` line of a DiT config: stored with the run's config, every rank and every
//! resume then deal rows by the same model.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::packed::{PackedBatch, PackedSample};
use super::task::{DitInput, DitTask};
use super::DitTrainConfig;
use crate::models::dit::Dit;
use crate::train::backend::{self, DeviceChoice, Selected};
use crate::train::balance::CostModel;
use crate::train::device::{run_training, TrainingJob};
use crate::train::run::compute_for;
use crate::train::trainer::{ScalarF64, StepAt, Task};
use crate::train::TrainError;

/// Caption tokens of each measured row (the rest are video tokens).
const TEXT: usize = 8;

#[derive(Debug, Clone)]
pub struct CostArgs {
    pub config: std::path::PathBuf,
    /// Tokens per row to time (at least 3 distinct lengths).
    pub tokens: Vec<usize>,
    /// Timed steps per length (after one warm-up step).
    pub reps: usize,
    pub device: DeviceChoice,
}

#[derive(Debug, Clone)]
pub struct CostReport {
    pub device: String,
    /// (tokens, mean seconds of a step).
    pub points: Vec<(usize, f64)>,
    pub model: CostModel,
}

impl std::fmt::Display for CostReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| tokens | step s (measured) | step s (fitted) |")?;
        writeln!(f, "|---:|---:|---:|")?;
        for &(n, s) in &self.points {
            writeln!(f, "| {n} | {s:.4} | {:.4} |", self.model.predict(n))?;
        }
        writeln!(f, "on {}; for the DiT config's [data] table:", self.device)?;
        writeln!(
            f,
            "cost_model = {{ fixed = {:e}, linear = {:e}, quadratic = {:e} }}",
            self.model.fixed, self.model.linear, self.model.quadratic
        )
    }
}

pub fn measure(args: &CostArgs) -> Result<CostReport, TrainError> {
    let config = DitTrainConfig::load(&args.config)?;
    struct Measure<'a>(&'a CostArgs, DitTrainConfig);
    impl TrainingJob for Measure<'_> {
        type Output = CostReport;
        fn run<B: AutodiffBackend>(
            self,
            device: &B::Device,
            selected: &Selected,
        ) -> Result<CostReport, TrainError> {
            run::<B>(self.0, &self.1, device, selected)
        }
    }
    let everywhere = config.train.activation_checkpointing.everywhere();
    run_training(
        &backend::select(args.device)?,
        everywhere,
        None,
        Measure(args, config),
    )
}

fn run<B: AutodiffBackend>(
    args: &CostArgs,
    config: &DitTrainConfig,
    device: &B::Device,
    selected: &Selected,
) -> Result<CostReport, TrainError> {
    let arch = config.architecture("the config")?;
    let compute = compute_for(config.train.precision, selected);
    let model = Dit::<B>::new(&arch, device, 0);
    let recompute = config
        .train
        .activation_checkpointing
        .recompute_plan(arch.depth)?;
    let mut task = DitTask::<B>::new(arch.clone(), config.flow.clone(), compute, device)
        .with_recompute(recompute);
    let [pt, ph, pw] = arch.patch;
    let mut points = Vec::new();
    for &n in &args.tokens {
        let video = n.checked_sub(TEXT).filter(|&v| v > 0).ok_or_else(|| {
            TrainError::Config(format!("--tokens {n}: a row needs more than {TEXT} tokens"))
        })?;
        // One latent of `video` tokens in a row: pt frames × ph rows × (pw · video) columns.
        let shape = [arch.latent_channels, pt, ph, pw * video];
        let values: usize = shape.iter().product();
        let sample = PackedSample {
            id: format!("cost-{n}"),
            shape,
            latents: vec![0.1; values],
            text: vec![0.0; TEXT * arch.text_dim],
            text_len: TEXT,
            fps: 24.0,
        };
        let batch = DitInput::Packed(PackedBatch::new(vec![sample], arch.text_dim, n, &arch)?);
        let mut total = 0.0;
        for rep in 0..=args.reps.max(1) {
            let started = Instant::now();
            let at = StepAt {
                step: rep as u64,
                micro: 0,
                seed: 0,
            };
            let step = task.gradients(&model, &batch, at)?;
            // One value back to the host: the timing covers finished work.
            step.total.into_scalar_f64();
            if rep > 0 {
                total += started.elapsed().as_secs_f64();
            }
        }
        points.push((n, total / args.reps.max(1) as f64));
    }
    let model = CostModel::fit(&points)?;
    Ok(CostReport {
        device: selected.describe(),
        points,
        model,
    })
}
