//! The DiT's small layers on token tensors `[B, N, D]`: a dense (linear) layer, RMSNorm (the
//! QK-norm), a parameter-free LayerNorm for AdaLN, and the SwiGLU feed-forward.

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::models::init::ParamInit;
use crate::models::nn::Compute;

/// `y = x · W + b` over the last axis; `W` is `[in, out]`.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
    /// PyTorch's default: uniform in ±1/√in for weight and bias.
    pub fn new(init: &ParamInit<B>, path: &str, din: usize, dout: usize) -> Self {
        let bound = 1.0 / (din as f32).sqrt();
        Dense {
            weight: init.uniform(&format!("{path}.weight"), [din, dout], bound),
            bias: init.uniform(&format!("{path}.bias"), [dout], bound),
        }
    }

    /// All zeros: AdaLN-Zero modulations and the output layer start as the identity / zero.
    pub fn zeros(init: &ParamInit<B>, path: &str, din: usize, dout: usize) -> Self {
        Dense {
            weight: init.constant(&format!("{path}.weight"), [din, dout], 0.0),
            bias: init.constant(&format!("{path}.bias"), [dout], 0.0),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>, c: Compute) -> Tensor<B, 3> {
        affine(x, self.weight.val(), self.bias.val(), c)
    }
}

/// `x · weight + bias` over the last axis of `[B, N, in]`; `weight` is `[in, out]`.
pub fn affine<B: Backend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    c: Compute,
) -> Tensor<B, 3> {
    let [b, n, din] = x.dims();
    let dout = weight.dims()[1];
    let y = c.up(c.down(x.reshape([b * n, din])).matmul(c.down(weight)));
    (y + bias.reshape([1, dout])).reshape([b, n, dout])
}

/// RMSNorm over the last axis with a learned scale (QK-norm on each head's queries and keys).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> RmsNorm<B> {
    pub fn new(init: &ParamInit<B>, path: &str, dim: usize) -> Self {
        RmsNorm {
            scale: init.constant(&format!("{path}.scale"), [dim], 1.0),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dim = self.scale.dims()[0];
        let rms = (x.clone().square().mean_dim(D - 1) + 1e-6).sqrt();
        let mut shape = [1usize; D];
        shape[D - 1] = dim;
        x / rms * self.scale.val().reshape(shape)
    }
}

/// LayerNorm over the last axis without scale or shift (AdaLN supplies them).
pub fn layer_norm<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    layer_norm_eps(x, 1e-6)
}

/// LayerNorm over the last axis without scale or shift, with `eps` added to the variance.
pub fn layer_norm_eps<B: Backend>(x: Tensor<B, 3>, eps: f64) -> Tensor<B, 3> {
    let mean = x.clone().mean_dim(2);
    let centred = x - mean;
    let var = centred.clone().square().mean_dim(2);
    centred / (var + eps).sqrt()
}

/// `x · (1 + scale) + shift`, the AdaLN modulation (`scale`, `shift` broadcast over tokens).
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 3>,
    scale: Tensor<B, 3>,
) -> Tensor<B, 3> {
    x * (scale + 1.0) + shift
}

/// SwiGLU: `(silu(x·W1) ⊙ x·W3) · W2`. A sum over its hidden units, so an FFN split into a
/// shared part and a per-stream part is two of these added.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    pub gate: Dense<B>,
    pub up: Dense<B>,
    pub down: Dense<B>,
}

impl<B: Backend> SwiGlu<B> {
    pub fn new(init: &ParamInit<B>, path: &str, dim: usize, hidden: usize) -> Self {
        SwiGlu {
            gate: Dense::new(init, &format!("{path}.gate"), dim, hidden),
            up: Dense::new(init, &format!("{path}.up"), dim, hidden),
            down: Dense::new(init, &format!("{path}.down"), hidden, dim),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>, c: Compute) -> Tensor<B, 3> {
        let h = silu(self.gate.forward(x.clone(), c)) * self.up.forward(x, c);
        self.down.forward(h, c)
    }
}
