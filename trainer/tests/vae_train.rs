//! Training the VAE through the shared loop: a run stopped and resumed from its checkpoint ends
//! where the uninterrupted run ends, having seen the same batches; a damaged checkpoint is
//! refused by name. (That the tiny preset learns is `tests/vae_learns.rs`, on the quickstart
//! dataset.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use kelp_trainer::data::Batch;
use kelp_trainer::models::nn::Compute;
use kelp_trainer::models::vae::{Vae, VaeSpec};
use kelp_trainer::train::backend::{Cpu, CpuAutodiff};
use kelp_trainer::train::config::{parse_toml, CheckpointSpec, LogSpec, TrainSpec};
use kelp_trainer::train::source::{BatchSource, FixedBatches};
use kelp_trainer::train::store::RunStore;
use kelp_trainer::train::synthetic;
use kelp_trainer::train::trainer::{train, RunOptions};
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

/// Two steps with burn's balanced activation checkpointing (activations recomputed in the
/// backward pass) end at the weights two plain steps end at.
#[test]
fn activation_checkpointing_trains_the_same_weights() {
    fn two_steps<B: burn::tensor::backend::AutodiffBackend>() -> Vec<(String, Vec<f32>)> {
        let device = Default::default();
        let spec: TrainSpec = parse_toml(
            "steps = 2\nlr = 2e-3\nwarmup_steps = 1\nema_decay = 0\nseed = 4",
            "t",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let mut source = FixedBatches::new(synthetic::batches(3, 0, 2, 2, [5, 8, 8]), 11).unwrap();
        let mut task = VaeTask::<B>::new(tiny(), LossConfig::default(), Compute::F32, &device, 4);
        let t = train(
            &mut task,
            Vae::<B>::new(&tiny(), &device, 4),
            &mut source,
            &spec,
            &store,
            &options(dir.path(), false, None, 0),
            &device,
        )
        .unwrap();
        floats(&weights::to_safetensors(&t.model).unwrap())
    }
    let plain = two_steps::<AB>();
    let checkpointed = two_steps::<kelp_trainer::train::backend::CpuAutodiffCheckpointed>();
    for ((name, a), (_, b)) in plain.iter().zip(&checkpointed) {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{name}: weights differ by {diff}");
    }
}
