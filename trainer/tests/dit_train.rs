//! Training the tiny DiT with flow matching through the shared loop, and sampling from it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use common::{jittered, max_abs_diff, tiny, values};
use kelp_trainer::models::dit::Dit;
use kelp_trainer::models::nn::Compute;
use kelp_trainer::train::backend::{Cpu, CpuAutodiff};
use kelp_trainer::train::config::{parse_toml, CheckpointSpec, LogSpec, TrainSpec};
use kelp_trainer::train::dit::packed::{packed_loss, PackedBatch, PackedSample};
use kelp_trainer::train::dit::sample::{sample, SampleSpec, Solver};
use kelp_trainer::train::dit::synthetic::{self, SyntheticSpec};
use kelp_trainer::train::dit::task::{draws, flow_loss};
use kelp_trainer::train::dit::{DitBatch, DitInput, DitTask, FlowConfig};
use kelp_trainer::train::source::FixedBatches;
use kelp_trainer::train::store::RunStore;
use kelp_trainer::train::trainer::{train, RunOptions};
use kelp_trainer::train::weights;

/// The loop's options for a run in `dir`, without a progress bar.
fn run_options(
    dir: &std::path::Path,
    resume: bool,
    until_step: Option<u64>,
    checkpoint: CheckpointSpec,
    log_every: u64,
) -> RunOptions {
    RunOptions {
        resume,
        until_step,
        progress: false,
        config_toml: String::new(),
        metrics_dir: dir.to_path_buf(),
        peak_tflops: None,
        checkpoint,
        log: LogSpec { every: log_every },
    }
}

const SPEC: SyntheticSpec = SyntheticSpec {
    latent: [8, 2, 4, 4],
    text_len: 6,
    text_dim: 32,
    classes: 4,
};

/// Batches of one shape as the task's input.
fn plain(batches: &[DitBatch]) -> Vec<DitInput> {
    batches.iter().cloned().map(DitInput::from).collect()
}

/// The mean flow-matching loss over `batches` with draws fixed by `seed` (so two models are
/// compared on the same noise and timesteps).
fn validation_loss(model: &Dit<Cpu>, batches: &[DitBatch], flow: &FlowConfig, seed: u64) -> f64 {
    let device = Default::default();
    let mut sum = 0.0;
    for (i, b) in batches.iter().enumerate() {
        let d = draws(b, flow, 1.0, seed, &format!("val{i}"));
        let l = flow_loss(model, b, &d, Compute::F32, &device).unwrap();
        sum += f64::from(values(l)[0]);
    }
    sum / batches.len() as f64
}

/// The mean squared distance from `x` to each class's latent.
fn distances(x: &[f32]) -> Vec<f64> {
    (0..SPEC.classes)
        .map(|j| {
            let l = synthetic::class_latent(7, j, SPEC.latent);
            let sq: f64 = x
                .iter()
                .zip(&l)
                .map(|(a, b)| f64::from((a - b) * (a - b)))
                .sum();
            sq / l.len() as f64
        })
        .collect()
}

