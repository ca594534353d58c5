//! The causal 3D VAE: encoder (pixels → latent mean and log-variance), decoder (latent → pixels),
//! built from a [`VaeConfig`]. Frame 0 of a clip is encoded from frame 0 alone, so a one-frame
//! clip (an image) and the first frame of a video share one latent.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::blocks::{Downsample, MidBlock, ResBlock, Upsample};
use super::config::VaeConfig;
use crate::models::init::ParamInit;
use crate::models::nn::{CausalConv3d, Compute, FrameGroupNorm};

#[derive(Module, Debug)]
pub struct Level<B: Backend> {
    pub blocks: Vec<ResBlock<B>>,
    pub down: Option<Downsample<B>>,
    pub up: Option<Upsample<B>>,
}

#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub conv_in: CausalConv3d<B>,
    pub levels: Vec<Level<B>>,
    pub mid: MidBlock<B>,
    pub norm_out: FrameGroupNorm<B>,
    pub conv_out: CausalConv3d<B>,
}

#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    pub conv_in: CausalConv3d<B>,
    pub mid: MidBlock<B>,
    /// Innermost level first.
    pub levels: Vec<Level<B>>,
    pub norm_out: FrameGroupNorm<B>,
    pub conv_out: CausalConv3d<B>,
}

#[derive(Module, Debug)]
pub struct Vae<B: Backend> {
    pub encoder: Encoder<B>,
    pub decoder: Decoder<B>,
}

/// What the encoder gives: the posterior's mean and log-variance, `[B, C, T', H', W']` each.
#[derive(Debug, Clone)]
pub struct Posterior<B: Backend> {
    pub mean: Tensor<B, 5>,
    pub logvar: Tensor<B, 5>,
}

impl<B: Backend> Vae<B> {
    /// A freshly initialised model (deterministic for `seed`). The config must be valid.
    pub fn new(config: &VaeConfig, device: &B::Device, seed: u64) -> Self {
        let init = ParamInit::new(device, seed);
        let g = config.norm_groups;
        let ch = &config.channels;
        let levels = ch.len();
        let k3 = [3, 3, 3];
        let one = [1, 1, 1];

        let mut enc_levels = Vec::with_capacity(levels);
        let mut cin = ch[0];
        for (i, &co) in ch.iter().enumerate() {
            let mut blocks = Vec::new();
            for j in 0..config.blocks_per_level {
                blocks.push(ResBlock::new(
                    &init,
                    &format!("encoder.levels.{i}.blocks.{j}"),
                    cin,
                    co,
                    g,
                ));
                cin = co;
            }
            let down = (i + 1 < levels).then(|| {
                let (s, t) = config.step_halves(i);
                Downsample::new(&init, &format!("encoder.levels.{i}.down"), co, s, t)
            });
            enc_levels.push(Level {
                blocks,
                down,
                up: None,
            });
        }
        let top = ch[levels - 1];
        let encoder = Encoder {
            conv_in: CausalConv3d::new(&init, "encoder.conv_in", [3, ch[0]], k3, one),
            levels: enc_levels,
            mid: MidBlock::new(&init, "encoder.mid", top, g, config.mid_attention),
            norm_out: FrameGroupNorm::new(&init, "encoder.norm_out", top, g),
            conv_out: CausalConv3d::new(
                &init,
                "encoder.conv_out",
                [top, 2 * config.latent_channels],
                k3,
                one,
            ),
        };

        let mut dec_levels = Vec::with_capacity(levels);
        let mut cin = top;
        for i in (0..levels).rev() {
            let co = ch[i];
            let mut blocks = Vec::new();
            for j in 0..=config.blocks_per_level {
                blocks.push(ResBlock::new(
                    &init,
                    &format!("decoder.levels.{i}.blocks.{j}"),
                    cin,
                    co,
                    g,
                ));
                cin = co;
            }
            let up = (i > 0).then(|| {
                let (s, t) = config.step_halves(i - 1);
                Upsample::new(&init, &format!("decoder.levels.{i}.up"), co, s, t)
            });
            dec_levels.push(Level {
                blocks,
                down: None,
                up,
            });
        }
        let decoder = Decoder {
            conv_in: CausalConv3d::new(
                &init,
                "decoder.conv_in",
                [config.latent_channels, top],
                k3,
                one,
            ),
            mid: MidBlock::new(&init, "decoder.mid", top, g, config.mid_attention),
            levels: dec_levels,
            norm_out: FrameGroupNorm::new(&init, "decoder.norm_out", ch[0], g),
            conv_out: CausalConv3d::new(&init, "decoder.conv_out", [ch[0], 3], k3, one),
        };
        Vae { encoder, decoder }
    }

    /// `x`: `[B, 3, T, H, W]` in [-1, 1].
    pub fn encode(&self, x: Tensor<B, 5>, c: Compute) -> Posterior<B> {
        self.encoder.forward(x, c)
    }

    /// `z`: `[B, C, T', H', W']` → `[B, 3, T, H, W]`.
    pub fn decode(&self, z: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
        self.decoder.forward(z, c)
    }
}

impl<B: Backend> Encoder<B> {
    pub fn forward(&self, x: Tensor<B, 5>, c: Compute) -> Posterior<B> {
        let mut h = self.conv_in.forward(x, c);
        for level in &self.levels {
            for block in &level.blocks {
                h = block.forward(h, c);
            }
            if let Some(down) = &level.down {
                h = down.forward(h, c);
            }
        }
        let h = self.mid.forward(h, c);
        let h = self.conv_out.forward(silu(self.norm_out.forward(h)), c);
        let latent = h.dims()[1] / 2;
        let mean = h.clone().narrow(1, 0, latent);
        // Clamped as in latent-diffusion VAEs, so an early blow-up cannot overflow exp().
        let logvar = h.narrow(1, latent, latent).clamp(-30.0, 20.0);
        Posterior { mean, logvar }
    }
}

impl<B: Backend> Decoder<B> {
    pub fn forward(&self, z: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
        let mut h = self.mid.forward(self.conv_in.forward(z, c), c);
        for level in &self.levels {
            for block in &level.blocks {
                h = block.forward(h, c);
            }
            if let Some(up) = &level.up {
                h = up.forward(h, c);
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(h)), c)
    }
}
