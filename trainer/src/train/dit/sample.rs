//! Sampling: Euler integration of the learned velocity from noise (t = 1) to latents (t = 0) on
//! the shifted time grid of [`super::flow::euler_times`], with classifier-free guidance
//! `v = v_null + g·(v_text − v_null)` (one forward over the caption and null-caption batches
//! together). The starting noise is a function of the seed, so a seed gives the same latents.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::flow::euler_times;
use crate::models::dit::Dit;
use crate::models::init::HostRng;
use crate::models::nn::Compute;
use crate::train::TrainError;

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSpec {
    /// Euler steps.
    pub steps: usize,
    /// Guidance scale g; 1 = the conditional model alone (no null-caption pass).
    pub cfg: f64,
    /// Timestep shift k of the time grid (1 = none; `FlowConfig::shift_for` gives training's).
    pub shift: f64,
    pub seed: u64,
}

/// Latents `shape` = `[B, C, T, H, W]` for captions `text` `[B, L, D]` with `mask` `[B, L]`.
pub fn sample<B: Backend>(
    model: &Dit<B>,
    shape: [usize; 5],
    text: Tensor<B, 3>,
    mask: Tensor<B, 2>,
    spec: &SampleSpec,
    c: Compute,
) -> Result<Tensor<B, 5>, TrainError> {
    if spec.steps == 0 {
        return Err(TrainError::Config("sampling needs at least 1 step".into()));
    }
    let device = text.device();
    let [b, l, _] = text.dims();
    let n: usize = shape.iter().product();
    let noise = HostRng::for_name(spec.seed, "dit-sample").normals(n);
    let mut x = Tensor::<B, 5>::from_data(TensorData::new(noise, shape), &device);
    let guided = spec.cfg != 1.0;
    let (text, mask) = if guided {
        let (nt, nm) = model.null_caption(b, l);
        (
            Tensor::cat(vec![text, nt], 0),
            Tensor::cat(vec![mask, nm], 0),
        )
    } else {
        (text, mask)
    };
    let times = euler_times(spec.steps, spec.shift);
    for w in times.windows(2) {
        let (t, next) = (w[0], w[1]);
        let v = if guided {
            let rows = 2 * b;
            let tt = Tensor::<B, 1>::full([rows], t as f32, &device);
            let both = model.forward(
                Tensor::cat(vec![x.clone(), x.clone()], 0),
                tt,
                text.clone(),
                mask.clone(),
                c,
            )?;
            let cond = both.clone().narrow(0, 0, b);
            let null = both.narrow(0, b, b);
            null.clone() + (cond - null) * spec.cfg
        } else {
            let tt = Tensor::<B, 1>::full([b], t as f32, &device);
            model.forward(x.clone(), tt, text.clone(), mask.clone(), c)?
        };
        x = x + v * (next - t);
    }
    Ok(x)
}
