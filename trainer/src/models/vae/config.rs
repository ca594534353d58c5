//! The VAE's architecture as configuration: presets, validation, and a walk over the layers that
//! gives latent shapes, parameter counts and FLOPs without building the model (for the big
//! presets' shape checks and for TFLOP/s and MFU).

use serde::{Deserialize, Serialize};

use crate::models::ModelError;

/// A causal 3D VAE: `compression` = (dt, dh, dw) frames and pixels per latent cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// (dt, dh, dw), powers of two; a clip of `1 + dt·k` frames of H×W gives `1 + k` latent
    /// frames of (H/dh)×(W/dw).
    pub compression: [usize; 3],
    /// Channels of the latent (the mean; the encoder also outputs as many log-variances).
    pub latent_channels: usize,
    /// Channels at each resolution level, from the pixels inwards. Between consecutive levels
    /// sits one down (encoder) / up (decoder) step: there must be at least log2(dh) and log2(dt)
    /// of them.
    pub channels: Vec<usize>,
    /// Residual blocks per level in the encoder (the decoder has one more).
    pub blocks_per_level: usize,
    /// A per-frame self-attention block between the two middle residual blocks.
    pub mid_attention: bool,
    /// Group norm groups (lowered to a divisor of each layer's channels).
    pub norm_groups: usize,
}

/// The `[model]` table of a VAE training config: a preset and keys overriding it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeSpec {
    /// `seaweed48x`, `seaweed64x` or `tiny`.
    pub preset: Option<String>,
    pub compression: Option<[usize; 3]>,
    pub latent_channels: Option<usize>,
    pub channels: Option<Vec<usize>>,
    pub blocks_per_level: Option<usize>,
    pub mid_attention: Option<bool>,
    pub norm_groups: Option<usize>,
}

pub const PRESETS: &[&str] = &["seaweed48x", "seaweed64x", "tiny"];

impl VaeConfig {
    /// Seaweed's 48× VAE: (4, 8, 8) with 16 latent channels.
    pub fn seaweed48x() -> Self {
        VaeConfig {
            compression: [4, 8, 8],
            latent_channels: 16,
            channels: vec![128, 256, 512, 512],
            blocks_per_level: 2,
            mid_attention: true,
            norm_groups: 32,
        }
    }

    /// Seaweed's 64× VAE: (4, 16, 16) with 48 latent channels.
    pub fn seaweed64x() -> Self {
        VaeConfig {
            compression: [4, 16, 16],
            latent_channels: 48,
            channels: vec![128, 256, 512, 512, 512],
            blocks_per_level: 2,
            mid_attention: true,
            norm_groups: 32,
        }
    }

    /// Small enough to train on a CPU in minutes: (4, 4, 4) with 8 latent channels.
    pub fn tiny() -> Self {
        VaeConfig {
            compression: [4, 4, 4],
            latent_channels: 8,
            channels: vec![16, 32, 32],
            blocks_per_level: 1,
            mid_attention: false,
            norm_groups: 8,
        }
    }

