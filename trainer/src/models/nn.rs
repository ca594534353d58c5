//! Layers the video models share: a causal 3D convolution, a per-frame group norm, per-frame
//! self-attention and nearest-neighbour resampling. Built from burn's tensor operations (burn's
//! autodiff derives every backward), on tensors laid out `[B, C, T, H, W]`.
//!
//! Causality is the contract: output frame `t` depends on input frames `0..=t` only. Hence the
//! temporal padding repeats the first frame in front (never frames from the future), and the
//! norm and attention work within each frame (statistics over time would leak the future into
//! the first frames).

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, Tensor};

use super::init::ParamInit;

/// The precision of convolutions and matrix products. Parameters, norms and losses stay in f32
/// (the master weights); `Bf16`/`F16` cast the operands of the heavy operations, as autocast does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compute {
    pub half: Option<FloatDType>,
}

impl Compute {
    pub const F32: Compute = Compute { half: None };

    /// `t` in the compute precision (an operand of a heavy operation).
    pub fn down<B: Backend, const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B, D> {
        match self.half {
            Some(dt) => t.cast(dt),
            None => t,
        }
    }

    /// A heavy operation's result back in f32.
    pub fn up<B: Backend, const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B, D> {
        match self.half {
            Some(_) => t.cast(FloatDType::F32),
            None => t,
        }
    }
}

/// A 3D convolution that is causal in time: `kt - 1` copies of the first frame are put in front
/// (so a one-frame clip is convolved with itself), space is zero-padded to keep its size (before
/// the stride).
#[derive(Module, Debug)]
pub struct CausalConv3d<B: Backend> {
    pub weight: Param<Tensor<B, 5>>,
    pub bias: Param<Tensor<B, 1>>,
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
}

impl<B: Backend> CausalConv3d<B> {
    pub fn new(
        init: &ParamInit<B>,
        path: &str,
        channels: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
    ) -> Self {
        let [cin, cout] = channels;
        let fan_in = cin * kernel.iter().product::<usize>();
        let bound = 1.0 / (fan_in as f32).sqrt();
        CausalConv3d {
            weight: init.uniform(
                &format!("{path}.weight"),
                [cout, cin, kernel[0], kernel[1], kernel[2]],
                bound,
            ),
            bias: init.uniform(&format!("{path}.bias"), [cout], bound),
            kernel,
            stride,
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
        let [kt, kh, kw] = self.kernel;
        let x = causal_pad(x, kt - 1);
        let y = conv3d(
            c.down(x),
            c.down(self.weight.val()),
            Some(c.down(self.bias.val())),
            ConvOptions::new(self.stride, [0, kh / 2, kw / 2], [1, 1, 1], 1),
        );
        c.up(y)
    }
}

/// `x` with `n` copies of its first frame in front.
pub fn causal_pad<B: Backend>(x: Tensor<B, 5>, n: usize) -> Tensor<B, 5> {
    if n == 0 {
        return x;
    }
    let first = x.clone().narrow(2, 0, 1);
    Tensor::cat(vec![first.repeat_dim(2, n), x], 2)
}

/// Group normalisation within each frame: statistics over (channels of a group, H, W) for every
/// (clip, frame), then a per-channel scale and shift.
#[derive(Module, Debug)]
pub struct FrameGroupNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
    pub groups: usize,
}

impl<B: Backend> FrameGroupNorm<B> {
    /// `groups` is lowered to the largest divisor of `channels` not above it.
    pub fn new(init: &ParamInit<B>, path: &str, channels: usize, groups: usize) -> Self {
        let groups = (1..=groups.max(1).min(channels))
            .rev()
            .find(|&g| channels.is_multiple_of(g))
            .unwrap_or(1);
        FrameGroupNorm {
            gamma: init.constant(&format!("{path}.gamma"), [channels], 1.0),
            beta: init.constant(&format!("{path}.beta"), [channels], 0.0),
            groups,
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let [b, c, t, h, w] = x.dims();
        let g = self.groups;
        let xg = x.reshape([b, g, c / g, t, h * w]);
        let mean = xg.clone().mean_dim(4).mean_dim(2);
        let centred = xg - mean;
        let var = centred.clone().square().mean_dim(4).mean_dim(2);
        let normed = (centred / (var + 1e-6).sqrt()).reshape([b, c, t, h, w]);
        normed * self.gamma.val().reshape([1, c, 1, 1, 1])
            + self.beta.val().reshape([1, c, 1, 1, 1])
    }
}

/// Single-head self-attention over the pixels of each frame (no mixing across time), with a
/// residual connection, as the mid block of image VAEs has.
#[derive(Module, Debug)]
pub struct FrameAttention<B: Backend> {
    pub norm: FrameGroupNorm<B>,
    pub qkv: CausalConv3d<B>,
    pub proj: CausalConv3d<B>,
}

impl<B: Backend> FrameAttention<B> {
    pub fn new(init: &ParamInit<B>, path: &str, channels: usize, groups: usize) -> Self {
        FrameAttention {
            norm: FrameGroupNorm::new(init, &format!("{path}.norm"), channels, groups),
            qkv: CausalConv3d::new(
                init,
                &format!("{path}.qkv"),
                [channels, 3 * channels],
                [1, 1, 1],
                [1, 1, 1],
            ),
            proj: CausalConv3d::new(
                init,
                &format!("{path}.proj"),
                [channels, channels],
                [1, 1, 1],
                [1, 1, 1],
            ),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, comp: Compute) -> Tensor<B, 5> {
        let [b, c, t, h, w] = x.dims();
        let qkv = self.qkv.forward(self.norm.forward(x.clone()), comp);
        // [B, 3C, T, H, W] → [B·T, H·W, 3C]
        let tokens = qkv.permute([0, 2, 3, 4, 1]).reshape([b * t, h * w, 3 * c]);
        let q = tokens.clone().narrow(2, 0, c);
        let k = tokens.clone().narrow(2, c, c);
        let v = tokens.narrow(2, 2 * c, c);
        let scores = comp
            .up(comp.down(q).matmul(comp.down(k).swap_dims(1, 2)))
            .mul_scalar(1.0 / (c as f64).sqrt());
        let attn = softmax(scores, 2);
        let out = comp.up(comp.down(attn).matmul(comp.down(v)));
        let out = out.reshape([b, t, h, w, c]).permute([0, 4, 1, 2, 3]);
        x + self.proj.forward(out, comp)
    }
}

/// Nearest-neighbour upsampling by 2 in H and W.
pub fn upsample_space<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, c, t, h, w] = x.dims();
    x.reshape([b, c, t, h, 1, w, 1])
        .expand([b, c, t, h, 2, w, 2])
        .reshape([b, c, t, 2 * h, 2 * w])
}

/// Causal nearest-neighbour upsampling by 2 in time: every frame twice, then the first copy of
/// frame 0 dropped, so `1 + n` frames become `1 + 2n` and frame 0 still stands alone.
pub fn upsample_time<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, c, t, h, w] = x.dims();
    let doubled = x
        .reshape([b, c, t, 1, h * w])
        .expand([b, c, t, 2, h * w])
        .reshape([b, c, 2 * t, h, w]);
    doubled.narrow(2, 1, 2 * t - 1)
}
