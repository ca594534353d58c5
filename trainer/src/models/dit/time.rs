//! The timestep's conditioning vector: sinusoidal features of `1000·t` (the DiT convention, so
//! the frequencies suit t in [0, 1]) through a two-layer SiLU MLP.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::layers::Dense;
use crate::models::init::ParamInit;
use crate::models::nn::Compute;

#[derive(Module, Debug)]
pub struct TimestepEmbed<B: Backend> {
    pub fc1: Dense<B>,
    pub fc2: Dense<B>,
    pub features: usize,
}

impl<B: Backend> TimestepEmbed<B> {
    pub fn new(init: &ParamInit<B>, path: &str, features: usize, hidden: usize) -> Self {
        TimestepEmbed {
            fc1: Dense::new(init, &format!("{path}.fc1"), features, hidden),
            fc2: Dense::new(init, &format!("{path}.fc2"), hidden, hidden),
            features,
        }
    }

    /// `t`: `[B, S]` in [0, 1] (S = 1, or one per token when samples are packed) → `[B, S, D]`.
    pub fn forward(&self, t: Tensor<B, 2>, c: Compute) -> Tensor<B, 3> {
        let h = self.fc1.forward(sinusoid(t, self.features), c);
        self.fc2.forward(silu(h), c)
    }
}

/// A micro-condition's conditioning vector (the token grid's frames, height and width; the frame
/// rate): sinusoidal features of each of its `axes` values through a two-layer SiLU MLP whose
/// last layer starts at zero, so enabling one changes nothing until it is trained.
#[derive(Module, Debug)]
pub struct MicroEmbed<B: Backend> {
    pub fc1: Dense<B>,
    pub fc2: Dense<B>,
    pub features: usize,
}

impl<B: Backend> MicroEmbed<B> {
    pub fn new(
        init: &ParamInit<B>,
        path: &str,
        axes: usize,
        features: usize,
        hidden: usize,
    ) -> Self {
        MicroEmbed {
            fc1: Dense::new(init, &format!("{path}.fc1"), axes * features, hidden),
            fc2: Dense::zeros(init, &format!("{path}.fc2"), hidden, hidden),
            features,
        }
    }

    /// `values`: `[B, S, axes]` (one set per sample, or one per token when samples are packed)
    /// → `[B, S, D]`.
    pub fn forward(&self, values: Tensor<B, 3>, c: Compute) -> Tensor<B, 3> {
        let [b, s, axes] = values.dims();
        // sinusoid() scales by 1000 for t in [0, 1]: values are divided back, so the angles are
        // value × frequency, frequencies from 1 to 1e-4.
        let parts: Vec<Tensor<B, 3>> = (0..axes)
            .map(|k| {
                let axis = values.clone().narrow(2, k, 1).reshape([b, s]) / 1000.0;
                sinusoid(axis, self.features)
            })
            .collect();
        let h = self.fc1.forward(Tensor::cat(parts, 2), c);
        self.fc2.forward(silu(h), c)
    }
}

/// `[B, S]` → `[B, S, features]`: cos and sin of `1000·t · 10000^(−k/half)`.
pub fn sinusoid<B: Backend>(t: Tensor<B, 2>, features: usize) -> Tensor<B, 3> {
    let [b, s] = t.dims();
    let half = features / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|k| (-(10_000f64.ln()) * k as f64 / half as f64).exp() as f32)
        .collect();
    let freqs =
        Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).reshape([1, 1, half]);
    let angles = t.reshape([b, s, 1]).mul_scalar(1000.0) * freqs;
    let mut parts = vec![angles.clone().cos(), angles.sin()];
    if features % 2 == 1 {
        parts.push(Tensor::zeros([b, s, 1], &device));
    }
    Tensor::cat(parts, 2)
}
