//! The DiT: latents + timestep + text token embeddings → velocity. [`Dit::forward`] takes a
//! padded batch; [`Dit::forward_tokens`] takes token sequences with explicit positions, per-token
//! timesteps and an attention bias, which is what packed sequences
//! ([`super::packing`]) need. The text encoder is not here ([`crate::models::text`]): text
//! arrives as token embeddings `[B, L, text_dim]` with a mask (1 = token, 0 = padding).

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::attention::key_padding_bias;
use super::block::{Block, Streams};
use super::config::DitConfig;
use super::layers::{layer_norm, modulate, Dense};
use super::patch::{patchify, unpatchify};
use super::rope::{text_offset, text_positions, video_positions, Pos, RopeTable};
use super::time::{MicroEmbed, TimestepEmbed};
use crate::models::init::ParamInit;
use crate::models::nn::Compute;
use crate::models::ModelError;

#[derive(Module, Debug)]
pub struct Dit<B: Backend> {
    pub patch_in: Dense<B>,
    pub text_in: Dense<B>,
    /// The learned "no caption" embedding, put in every text position of a dropped caption
    /// (conditioning dropout for classifier-free guidance).
    pub null_text: Param<Tensor<B, 1>>,
    pub time: TimestepEmbed<B>,
    /// Resolution and duration conditioning (`size_condition`).
    pub size: Option<MicroEmbed<B>>,
    /// Frame-rate conditioning (`fps_condition`).
    pub fps: Option<MicroEmbed<B>>,
    pub blocks: Vec<Block<B>>,
    /// SiLU(c) → (shift, scale) of the output norm.
    pub final_ada: Dense<B>,
    /// Zero at start, so a fresh model predicts zero velocity.
    pub final_out: Dense<B>,
    pub patch: [usize; 3],
    pub latent_channels: usize,
    /// Input channels: `latent_channels`, or `2·latent_channels + 1` with image conditioning.
    pub in_channels: usize,
    pub rope_axes: [usize; 3],
    pub rope_theta: usize,
}

/// Token sequences for [`Dit::forward_tokens`]. `positions` has one entry per video token then
/// one per text token (the rows of a batch share them); `t_video`/`t_text` are `[B, 1]` or one
/// timestep per token; `bias` is the attention bias over the joint sequence.
pub struct TokenInput<B: Backend> {
    pub video: Tensor<B, 3>,
    pub text: Tensor<B, 3>,
    pub positions: Vec<Pos>,
    pub t_video: Tensor<B, 2>,
    pub t_text: Tensor<B, 2>,
    pub bias: Option<Tensor<B, 4>>,
    /// Each token's sample's micro-conditions, video then text, shaped like `t_video`/`t_text`
    /// with a last axis of [`MICRO`]: its token grid (frames, height, width) and its frame rate
    /// (0 = unknown). What a size- or fps-conditioned model adds to the timestep's conditioning.
    pub micro: (Tensor<B, 3>, Tensor<B, 3>),
}

/// The blocks' inputs, from [`Dit::prepare`].
pub(crate) struct Prepared<B: Backend> {
    pub streams: Streams<B>,
    pub cond_video: Tensor<B, 3>,
    pub cond_text: Tensor<B, 3>,
    pub rope: RopeTable<B>,
    pub bias: Option<Tensor<B, 4>>,
}

impl<B: Backend> Dit<B> {
    /// A freshly initialised model (deterministic for `seed`). The config must be valid.
    pub fn new(config: &DitConfig, device: &B::Device, seed: u64) -> Self {
        let init = ParamInit::new(device, seed);
        let d = config.hidden;
        let blocks = (0..config.depth)
            .map(|i| {
                Block::new(
                    &init,
                    &format!("blocks.{i}"),
                    config,
                    i < config.dual_layers,
                )
            })
            .collect();
        Dit {
            patch_in: Dense::new(&init, "patch_in", config.patch_in_dim(), d),
            text_in: Dense::new(&init, "text_in", config.text_dim, d),
            null_text: init.uniform("null_text", [config.text_dim], 1.0),
            time: TimestepEmbed::new(&init, "time", config.time_features, d),
            size: config
                .size_condition
                .then(|| MicroEmbed::new(&init, "size", 3, config.time_features, d)),
            fps: config
                .fps_condition
                .then(|| MicroEmbed::new(&init, "fps", 1, config.time_features, d)),
            blocks,
            final_ada: Dense::zeros(&init, "final_ada", d, 2 * d),
            final_out: Dense::zeros(&init, "final_out", d, config.patch_dim()),
            patch: config.patch,
            latent_channels: config.latent_channels,
            in_channels: config.in_channels(),
            rope_axes: config.rope_axes,
            rope_theta: config.rope_theta.round() as usize,
        }
    }

