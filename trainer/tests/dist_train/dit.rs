//! Runtime balance under `mpirun`: the tiny DiT trained on packed steps whose rows are dealt to
//! ranks by predicted cost (`train::dit::balanced`), each rank's loss weighted by its share,
//! ends where one process training on the whole packed steps ends; with the gradients
//! all-reduced during the backward pass (the default, `train::overlap`: a communication thread
//! calls MPI while the backward pass goes on) the ranks end where they end with it after.

use std::path::Path;

use kelp_trainer::dist::{Collective, Local};
use kelp_trainer::models::dit::{Dit, DitConfig, DitSpec};
use kelp_trainer::models::nn::Compute;
use kelp_trainer::train::backend::CpuAutodiff;
use kelp_trainer::train::config::{parse_toml, CheckpointSpec, TrainSpec};
use kelp_trainer::train::data_parallel::flat_weights;
use kelp_trainer::train::dit::balanced::{balanced_steps, flops_cost, BalanceInput, RankStep};
use kelp_trainer::train::dit::packed::{PackedBatch, PackedSample};
use kelp_trainer::train::dit::synthetic::{class_caption, class_latent, SyntheticSpec};
use kelp_trainer::train::dit::{DitInput, DitTask, FlowConfig};
use kelp_trainer::train::source::FixedBatches;
use kelp_trainer::train::store::RunStore;
use kelp_trainer::train::trainer::train_with;

const SAMPLES: usize = 80;
const CAPACITY: usize = 24;
const ROWS: usize = 2;
const STEPS: usize = 4;

fn config() -> DitConfig {
    DitSpec {
        preset: Some("tiny".into()),
        patch: Some([1, 2, 2]),
        ..Default::default()
    }
    .resolve()
    .unwrap()
}

/// Latents of 1, 2 or 4 frames (4, 8 or 16 tokens) with 4–6 caption tokens, in an uneven mix
/// (so ranks hold unequal shares of a step).
fn samples() -> Vec<PackedSample> {
    (0..SAMPLES)
        .map(|i| {
            let t = [1, 4, 4, 2, 1][i % 5];
            let shape = [8, t, 4, 4];
            let spec = SyntheticSpec {
                latent: shape,
                text_len: 6,
                text_dim: 32,
                classes: 4,
            };
            let (text, mask) = class_caption(3, i % 4, &spec);
            let len = mask.iter().filter(|&&m| m > 0.5).count();
            PackedSample {
                id: format!("s{i}"),
                shape,
                latents: class_latent(3, i % 4, shape),
                text: text[..len * 32].to_vec(),
                text_len: len,
                fps: 24.0,
            }
        })
        .collect()
}

/// The first [`STEPS`] global steps, rank `rank`'s share of each, for `world` ranks of
/// `rows` rows.
fn shares(all: &[PackedSample], world: usize, rank: usize, rows: usize) -> Vec<RankStep> {
    let config = config();
    let lengths: Vec<usize> = all.iter().map(|s| s.shape[1] * 4 + s.text_len).collect();
    let values: Vec<usize> = all.iter().map(|s| s.shape.iter().product()).collect();
    let order: Vec<u32> = (0..all.len() as u32).collect();
    let cost = flops_cost(&config).unwrap();
    let plan = balanced_steps(&BalanceInput {
        order: &order,
        lengths: &lengths,
        values: &values,
        capacity: CAPACITY,
        rows_per_rank: rows,
        world,
        cost: &cost,
    })
    .unwrap();
    assert!(plan.steps.len() > STEPS, "{plan}");
    let out: Vec<RankStep> = plan
        .steps
        .into_iter()
        .take(STEPS)
        .map(|s| s[rank].clone())
        .collect();
    out
}

fn batches(all: &[PackedSample], steps: Vec<RankStep>) -> Vec<DitInput> {
    steps
        .into_iter()
        .map(|s| {
            DitInput::Packed(PackedBatch {
                samples: s.samples.iter().map(|&i| all[i as usize].clone()).collect(),
                text_dim: 32,
                rows: s.rows,
                capacity: CAPACITY,
                loss_weight: s.loss_weight,
            })
        })
        .collect()
}

