//! One optimizer step's gradients in the shared loop: each micro-batch's backward pass, the
//! gradients summed, averaged over micro-batches and over ranks — after the backward passes
//! ([`all_reduce_grads`]) or during the last one ([`all_reduce_during`]).

use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::config::TrainSpec;
use super::data_parallel::all_reduce_grads;
use super::optim::scale_grads;
use super::overlap::{all_reduce_during, STREAM_BUCKET_FLOATS};
use super::source::BatchSource;
use super::trainer::{StepAt, Task};
use super::TrainError;
use crate::dist::Collective;

/// A micro-batch's losses (detached): the total and each part.
pub type MicroLoss<B> = (Tensor<B, 1>, Vec<Tensor<B, 1>>);

/// What a step's micro-batches leave for the optimizer and the metrics.
pub struct StepGrads<B: AutodiffBackend> {
    /// The mean over micro-batches and ranks.
    pub grads: GradientsParams,
    pub losses: Vec<MicroLoss<B::InnerBackend>>,
    /// Samples and FLOPs of this rank's micro-batches.
    pub samples: usize,
    pub flops: f64,
    /// Seconds in the forward and backward passes (with several ranks, the device's queued
    /// work included).
    pub compute_s: f64,
    /// Seconds waiting for the all-reduce beyond the backward pass.
    pub wait_s: f64,
}

/// Whether the loop all-reduces during the backward pass: as `[train] overlap_allreduce` says
/// (`true` takes that path even alone, to measure it), else where the collective hides it and
/// the gradients (`params` values) fill more than one bucket.
pub fn overlaps(spec: &TrainSpec, coll: &dyn Collective, params: usize) -> bool {
    coll.any_thread()
        && match spec.overlap_allreduce {
            Some(on) => on,
            None => {
                coll.world().size > 1 && coll.overlap_by_default() && params > STREAM_BUCKET_FLOATS
            }
        }
}

/// Runs step `step`'s `[train] grad_accum` micro-batches from `source` and averages their
/// gradients over micro-batches and the ranks of `coll`.
#[allow(clippy::too_many_arguments)]
pub fn step_gradients<B, T, S>(
    task: &mut T,
    model: &T::Model,
    source: &mut S,
    spec: &TrainSpec,
    step: u64,
    overlap: bool,
    coll: &mut dyn Collective,
    device: &B::Device,
) -> Result<StepGrads<B>, TrainError>
where
    B: AutodiffBackend,
    T: Task<B>,
    S: BatchSource<Item = T::Batch> + ?Sized,
{
    let mut out = StepGrads::<B> {
        grads: GradientsParams::new(),
        losses: Vec::new(),
        samples: 0,
        flops: 0.0,
        compute_s: 0.0,
        wait_s: 0.0,
    };
    let mut accum = GradientsAccumulator::<T::Model>::new();
    let mut reduced = None;
    for micro in 0..spec.grad_accum {
        let batch = source.next_batch()?;
        let at = StepAt {
            step,
            micro,
            seed: spec.seed,
        };
        let started = Instant::now();
        let l = if overlap && micro + 1 == spec.grad_accum {
            let earlier = std::mem::replace(&mut accum, GradientsAccumulator::new()).grads();
            let scale = 1.0 / spec.grad_accum as f32;
            let o = all_reduce_during::<B, _, _>(model, coll, earlier, scale, device, |ready| {
                task.gradients_streamed(model, &batch, at, ready)
            })?;
            out.compute_s += o.backward_s;
            out.wait_s += o.exposed_s;
            tracing::debug!(
                step,
                buckets = o.buckets,
                during_backward = o.during_backward,
                exposed_s = o.exposed_s,
                "all-reduce overlapped with the backward pass"
            );
            reduced = Some(o.grads);
            o.value
        } else {
            let l = task.gradients(model, &batch, at)?;
            out.compute_s += started.elapsed().as_secs_f64();
            l
        };
        out.samples += task.samples(&batch);
        out.flops += task.flops(&batch);
        out.losses.push((l.total, l.parts));
        accum.accumulate(model, l.grads);
    }
    if coll.world().size > 1 {
        // A GPU's queued work counts: wait for it before the ranks compare their times.
        let waited = Instant::now();
        B::sync(device)
            .map_err(|e| TrainError::Device(format!("synchronising the device: {e:?}")))?;
        out.compute_s += waited.elapsed().as_secs_f64();
    }
    out.grads = match reduced {
        Some(g) => g,
        None => {
            let mut grads = accum.grads();
            if spec.grad_accum > 1 {
                scale_grads::<B, _>(model, &mut grads, 1.0 / spec.grad_accum as f64, device);
            }
            let waited = Instant::now();
            all_reduce_grads::<B, _>(model, &mut grads, coll, device)?;
            out.wait_s += waited.elapsed().as_secs_f64();
            grads
        }
    };
    Ok(out)
}
