//! Data parallelism in the training loop, over a [`Collective`]: every rank's gradients are
//! replaced by their mean (packed in parameter order into buckets of [`BUCKET_FLOATS`] values
//! and all-reduced bucket by bucket, staged through host memory), rank 0's weights are
//! broadcast to every rank before the first step, and the ranks check that they agree on values
//! that must match (the step a run resumes from); each step they compare their compute times
//! ([`rank_imbalance`]). With a world of one, all of this is skipped.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use super::TrainError;
use crate::dist::{Collective, DistError};

/// Values per all-reduce (32 MB of f32): large enough to reach the link's bandwidth, small
/// enough that host staging stays modest.
pub const BUCKET_FLOATS: usize = 8 << 20;

fn dist_err(e: DistError) -> TrainError {
    TrainError::Other(format!("data parallel: {e}"))
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, String> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// Every gradient, in parameter order, as one host vector.
struct Gather<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    host: Vec<f32>,
    error: Option<String>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            match host(g) {
                Ok(v) => self.host.extend(v),
                Err(e) => self.error = Some(e),
            }
        }
    }
}

/// Puts the reduced host vector back, in the same order.
struct Scatter<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    host: &'a [f32],
    at: usize,
    device: B::Device,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let dims = g.dims();
            let n: usize = dims.iter().product();
            let values = self.host[self.at..self.at + n].to_vec();
            self.at += n;
            let t = Tensor::<B::InnerBackend, D>::from_data(
                TensorData::new(values, dims),
                &self.device,
            );
            self.grads.register::<B::InnerBackend, D>(param.id, t);
        }
    }
}

/// Replaces `grads` by their mean over the ranks of `coll`.
pub fn all_reduce_grads<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &mut GradientsParams,
    coll: &mut dyn Collective,
    device: &B::Device,
) -> Result<(), TrainError> {
    if coll.world().size == 1 {
        return Ok(());
    }
    let mut g = Gather::<B> {
        grads,
        host: Vec::new(),
        error: None,
        _b: std::marker::PhantomData,
    };
    model.visit(&mut g);
    if let Some(e) = g.error {
        return Err(TrainError::Other(format!("reading gradients back: {e}")));
    }
    let mut flat = g.host;
    for bucket in flat.chunks_mut(BUCKET_FLOATS) {
        coll.all_reduce_mean(bucket).map_err(dist_err)?;
    }
    let mut s = Scatter::<B> {
        grads,
        host: &flat,
        at: 0,
        device: device.clone(),
    };
    model.visit(&mut s);
    Ok(())
}

/// Every weight, in parameter order, as one host vector.
struct Flatten {
    host: Vec<f32>,
    error: Option<String>,
}

impl<B: Backend> ModuleVisitor<B> for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        match host(param.val()) {
            Ok(v) => self.host.extend(v),
            Err(e) => self.error = Some(e),
        }
    }
}

struct Unflatten<'a> {
    host: &'a [f32],
    at: usize,
}

impl<B: Backend> ModuleMapper<B> for Unflatten<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        let dims = t.dims();
        let n: usize = dims.iter().product();
        let values = self.host[self.at..self.at + n].to_vec();
        self.at += n;
        let new = Tensor::<B, D>::from_data(
            TensorData::new(values, dims).convert_dtype(t.dtype()),
            &t.device(),
        )
        .set_require_grad(t.is_require_grad());
        Param::from_mapped_value(id, new, mapper)
    }
}

/// The weights of `model` flattened in parameter order (also how tests compare ranks).
pub fn flat_weights<B: Backend, M: Module<B>>(model: &M) -> Result<Vec<f32>, TrainError> {
    let mut f = Flatten {
        host: Vec::new(),
        error: None,
    };
    model.visit(&mut f);
    match f.error {
        Some(e) => Err(TrainError::Other(format!("reading weights back: {e}"))),
        None => Ok(f.host),
    }
}

/// `model` with rank `root`'s weights on every rank.
pub fn broadcast_weights<B: Backend, M: Module<B>>(
    model: M,
    coll: &mut dyn Collective,
    root: usize,
) -> Result<M, TrainError> {
    if coll.world().size == 1 {
        return Ok(model);
    }
    let mut flat = flat_weights::<B, M>(&model)?;
    for bucket in flat.chunks_mut(BUCKET_FLOATS) {
        coll.broadcast(bucket, root).map_err(dist_err)?;
    }
    Ok(model.map(&mut Unflatten { host: &flat, at: 0 }))
}

/// Fails unless every rank passed the same `value`, naming `what`.
pub fn agree(coll: &mut dyn Collective, value: u64, what: &str) -> Result<(), TrainError> {
    let (lo, hi) = coll.min_max(value).map_err(dist_err)?;
    if lo != hi {
        return Err(TrainError::Other(format!(
            "the ranks disagree on {what}: from {lo} to {hi} (rank {} has {value})",
            coll.world().rank
        )));
    }
    Ok(())
}

/// The slowest rank's compute time for this step over the mean rank's (1 when even): what the
/// runtime balance evens out. `compute_s` is this rank's time in the forward and backward passes.
pub fn rank_imbalance(coll: &mut dyn Collective, compute_s: f64) -> Result<f64, TrainError> {
    let mut sum = [compute_s as f32];
    coll.all_reduce_sum(&mut sum)
        .map_err(|e| TrainError::Other(format!("summing the ranks' compute times: {e}")))?;
    let (_, max_ns) = coll
        .min_max((compute_s * 1e9) as u64)
        .map_err(|e| TrainError::Other(format!("the ranks' slowest compute time: {e}")))?;
    let mean = f64::from(sum[0]) / coll.world().size.max(1) as f64;
    // The slowest is never below the mean; rounding (f32 sum, whole ns) could put it there.
    Ok(if mean > 0.0 {
        (max_ns as f64 / 1e9 / mean).max(1.0)
    } else {
        1.0
    })
}