    pub fn preset(name: &str) -> Result<Self, ModelError> {
        match name {
            "seaweed48x" => Ok(Self::seaweed48x()),
            "seaweed64x" => Ok(Self::seaweed64x()),
            "tiny" => Ok(Self::tiny()),
            other => Err(ModelError::Config(format!(
                "unknown VAE preset \"{other}\"; presets: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// The same architecture with every level's channels divided by `k` (at least `groups`):
    /// what the shape tests run for the big presets.
    pub fn narrowed(&self, k: usize) -> Self {
        let mut c = self.clone();
        c.channels = c
            .channels
            .iter()
            .map(|ch| (ch / k.max(1)).max(c.norm_groups.min(*ch)))
            .collect();
        c
    }

    /// Checks the architecture; the error says what to change.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        let [dt, dh, dw] = self.compression;
        for (name, d) in [("dt", dt), ("dh", dh), ("dw", dw)] {
            if d == 0 || !d.is_power_of_two() {
                return bad(format!(
                    "compression {name} = {d}: must be a power of two (1, 2, 4, ...)"
                ));
            }
        }
        if dh != dw {
            return bad(format!(
                "compression dh = {dh} and dw = {dw} differ: only square spatial compression is supported"
            ));
        }
        if self.channels.is_empty() || self.channels.contains(&0) {
            return bad("channels: give one positive count per level".into());
        }
        let steps = self.channels.len() - 1;
        let need = log2(dh).max(log2(dt));
        if need > steps {
            return bad(format!(
                "compression {:?} needs {need} down-sampling steps but channels {:?} give {steps} (one fewer than its levels): add levels",
                self.compression, self.channels
            ));
        }
        if self.latent_channels == 0 || self.blocks_per_level == 0 || self.norm_groups == 0 {
            return bad(
                "latent_channels, blocks_per_level and norm_groups must be positive".into(),
            );
        }
        Ok(())
    }

    /// Whether step `i` (between level i and i+1) halves space and time.
    pub fn step_halves(&self, i: usize) -> (bool, bool) {
        let steps = self.channels.len().saturating_sub(1);
        let space = i < log2(self.compression[1]);
        let time = i + log2(self.compression[0]) >= steps;
        (space, time)
    }

    /// The latent `[C, T, H, W]` of a clip of `[T, H, W]`, or why that clip does not fit.
    pub fn latent_shape(
        &self,
        frames: usize,
        height: usize,
        width: usize,
    ) -> Result<[usize; 4], ModelError> {
        let [dt, dh, dw] = self.compression;
        if frames == 0 || !(frames - 1).is_multiple_of(dt) {
            return Err(ModelError::Shape(format!(
                "{frames} frames: this VAE takes 1 + {dt}·k frames (1, {}, {}, ...)",
                1 + dt,
                1 + 2 * dt
            )));
        }
        if !height.is_multiple_of(dh) || !width.is_multiple_of(dw) || height == 0 || width == 0 {
            return Err(ModelError::Shape(format!(
                "{width}x{height}: width and height must be positive multiples of {dw} and {dh}"
            )));
        }
        Ok([
            self.latent_channels,
            1 + (frames - 1) / dt,
            height / dh,
            width / dw,
        ])
    }

    /// Parameters and forward FLOPs of encoder and decoder for one clip of `[T, H, W]` (counting
    /// convolutions and attention products, 2 FLOPs per multiply-add; norms and activations are
    /// under 1% and left out).
    pub fn cost(&self, frames: usize, height: usize, width: usize) -> Cost {
        let mut w = Walk::default();
        let g = &self.channels;
        let levels = g.len();
        let (mut t, mut h, mut wd) = (frames, height, width);
        // Encoder.
        w.conv(3, g[0], 27, t * h * wd, Side::Enc);
        let mut cin = g[0];
        for (i, &co) in g.iter().enumerate() {
            for _ in 0..self.blocks_per_level {
                w.res(cin, co, t * h * wd, Side::Enc);
                cin = co;
            }
            if i + 1 < levels {
                let (s, tm) = self.step_halves(i);
                if s {
                    h /= 2;
                    wd /= 2;
                }
                if tm {
                    t = (t - 1) / 2 + 1;
                }
                w.conv(co, co, 27, t * h * wd, Side::Enc);
            }
        }
        w.mid(cin, t, h * wd, self.mid_attention, Side::Enc);
        w.norm(cin, Side::Enc);
        w.conv(cin, 2 * self.latent_channels, 27, t * h * wd, Side::Enc);
        let latent = [self.latent_channels, t, h, wd];
        // Decoder.
        let top = g[levels - 1];
        w.conv(self.latent_channels, top, 27, t * h * wd, Side::Dec);
        w.mid(top, t, h * wd, self.mid_attention, Side::Dec);
        let mut cin = top;
        for i in (0..levels).rev() {
            let co = g[i];
            for _ in 0..=self.blocks_per_level {
                w.res(cin, co, t * h * wd, Side::Dec);
                cin = co;
            }
            if i > 0 {
                let (s, tm) = self.step_halves(i - 1);
                if s {
                    h *= 2;
                    wd *= 2;
                }
                if tm {
                    t = 2 * t - 1;
                }
                w.conv(co, co, 27, t * h * wd, Side::Dec);
            }
        }
        w.norm(cin, Side::Dec);
        w.conv(cin, 3, 27, t * h * wd, Side::Dec);
        Cost {
            latent,
            encoder_params: w.params[0],
            decoder_params: w.params[1],
            encoder_flops: w.flops[0],
            decoder_flops: w.flops[1],
        }
    }
}

/// What [`VaeConfig::cost`] counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// `[C, T, H, W]` of the latent.
    pub latent: [usize; 4],
    pub encoder_params: u64,
    pub decoder_params: u64,
    /// Forward FLOPs for one clip.
    pub encoder_flops: f64,
    pub decoder_flops: f64,
}

impl Cost {
    pub fn params(&self) -> u64 {
        self.encoder_params + self.decoder_params
    }

    /// FLOPs of one training step on one clip: forward, and backward at twice the forward.
    pub fn train_flops(&self) -> f64 {
        3.0 * (self.encoder_flops + self.decoder_flops)
    }
}

#[derive(Clone, Copy)]
enum Side {
    Enc,
    Dec,
}

#[derive(Default)]
struct Walk {
    params: [u64; 2],
    flops: [f64; 2],
}

impl Walk {
    fn conv(&mut self, cin: usize, cout: usize, k: usize, out_cells: usize, side: Side) {
        let i = side as usize;
        self.params[i] += (cout * cin * k + cout) as u64;
        self.flops[i] += 2.0 * (cout * cin * k) as f64 * out_cells as f64;
    }

    fn norm(&mut self, c: usize, side: Side) {
        self.params[side as usize] += 2 * c as u64;
    }

    fn res(&mut self, cin: usize, cout: usize, cells: usize, side: Side) {
        self.norm(cin, side);
        self.conv(cin, cout, 27, cells, side);
        self.norm(cout, side);
        self.conv(cout, cout, 27, cells, side);
        if cin != cout {
            self.conv(cin, cout, 1, cells, side);
        }
    }

    fn mid(&mut self, c: usize, t: usize, pixels: usize, attention: bool, side: Side) {
        self.res(c, c, t * pixels, side);
        if attention {
            let s = side;
            self.norm(c, side);
            self.conv(c, 3 * c, 1, t * pixels, s);
            self.conv(c, c, 1, t * pixels, s);
            // Q·Kᵀ and A·V per frame.
            self.flops[side as usize] += 2.0 * 2.0 * (pixels * pixels * c) as f64 * t as f64;
        }
        self.res(c, c, t * pixels, side);
    }
}

fn log2(x: usize) -> usize {
    x.trailing_zeros() as usize
}

impl VaeSpec {
    /// The architecture: the preset (default `tiny`) with this table's keys over it.
    pub fn resolve(&self) -> Result<VaeConfig, ModelError> {
        let mut c = VaeConfig::preset(self.preset.as_deref().unwrap_or("tiny"))?;
        if let Some(v) = self.compression {
            c.compression = v;
        }
        if let Some(v) = self.latent_channels {
            c.latent_channels = v;
        }
        if let Some(v) = &self.channels {
            c.channels = v.clone();
        }
        if let Some(v) = self.blocks_per_level {
            c.blocks_per_level = v;
        }
        if let Some(v) = self.mid_attention {
            c.mid_attention = v;
        }
        if let Some(v) = self.norm_groups {
            c.norm_groups = v;
        }
        c.validate()?;
        Ok(c)
    }
}
