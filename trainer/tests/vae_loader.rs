//! The VAE fed by the streaming loader (`kelp_trainer::data`) through
//! `train::loader_source`: a run stopped and resumed from its checkpoint (which holds the
//! loader's resume state) sees exactly the batches, and ends at the weights, of the run that was
//! not stopped; the held-out split never reaches training; shapes the VAE cannot take are named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use kelp_trainer::data::testing::{self, TestDataset};
use kelp_trainer::data::{Batch, Loader};
use kelp_trainer::models::nn::Compute;
use kelp_trainer::models::vae::{Vae, VaeSpec};
use kelp_trainer::train::backend::CpuAutodiff;
use kelp_trainer::train::config::{parse_toml, CheckpointSpec, LogSpec, TrainSpec};
use kelp_trainer::train::data_parallel::flat_weights;
use kelp_trainer::train::loader_source::{loader_config, one_pass, LoaderSource};
use kelp_trainer::train::source::BatchSource;
use kelp_trainer::train::split::Split;
use kelp_trainer::train::store::RunStore;
use kelp_trainer::train::trainer::{train, RunOptions};
use kelp_trainer::train::vae::commands::train_vae_on;
use kelp_trainer::train::vae::{LossConfig, TrainVaeArgs, VaeTask, VaeTrainConfig};
use kelp_trainer::train::TrainError;

type AB = CpuAutodiff;

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

/// 10 clips of 5 frames at 16×16 (the tiny VAE takes 1 + 4k frames, sides in multiples of 4).
fn dataset(dir: &tempfile::TempDir) -> String {
    let uri = dir.path().join("ds").to_str().unwrap().to_string();
    testing::write_blocking(&uri, &TestDataset::buckets(&[("b16", 16, 16, 5, 10)]));
    uri
}

fn data_table() -> toml::Table {
    "batch_size = 2\nseed = 5".parse().unwrap()
}

fn run(
    ds: &str,
    dir: &std::path::Path,
    resume: bool,
    until: Option<u64>,
) -> (Vec<f32>, Vec<String>) {
    let spec: TrainSpec = parse_toml(
        "steps = 6\nlr = 2e-3\nwarmup_steps = 1\nema_decay = 0.9\nseed = 3",
        "test",
    )
    .unwrap();
    let device = Default::default();
    let arch = VaeSpec {
        preset: Some("tiny".into()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let lc = loader_config(
        &data_table(),
        Some(ds),
        &Default::default(),
        0.0,
        Split::Train,
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut source = Recording {
        inner: LoaderSource::new(lc).unwrap(),
        seen: seen.clone(),
    };
    let mut task = VaeTask::<AB>::new(
        arch.clone(),
        LossConfig::default(),
        Compute::F32,
        &device,
        3,
    );
    let store = RunStore::open(dir.to_str().unwrap(), &Default::default()).unwrap();
    let opts = RunOptions {
        resume,
        until_step: until,
        progress: false,
        config_toml: String::new(),
        metrics_dir: dir.to_path_buf(),
        peak_tflops: None,
        checkpoint: CheckpointSpec { every: 2, keep: 0 },
        log: LogSpec { every: 1 },
    };
    let t = train(
        &mut task,
        Vae::<AB>::new(&arch, &device, 3),
        &mut source,
        &spec,
        &store,
        &opts,
        &device,
    )
    .unwrap();
    let ids = seen.lock().unwrap().clone();
    (flat_weights(&t.model).unwrap(), ids)
}

#[test]
fn resuming_from_a_checkpoint_continues_the_loaders_order_and_ends_at_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(&tmp);
    let (w_whole, ids_whole) = run(&ds, &tmp.path().join("whole"), false, None);
    let split = tmp.path().join("split");
    let (_, first) = run(&ds, &split, false, Some(4));
    let (w_split, second) = run(&ds, &split, true, None);
    assert_eq!(ids_whole.len(), 6 * 2, "6 steps of 2 clips");
    // 10 clips, batches of 2: the 6 steps cross into the second epoch, whose order differs.
    assert_ne!(ids_whole[..2], ids_whole[10..], "epoch 1 reshuffled");
    let mut joined = first;
    joined.extend(second);
    assert_eq!(joined, ids_whole, "the resumed run saw other batches");
    // Within float rounding: the CPU backend's threaded reductions need not sum in one order.
    let diff = w_split
        .iter()
        .zip(&w_whole)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "the resumed run ended at weights {diff} away");
}

#[test]
fn the_held_out_split_never_reaches_training_and_together_they_are_every_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(&tmp);
    let ids_of = |split| {
        let lc = loader_config(&data_table(), Some(&ds), &Default::default(), 0.3, split).unwrap();
        let mut ids: Vec<String> = Loader::new(one_pass(lc, 3))
            .unwrap()
            .flat_map(|b| b.unwrap().clip_ids)
            .collect();
        ids.sort();
        ids
    };
    let (train, held, all) = (
        ids_of(Split::Train),
        ids_of(Split::HeldOut),
        ids_of(Split::All),
    );
    assert_eq!(all.len(), 10);
    assert!(
        !held.is_empty() && !train.is_empty(),
        "train {train:?} held {held:?}"
    );
    assert!(train.iter().all(|id| !held.contains(id)));
    let mut both = [train, held].concat();
    both.sort();
    assert_eq!(both, all);
}

#[test]
fn clip_shapes_the_vae_cannot_take_are_refused_by_bucket_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = tmp.path().join("odd").to_str().unwrap().to_string();
    testing::write_blocking(&uri, &TestDataset::buckets(&[("odd", 18, 16, 6, 4)]));
    let config = VaeTrainConfig::from_toml(
        "[model]\npreset = \"tiny\"\n[train]\nsteps = 1\n[eval]\nholdout = 0.0\n[data]\nbatch_size = 2",
        "t",
    )
    .unwrap();
    let args = TrainVaeArgs {
        config,
        run: tmp.path().join("run").to_str().unwrap().to_string(),
        store: Default::default(),
        resume: false,
        auto_resume: false,
        overwrite: false,
        until_step: None,
        device: None,
        progress: false,
    };
    let e = train_vae_on(&args, Some(&uri)).unwrap_err().to_string();
    assert!(
        e.contains("odd (4 clips, 6×16×18)") && e.contains("[data] frames"),
        "{e}"
    );
}