/// One training run serves two checks (training is the slow part): the validation loss falls
/// well below its step-0 value, and sampling a class's caption lands nearest that class's
/// latent, with and without guidance.
// Measured 2026-12-02 on the shared 2-core dev machine (debug build): 300 steps in 9.9 s, loss
// 1.493 → 0.346 (0.23×; 120 steps gave 0.816, 0.55×); every class's sample nearest its own latent
// (mean squared distance 0.17–0.31 against 0.69–1.10 to the others at g = 1, 0.32–0.65 against
// 1.44–2.57 at g = 3). The bound 0.4× leaves room for float differences across machines.
#[test]
fn flow_matching_loss_falls_and_samples_follow_their_caption() {
    let device = Default::default();
    let steps = 300;
    let spec: TrainSpec = parse_toml(
        &format!("steps = {steps}\nlr = 3e-3\nwarmup_steps = 10\nema_decay = 0.0\nseed = 1"),
        "test",
    )
    .unwrap();
    let config = tiny([1, 2, 2]);
    let flow = FlowConfig {
        base_tokens: 0,
        ..Default::default()
    };
    let batches = synthetic::batches(7, 4, 4, &SPEC);
    let model = Dit::<CpuAutodiff>::new(&config, &device, 0);
    let before = validation_loss(&model.valid(), &batches, &flow, 99);

    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let opts = run_options(
        dir.path(),
        false,
        None,
        CheckpointSpec { every: 0, keep: 1 },
        20,
    );
    let mut task = DitTask::<CpuAutodiff>::new(config.clone(), flow.clone(), Compute::F32, &device);
    let mut source = FixedBatches::new(plain(&batches), 3).unwrap();
    let t0 = Instant::now();
    let trained = train(&mut task, model, &mut source, &spec, &store, &opts, &device).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let model = trained.model.valid();
    let after = validation_loss(&model, &batches, &flow, 99);
    println!(
        "flow-matching validation loss {before:.4} → {after:.4} after {steps} steps ({secs:.1} s)"
    );
    assert!(after < 0.4 * before, "loss {before:.4} → {after:.4}");

    let [c, t, h, w] = SPEC.latent;
    for k in 0..SPEC.classes {
        let (e, m) = synthetic::class_caption(7, k, &SPEC);
        let text = Tensor::<Cpu, 3>::from_data(
            TensorData::new(e, [1, SPEC.text_len, SPEC.text_dim]),
            &device,
        );
        let mask = Tensor::<Cpu, 2>::from_data(TensorData::new(m, [1, SPEC.text_len]), &device);
        for cfg in [1.0, 3.0] {
            let s = SampleSpec {
                steps: 20,
                cfg,
                shift: 1.0,
                seed: 11,
                solver: Solver::Euler,
                fps: None,
            };
            let x = sample(
                &model,
                [1, c, t, h, w],
                text.clone(),
                mask.clone(),
                None,
                &s,
                Compute::F32,
            )
            .unwrap();
            let d = distances(&values(x));
            println!("caption {k}, g = {cfg}: distance to each class {d:.3?}");
            let nearest = (0..d.len()).min_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap();
            assert_eq!(nearest, k, "caption {k}, g = {cfg}: distances {d:?}");
        }
        // Heun's second order on the trained (smooth) flow: with few steps it lands nearer the
        // fine solution than Euler does.
        let solve = |steps: usize, solver: Solver| {
            let s = SampleSpec {
                steps,
                cfg: 1.0,
                shift: 1.0,
                seed: 11,
                solver,
                fps: None,
            };
            let x = sample(
                &model,
                [1, c, t, h, w],
                text.clone(),
                mask.clone(),
                None,
                &s,
                Compute::F32,
            );
            values(x.unwrap())
        };
        let fine = solve(200, Solver::Heun);
        let (euler, heun) = (
            max_abs_diff(&solve(6, Solver::Euler), &fine),
            max_abs_diff(&solve(6, Solver::Heun), &fine),
        );
        println!(
            "caption {k}: 6 steps from the 200-step solution: Euler {euler:.4}, Heun {heun:.4}"
        );
        assert!(
            heun < 0.5 * euler,
            "caption {k}: Heun {heun} vs Euler {euler}"
        );
    }
}

#[test]
fn sampling_with_guidance_has_the_latent_shape_and_is_deterministic_for_a_seed() {
    let device = Default::default();
    let config = tiny([1, 2, 2]);
    let model = jittered(Dit::<Cpu>::new(&config, &device, 2), 4, 0.1);
    let b = &synthetic::batches(7, 1, 2, &SPEC)[0];
    let (_, text, mask) = b.tensors::<Cpu>(&device);
    let shape = b.shape;
    let run = |seed: u64, cfg: f64| {
        let s = SampleSpec {
            steps: 4,
            cfg,
            shift: 1.5,
            seed,
            solver: Solver::Euler,
            fps: None,
        };
        let x: Tensor<Cpu, 5> = sample(
            &model,
            shape,
            text.clone(),
            mask.clone(),
            None,
            &s,
            Compute::F32,
        )
        .unwrap();
        assert_eq!(x.dims(), shape);
        values(x)
    };
    let a = run(5, 3.0);
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, run(5, 3.0), "same seed, other latents");
    assert!(max_abs_diff(&a, &run(6, 3.0)) > 1e-3, "the seed is ignored");
    assert!(
        max_abs_diff(&a, &run(5, 1.0)) > 1e-4,
        "guidance changes nothing"
    );
}

