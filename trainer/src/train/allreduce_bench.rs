//! `kelp bench allreduce`: the gradient all-reduce measured through the job's own
//! [`Collective`] (MPI on CPUs, NCCL on GPUs; launched like training, one process per rank),
//! and what it means for a data-parallel step at the DiT presets' sizes.
//!
//! Each buffer size is checked first (every rank fills it with `rank + 1`, the sum must be
//! `W(W+1)/2` everywhere), then timed; bandwidths follow nccl-tests' definitions: algorithm
//! bandwidth = bytes / time, bus bandwidth = algorithm bandwidth × 2(W−1)/W, the figure that does
//! not depend on the number of ranks for a ring. The step budget divides a step's FLOPs by a
//! peak and an MFU (given, not measured: no GPU runs here unless one is there) and the
//! gradients' bytes by bus bandwidths (the measured one and any given), so it says how large the
//! all-reduce is next to the compute it would hide behind.

use std::time::Instant;

use crate::dist::{self, Collective, DistError, World};
use crate::models::dit::DitConfig;
use crate::train::backend::{self, DeviceChoice, Selected};
use crate::train::TrainError;

/// Caption tokens per sample in the step budget.
const TEXT_TOKENS: usize = 256;

#[derive(Debug, Clone)]
pub struct AllReduceArgs {
    /// Buffer sizes in MB (10^6 bytes of f32).
    pub sizes_mb: Vec<f64>,
    /// Timed repetitions per size (after one warm-up).
    pub reps: usize,
    pub device: DeviceChoice,
    /// DiT presets for the step budget.
    pub presets: Vec<String>,
    /// Tokens per rank per step for the step budget.
    pub tokens: Vec<usize>,
    /// Dense peak TFLOP/s and MFU the step's compute is assumed to run at.
    pub peak_tflops: f64,
    pub mfu: f64,
    /// Bus bandwidths (GB/s) to project besides the measured one, with what they stand for.
    pub assume_busbw: Vec<(String, f64)>,
}

#[derive(Debug, Clone)]
pub struct SizeRow {
    pub bytes: usize,
    /// Median seconds of one all-reduce.
    pub seconds: f64,
    pub algbw_gbs: f64,
    pub busbw_gbs: f64,
}

