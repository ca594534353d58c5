//! `kelp bench dit-step`: training-step throughput of a DiT preset on synthetic latents of one
//! clip shape (the VAE preset's latent of `frames × size²`) — step time, tokens/s, achieved
//! TFLOP/s from the architecture's FLOP count, MFU against the card's bf16 peak, memory — through
//! the same task, AdamW and gradient clip `kelp train dit` uses; and with `--peer`, the same model
//! written in PyTorch (`peer.py`: `nn.Linear`, `scaled_dot_product_attention`, autocast, AdamW)
//! trained on batches of the same shape in the same call, on the same device. The two are
//! compared only when their parameter counts agree.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;

use super::flow::FlowConfig;
use super::synthetic::{self, SyntheticSpec};
use super::task::{DitInput, DitTask};
use crate::models::dit::{Dit, DitConfig};
use crate::models::vae::VaeConfig;
use crate::train::backend::{self, DeviceChoice, Selected};
use crate::train::config::{parse_toml, Precision, TrainSpec};
use crate::train::device::{memory_in_use, run_training, TrainingJob};
use crate::train::optim::{adamw, clip_global_norm};
use crate::train::run::compute_for;
use crate::train::trainer::{ScalarF64, StepAt, Task};
use crate::train::TrainError;

/// The PyTorch peer, written to a scratch file and run with `--peer-python`.
const PEER: &str = include_str!("peer.py");

/// Steps each DiT bench run (kelp's, the peer's, `dit-dp`'s) takes before its timed ones.
pub(crate) const WARMUP_STEPS: usize = 2;

/// What both DiT benches (`dit-step`, `dit-dp`) train: a preset on one synthetic batch, timed
/// over `steps` steps.
#[derive(Debug, Clone)]
pub struct DitBenchShape {
    /// DiT preset (`tiny`, `small100m`, `seaweed`).
    pub preset: String,
    /// VAE preset whose latent the DiT denoises (sets the latent shape).
    pub vae: String,
    pub frames: usize,
    pub size: usize,
    /// Caption tokens per sample.
    pub text_len: usize,
    /// Clips per step (per rank in `dit-dp`).
    pub batch: usize,
    /// Timed steps (after [`WARMUP_STEPS`] warm-up steps).
    pub steps: usize,
    pub device: DeviceChoice,
    pub precision: Precision,
}

#[derive(Debug, Clone)]
pub struct DitStepArgs {
    pub shape: DitBenchShape,
    /// Also train the PyTorch peer with this Python (which must have torch).
    pub peer_python: Option<PathBuf>,
}

/// One implementation's measurement.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub name: String,
    pub device: String,
    pub params: u64,
    pub step_s: f64,
    /// GPU memory in use after the steps, or the process's peak RSS on a CPU, bytes.
    pub memory_bytes: u64,
    pub loss: f64,
}

#[derive(Debug, Clone)]
pub struct DitStepReport {
    pub preset: String,
    /// `[B, C, T, H, W]` latents per step.
    pub latent: [usize; 5],
    pub text_len: usize,
    pub precision: Precision,
    /// Video + text tokens of a step.
    pub tokens: usize,
    /// FLOPs of a step (forward and backward, 3× the forward).
    pub flops: f64,
    /// The device's dense bf16 peak, TFLOP/s, when known.
    pub peak_tflops: Option<f64>,
    pub rows: Vec<StepRow>,
    /// Why the peer has no row.
    pub peer_error: Option<String>,
}

