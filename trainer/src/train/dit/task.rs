//! The DiT's training task: a batch of clean latents and caption embeddings → noised latents at
//! sampled timesteps (some captions dropped to the null caption) → predicted velocity → MSE
//! against `ε − x0` ([`super::flow`] has the convention).

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use super::flow::{logit_normal, shift_time, FlowConfig};
use super::packed::{packed_flops, packed_loss_via, PackedBatch};
use crate::models::dit::condition::with_condition;
use crate::models::dit::recompute::{self, RecomputePlan};
use crate::models::dit::{Dit, DitConfig, TokenInput};
use crate::models::init::HostRng;
use crate::models::nn::Compute;
use crate::train::overlap::Ready;
use crate::train::trainer::{StepAt, StepGradients, StepLoss, Task};
use crate::train::TrainError;

/// Clean latents `[B, C, T, H, W]` with their captions' token embeddings `[B, L, D_text]` and
/// mask `[B, L]` (1 = token, 0 = padding), flat and row-major, and each clip's frame rate.
#[derive(Debug, Clone)]
pub struct DitBatch {
    pub ids: Vec<String>,
    pub shape: [usize; 5],
    pub latents: Vec<f32>,
    pub text_shape: [usize; 3],
    pub text: Vec<f32>,
    pub mask: Vec<f32>,
    /// Frames per second of each clip, 0 where unknown (what an fps-conditioned model sees).
    pub fps: Vec<f32>,
}

impl DitBatch {
    /// Checks that the lengths agree with the shapes; frame rates unknown ([`DitBatch::with_fps`]
    /// gives them).
    pub fn new(
        ids: Vec<String>,
        shape: [usize; 5],
        latents: Vec<f32>,
        text_shape: [usize; 3],
        text: Vec<f32>,
        mask: Vec<f32>,
    ) -> Result<Self, TrainError> {
        let [b, ..] = shape;
        let [bt, l, _] = text_shape;
        if ids.len() != b
            || bt != b
            || latents.len() != shape.iter().product::<usize>()
            || text.len() != text_shape.iter().product::<usize>()
            || mask.len() != b * l
        {
            return Err(TrainError::Data(format!(
                "DiT batch: {} ids, latents {shape:?} ({} values), text {text_shape:?} ({} values), mask of {}: they disagree",
                ids.len(),
                latents.len(),
                text.len(),
                mask.len()
            )));
        }
        Ok(DitBatch {
            ids,
            shape,
            latents,
            text_shape,
            text,
            mask,
            fps: vec![0.0; b],
        })
    }

    /// The batch with each clip's frame rate (0 = unknown).
    pub fn with_fps(mut self, fps: Vec<f32>) -> Result<Self, TrainError> {
        if fps.len() != self.len() || fps.iter().any(|f| !f.is_finite() || *f < 0.0) {
            return Err(TrainError::Data(format!(
                "DiT batch of {} clips given frame rates {fps:?}",
                self.len()
            )));
        }
        self.fps = fps;
        Ok(self)
    }

    pub fn len(&self) -> usize {
        self.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// (latents, text, mask) on `device`.
    pub fn tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 5>, Tensor<B, 3>, Tensor<B, 2>) {
        let [b, l, _] = self.text_shape;
        (
            Tensor::from_data(TensorData::new(self.latents.clone(), self.shape), device),
            Tensor::from_data(TensorData::new(self.text.clone(), self.text_shape), device),
            Tensor::from_data(TensorData::new(self.mask.clone(), [b, l]), device),
        )
    }
}

/// What is drawn for a batch: per sample a timestep and whether its caption is dropped, and the
/// noise `ε` (batch-shaped, flat).
#[derive(Debug, Clone)]
pub struct Draws {
    pub t: Vec<f32>,
    pub drop: Vec<bool>,
    pub noise: Vec<f32>,
    /// Whether each sample is conditioned on its first frame (used by image-conditioned models).
    pub i2v: Vec<bool>,
}

/// One sample's draws.
#[derive(Debug, Clone)]
pub struct Draw {
    pub t: f32,
    pub drop: bool,
    /// `per` values.
    pub noise: Vec<f32>,
    pub i2v: bool,
}