/// Trains the tiny DiT into `dir` (stopping at `until`), returning its weights as safetensors.
fn run(dir: &std::path::Path, resume: bool, until: Option<u64>) -> Vec<u8> {
    let device = Default::default();
    let spec: TrainSpec = parse_toml(
        "steps = 4\nlr = 2e-3\nwarmup_steps = 1\nema_decay = 0.9\nseed = 5",
        "test",
    )
    .unwrap();
    let config = tiny([1, 2, 2]);
    let store = RunStore::open(dir.to_str().unwrap(), &Default::default()).unwrap();
    let opts = run_options(dir, resume, until, CheckpointSpec { every: 2, keep: 0 }, 1);
    let flow = FlowConfig::default();
    let mut task = DitTask::<CpuAutodiff>::new(config.clone(), flow, Compute::F32, &device);
    let mut source = FixedBatches::new(plain(&synthetic::batches(7, 3, 2, &SPEC)), 3).unwrap();
    let model = Dit::<CpuAutodiff>::new(&config, &device, 0);
    let t = train(&mut task, model, &mut source, &spec, &store, &opts, &device).unwrap();
    weights::to_safetensors(&t.model).unwrap()
}

#[test]
fn a_resumed_dit_run_ends_where_the_uninterrupted_one_does() {
    let whole = tempfile::tempdir().unwrap();
    let w_whole = run(whole.path(), false, None);
    let split = tempfile::tempdir().unwrap();
    run(split.path(), false, Some(2));
    let w_split = run(split.path(), true, None);
    let load = |bytes: &[u8]| {
        let m = weights::from_safetensors(
            Dit::<Cpu>::new(&tiny([1, 2, 2]), &Default::default(), 9),
            bytes,
            "test",
        )
        .unwrap();
        [
            m.final_out.weight.val(),
            m.blocks[0].video.qkv.weight.val(),
            m.null_text.val().reshape([1, 32]),
        ]
        .into_iter()
        .flat_map(values)
        .collect::<Vec<f32>>()
    };
    let (a, b) = (load(&w_whole), load(&w_split));
    // Trained away from the initial weights (the output layer starts at zero) ...
    assert!(a.iter().any(|v| v.abs() > 1e-4));
    // ... to the same weights either way.
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-5, "weights differ by {diff}");
}

/// PSNR of `x` against `reference` with the reference's peak-to-peak range as the peak.
fn latent_psnr(x: &[f32], reference: &[f32]) -> f64 {
    let (lo, hi) = reference
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mse = x
        .iter()
        .zip(reference)
        .map(|(a, b)| f64::from((a - b) * (a - b)))
        .sum::<f64>()
        / reference.len() as f64;
    10.0 * (f64::from(hi - lo).powi(2) / mse.max(1e-12)).log10()
}