impl std::fmt::Display for DitStepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [b, c, t, h, w] = self.latent;
        writeln!(
            f,
            "DiT {} · batch {b} × latent {c}×{t}×{h}×{w} + {} caption tokens ({} tokens a step) · {:?} · {:.3} TFLOP a step",
            self.preset, self.text_len, self.tokens, self.precision, self.flops / 1e12
        )?;
        writeln!(
            f,
            "| implementation | device | params | step s | tokens/s | TFLOP/s | MFU | memory GiB | loss |"
        )?;
        writeln!(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            let tflops = self.flops / r.step_s / 1e12;
            writeln!(
                f,
                "| {} | {} | {:.1} M | {:.4} | {:.0} | {:.3} | {} | {:.2} | {:.4} |",
                r.name,
                r.device,
                r.params as f64 / 1e6,
                r.step_s,
                self.tokens as f64 / r.step_s,
                tflops,
                self.peak_tflops
                    .map_or("–".into(), |p| format!("{:.1}%", 100.0 * tflops / p)),
                r.memory_bytes as f64 / (1u64 << 30) as f64,
                r.loss
            )?;
        }
        if let [kelp, peer] = self.rows.as_slice() {
            writeln!(
                f,
                "kelp ÷ PyTorch tokens/s: {:.2}×",
                peer.step_s / kelp.step_s
            )?;
        }
        if let Some(e) = &self.peer_error {
            writeln!(f, "PyTorch peer: {e}")?;
        }
        Ok(())
    }
}

pub fn bench_step(args: &DitStepArgs) -> Result<DitStepReport, TrainError> {
    struct Bench<'a>(&'a DitStepArgs);
    impl TrainingJob for Bench<'_> {
        type Output = DitStepReport;
        fn run<B: AutodiffBackend>(
            self,
            device: &B::Device,
            selected: &Selected,
        ) -> Result<DitStepReport, TrainError> {
            run::<B>(self.0, device, selected)
        }
    }
    let selected = backend::select(args.shape.device)?;
    run_training(&selected, false, None, Bench(args))
}

fn run<B: AutodiffBackend>(
    args: &DitStepArgs,
    device: &B::Device,
    selected: &Selected,
) -> Result<DitStepReport, TrainError> {
    let shape = &args.shape;
    let (config, input, [c, t, h, w], video) = bench_input(shape)?;
    if shape.steps == 0 {
        return Err(TrainError::Config("--steps must be at least 1".into()));
    }
    let compute = compute_for(shape.precision, selected);
    let mut task = DitTask::<B>::new(config.clone(), FlowConfig::default(), compute, device);
    let mut model = Dit::<B>::new(&config, device, 0);
    let train: TrainSpec = parse_toml("steps = 1000\nlr = 1e-4", "bench")?;
    let mut optim = adamw::<B, Dit<B>>(&train);
    let mut loss = 0.0;
    let mut started = Instant::now();
    for step in 0..(WARMUP_STEPS + shape.steps) as u64 {
        if step == WARMUP_STEPS as u64 {
            started = Instant::now();
        }
        let at = StepAt {
            step,
            micro: 0,
            seed: 0,
        };
        let mut g = task.gradients(&model, &input, at)?;
        clip_global_norm::<B, _>(&model, &mut g.grads, 1.0, device);
        model = optim.step(1e-4, model, g.grads);
        // One value back to the host per step: the timing covers finished work.
        loss = g.total.into_scalar_f64();
    }
    let step_s = started.elapsed().as_secs_f64() / shape.steps as f64;
    let params = config.params() as u64;
    let mut rows = vec![StepRow {
        name: "kelp (burn)".into(),
        device: selected.describe(),
        params,
        step_s,
        memory_bytes: memory_in_use(selected),
        loss,
    }];
    let latent = [shape.batch, c, t, h, w];
    let peer = args.peer_python.as_ref().map(|py| {
        run_peer(py, &config, latent, args, selected).and_then(|row| {
            if row.params == params {
                Ok(row)
            } else {
                Err(format!(
                    "{} parameters, kelp's model {params}: not the same model, not compared",
                    row.params
                ))
            }
        })
    });
    let peer_error = match peer {
        Some(Ok(row)) => {
            rows.push(row);
            None
        }
        Some(Err(e)) => Some(e),
        None => None,
    };
    Ok(DitStepReport {
        preset: shape.preset.clone(),
        latent,
        text_len: shape.text_len,
        // A CPU trains in f32 whatever was asked.
        precision: if selected.is_gpu() {
            shape.precision
        } else {
            Precision::F32
        },
        tokens: shape.batch * (video + shape.text_len),
        flops: shape.batch as f64 * 3.0 * config.forward_flops(video, shape.text_len),
        peak_tflops: match selected {
            Selected::Cuda(g) => backend::peak_bf16_tflops(&g.name),
            Selected::Cpu { .. } => None,
        },
        rows,
        peer_error,
    })
}

