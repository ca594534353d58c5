//! The VAE's building blocks: residual blocks (group norm, SiLU, causal 3×3×3 convolutions) and
//! the down/up-sampling steps between resolution levels.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::models::init::ParamInit;
use crate::models::nn::{
    upsample_space, upsample_time, CausalConv3d, Compute, FrameAttention, FrameGroupNorm,
};

/// norm → SiLU → conv → norm → SiLU → conv, plus the input (through a 1×1×1 conv when the
/// channel count changes).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub norm1: FrameGroupNorm<B>,
    pub conv1: CausalConv3d<B>,
    pub norm2: FrameGroupNorm<B>,
    pub conv2: CausalConv3d<B>,
    pub skip: Option<CausalConv3d<B>>,
}

impl<B: Backend> ResBlock<B> {
    pub fn new(init: &ParamInit<B>, path: &str, cin: usize, cout: usize, groups: usize) -> Self {
        let k3 = [3, 3, 3];
        ResBlock {
            norm1: FrameGroupNorm::new(init, &format!("{path}.norm1"), cin, groups),
            conv1: CausalConv3d::new(init, &format!("{path}.conv1"), [cin, cout], k3, [1, 1, 1]),
            norm2: FrameGroupNorm::new(init, &format!("{path}.norm2"), cout, groups),
            conv2: CausalConv3d::new(init, &format!("{path}.conv2"), [cout, cout], k3, [1, 1, 1]),
            skip: (cin != cout).then(|| {
                CausalConv3d::new(
                    init,
                    &format!("{path}.skip"),
                    [cin, cout],
                    [1, 1, 1],
                    [1, 1, 1],
                )
            }),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())), c);
        let h = self.conv2.forward(silu(self.norm2.forward(h)), c);
        let skip = match &self.skip {
            Some(s) => s.forward(x, c),
            None => x,
        };
        skip + h
    }
}

/// Residual block, optional per-frame attention, residual block.
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    pub res1: ResBlock<B>,
    pub attn: Option<FrameAttention<B>>,
    pub res2: ResBlock<B>,
}

impl<B: Backend> MidBlock<B> {
    pub fn new(init: &ParamInit<B>, path: &str, c: usize, groups: usize, attention: bool) -> Self {
        MidBlock {
            res1: ResBlock::new(init, &format!("{path}.res1"), c, c, groups),
            attn: attention.then(|| FrameAttention::new(init, &format!("{path}.attn"), c, groups)),
            res2: ResBlock::new(init, &format!("{path}.res2"), c, c, groups),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
        let x = self.res1.forward(x, c);
        let x = match &self.attn {
            Some(a) => a.forward(x, c),
            None => x,
        };
        self.res2.forward(x, c)
    }
}

/// A strided causal 3×3×3 convolution: halves H and W and/or time (`1 + 2n` frames → `1 + n`).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: CausalConv3d<B>,
}

impl<B: Backend> Downsample<B> {
    pub fn new(init: &ParamInit<B>, path: &str, c: usize, space: bool, time: bool) -> Self {
        let s = if space { 2 } else { 1 };
        let t = if time { 2 } else { 1 };
        Downsample {
            conv: CausalConv3d::new(init, &format!("{path}.conv"), [c, c], [3, 3, 3], [t, s, s]),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
        self.conv.forward(x, c)
    }
}

/// Nearest-neighbour upsampling (space ×2 and/or causal time ×2) then a causal 3×3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    pub conv: CausalConv3d<B>,
    pub space: bool,
    pub time: bool,
}

impl<B: Backend> Upsample<B> {
    pub fn new(init: &ParamInit<B>, path: &str, c: usize, space: bool, time: bool) -> Self {
        Upsample {
            conv: CausalConv3d::new(init, &format!("{path}.conv"), [c, c], [3, 3, 3], [1, 1, 1]),
            space,
            time,
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
        let x = if self.time { upsample_time(x) } else { x };
        let x = if self.space { upsample_space(x) } else { x };
        self.conv.forward(x, c)
    }
}