/// The draws of the sample `id` with `per` latent values: a function of (seed, `key`, clip id)
/// alone, so a clip gets the same draws whichever rank, batch position or packed row it lands in.
pub fn draw_one(id: &str, per: usize, flow: &FlowConfig, shift: f64, seed: u64, key: &str) -> Draw {
    let mut rng = HostRng::for_name(seed, &format!("dit/{key}/{id}"));
    let drop = f64::from(rng.uniform()) < flow.cfg_dropout;
    let t = logit_normal(&mut rng, flow.logit_mean, flow.logit_std);
    let t = shift_time(t, shift) as f32;
    let noise = rng.normals(per);
    let i2v = f64::from(rng.uniform()) < flow.i2v_rate;
    Draw {
        t,
        drop,
        noise,
        i2v,
    }
}

/// The draws for `batch` ([`draw_one`] of each sample).
pub fn draws(batch: &DitBatch, flow: &FlowConfig, shift: f64, seed: u64, key: &str) -> Draws {
    let per: usize = batch.shape[1..].iter().product();
    let mut d = Draws {
        t: Vec::new(),
        drop: Vec::new(),
        noise: Vec::with_capacity(per * batch.len()),
        i2v: Vec::new(),
    };
    for id in &batch.ids {
        let one = draw_one(id, per, flow, shift, seed, key);
        d.drop.push(one.drop);
        d.t.push(one.t);
        d.noise.extend(one.noise);
        d.i2v.push(one.i2v);
    }
    d
}

/// What one micro-batch of DiT training holds: latents of one shape batched, or samples of any
/// shapes packed into rows ([`PackedBatch`], `[data] pack_tokens`).
#[derive(Debug, Clone)]
pub enum DitInput {
    Plain(DitBatch),
    Packed(PackedBatch),
}

impl From<DitBatch> for DitInput {
    fn from(b: DitBatch) -> Self {
        DitInput::Plain(b)
    }
}

