//! Sampling: Euler (or Heun) integration of the learned velocity from noise (t = 1) to latents
//! (t = 0) on the shifted time grid of [`super::flow::euler_times`], with classifier-free guidance
//! `v = v_null + g·(v_text − v_null)` (one forward over the caption and null-caption batches
//! together). The starting noise is a function of the seed, so a seed gives the same latents.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::flow::euler_times;
use crate::models::dit::condition::with_condition;
use crate::models::dit::Dit;
use crate::models::init::HostRng;
use crate::models::nn::Compute;
use crate::train::TrainError;

/// The ODE solver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Solver {
    /// One velocity per step.
    #[default]
    Euler,
    /// Heun's second-order method: an Euler predictor, then the mean of the velocities at both
    /// ends (two model passes per step; the flow's velocity is defined at t = 0, so the last
    /// step is corrected too).
    Heun,
}

impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "euler" => Ok(Solver::Euler),
            "heun" => Ok(Solver::Heun),
            other => Err(format!("solver {other:?}: euler or heun")),
        }
    }
}

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSpec {
    /// Steps of the time grid.
    pub steps: usize,
    /// Guidance scale g; 1 = the conditional model alone (no null-caption pass).
    pub cfg: f64,
    /// Timestep shift k of the time grid (1 = none; `FlowConfig::shift_for` gives training's).
    pub shift: f64,
    pub seed: u64,
    pub solver: Solver,
    /// The frame rate an fps-conditioned model is told (`None`: unknown).
    pub fps: Option<f32>,
}

/// Latents `shape` = `[B, C, T, H, W]` for captions `text` `[B, L, D]` with `mask` `[B, L]`;
/// with `first` (`[B, C, 1, H, W]`, clean latents) an image-conditioned model continues those
/// first frames (image-to-video).
pub fn sample<B: Backend>(
    model: &Dit<B>,
    shape: [usize; 5],
    text: Tensor<B, 3>,
    mask: Tensor<B, 2>,
    first: Option<Tensor<B, 5>>,
    spec: &SampleSpec,
    c: Compute,
) -> Result<Tensor<B, 5>, TrainError> {
    if spec.steps == 0 {
        return Err(TrainError::Config("sampling needs at least 1 step".into()));
    }
    let conditioned = model.in_channels > model.latent_channels;
    if first.is_some() && !conditioned {
        return Err(TrainError::Config(
            "a first frame was given but this DiT was trained without [model] image_condition"
                .into(),
        ));
    }
    // The model's input at x: with image conditioning, the condition channels beside it.
    let input = |x: Tensor<B, 5>, rows: usize| {
        if !conditioned {
            return x;
        }
        let f = first
            .clone()
            .map(|f| Tensor::cat(vec![f; rows / shape[0].max(1)], 0));
        with_condition(x, f, &vec![true; rows])
    };
    let device = text.device();
    let [b, l, _] = text.dims();
    let n: usize = shape.iter().product();
    let noise = HostRng::for_name(spec.seed, "dit-sample").normals(n);
    let mut x = Tensor::<B, 5>::from_data(TensorData::new(noise, shape), &device);
    let guided = spec.cfg != 1.0;
    let fps = spec.fps.unwrap_or(0.0);
    let (text, mask) = if guided {
        let (nt, nm) = model.null_caption(b, l);
        (
            Tensor::cat(vec![text, nt], 0),
            Tensor::cat(vec![mask, nm], 0),
        )
    } else {
        (text, mask)
    };
    // The guided velocity at (x, t).
    let velocity = |x: &Tensor<B, 5>, t: f64| -> Result<Tensor<B, 5>, TrainError> {
        Ok(if guided {
            let rows = 2 * b;
            let tt = Tensor::<B, 1>::full([rows], t as f32, &device);
            let both = model.forward(
                input(Tensor::cat(vec![x.clone(), x.clone()], 0), rows),
                tt,
                text.clone(),
                mask.clone(),
                Some(&vec![fps; rows]),
                c,
            )?;
            let cond = both.clone().narrow(0, 0, b);
            let null = both.narrow(0, b, b);
            null.clone() + (cond - null) * spec.cfg
        } else {
            let tt = Tensor::<B, 1>::full([b], t as f32, &device);
            let fps = vec![fps; b];
            model.forward(
                input(x.clone(), b),
                tt,
                text.clone(),
                mask.clone(),
                Some(&fps),
                c,
            )?
        })
    };
    let times = euler_times(spec.steps, spec.shift);
    for w in times.windows(2) {
        let (t, next) = (w[0], w[1]);
        let v = velocity(&x, t)?;
        let euler = x.clone() + v.clone() * (next - t);
        x = match spec.solver {
            Solver::Heun => {
                let v_next = velocity(&euler, next)?;
                x + (v + v_next) * (0.5 * (next - t))
            }
            _ => euler,
        };
    }
    Ok(x)
}