#[derive(Debug, Clone)]
pub struct BudgetRow {
    pub preset: String,
    pub params: usize,
    pub tokens: usize,
    /// Seconds of forward + backward at the assumed peak and MFU.
    pub compute_s: f64,
    /// (what the bandwidth stands for, GB/s, seconds of the f32 gradient all-reduce).
    pub allreduce: Vec<(String, f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct AllReduceReport {
    pub collective: String,
    pub device: String,
    pub world: usize,
    /// Ranks of the ring the step budget assumes.
    pub ring: usize,
    pub sizes: Vec<SizeRow>,
    pub budget: Vec<BudgetRow>,
    pub peak_tflops: f64,
    pub mfu: f64,
}

/// Bus bandwidth of a ring all-reduce over `world` ranks (nccl-tests' factor).
pub fn bus_factor(world: usize) -> f64 {
    if world <= 1 {
        1.0
    } else {
        2.0 * (world - 1) as f64 / world as f64
    }
}

/// Seconds a ring all-reduce of `bytes` takes over `world` ranks at bus bandwidth `busbw_gbs`.
pub fn ring_seconds(bytes: f64, world: usize, busbw_gbs: f64) -> f64 {
    bytes * bus_factor(world) / (busbw_gbs * 1e9)
}

/// Joins the job, checks and times the all-reduce; the report on rank 0, `None` elsewhere.
pub fn run(args: &AllReduceArgs) -> Result<Option<AllReduceReport>, TrainError> {
    if args.sizes_mb.iter().any(|s| s.is_nan() || *s <= 0.0) || args.reps == 0 {
        return Err(TrainError::Config(
            "sizes must be positive MB and reps at least 1".into(),
        ));
    }
    let selected = backend::select(args.device)?;
    let mut collective = join(&selected).map_err(dist_err)?;
    let world = collective.world().clone();
    let mut sizes = Vec::new();
    for &mb in &args.sizes_mb {
        let n = ((mb * 1e6) / 4.0).round().max(1.0) as usize;
        sizes.push(measure(collective.as_mut(), &world, n, args.reps)?);
    }
    collective.barrier().map_err(dist_err)?;
    if world.rank != 0 {
        return Ok(None);
    }
    let measured = sizes
        .iter()
        .max_by_key(|r| r.bytes)
        .map(|r| r.busbw_gbs)
        .unwrap_or(0.0);
    // One process alone moves nothing: its "bandwidth" is no figure to plan with.
    let mut bandwidths = Vec::new();
    if world.size > 1 {
        bandwidths.push((
            format!("measured here ({}, largest buffer)", collective.name()),
            measured,
        ));
    }
    bandwidths.extend(args.assume_busbw.iter().cloned());
    // The ring the budget assumes: the job's, and at least one 8-GPU node.
    let ring = world.size.max(8);
    let budget = budget(args, &bandwidths, ring)?;
    Ok(Some(AllReduceReport {
        collective: collective.name().into(),
        device: selected.describe(),
        world: world.size,
        ring,
        sizes,
        budget,
        peak_tflops: args.peak_tflops,
        mfu: args.mfu,
    }))
}

fn dist_err(e: DistError) -> TrainError {
    TrainError::Device(e.to_string())
}

/// The job's collective; on a GPU NCCL even for one rank, so the path training takes is the one
/// measured.
pub(crate) fn join(selected: &Selected) -> Result<Box<dyn Collective>, DistError> {
    let world = dist::from_env()?;
    match selected {
        Selected::Cpu { .. } => dist::join(),
        #[cfg(feature = "cuda")]
        Selected::Cuda(g) if world.size == 1 => {
            let id = dist::Nccl::new_id()?;
            Ok(Box::new(dist::Nccl::init(world, g.ordinal, id, None)?))
        }
        Selected::Cuda(_) => dist::join_with(&dist::JoinOptions {
            gpu: Some(world.local_rank),
            board: None,
        }),
    }
}

/// Checks then times an all-reduce of `n` values.
fn measure(
    collective: &mut dyn Collective,
    world: &World,
    n: usize,
    reps: usize,
) -> Result<SizeRow, TrainError> {
    let mut buf = vec![(world.rank + 1) as f32; n];
    collective.all_reduce_sum(&mut buf).map_err(dist_err)?;
    let want = (world.size * (world.size + 1) / 2) as f32;
    if let Some((i, got)) = buf.iter().enumerate().find(|(_, v)| **v != want) {
        return Err(TrainError::Device(format!(
            "{} all-reduce of {n} values on rank {}: value {i} is {got}, the sum of the ranks' values is {want}",
            collective.name(),
            world.rank
        )));
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        collective.barrier().map_err(dist_err)?;
        let t0 = Instant::now();
        collective.all_reduce_sum(&mut buf).map_err(dist_err)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2].max(1e-9);
    let bytes = n * 4;
    let algbw_gbs = bytes as f64 / seconds / 1e9;
    Ok(SizeRow {
        bytes,
        seconds,
        algbw_gbs,
        busbw_gbs: algbw_gbs * bus_factor(world.size),
    })
}

/// The step budget of each preset and token count, for a ring of `world` ranks.
fn budget(
    args: &AllReduceArgs,
    bandwidths: &[(String, f64)],
    world: usize,
) -> Result<Vec<BudgetRow>, TrainError> {
    let mut rows = Vec::new();
    for preset in &args.presets {
        let config = DitConfig::preset(preset)?;
        let params = config.params();
        for &tokens in &args.tokens {
            // Forward and backward: the backward pass costs twice the forward.
            let flops = 3.0 * config.forward_flops(tokens, TEXT_TOKENS);
            let compute_s = flops / (args.peak_tflops * 1e12 * args.mfu);
            let bytes = params as f64 * 4.0;
            let allreduce = bandwidths
                .iter()
                .filter(|(_, bw)| *bw > 0.0)
                .map(|(what, bw)| (what.clone(), *bw, ring_seconds(bytes, world, *bw)))
                .collect();
            rows.push(BudgetRow {
                preset: preset.clone(),
                params,
                tokens,
                compute_s,
                allreduce,
            });
        }
    }
    Ok(rows)
}

impl std::fmt::Display for AllReduceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "all-reduce (sum, f32) through {} over {} rank(s) on {}; every size checked on every rank",
            self.collective, self.world, self.device
        )?;
        writeln!(
            f,
            "| size MB | time ms (median) | algbw GB/s | busbw GB/s |"
        )?;
        writeln!(f, "|---:|---:|---:|---:|")?;
        for r in &self.sizes {
            writeln!(
                f,
                "| {:.0} | {:.3} | {:.2} | {:.2} |",
                r.bytes as f64 / 1e6,
                r.seconds * 1e3,
                r.algbw_gbs,
                r.busbw_gbs
            )?;
        }
        writeln!(
            f,
            "\nstep budget per rank (f32 gradients, ring over {} ranks; compute at {:.0} TFLOP/s x {:.0}% MFU, forward + backward, {TEXT_TOKENS} caption tokens):",
            self.ring,
            self.peak_tflops,
            self.mfu * 100.0
        )?;
        writeln!(
            f,
            "| preset | params | tokens/rank | compute s | bus bandwidth | GB/s | all-reduce s | all-reduce ÷ compute |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---|---:|---:|---:|")?;
        for b in &self.budget {
            for (what, bw, s) in &b.allreduce {
                writeln!(
                    f,
                    "| {} | {:.2}B | {} | {:.3} | {what} | {bw:.1} | {s:.3} | {:.2} |",
                    b.preset,
                    b.params as f64 / 1e9,
                    b.tokens,
                    b.compute_s,
                    s / b.compute_s
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_bandwidth_follows_the_ring_factor() {
        assert_eq!(bus_factor(1), 1.0);
        assert_eq!(bus_factor(2), 1.0);
        assert!((bus_factor(8) - 1.75).abs() < 1e-12);
        // 1 GB over 8 ranks at 100 GB/s bus bandwidth: 1.75 × 10 ms.
        assert!((ring_seconds(1e9, 8, 100.0) - 0.0175).abs() < 1e-12);
    }

    #[test]
    fn one_rank_checks_and_times_every_size() {
        let args = AllReduceArgs {
            sizes_mb: vec![0.004, 1.0],
            reps: 2,
            device: DeviceChoice::Cpu,
            presets: vec!["small100m".into()],
            tokens: vec![1024, 4096],
            peak_tflops: 989.0,
            mfu: 0.38,
            assume_busbw: vec![("NVLink".into(), 400.0)],
        };
        let report = run(&args).unwrap().expect("rank 0 reports");
        assert_eq!(report.world, 1);
        assert_eq!(report.sizes.len(), 2);
        assert_eq!(report.sizes[1].bytes, 1_000_000);
        assert_eq!(report.budget.len(), 2);
        // Four times the tokens cost at least four times the compute; the gradients do not grow.
        let (a, b) = (&report.budget[0], &report.budget[1]);
        assert!(b.compute_s >= 4.0 * a.compute_s, "{a:?} {b:?}");
        // One rank measures no bandwidth: only the assumed one is projected.
        assert_eq!(a.allreduce.len(), 1);
        assert_eq!(a.allreduce[0].2, b.allreduce[0].2);
        let text = report.to_string();
        assert!(
            text.contains("| small100m |") && text.contains("NVLink"),
            "{text}"
        );
    }
}
