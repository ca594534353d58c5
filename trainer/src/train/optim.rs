//! Optimisation pieces burn leaves to the trainer: the global gradient-norm clip (burn's clips
//! each parameter on its own; PyTorch's `clip_grad_norm_`, which training recipes assume, clips
//! them together), the exponential moving average of the weights, and AdamW built from `[train]`.

use std::collections::HashMap;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use super::config::TrainSpec;

/// AdamW from `[train]` (no per-parameter clipping: [`clip_global_norm`] does it globally).
pub fn adamw<B: AutodiffBackend, M: AutodiffModule<B>>(
    spec: &TrainSpec,
) -> OptimizerAdaptor<AdamW, M, B> {
    AdamWConfig::new()
        .with_beta_1(spec.betas[0] as f32)
        .with_beta_2(spec.betas[1] as f32)
        .with_epsilon(spec.eps as f32)
        .with_weight_decay(spec.weight_decay as f32)
        .init()
}

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let f = self.factor.clone().reshape([1; D]);
            self.grads.register::<B::InnerBackend, D>(param.id, g * f);
        }
    }
}

/// The L2 norm of every gradient of `model` together, as a one-value tensor (no host sync).
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
    device: &B::Device,
) -> Tensor<B::InnerBackend, 1> {
    let mut v = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut v);
    v.total.unwrap_or_else(|| Tensor::zeros([1], device)).sqrt()
}

/// Scales every gradient by `min(1, max_norm / norm)` given the global `norm`; returns the
/// norm. Stays on the device (the factor is a tensor).
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
    device: &B::Device,
) -> Tensor<B::InnerBackend, 1> {
    let norm = grad_norm::<B, M>(model, grads, device);
    if max_norm > 0.0 {
        let factor = (norm.clone() + 1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        model.visit(&mut Scale::<B> { grads, factor });
    }
    norm
}

/// Multiplies every gradient by `factor` (averaging accumulated micro-batches).
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    factor: f64,
    device: &B::Device,
) {
    let factor = Tensor::<B::InnerBackend, 1>::from_floats([factor as f32], device);
    model.visit(&mut Scale::<B> { grads, factor });
}

/// Flattened current values by parameter id.
struct Collect<B: Backend> {
    values: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.values.insert(param.id, t.reshape([n]));
    }
}

struct Blend<B: Backend> {
    current: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, ema, mapper) = param.consume();
        let ema = match self.current.remove(&id) {
            Some(cur) => {
                let shape = ema.shape();
                ema.mul_scalar(self.decay) + cur.reshape(shape).mul_scalar(1.0 - self.decay)
            }
            None => ema,
        };
        Param::from_mapped_value(id, ema, mapper)
    }
}

/// An exponential moving average of a model's weights, kept without autodiff. The decay ramps
/// up as `min(decay, (1 + n) / (10 + n))` after `n` updates, so early averages are not
/// dominated by the random initialisation.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    pub model: M,
    pub decay: f64,
    pub updates: u64,
}

impl<M> Ema<M> {
    pub fn new(model: M, decay: f64, updates: u64) -> Self {
        Ema {
            model,
            decay,
            updates,
        }
    }

    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// Moves the average towards `model`'s weights.
    pub fn update<B>(&mut self, model: &M)
    where
        B: Backend,
        M: Module<B>,
    {
        let mut c = Collect::<B> {
            values: HashMap::new(),
        };
        model.visit(&mut c);
        let decay = self.current_decay();
        let mut blend = Blend {
            current: c.values,
            decay,
        };
        self.model = self.model.clone().map(&mut blend);
        self.updates += 1;
    }
}