    /// The velocity at `x_t`: `latents` `[B, C_in, T, H, W]` (`x_t`, and with image
    /// conditioning the condition and mask channels after it: [`super::condition::with_condition`]),
    /// `t` `[B]` in [0, 1], `text` `[B, L, text_dim]`, `text_mask` `[B, L]` (1 = token, 0 =
    /// padding; padded keys are never attended), `fps` each sample's frame rate (`None`: unknown,
    /// as 0). The velocity has `latent_channels`.
    pub fn forward(
        &self,
        latents: Tensor<B, 5>,
        t: Tensor<B, 1>,
        text: Tensor<B, 3>,
        text_mask: Tensor<B, 2>,
        fps: Option<&[f32]>,
        c: Compute,
    ) -> Result<Tensor<B, 5>, ModelError> {
        self.forward_via(latents, t, text, text_mask, fps, &mut |x| {
            self.forward_tokens(x, c)
        })
    }

    /// [`Dit::forward`] with the token sequences run by `tokens` (the plain
    /// [`Dit::forward_tokens`], or a recomputing one: [`super::recompute`]).
    pub fn forward_via(
        &self,
        latents: Tensor<B, 5>,
        t: Tensor<B, 1>,
        text: Tensor<B, 3>,
        text_mask: Tensor<B, 2>,
        fps: Option<&[f32]>,
        tokens: &mut dyn FnMut(TokenInput<B>) -> Tensor<B, 3>,
    ) -> Result<Tensor<B, 5>, ModelError> {
        let [b, ch, ..] = latents.dims();
        let [bt, l, _] = text.dims();
        let unknown = vec![0.0; b];
        let fps = fps.unwrap_or(&unknown);
        if ch != self.in_channels
            || bt != b
            || t.dims()[0] != b
            || text_mask.dims() != [b, l]
            || fps.len() != b
        {
            return Err(ModelError::Shape(format!(
                "latents {:?}, t {:?}, text {:?}, mask {:?}, {} frame rates: expected [B, {}, T, H, W], [B], [B, L, D], [B, L], B",
                latents.dims(),
                t.dims(),
                text.dims(),
                text_mask.dims(),
                fps.len(),
                self.in_channels
            )));
        }
        let (video, grid) = patchify(latents, self.patch)?;
        let nv = video.dims()[1];
        let mut positions = video_positions(grid);
        positions.extend(text_positions(l, text_offset(grid)));
        let keep = Tensor::cat(vec![Tensor::ones([b, nv], &video.device()), text_mask], 1);
        let t2 = t.reshape([b, 1]);
        let micro = micro_tensor(grid, fps, 1, &video.device());
        let out = tokens(TokenInput {
            video,
            text,
            positions,
            t_video: t2.clone(),
            t_text: t2,
            bias: Some(key_padding_bias(keep)),
            micro: (micro.clone(), micro),
        });
        unpatchify(out, self.patch, grid, self.latent_channels)
    }

    /// Velocity tokens `[B, Nv, C·pt·ph·pw]` for token sequences.
    pub fn forward_tokens(&self, x: TokenInput<B>, c: Compute) -> Tensor<B, 3> {
        let p = self.prepare(x, c);
        let mut s = p.streams;
        for block in &self.blocks {
            s = block.forward(s, &p.cond_video, &p.cond_text, &p.rope, p.bias.as_ref(), c);
        }
        self.head(s.video, p.cond_video, c)
    }

