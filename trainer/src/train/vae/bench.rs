//! `kelp bench vae-step`: training-step throughput of a VAE preset on synthetic clips of one
//! shape — clips/s, step time, achieved TFLOP/s from the architecture's FLOP count and, on a GPU,
//! MFU against the card's bf16 peak — through the same task and loop pieces `kelp train vae`
//! uses (no data loading in the timing).

use std::time::Instant;

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::FloatDType;

use super::task::{LossConfig, VaeTask};
use crate::models::nn::Compute;
use crate::models::vae::{Vae, VaeConfig};
use crate::train::backend::{self, DeviceChoice, Selected};
use crate::train::config::{parse_toml, Precision, TrainSpec};
use crate::train::device::{memory_in_use, run_training, TrainingJob};
use crate::train::optim::{adamw, clip_global_norm};
use crate::train::synthetic;
use crate::train::trainer::{ScalarF64, StepAt, Task};
use crate::train::TrainError;

#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub preset: String,
    pub frames: usize,
    pub size: usize,
    pub batch: usize,
    /// Timed steps (after 2 warm-up steps).
    pub steps: usize,
    pub device: DeviceChoice,
    pub precision: Precision,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub device: String,
    pub preset: String,
    pub shape: [usize; 5],
    pub params: u64,
    pub precision: Precision,
    pub step_s: f64,
    pub clips_per_s: f64,
    pub tflops: f64,
    pub mfu: Option<f64>,
    /// Peak resident memory of the process (CPU) or device memory in use (GPU), bytes.
    pub memory_bytes: u64,
    pub loss: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [b, _, t, h, w] = self.shape;
        writeln!(
            f,
            "| device | preset | batch × clip | params | precision | step s | clips/s | TFLOP/s | MFU | memory GiB |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|---|")?;
        writeln!(
            f,
            "| {} | {} | {b} × {t}×{h}×{w} | {:.1} M | {:?} | {:.3} | {:.2} | {:.3} | {} | {:.2} |",
            self.device,
            self.preset,
            self.params as f64 / 1e6,
            self.precision,
            self.step_s,
            self.clips_per_s,
            self.tflops,
            self.mfu
                .map_or("–".into(), |m| format!("{:.1}%", m * 100.0)),
            self.memory_bytes as f64 / (1u64 << 30) as f64
        )
    }
}

pub fn bench_step(args: &BenchArgs) -> Result<BenchReport, TrainError> {
    struct Bench<'a>(&'a BenchArgs);
    impl TrainingJob for Bench<'_> {
        type Output = BenchReport;
        fn run<B: AutodiffBackend>(
            self,
            device: &B::Device,
            selected: &Selected,
        ) -> Result<BenchReport, TrainError> {
            run::<B>(self.0, device, selected)
        }
    }
    run_training(&backend::select(args.device)?, false, None, Bench(args))
}

fn run<B: AutodiffBackend>(
    args: &BenchArgs,
    device: &B::Device,
    selected: &Selected,
) -> Result<BenchReport, TrainError> {
    let config = VaeConfig::preset(&args.preset)?;
    config.latent_shape(args.frames, args.size, args.size)?;
    let compute = match (args.precision, selected.is_gpu()) {
        (Precision::Bf16, true) => Compute {
            half: Some(FloatDType::BF16),
        },
        (Precision::F16, true) => Compute {
            half: Some(FloatDType::F16),
        },
        _ => Compute::F32,
    };
    let spec: TrainSpec = parse_toml("steps = 1000\nlr = 1e-4", "bench")?;
    let mut task = VaeTask::<B>::new(config.clone(), LossConfig::default(), compute, device, 0);
    let mut model = Vae::<B>::new(&config, device, 0);
    let mut optim = adamw::<B, Vae<B>>(&spec);
    let batch = synthetic::batches(1, 0, 1, args.batch, [args.frames, args.size, args.size])
        .pop()
        .ok_or_else(|| TrainError::Other("no synthetic batch".into()))?;
    let flops = task.flops(&batch);
    let mut loss = 0.0;
    let mut started = Instant::now();
    for step in 0..(2 + args.steps) as u64 {
        if step == 2 {
            started = Instant::now();
        }
        let l = task.loss(
            &model,
            &batch,
            StepAt {
                step,
                micro: 0,
                seed: 0,
            },
        )?;
        let total = l.total.clone();
        let mut grads = GradientsParams::from_grads(l.total.backward(), &model);
        clip_global_norm::<B, _>(&model, &mut grads, 1.0, device);
        model = optim.step(1e-4, model, grads);
        // One value back to the host per step: the timing covers finished work.
        loss = total.detach().inner().into_scalar_f64();
    }
    let secs = started.elapsed().as_secs_f64() / args.steps.max(1) as f64;
    let tflops = flops / secs / 1e12;
    let peak = match selected {
        Selected::Cuda(g) => backend::peak_bf16_tflops(&g.name),
        Selected::Cpu { .. } => None,
    };
    let memory_bytes = memory_in_use(selected);
    Ok(BenchReport {
        device: selected.describe(),
        preset: args.preset.clone(),
        shape: batch.shape,
        params: config.cost(1, 8, 8).params(),
        // A CPU trains in f32 whatever was asked.
        precision: if selected.is_gpu() {
            args.precision
        } else {
            Precision::F32
        },
        step_s: secs,
        clips_per_s: args.batch as f64 / secs,
        tflops,
        mfu: peak.map(|p| tflops / p),
        memory_bytes,
        loss,
    })
}