/// The tiny DiT trained on one synthetic clip (1000 steps, no caption dropout), then sampled with
/// its caption (20 Heun steps, no guidance), gives back that clip's latent.
#[test]
fn overfitting_one_clip_then_sampling_its_caption_reproduces_it() {
    let device = Default::default();
    let b = &synthetic::batches(7, 4, 1, &SPEC)[0];
    let per: usize = b.shape[1..].iter().product();
    let [_, l, d] = b.text_shape;
    let one = DitBatch::new(
        b.ids[..1].to_vec(),
        [1, b.shape[1], b.shape[2], b.shape[3], b.shape[4]],
        b.latents[..per].to_vec(),
        [1, l, d],
        b.text[..l * d].to_vec(),
        b.mask[..l].to_vec(),
    )
    .unwrap();
    let steps = 1000;
    let spec: TrainSpec = parse_toml(
        &format!("steps = {steps}\nlr = 3e-3\nwarmup_steps = 10\nema_decay = 0.0\nseed = 3"),
        "test",
    )
    .unwrap();
    let config = tiny([1, 2, 2]);
    let flow = FlowConfig {
        base_tokens: 0,
        cfg_dropout: 0.0,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let opts = run_options(
        dir.path(),
        false,
        None,
        CheckpointSpec { every: 0, keep: 1 },
        50,
    );
    let mut task = DitTask::<CpuAutodiff>::new(config.clone(), flow, Compute::F32, &device);
    let mut source = FixedBatches::new(plain(std::slice::from_ref(&one)), 1).unwrap();
    let model = Dit::<CpuAutodiff>::new(&config, &device, 0);
    let model = train(&mut task, model, &mut source, &spec, &store, &opts, &device)
        .unwrap()
        .model
        .valid();
    let (_, text, mask) = one.tensors::<Cpu>(&device);
    let s = SampleSpec {
        steps: 20,
        cfg: 1.0,
        shift: 1.0,
        seed: 21,
        solver: Solver::Heun,
        fps: None,
    };
    let x = values(sample(&model, one.shape, text, mask, None, &s, Compute::F32).unwrap());
    let noise_psnr = latent_psnr(&vec![0.0; per], &one.latents);
    let psnr = latent_psnr(&x, &one.latents);
    println!("one clip, {steps} steps: sampled with its caption at {psnr:.1} dB (latent PSNR; zeros give {noise_psnr:.1} dB)");
    // Measured 29.3 dB (2026-12-02); zeros give 11.4 dB.
    assert!(psnr > 25.0, "{psnr:.1} dB");
}

#[test]
fn a_packed_step_has_the_loss_of_the_same_samples_batched() {
    let device = Default::default();
    let config = tiny([1, 2, 2]);
    // Trained-looking weights (a fresh model's zero output layer would make any two losses of
    // the same targets equal).
    let model = jittered(Dit::<Cpu>::new(&config, &device, 0), 3, 0.05);
    let flow = FlowConfig {
        cfg_dropout: 0.0,
        i2v_rate: 0.0,
        ..FlowConfig::default()
    };
    let batch = &synthetic::batches(5, 1, 3, &SPEC)[0];
    let [_, t, h, w] = SPEC.latent;
    let tokens: usize = config.token_grid(t, h, w).unwrap().iter().product();
    let d = draws(batch, &flow, flow.shift_for(tokens), 11, "7");
    let plain = flow_loss(&model, batch, &d, Compute::F32, &device).unwrap();
    let plain = values(plain)[0];

    let [_, l, dim] = batch.text_shape;
    let samples: Vec<PackedSample> = (0..3)
        .map(|i| PackedSample::from_batch(batch, i).unwrap())
        .collect();
    // Two samples per row: the rows really are packed.
    let packed = PackedBatch::new(samples, dim, 2 * (tokens + l), &config).unwrap();
    assert_eq!(packed.rows.len(), 2, "{:?}", packed.rows);
    let loss = packed_loss(
        &model,
        &config,
        &packed,
        &flow,
        11,
        "7",
        Compute::F32,
        &device,
    )
    .unwrap();
    let loss = values(loss)[0];
    assert!(
        (loss - plain).abs() <= 1e-5 * plain.abs().max(1.0),
        "packed {loss} vs batched {plain}"
    );
}

#[test]
fn balanced_ranks_weighted_losses_average_to_the_whole_steps_loss() {
    let device = Default::default();
    let config = tiny([1, 2, 2]);
    let model = jittered(Dit::<Cpu>::new(&config, &device, 0), 4, 0.05);
    let flow = FlowConfig::default();
    let batch = &synthetic::batches(6, 1, 5, &SPEC)[0];
    let [_, t, h, w] = SPEC.latent;
    let [_, l, dim] = batch.text_shape;
    let sample = |i: usize| PackedSample::from_batch(batch, i).unwrap();
    let tokens: usize = config.token_grid(t, h, w).unwrap().iter().product();
    let capacity = 2 * (tokens + l);
    let loss = |idx: &[usize], weight: f32| {
        let mut b = PackedBatch::new(
            idx.iter().map(|&i| sample(i)).collect(),
            dim,
            capacity,
            &config,
        )
        .unwrap();
        b.loss_weight = weight;
        let v = packed_loss(&model, &config, &b, &flow, 3, "1", Compute::F32, &device).unwrap();
        values(v)[0]
    };
    let whole = loss(&[0, 1, 2, 3, 4], 1.0);
    // Rank 0 holds 3 of 5 samples' values, rank 1 holds 2: weights 2·3/5 and 2·2/5.
    let mean_of_ranks = (loss(&[0, 1, 2], 1.2) + loss(&[3, 4], 0.8)) / 2.0;
    assert!(
        (mean_of_ranks - whole).abs() <= 1e-5 * whole.abs().max(1.0),
        "{mean_of_ranks} vs {whole}"
    );
}