/// A DiT preset and one synthetic batch of `batch` latents of the VAE preset's `frames × size²`
/// shape with `text_len` caption tokens: the config, the batch, the latent shape `[C, T, H, W]`
/// and the video tokens of one sample.
pub(crate) fn bench_input(
    shape: &DitBenchShape,
) -> Result<(DitConfig, DitInput, [usize; 4], usize), TrainError> {
    let (preset, vae, text_len, batch) = (&shape.preset, &shape.vae, shape.text_len, shape.batch);
    let config = DitConfig::preset(preset)?;
    let [c, t, h, w] =
        VaeConfig::preset(vae)?.latent_shape(shape.frames, shape.size, shape.size)?;
    if c != config.latent_channels {
        return Err(TrainError::Config(format!(
            "the VAE preset {vae} makes {c}-channel latents; the DiT preset {preset} takes {}",
            config.latent_channels
        )));
    }
    let video: usize = config.token_grid(t, h, w)?.iter().product();
    if batch == 0 || text_len == 0 {
        return Err(TrainError::Config(
            "--batch and --text-len must be at least 1".into(),
        ));
    }
    let spec = SyntheticSpec {
        latent: [c, t, h, w],
        text_len,
        text_dim: config.text_dim,
        classes: 4,
    };
    let one = synthetic::batches(1, 1, batch, &spec)
        .pop()
        .ok_or_else(|| TrainError::Other("no synthetic batch".into()))?;
    let input = DitInput::Plain(one.with_fps(vec![24.0; batch])?);
    Ok((config, input, [c, t, h, w], video))
}

/// Trains the PyTorch peer on the same shapes and reads its one JSON line.
fn run_peer(
    python: &PathBuf,
    config: &DitConfig,
    latent: [usize; 5],
    args: &DitStepArgs,
    selected: &Selected,
) -> Result<StepRow, String> {
    let scratch = std::env::temp_dir().join(format!("kelp-bench-dit-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let script = scratch.join("peer.py");
    let args_file = scratch.join("peer.json");
    let json = serde_json::json!({
        "model": config,
        "latent": latent,
        "text_len": args.shape.text_len,
        "warmup": WARMUP_STEPS,
        "steps": args.shape.steps,
        "precision": format!("{:?}", args.shape.precision).to_lowercase(),
        "device": if selected.is_gpu() { "cuda" } else { "cpu" },
    });
    let written =
        std::fs::write(&script, PEER).and_then(|_| std::fs::write(&args_file, json.to_string()));
    let out = written.map_err(|e| e.to_string()).and_then(|_| {
        Command::new(python)
            .arg(&script)
            .arg(&args_file)
            .output()
            .map_err(|e| format!("{}: {e}", python.display()))
    });
    let _ = std::fs::remove_dir_all(&scratch);
    let out = out?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.trim().lines().rev().take(3).collect();
        return Err(format!(
            "{} failed: {}",
            python.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "its output is not one JSON line ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let number = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("its output has no number {k}: {v}"))
    };
    Ok(StepRow {
        name: "PyTorch".into(),
        device: v["device"].as_str().unwrap_or("?").to_string(),
        params: number("params")? as u64,
        step_s: number("step_s")?,
        memory_bytes: number("memory_bytes")? as u64,
        loss: number("loss")?,
    })
}