fn train(dir: &Path, input: Vec<DitInput>, coll: &mut dyn Collective, overlap: bool) -> Vec<f32> {
    let spec: TrainSpec = parse_toml(
        &format!("steps = 4\nlr = 2e-3\nwarmup_steps = 1\nseed = 5\noverlap_allreduce = {overlap}"),
        "test",
    )
    .unwrap();
    let device = Default::default();
    let config = config();
    let mut source = FixedBatches::new(input, 5).unwrap();
    let mut task =
        DitTask::<CpuAutodiff>::new(config.clone(), FlowConfig::default(), Compute::F32, &device);
    let store = RunStore::open(dir.to_str().unwrap(), &Default::default()).unwrap();
    let opts = super::options(dir, false, None, CheckpointSpec { every: 0, keep: 1 });
    let seed = 5 + coll.world().rank as u64;
    let model = Dit::<CpuAutodiff>::new(&config, &device, seed);
    let t = train_with(
        &mut task,
        model,
        &mut source,
        &spec,
        &store,
        &opts,
        &device,
        coll,
    )
    .unwrap();
    flat_weights(&t.model).unwrap()
}

/// Rank `rank` of `world`'s part; rank 0 also trains the whole steps alone and compares.
pub fn balanced_training_matches_one_process(dir: &Path, coll: &mut dyn Collective) {
    let (r, n) = (coll.world().rank, coll.world().size);
    let all = samples();
    let mine = shares(&all, n, r, ROWS);
    assert!(
        mine.iter().any(|s| (s.loss_weight - 1.0).abs() > 0.01),
        "every share is even: the weights go untested"
    );
    assert!(
        n == 1 || coll.any_thread(),
        "MPI does not grant MPI_THREAD_SERIALIZED: the overlapped all-reduce would go untested"
    );
    let dp = train(&dir.join("dit-dp"), batches(&all, mine.clone()), coll, true);
    let after = train(&dir.join("dit-after"), batches(&all, mine), coll, false);
    // The same ranks without the share weights: the all-reduce then averages rank means.
    let mut unweighted = batches(&all, shares(&all, n, r, ROWS));
    for b in &mut unweighted {
        if let DitInput::Packed(p) = b {
            p.loss_weight = 1.0;
        }
    }
    let unweighted = train(&dir.join("dit-unweighted"), unweighted, coll, true);
    if r == 0 {
        // The ranks' compute times were compared every step: the slowest over the mean.
        for v in column(
            &dir.join("dit-dp/metrics.csv"),
            "rank_compute_max_over_mean",
        ) {
            assert!((1.0..10.0).contains(&v), "max/mean rank compute {v}");
        }
        let mut alone = Local::default();
        let single = train(
            &dir.join("dit-single"),
            batches(&all, shares(&all, 1, 0, n * ROWS)),
            &mut alone,
            true,
        );
        // Both ways of all-reducing logged their wait.
        for run in ["dit-dp", "dit-after"] {
            let wait = column(&dir.join(run).join("metrics.csv"), "allreduce_wait_s");
            assert!(
                wait.iter().all(|w| (0.0..60.0).contains(w)),
                "{run}: {wait:?}"
            );
        }
        let during_vs_after = super::max_diff(&dp, &after);
        println!("balanced DiT, {n} ranks: all-reduce during vs after the backward pass: max weight difference {during_vs_after:e}");
        assert!(during_vs_after < 3e-5, "{during_vs_after}");
        let d = super::max_diff(&dp, &single);
        let wrong = super::max_diff(&unweighted, &single);
        println!(
            "balanced DiT, {n} ranks vs one process: max weight difference {d:e} (without the share weights: {wrong:e})"
        );
        assert!(d < 3e-4, "balanced {n} ranks vs one process: {d}");
        assert!(
            wrong > 10.0 * d.max(1e-6),
            "the check cannot tell: {wrong} vs {d}"
        );
    }
}

/// The values of one column of a metrics file.
fn column(path: &Path, name: &str) -> Vec<f64> {
    let metrics = std::fs::read_to_string(path).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|c| *c == name).unwrap();
    metrics
        .lines()
        .skip(1)
        .map(|row| row.split(',').nth(col).unwrap().parse().unwrap())
        .collect()
}