    /// What the blocks take: the embedded streams, the timestep (and micro-) conditioning with
    /// SiLU applied, the rotary table and the attention bias.
    pub(crate) fn prepare(&self, x: TokenInput<B>, c: Compute) -> Prepared<B> {
        let device = x.video.device();
        let rope = RopeTable::new(
            &x.positions,
            self.rope_axes,
            self.rope_theta as f64,
            &device,
        );
        let mut cond_video = self.time.forward(x.t_video, c);
        let mut cond_text = self.time.forward(x.t_text, c);
        let (mv, mt) = x.micro;
        if let Some(size) = &self.size {
            cond_video = cond_video + size.forward(mv.clone().narrow(2, 0, 3), c);
            cond_text = cond_text + size.forward(mt.clone().narrow(2, 0, 3), c);
        }
        if let Some(fps) = &self.fps {
            cond_video = cond_video + fps.forward(mv.narrow(2, 3, 1), c);
            cond_text = cond_text + fps.forward(mt.narrow(2, 3, 1), c);
        }
        Prepared {
            streams: Streams {
                video: self.patch_in.forward(x.video, c),
                text: self.text_in.forward(x.text, c),
            },
            cond_video: silu(cond_video),
            cond_text: silu(cond_text),
            rope,
            bias: x.bias,
        }
    }

    /// The output layer: the video stream after the last block → velocity tokens.
    pub(crate) fn head(
        &self,
        video: Tensor<B, 3>,
        cond_video: Tensor<B, 3>,
        c: Compute,
    ) -> Tensor<B, 3> {
        output_layer(&self.final_ada, &self.final_out, video, cond_video, c)
    }

    /// `text` and `mask` with the rows where `drop` is true replaced by the null caption (the
    /// null embedding in every position, all positions valid).
    pub fn drop_text(
        &self,
        text: Tensor<B, 3>,
        mask: Tensor<B, 2>,
        drop: &[bool],
    ) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let [b, _, dt] = text.dims();
        let device = text.device();
        let flags: Vec<f32> = (0..b)
            .map(|i| {
                if drop.get(i).copied().unwrap_or(false) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let dropped = Tensor::<B, 1>::from_data(TensorData::new(flags, [b]), &device);
        let keep3 = (dropped.clone().neg() + 1.0).reshape([b, 1, 1]);
        let null = self.null_text.val().reshape([1, 1, dt]);
        let text = text * keep3.clone() + null * (keep3.neg() + 1.0);
        let d2 = dropped.reshape([b, 1]);
        let mask = mask * (d2.clone().neg() + 1.0) + d2;
        (text, mask)
    }

    /// The null caption alone: `[b, len, text_dim]` and its all-ones mask.
    pub fn null_caption(&self, b: usize, len: usize) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let dt = self.null_text.dims()[0];
        let device = self.null_text.device();
        let text = self
            .null_text
            .val()
            .reshape([1, 1, dt])
            .expand([b, len, dt]);
        (text, Tensor::ones([b, len], &device))
    }
}

/// The output layer (`final_ada`, `final_out`): the video stream after the last block and the
/// conditioning → velocity tokens.
pub(crate) fn output_layer<B: Backend>(
    final_ada: &Dense<B>,
    final_out: &Dense<B>,
    video: Tensor<B, 3>,
    cond_video: Tensor<B, 3>,
    c: Compute,
) -> Tensor<B, 3> {
    let m = final_ada.forward(cond_video, c).chunk(2, 2);
    let h = modulate(layer_norm(video), m[0].clone(), m[1].clone());
    final_out.forward(h, c)
}

/// Values per token of [`TokenInput::micro`]: the token grid's frames, height, width, then fps.
pub const MICRO: usize = 4;

/// One sample's micro-conditions: its token grid and frame rate (0 = unknown).
pub fn micro_values(grid: [usize; 3], fps: f32) -> [f32; MICRO] {
    [grid[0] as f32, grid[1] as f32, grid[2] as f32, fps]
}

/// The micro-conditions of `fps.len()` samples of one token `grid`, each repeated over `s`
/// tokens: the `[B, s, MICRO]` tensor [`TokenInput::micro`] holds.
pub fn micro_tensor<B: Backend>(
    grid: [usize; 3],
    fps: &[f32],
    s: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    let b = fps.len();
    let values: Vec<f32> = fps.iter().flat_map(|&f| micro_values(grid, f)).collect();
    Tensor::<B, 3>::from_data(TensorData::new(values, [b, 1, MICRO]), device).expand([b, s, MICRO])
}
