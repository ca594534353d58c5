//! The optional adversarial term: a 3D PatchGAN discriminator (strided 3D convolutions with
//! LeakyReLU, one logit per space-time patch) whose convolutions are spectrally normalised
//! (Miyato et al. 2018), trained with the hinge loss.
//!
//! Spectral norm keeps, per convolution, the estimate `u` of the weight matrix's leading left
//! singular vector as a parameter without gradient (saved with checkpoints, so a resumed run
//! continues the same estimates); each training forward does one power iteration from it on the
//! detached weight and divides the weight by σ = uᵀWv. With u and v held constant, autodiff of
//! σ gives the exact gradient of the top singular value (u vᵀ).

use burn::module::{Module, Param};
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::models::init::{param_id, ParamInit};

/// `[loss.adversarial]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscConfig {
    /// Weight of the generator's adversarial term.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Optimizer step from which the discriminator trains and its term counts.
    #[serde(default)]
    pub start_step: u64,
    /// Channels of the first layer (doubled per layer).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Strided layers.
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// Learning rate of the discriminator (AdamW, same betas as the VAE's).
    #[serde(default = "default_lr")]
    pub lr: f64,
}

fn default_weight() -> f64 {
    0.1
}
fn default_channels() -> usize {
    64
}
fn default_layers() -> usize {
    3
}
fn default_lr() -> f64 {
    1e-4
}

/// A 3D convolution whose weight is divided by its spectral norm.
#[derive(Module, Debug)]
pub struct SnConv3d<B: Backend> {
    pub weight: Param<Tensor<B, 5>>,
    pub bias: Param<Tensor<B, 1>>,
    /// Leading left singular vector estimate, `[out]`; no gradient.
    pub u: Param<Tensor<B, 1>>,
    pub stride: [usize; 3],
}

impl<B: Backend> SnConv3d<B> {
    pub fn new(
        init: &ParamInit<B>,
        path: &str,
        cin: usize,
        cout: usize,
        stride: [usize; 3],
    ) -> Self {
        let fan_in = cin * 27;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let u = init
            .uniform::<1>(&format!("{path}.u"), [cout], 1.0)
            .val()
            .set_require_grad(false);
        let u = normalize(u);
        SnConv3d {
            weight: init.uniform(&format!("{path}.weight"), [cout, cin, 3, 3, 3], bound),
            bias: init.constant(&format!("{path}.bias"), [cout], 0.0),
            u: Param::initialized(param_id(&format!("{path}.u")), u.detach()),
            stride,
        }
    }

    /// The weight over its spectral norm, and the next `u` (one power iteration).
    pub fn normalized_weight(&self) -> (Tensor<B, 5>, Tensor<B, 1>) {
        let w = self.weight.val();
        let [o, i, kt, kh, kw] = w.dims();
        let mat = w.clone().reshape([o, i * kt * kh * kw]);
        let m = mat.clone().detach();
        let u0 = self.u.val().detach().reshape([1, o]);
        let v = normalize(u0.matmul(m.clone()).reshape([i * kt * kh * kw]));
        let u = normalize(
            m.matmul(v.clone().reshape([i * kt * kh * kw, 1]))
                .reshape([o]),
        );
        let sigma = u
            .clone()
            .reshape([1, o])
            .matmul(mat)
            .matmul(v.reshape([i * kt * kh * kw, 1]))
            .reshape([1]);
        (w / sigma.reshape([1, 1, 1, 1, 1]), u)
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> (Tensor<B, 5>, Tensor<B, 1>) {
        let (w, u) = self.normalized_weight();
        let y = conv3d(
            x,
            w,
            Some(self.bias.val()),
            ConvOptions::new(self.stride, [1, 1, 1], [1, 1, 1], 1),
        );
        (y, u)
    }
}

fn normalize<B: Backend>(v: Tensor<B, 1>) -> Tensor<B, 1> {
    let n = v.clone().square().sum().sqrt().clamp_min(1e-12);
    v / n
}

/// The discriminator: `layers` strided spectral-norm convolutions (space always halved, time
/// from the second layer on) with LeakyReLU(0.2), then a 3×3×3 convolution to one logit per patch.
#[derive(Module, Debug)]
pub struct PatchGan3d<B: Backend> {
    pub convs: Vec<SnConv3d<B>>,
}

impl<B: Backend> PatchGan3d<B> {
    pub fn new(config: &DiscConfig, device: &B::Device, seed: u64) -> Self {
        let init = ParamInit::new(device, seed ^ 0xD15C);
        let mut convs = Vec::new();
        let mut cin = 3;
        let mut c = config.channels.max(1);
        for l in 0..config.layers.max(1) {
            let st = if l == 0 { 1 } else { 2 };
            convs.push(SnConv3d::new(
                &init,
                &format!("disc.convs.{l}"),
                cin,
                c,
                [st, 2, 2],
            ));
            cin = c;
            c *= 2;
        }
        let last = convs.len();
        convs.push(SnConv3d::new(
            &init,
            &format!("disc.convs.{last}"),
            cin,
            1,
            [1, 1, 1],
        ));
        PatchGan3d { convs }
    }

    /// Patch logits, and the power-iteration estimates to store with [`PatchGan3d::with_u`]
    /// after a discriminator step.
    pub fn forward(&self, x: Tensor<B, 5>) -> (Tensor<B, 5>, Vec<Tensor<B, 1>>) {
        let mut h = x;
        let mut us = Vec::with_capacity(self.convs.len());
        let n = self.convs.len();
        for (i, conv) in self.convs.iter().enumerate() {
            let (y, u) = conv.forward(h);
            us.push(u);
            h = if i + 1 < n { leaky_relu(y, 0.2) } else { y };
        }
        (h, us)
    }

    /// The same discriminator with new singular-vector estimates.
    pub fn with_u(mut self, us: Vec<Tensor<B, 1>>) -> Self {
        for (conv, u) in self.convs.iter_mut().zip(us) {
            let id = conv.u.id;
            conv.u = Param::initialized(id, u.detach());
        }
        self
    }
}

/// Hinge loss of the discriminator: mean(relu(1 − D(real))) + mean(relu(1 + D(fake))).
pub fn hinge_d<B: Backend>(real: Tensor<B, 5>, fake: Tensor<B, 5>) -> Tensor<B, 1> {
    (real.neg() + 1.0).clamp_min(0.0).mean() + (fake + 1.0).clamp_min(0.0).mean()
}

/// Generator's adversarial term: −mean(D(fake)).
pub fn hinge_g<B: Backend>(fake: Tensor<B, 5>) -> Tensor<B, 1> {
    fake.mean().neg()
}