impl DitInput {
    pub fn len(&self) -> usize {
        match self {
            DitInput::Plain(b) => b.len(),
            DitInput::Packed(p) => p.samples.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The flow-matching loss of `model` on `batch` with `draws`: mean of `(v − (ε − x0))²`. An
/// image-conditioned model sees the first clean latent frame of the samples `draws.i2v` marks.
pub fn flow_loss<B: Backend>(
    model: &Dit<B>,
    batch: &DitBatch,
    draws: &Draws,
    c: Compute,
    device: &B::Device,
) -> Result<Tensor<B, 1>, TrainError> {
    flow_loss_via(model, batch, draws, device, &mut |x| {
        model.forward_tokens(x, c)
    })
}

/// [`flow_loss`] with the model's token sequences run by `tokens`.
pub fn flow_loss_via<B: Backend>(
    model: &Dit<B>,
    batch: &DitBatch,
    draws: &Draws,
    device: &B::Device,
    tokens: &mut dyn FnMut(TokenInput<B>) -> Tensor<B, 3>,
) -> Result<Tensor<B, 1>, TrainError> {
    let (x0, text, mask) = batch.tensors::<B>(device);
    let b = batch.len();
    let eps = Tensor::<B, 5>::from_data(TensorData::new(draws.noise.clone(), batch.shape), device);
    let t = Tensor::<B, 1>::from_data(TensorData::new(draws.t.clone(), [b]), device);
    let t5 = t.clone().reshape([b, 1, 1, 1, 1]);
    let xt = x0.clone() * (t5.clone().neg() + 1.0) + eps.clone() * t5;
    let (text, mask) = model.drop_text(text, mask, &draws.drop);
    let input = if model.in_channels > model.latent_channels {
        with_condition(xt, Some(x0.clone().narrow(2, 0, 1)), &draws.i2v)
    } else {
        xt
    };
    let v = model.forward_via(input, t, text, mask, Some(&batch.fps), tokens)?;
    Ok((v - (eps - x0)).square().mean())
}

pub struct DitTask<B: AutodiffBackend> {
    pub config: DitConfig,
    pub flow: FlowConfig,
    pub compute: Compute,
    /// Blocks whose activations are recomputed in the backward pass.
    pub recompute: Option<RecomputePlan>,
    device: B::Device,
}

impl<B: AutodiffBackend> DitTask<B> {
    pub fn new(config: DitConfig, flow: FlowConfig, compute: Compute, device: &B::Device) -> Self {
        DitTask {
            config,
            flow,
            compute,
            recompute: None,
            device: device.clone(),
        }
    }

    /// The task recomputing the activations of the blocks `plan` names.
    pub fn with_recompute(mut self, plan: Option<RecomputePlan>) -> Self {
        self.recompute = plan;
        self
    }

    /// The step's loss, its forward passes run by `tokens`.
    fn loss_via(
        &self,
        model: &Dit<B>,
        batch: &DitInput,
        at: StepAt,
        tokens: &mut dyn FnMut(TokenInput<B>) -> Tensor<B, 3>,
    ) -> Result<Tensor<B, 1>, TrainError> {
        let key = format!("{}", at.step);
        match batch {
            DitInput::Plain(batch) => {
                let shift = self.flow.shift_for(self.tokens(batch)?);
                let d = draws(batch, &self.flow, shift, at.seed, &key);
                flow_loss_via(model, batch, &d, &self.device, tokens)
            }
            DitInput::Packed(p) => packed_loss_via(
                model,
                &self.config,
                p,
                &self.flow,
                at.seed,
                &key,
                &self.device,
                tokens,
            ),
        }
    }

    /// Video tokens of one sample of `batch`.
    pub fn tokens(&self, batch: &DitBatch) -> Result<usize, TrainError> {
        let [_, _, t, h, w] = batch.shape;
        Ok(self.config.token_grid(t, h, w)?.iter().product())
    }

    /// The loss of `batch`, its gradients handed to `ready` piece by piece as `plan` cuts the
    /// backward pass ([`recompute::backward_pieces`]); the returned gradients are empty.
    fn pieces(
        &self,
        model: &Dit<B>,
        batch: &DitInput,
        at: StepAt,
        plan: &RecomputePlan,
        ready: &mut Ready<'_>,
    ) -> Result<StepGradients<B>, TrainError> {
        let c = self.compute;
        let mut tapes = Vec::new();
        let loss = self.loss_via(model, batch, at, &mut |x| {
            let (velocity, tape) = model.forward_tokens_recompute(x, c, plan);
            tapes.push(tape);
            velocity
        })?;
        let total = loss.clone().detach().inner();
        recompute::backward_pieces(model, loss, tapes, ready)?;
        Ok(StepGradients {
            parts: vec![total.clone()],
            total,
            grads: GradientsParams::new(),
        })
    }
}

impl<B: AutodiffBackend> Task<B> for DitTask<B> {
    type Model = Dit<B>;
    type Batch = DitInput;

    fn kind(&self) -> &'static str {
        "dit"
    }

    fn part_names(&self) -> Vec<String> {
        vec!["velocity_mse".into()]
    }

    fn loss(
        &mut self,
        model: &Dit<B>,
        batch: &DitInput,
        at: StepAt,
    ) -> Result<StepLoss<B>, TrainError> {
        let c = self.compute;
        let total = self.loss_via(model, batch, at, &mut |x| model.forward_tokens(x, c))?;
        let parts = vec![total.clone().detach().inner()];
        Ok(StepLoss { total, parts })
    }

    fn gradients(
        &mut self,
        model: &Dit<B>,
        batch: &DitInput,
        at: StepAt,
    ) -> Result<StepGradients<B>, TrainError> {
        let Some(plan) = self.recompute.clone() else {
            return Ok(self.loss(model, batch, at)?.into_gradients(model));
        };
        let mut accum = GradientsAccumulator::<Dit<B>>::new();
        let mut g = self.pieces(model, batch, at, &plan, &mut |piece| {
            accum.accumulate(model, piece);
            Ok(())
        })?;
        g.grads = accum.grads();
        Ok(g)
    }

    /// The output layer's gradients, then each block's from the last to the first, then the
    /// embeddings' (every block its own piece, recomputed ones as the plan says).
    fn gradients_streamed(
        &mut self,
        model: &Dit<B>,
        batch: &DitInput,
        at: StepAt,
        ready: &mut Ready<'_>,
    ) -> Result<StepGradients<B>, TrainError> {
        let plan = match self.recompute.clone() {
            Some(plan) => plan,
            None => RecomputePlan::new(model.blocks.len(), &[])?,
        };
        self.pieces(model, batch, at, &plan.per_block(), ready)
    }

    fn samples(&self, batch: &DitInput) -> usize {
        batch.len()
    }

    fn flops(&self, batch: &DitInput) -> f64 {
        match batch {
            DitInput::Plain(batch) => {
                let tokens = self.tokens(batch).unwrap_or(0);
                3.0 * self.config.forward_flops(tokens, batch.text_shape[1]) * batch.len() as f64
            }
            DitInput::Packed(p) => packed_flops(&self.config, p),
        }
    }
}
